package export

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table is one table to export, as the catalog describes it.
type table struct {
	oid          uint32
	schema, name string
	qualified    string // quote_ident(schema).quote_ident(name)
	partitioned  bool
	comment      string
	columns      []column
	primaryKey   []string
	uniqueKeys   [][]string
	foreignKeys  []fkDef
	base         string // file name without .csv, and resource name (tableBase)
	hasGenerated bool
}

type column struct {
	num      int16
	name     string
	notNull  bool
	typeOID  uint32
	typmod   int32
	typeText string // format_type
	comment  string
}

type fkDef struct {
	columns    []string
	refOID     uint32
	refColumns []string
}

// pgType is a column type resolved through domains to its base type.
type pgType struct {
	baseName   string // typname of the base type
	baseTypmod int32  // typmod of the base when the column's type is a domain (-1 otherwise)
	builtin    bool   // base lives in pg_catalog
	kind       byte   // typtype of the base: b, e, c, r, m, p
	category   byte   // typcategory of the base: A for arrays, …
	domain     bool
	enumLabels []string
}

// tablesQuery lists the tables whose rows are exported: ordinary tables and top-level partitioned tables (read
// through the parent, so partitions are not listed again) in every schema except pg_* and information_schema
// (PostgreSQL reserves the pg_ prefix), not temporary, and not belonging to an extension unless the extension
// marked it as configuration data (pg_extension_config_dump), as pg_dump does.
const tablesQuery = `
SELECT c.oid, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       c.relkind = 'p', coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
  AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      AND NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.oid = d.refobjid AND c.oid = ANY (e.extconfig)))
ORDER BY n.nspname, c.relname`

const columnsQuery = `
SELECT a.attrelid, a.attnum, a.attname, a.attnotnull, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),
       coalesce(col_description(a.attrelid, a.attnum), ''), a.attgenerated <> ''
FROM pg_attribute a
WHERE a.attrelid = ANY ($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum`

// typesQuery resolves each type through its domains to the base type.
const typesQuery = `
WITH RECURSIVE chain(orig, oid, typmod, depth) AS (
  SELECT t.oid, t.oid, -1, 0 FROM pg_type t WHERE t.oid = ANY ($1)
  UNION ALL
  SELECT c.orig, t.typbasetype, CASE WHEN c.typmod = -1 THEN t.typtypmod ELSE c.typmod END, c.depth + 1
  FROM chain c JOIN pg_type t ON t.oid = c.oid
  WHERE t.typtype = 'd' AND c.depth < 32
)
SELECT DISTINCT ON (c.orig) c.orig, t.oid, t.typname, t.typtype::text, t.typcategory::text,
       t.typnamespace = 'pg_catalog'::regnamespace, c.depth > 0, c.typmod
FROM chain c JOIN pg_type t ON t.oid = c.oid
ORDER BY c.orig, c.depth DESC`

const enumQuery = `SELECT enumtypid, enumlabel FROM pg_enum WHERE enumtypid = ANY ($1) ORDER BY enumtypid, enumsortorder`

// constraintsQuery lists primary keys, unique constraints and foreign keys with their columns in key order.
const constraintsQuery = `
SELECT con.conrelid, con.contype::text, con.confrelid,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.i),
       ARRAY(SELECT a.attname::text FROM unnest(coalesce(con.confkey, '{}')) WITH ORDINALITY k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.i)
FROM pg_constraint con
WHERE con.conrelid = ANY ($1) AND con.contype IN ('p', 'u', 'f')
ORDER BY con.conrelid, con.contype, con.conname`

