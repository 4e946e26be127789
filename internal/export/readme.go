package export

import (
	"fmt"
	"strings"
)

// readme is data/README.md: what every file is and how to read and check it.
func (b *bag) readme() string {
	var s strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	name := strings.TrimSuffix(b.root, "/")
	p("# Data export %s\n\n", name)
	if b.in.Info.Tenant != "" {
		p("Tenant: %s. ", b.in.Info.Tenant)
	}
	if b.in.Info.ExternalIdentifier != "" {
		p("Contract: %s. ", b.in.Info.ExternalIdentifier)
	}
	if b.in.Database != "" {
		p("Database: %s. ", b.in.Database)
	}
	p("Made by %s on %s (UTC).\n\n", SoftwareAgent, b.in.Now.UTC().Format("2006-01-02 15:04:05"))
	s.WriteString(readmeBody)
	if len(b.tables) > 0 {
		s.WriteString("\n## Tables in this export\n\n| file | PostgreSQL table | rows | bytes |\n|---|---|---|---|\n")
		for _, t := range b.tables {
			p("| `%s` | `%s` | %d | %d |\n", t.Path, mdCell.Replace(t.Name), t.Rows, t.Bytes)
		}
	}
	return s.String()
}

// mdCell keeps a table name on one line of a Markdown table cell (names may hold any character but NUL; the
// exact name is in datapackage.json).
var mdCell = strings.NewReplacer("|", `\|`, "\n", `\n`, "\r", `\r`, "`", "'")