// readCatalog describes every table to export, inside the export's transaction.
func readCatalog(ctx context.Context, tx pgx.Tx) ([]*table, map[uint32]pgType, error) {
	rows, err := tx.Query(ctx, tablesQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("listing tables: %w", err)
	}
	var tables []*table
	byOID := map[uint32]*table{}
	for rows.Next() {
		t := &table{}
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &t.qualified, &t.partitioned, &t.comment); err != nil {
			return nil, nil, err
		}
		t.base = tableBase(t.schema, t.name)
		tables = append(tables, t)
		byOID[t.oid] = t
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing tables: %w", err)
	}
	if len(tables) == 0 {
		return nil, map[uint32]pgType{}, nil
	}
	oids := make([]uint32, 0, len(tables))
	for _, t := range tables {
		oids = append(oids, t.oid)
	}

	rows, err = tx.Query(ctx, columnsQuery, oids)
	if err != nil {
		return nil, nil, fmt.Errorf("listing columns: %w", err)
	}
	typeSet := map[uint32]bool{}
	for rows.Next() {
		var rel uint32
		var c column
		var generated bool
		if err := rows.Scan(&rel, &c.num, &c.name, &c.notNull, &c.typeOID, &c.typmod, &c.typeText, &c.comment, &generated); err != nil {
			return nil, nil, err
		}
		t := byOID[rel]
		t.columns = append(t.columns, c)
		t.hasGenerated = t.hasGenerated || generated
		typeSet[c.typeOID] = true
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing columns: %w", err)
	}

	typeOIDs := make([]uint32, 0, len(typeSet))
	for o := range typeSet {
		typeOIDs = append(typeOIDs, o)
	}
	types := map[uint32]pgType{}
	rows, err = tx.Query(ctx, typesQuery, typeOIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("resolving column types: %w", err)
	}
	var enums []uint32
	enumOf := map[uint32][]uint32{} // enum type → column types that resolve to it
	for rows.Next() {
		var orig, base uint32
		var name, kind, category string
		var t pgType
		if err := rows.Scan(&orig, &base, &name, &kind, &category, &t.builtin, &t.domain, &t.baseTypmod); err != nil {
			return nil, nil, err
		}
		t.baseName, t.kind, t.category = name, kind[0], category[0]
		types[orig] = t
		if t.kind == 'e' {
			if len(enumOf[base]) == 0 {
				enums = append(enums, base)
			}
			enumOf[base] = append(enumOf[base], orig)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("resolving column types: %w", err)
	}
	if len(enums) > 0 {
		rows, err = tx.Query(ctx, enumQuery, enums)
		if err != nil {
			return nil, nil, fmt.Errorf("reading enum labels: %w", err)
		}
		labels := map[uint32][]string{}
		for rows.Next() {
			var typ uint32
			var label string
			if err := rows.Scan(&typ, &label); err != nil {
				return nil, nil, err
			}
			labels[typ] = append(labels[typ], label)
		}
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("reading enum labels: %w", err)
		}
		for base, origs := range enumOf {
			for _, o := range origs {
				t := types[o]
				t.enumLabels = labels[base]
				types[o] = t
			}
		}
	}

	rows, err = tx.Query(ctx, constraintsQuery, oids)
	if err != nil {
		return nil, nil, fmt.Errorf("reading keys: %w", err)
	}
	for rows.Next() {
		var rel, ref uint32
		var kind string
		var cols, refCols []string
		if err := rows.Scan(&rel, &kind, &ref, &cols, &refCols); err != nil {
			return nil, nil, err
		}
		t := byOID[rel]
		switch kind {
		case "p":
			t.primaryKey = cols
		case "u":
			t.uniqueKeys = append(t.uniqueKeys, cols)
		case "f":
			t.foreignKeys = append(t.foreignKeys, fkDef{columns: cols, refOID: ref, refColumns: refCols})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading keys: %w", err)
	}

	seen := map[string]*table{}
	for _, t := range tables {
		if o, dup := seen[t.base]; dup {
			return nil, nil, fmt.Errorf("tables %s and %s would get the same file name %s.csv", o.qualified, t.qualified, t.base)
		}
		seen[t.base] = t
	}
	return tables, types, nil
}

// copySQL is the COPY statement that writes t as CSV with a header, NULL as an unquoted \N (PostgreSQL quotes
// any value equal to the NULL string), in UTF-8 whatever the client encoding. The NULL string is written as an
// escape string constant so that it means backslash-N whatever standard_conforming_strings says.
func copySQL(t *table) string {
	cols := make([]string, len(t.columns))
	for i, c := range t.columns {
		cols[i] = pgx.Identifier{c.name}.Sanitize()
	}
	rel := pgx.Identifier{t.schema, t.name}.Sanitize()
	var src string
	if t.partitioned || t.hasGenerated {
		// COPY cannot read a partitioned table or (before PostgreSQL 18) generated columns directly.
		only := "ONLY "
		if t.partitioned {
			only = ""
		}
		src = "(SELECT " + strings.Join(cols, ", ") + " FROM " + only + rel + ")"
	} else {
		// COPY of a table reads only that table (not inheritance children), like SELECT … FROM ONLY.
		src = rel
		if len(cols) > 0 { // a table may have no columns at all; "()" is not valid
			src += " (" + strings.Join(cols, ", ") + ")"
		}
	}
	return "COPY " + src + ` TO STDOUT WITH (FORMAT csv, HEADER true, NULL E'\\N', ENCODING 'UTF8')`
}