const readmeBody = `This directory is the payload of a BagIt bag (RFC 8493). It holds a Frictionless Data Package (v2).

## Files

- ` + "`../bagit.txt`" + ` — declares the bag (BagIt 1.0, UTF-8 tag files).
- ` + "`../bag-info.txt`" + ` — who made the export (Source-Organization), for whom (Contact-Name, Contact-Email), the
  contract (External-Identifier), the date (Bagging-Date) and the payload's size and file count (Payload-Oxum:
  bytes.files).
- ` + "`../manifest-sha256.txt`, `../manifest-sha512.txt`" + ` — the SHA-256 and SHA-512 of every file under ` + "`data/`" + `.
- ` + "`../tagmanifest-sha256.txt`, `../tagmanifest-sha512.txt`" + ` — the same for the tag files above.
- ` + "`datapackage.json`" + ` — the Data Package descriptor: one resource per file with its size (` + "`bytes`" + `) and SHA-256
  (` + "`hash`" + `); for every table a Table Schema with the columns, their types, NOT NULL (` + "`constraints.required`" + `),
  primary, unique and foreign keys, and the table and column comments as descriptions. Each column also has
  ` + "`postgresqlType`" + `, its PostgreSQL type, and each table resource a ` + "`postgresql`" + ` object with its schema, table
  name, qualified name and row count.
- ` + "`tables/<schema>.<table>.csv`" + ` — the rows of every table, one file per table. All tables were read in one
  REPEATABLE READ transaction, so they are consistent with each other (and with ` + "`schema/schema.sql`" + `).
- ` + "`schema/schema.sql`" + ` — the database's schema (tables, types, constraints, indexes, functions, views, …) as
  written by ` + "`pg_dump --schema-only --no-owner --no-privileges`" + ` from the same snapshot; load it into PostgreSQL
  with psql to recreate the structure, then the CSV files with COPY (see below).
- ` + "`objects/`" + ` — the tenant's Kubernetes objects as YAML, one file per object.
- ` + "`README.md`" + ` — this file.

## File names of tables

A table whose schema and name are both plain lower-case identifiers (letters a–z, digits, underscore) is in
` + "`tables/<schema>.<table>.csv`" + `, e.g. ` + "`tables/public.orders.csv`" + `. Any other name (capitals, spaces, quotes,
slashes, non-ASCII letters, …) is written in a safe form: letters are lower-cased, every run of other characters
becomes ` + "`-`" + `, and a hyphen and 12 hexadecimal digits of a hash of the real names are appended, e.g.
` + "`tables/clinic.pati-nt-records-2024-1a2b3c4d5e6f.csv`" + `. The file name is only a label: the real schema and table
name are in ` + "`datapackage.json`" + ` (the resource's ` + "`title`" + ` and ` + "`postgresql`" + ` object), and the list at the end of this
file.

## How values are written

The CSV files are UTF-8, comma-separated, with a header line of column names, lines ending in LF, and fields
quoted with double quotes (a double quote inside is doubled) when they contain a comma, a quote, a line break or
could be mistaken for NULL. Line breaks inside quoted fields are kept as they are.

- **NULL**: an unquoted ` + "`\\N`" + ` (backslash, capital N) is NULL. A quoted ` + "`\"\\N\"`" + ` is the two-character text ` + "`\\N`" + `.
  An empty field is the empty string, not NULL. The Table Schema declares this with ` + "`\"missingValues\": [\"\\\\N\"]`" + `.
  (PostgreSQL quotes every value equal to the NULL marker, so the rule is exact.) To load a file back into
  PostgreSQL: ` + "`COPY t FROM STDIN WITH (FORMAT csv, HEADER true, NULL '\\N')`" + `, which keeps the difference.
  Most CSV readers, Frictionless tools among them, do not tell a quoted field from an unquoted one: they read a
  text value that is exactly ` + "`\\N`" + ` as NULL too. Only such values are affected; a reader that reports quoting
  (or PostgreSQL itself) reads them exactly.
- **Booleans**: ` + "`t`" + ` and ` + "`f`" + ` (declared with ` + "`trueValues`/`falseValues`" + `).
- **Numbers**: exactly as PostgreSQL stores them. ` + "`numeric`" + ` keeps every digit (read it as a decimal, not a binary
  float, if the digits matter); ` + "`real`/`double precision`" + ` are the shortest text that reads back to the same value.
  Special values are written ` + "`NaN`, `Infinity`, `-Infinity`" + `.
- **Dates and times**: ISO 8601 as PostgreSQL writes it with DateStyle ISO. ` + "`date`" + `: ` + "`2024-01-31`" + `.
  ` + "`timestamp with time zone`" + `: converted to UTC and written with its offset, ` + "`2024-01-31 12:34:56.789+00`" + `
  (a space between date and time, as RFC 3339 allows). ` + "`timestamp`" + ` (without time zone):
  ` + "`2024-01-31 12:34:56`" + `, no offset: it is whatever local time the application stored. ` + "`time`: `12:34:56`" + `.
  ` + "`interval`" + `: ISO 8601 duration, ` + "`P1Y2M3DT4H5M6S`" + `. PostgreSQL's special values ` + "`infinity`/`-infinity`" + `
  and dates before the year 1 (` + "`… BC`" + `) are written as such; Frictionless tools report them as type errors.
- **Binary data** (` + "`bytea`" + `): hexadecimal, ` + "`\\x`" + ` followed by two hex digits per byte, e.g. ` + "`\\x00ff10`" + `.
- **Arrays**: PostgreSQL's array literal, e.g. ` + "`{1,2,NULL}`" + ` or ` + "`{\"a b\",\"say \\\"hi\\\"\"}`" + `: elements separated by
  commas inside braces, quoted with double quotes when needed, ` + "`\\`" + ` escaping ` + "`\"`" + ` and ` + "`\\`" + ` inside quotes, NULL
  elements as unquoted ` + "`NULL`" + `. (The CSV quoting comes on top of this.)
- **JSON** (` + "`json`, `jsonb`" + `): the JSON text; typed as a string because a column may hold any JSON value.
- **Everything else** (enums, uuid, network addresses, geometric types, ranges, extension types, …): PostgreSQL's
  text form of the value, typed as a string; ` + "`postgresqlType`" + ` in datapackage.json names the type.

## What is not in the tables

Only table rows are exported as CSV. Views and materialized views are in ` + "`schema/schema.sql`" + ` as definitions,
foreign tables as declarations. The current values of sequences are not exported (a schema-only dump leaves them
out): after loading the data, set each sequence past the highest value in use, e.g.
` + "`SELECT setval('orders_id_seq', max(id)) FROM orders`" + `. Large objects (` + "`pg_largeobject`" + `) are not exported.

## How to check the export

- With BagIt tools: ` + "`bagit.py --validate <bag directory>`" + ` (Library of Congress bagit-python), or by hand from the
  bag directory: ` + "`sha256sum -c manifest-sha256.txt`" + ` and ` + "`sha512sum -c manifest-sha512.txt`" + ` (file names in the
  manifests are percent-encoded only for CR, LF and %), ` + "`sha256sum -c tagmanifest-sha256.txt`" + `.
- With Frictionless tools: ` + "`frictionless validate data/datapackage.json`" + ` checks every resource's size and hash and
  every table against its Table Schema.
- With custos: ` + "`custos verify-export <file>.tar`" + ` checks the tar offline: bagit.txt, every manifest entry (SHA-256 and
  SHA-512), that no payload file is missing from a manifest, the tag manifests, Payload-Oxum, and the size and hash
  of every resource in datapackage.json.
- The digest of the whole tar file (` + "`sha256sum <file>.tar`" + `) is the one custos recorded when it made the export; the
  receiver sends it back to acknowledge receipt.
`