// Notes on how some types are written; they end up in the field's description.
const (
	noteBytea    = "PostgreSQL bytea: written in hex, \\x followed by two lower-case hex digits per byte."
	noteArray    = "PostgreSQL array, written as its array literal, e.g. {1,2,NULL} or {\"a b\",c}: elements are comma-separated inside braces, quoted with double quotes when needed (backslash escapes \" and \\ inside quotes), NULL elements unquoted NULL; multi-dimensional arrays nest braces."
	noteJSON     = "JSON text (PostgreSQL %s); may hold any JSON value, not only objects, so it is typed as a string."
	noteInterval = "PostgreSQL interval in ISO 8601 duration form (IntervalStyle iso_8601), e.g. P1Y2M3DT4H5M6S; components may carry their own sign, which Table Schema's duration type does not allow, so it is typed as a string."
	noteDatetime = "ISO 8601 as PostgreSQL writes it with DateStyle ISO: YYYY-MM-DD hh:mm:ss[.ffffff]"
	noteNumber   = "Written exactly as PostgreSQL stores it (numeric keeps every digit; float is the shortest text that reads back to the same binary value); special values NaN, Infinity, -Infinity."
	noteMoney    = "PostgreSQL money, written with the server's lc_monetary (currency symbol, grouping)."
)

// toField maps a column to a Table Schema field. Types are chosen so that a Frictionless reader parses every
// value PostgreSQL writes; anything without a faithful Table Schema type is a string, with a note on its form.
func toField(c column, t pgType) field {
	f := field{Name: c.name, Type: "string", PostgreSQLType: c.typeText}
	var note string
	typmod := c.typmod
	if t.domain {
		typmod = t.baseTypmod
	}
	switch {
	case t.category == 'A':
		note = noteArray
	case t.kind == 'e':
		f.Constraints = &constraints{Enum: t.enumLabels}
	case !t.builtin:
		note = fmt.Sprintf("PostgreSQL type %s, written in its text form.", c.typeText)
	default:
		switch t.baseName {
		case "int2", "int4", "int8", "oid":
			f.Type = "integer"
		case "numeric", "float4", "float8":
			f.Type = "number"
			note = noteNumber
		case "bool":
			f.Type = "boolean"
			f.TrueValues, f.FalseValues = []string{"t"}, []string{"f"}
		case "date":
			f.Type = "date"
		case "timestamptz":
			f.Type, f.Format = "datetime", "any"
			note = noteDatetime + "+00 (always UTC, the export sets TimeZone to UTC)."
		case "timestamp":
			f.Type, f.Format = "datetime", "any"
			note = noteDatetime + " (no time zone)."
		case "time":
			f.Type = "time"
		case "timetz":
			f.Type, f.Format = "time", "any"
			note = "Time of day with its UTC offset as stored, hh:mm:ss[.ffffff]+hh[:mm]."
		case "uuid":
			f.Format = "uuid"
		case "text", "name", "char", "bpchar":
		case "varchar":
			if typmod >= 4 {
				f.Constraints = &constraints{MaxLength: int(typmod - 4)}
			}
		case "json", "jsonb":
			note = fmt.Sprintf(noteJSON, t.baseName)
		case "bytea":
			note = noteBytea
		case "interval":
			note = noteInterval
		case "money":
			note = noteMoney
		default:
			note = fmt.Sprintf("PostgreSQL type %s, written in its text form.", c.typeText)
		}
	}
	if c.notNull {
		if f.Constraints == nil {
			f.Constraints = &constraints{}
		}
		f.Constraints.Required = true
	}
	f.Description = c.comment
	if note != "" {
		if f.Description != "" {
			f.Description += "\n\n"
		}
		f.Description += note
	}
	return f
}

// schemaOf builds the Table Schema of t; names maps table OIDs to resource names (foreign keys to tables that
// are not exported are left out).
func schemaOf(t *table, types map[uint32]pgType, names map[uint32]string) *tableSchema {
	s := &tableSchema{MissingValues: []string{NullString}, PrimaryKey: t.primaryKey, UniqueKeys: t.uniqueKeys}
	for _, c := range t.columns {
		s.Fields = append(s.Fields, toField(c, types[c.typeOID]))
	}
	if s.Fields == nil {
		s.Fields = []field{}
	}
	for _, fk := range t.foreignKeys {
		ref, ok := names[fk.refOID]
		if !ok {
			continue
		}
		r := fkReference{Fields: fk.refColumns}
		if fk.refOID != t.oid {
			r.Resource = ref
		}
		s.ForeignKeys = append(s.ForeignKeys, foreignKey{Fields: fk.columns, Reference: r})
	}
	return s
}
