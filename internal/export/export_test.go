package export_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/export"
)

// testSchema covers what the CSV and the Table Schema must get right.
const testSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN short_code AS varchar(10);
CREATE TABLE people (
  id integer PRIMARY KEY,
  name text NOT NULL,
  note text,
  nick varchar(20),
  active boolean,
  born date,
  seen timestamptz,
  local_ts timestamp,
  at_time time,
  tags text[],
  grid integer[],
  doc jsonb,
  raw json,
  photo bytea,
  balance numeric(40,20),
  big numeric,
  score double precision,
  u uuid,
  feeling mood,
  span interval,
  code short_code
);
COMMENT ON TABLE people IS 'People we know';
COMMENT ON COLUMN people.name IS 'Full name, as "written"';
COMMENT ON COLUMN people.photo IS 'Passport photo';
INSERT INTO people VALUES
 (1, 'Ann', NULL, '', true, '2024-02-29', '2024-03-31 01:59:59.123456+01', '2024-01-01 00:00:00', '23:59:59.999999',
  '{"a b","say \"hi\"",NULL,"NULL",""}', '{{1,2},{3,4}}', '{"a": [1, "x\n"], "b": null}', '[1, 2]', '\x00ff0a0d22',
  12345678901234567890.12345678901234567890, 3.14159265358979323846264338327950288419716939937510582097494459,
  0.1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '1 year 2 mons -3 days 04:05:06.7', 'abc'),
 (2, E'\\N', E'"quoted", with, commas\nand newline\r\nCRLF', NULL, false, '0044-03-15 BC', '2024-10-27 02:30:00 Europe/Amsterdam',
  NULL, '00:00:00', '{}', NULL, '"just a string"', 'null', '', 'NaN', -0.000000000000000000001, 'Infinity', NULL, 'sad', '0', ''),
 (3, 'Zoë 😀 漢字 "quote"', E'\\N', E'\\N', NULL, NULL, '1999-12-31 23:59:59-08', 'infinity', NULL, '{"\\\\N",NULL}', '{}',
  NULL, '"x"', E'\\x5c4e', -1, 'NaN', -0.0, NULL, NULL, '-1 days', NULL),
 (4, '', '', ' ', NULL, 'infinity', '-infinity', NULL, NULL, NULL, NULL, '{}', '{}', NULL, 0, 1e-30, 1.7976931348623157e308,
  NULL, 'ok', NULL, E'\\N');

CREATE TABLE orders (
  id bigint PRIMARY KEY,
  person_id integer NOT NULL REFERENCES people (id),
  amount numeric(12,2),
  parent_id bigint REFERENCES orders (id),
  UNIQUE (person_id, id)
);
COMMENT ON TABLE orders IS 'Orders';
INSERT INTO orders VALUES (10, 1, 99.95, NULL), (11, 1, -0.01, 10), (12, 3, NULL, 11);

CREATE TABLE empty_table (id integer, label text);

CREATE SCHEMA clinic;
CREATE TABLE clinic."Patiënt ""records"", 2024" (
  "Naam, ""quoted""" text,
  "\N" text,
  person integer REFERENCES public.people (id),
  "ID" integer PRIMARY KEY
);
COMMENT ON TABLE clinic."Patiënt ""records"", 2024" IS 'Patiëntendossiers 🏥, with "quotes"';
COMMENT ON COLUMN clinic."Patiënt ""records"", 2024"."\N" IS 'A column named backslash-N';
INSERT INTO clinic."Patiënt ""records"", 2024" VALUES ('Jan, "de" Vries', E'\\N', 1, 1), (NULL, NULL, 2, 2), ('', '', NULL, 3);
CREATE TABLE clinic."Mixed" (x integer);
CREATE TABLE clinic.mixed (x integer);
INSERT INTO clinic."Mixed" VALUES (1);
INSERT INTO clinic.mixed VALUES (2), (3);

CREATE TABLE measurements (id integer, at date NOT NULL, v integer, doubled integer GENERATED ALWAYS AS (v * 2) STORED)
  PARTITION BY RANGE (at);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO measurements (id, at, v) VALUES (1, '2024-05-01', 7), (2, '2025-05-01', 8);

CREATE TABLE "odd/name
with ""newline"" \ and ~" ("line
break" text, "über" integer);
INSERT INTO "odd/name
with ""newline"" \ and ~" VALUES (E'a\nb', 1);

CREATE TABLE animals (name text);
CREATE TABLE dogs (breed text) INHERITS (animals);
INSERT INTO animals VALUES ('generic');
INSERT INTO dogs VALUES ('rex', 'collie');
`

var now = time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)

// createDatabase makes a fresh database named name with the given SQL, dropped at cleanup.
func createDatabase(ctx context.Context, name, sql string) {
	conn, err := admin().ConnectDB(ctx, "postgres")
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		c, err := admin().ConnectDB(ctx, "postgres")
		Expect(err).NotTo(HaveOccurred())
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		Expect(err).NotTo(HaveOccurred())
	})
	db, err := admin().ConnectDB(ctx, name)
	Expect(err).NotTo(HaveOccurred())
	defer db.Close(ctx)
	// The administrator's sessions start with only pg_catalog on the search path; the fixtures live in public.
	_, err = db.Exec(ctx, "SET search_path = public;\n"+sql)
	Expect(err).NotTo(HaveOccurred())
}

// untar reads every regular file of a tar into memory, keyed by its name.
func untar(data []byte) (map[string][]byte, []string) {
	tr := tar.NewReader(bytes.NewReader(data))
	files := map[string][]byte{}
	var order []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, order
		}
		Expect(err).NotTo(HaveOccurred())
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		Expect(err).NotTo(HaveOccurred())
		files[hdr.Name] = b
		order = append(order, hdr.Name)
	}
}

// readCSV reads a CSV file with encoding/csv and applies the NULL rule of the export: an unquoted \N is NULL
// (nil). encoding/csv does not say whether a field was quoted, so the field's first byte is looked up through
// FieldPos. It returns the header and the rows.
func readCSV(data []byte) ([]string, [][]*string) {
	var lineStart []int
	lineStart = append(lineStart, 0)
	for i, c := range data {
		if c == '\n' {
			lineStart = append(lineStart, i+1)
		}
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	Expect(err).NotTo(HaveOccurred())
	var rows [][]*string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return header, rows
		}
		Expect(err).NotTo(HaveOccurred())
		row := make([]*string, len(rec))
		for i := range rec {
			line, col := r.FieldPos(i)
			quoted := data[lineStart[line-1]+col-1] == '"'
			if !quoted && rec[i] == `\N` {
				continue
			}
			v := rec[i]
			row[i] = &v
		}
		rows = append(rows, row)
	}
}

// expectedRows is what PostgreSQL returns for the table, every value in its text form (the simple query protocol
// returns the output function's text, as COPY writes it), NULL as nil; in the export's session settings.
func expectedRows(ctx context.Context, db *pgx.Conn, from string, columns []string) [][]*string {
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	rows, err := db.Query(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+from, pgx.QueryExecModeSimpleProtocol)
	Expect(err).NotTo(HaveOccurred())
	defer rows.Close()
	var out [][]*string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, v := range raw {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	Expect(rows.Err()).NotTo(HaveOccurred())
	return out
}

// canon sorts rows (row order in a COPY is the heap's) and normalises CRLF inside values to LF, which
// encoding/csv does as documented ("carriage returns before newline characters are silently removed").
func canon(rows [][]*string) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for _, v := range r {
			if v == nil {
				b.WriteString("NULL|")
			} else {
				fmt.Fprintf(&b, "%q|", strings.ReplaceAll(*v, "\r\n", "\n"))
			}
		}
		out = append(out, b.String())
	}
	sort.Strings(out)
	return out
}

type dpField struct {
	Name           string   `json:"name"`
	Type           string   `json:"type"`
	Format         string   `json:"format"`
	Description    string   `json:"description"`
	TrueValues     []string `json:"trueValues"`
	FalseValues    []string `json:"falseValues"`
	PostgreSQLType string   `json:"postgresqlType"`
	Constraints    struct {
		Required  bool     `json:"required"`
		MaxLength int      `json:"maxLength"`
		Enum      []string `json:"enum"`
	} `json:"constraints"`
}

type dpResource struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Path        string `json:"path"`
	Format      string `json:"format"`
	Mediatype   string `json:"mediatype"`
	Encoding    string `json:"encoding"`
	Bytes       int64  `json:"bytes"`
	Hash        string `json:"hash"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Schema      *struct {
		Fields        []dpField  `json:"fields"`
		MissingValues []string   `json:"missingValues"`
		PrimaryKey    []string   `json:"primaryKey"`
		UniqueKeys    [][]string `json:"uniqueKeys"`
		ForeignKeys   []struct {
			Fields    []string `json:"fields"`
			Reference struct {
				Resource *string  `json:"resource"`
				Fields   []string `json:"fields"`
			} `json:"reference"`
		} `json:"foreignKeys"`
	} `json:"schema"`
	PostgreSQL *struct {
		Schema, Table, Name, Kind string
		Rows                      int64
	} `json:"postgresql"`
}

type dpPackage struct {
	Schema    string       `json:"$schema"`
	Name      string       `json:"name"`
	Created   string       `json:"created"`
	Resources []dpResource `json:"resources"`
}

func (p dpPackage) resource(name string) dpResource {
	for _, r := range p.Resources {
		if r.Name == name {
			return r
		}
	}
	Fail("no resource " + name)
	return dpResource{}
}

func (r dpResource) field(name string) dpField {
	for _, f := range r.Schema.Fields {
		if f.Name == name {
			return f
		}
	}
	Fail("no field " + name + " in " + r.Name)
	return dpField{}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var _ = Describe("WriteFile and Verify", Ordered, func() {
	const dbName = "tenant_export"
	var (
		dir    string
		dst    string
		res    export.Result
		tarBuf []byte
		files  map[string][]byte
		order  []string
		dp     dpPackage
		root   string
	)
	objects := []export.Object{
		{Path: "ns-a/configmaps/settings.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n")},
		{Path: "ns-a/secrets/100%.yaml", Data: []byte("kind: Secret\n")},
	}
	info := export.BagInfo{SourceOrganization: "Hosting B.V.", ExternalIdentifier: "VWO-2024-017",
		ExternalDescription: "Exit export\nof tenant acme", ContactName: "Dr. Ann Example", ContactEmail: "ann@example.org", Tenant: "acme"}

	BeforeAll(func(ctx context.Context) {
		createDatabase(ctx, dbName, testSchema)
		dir = GinkgoT().TempDir()
		dst = filepath.Join(dir, "acme-export-1.tar")
		var err error
		res, err = export.WriteFile(ctx, dst, export.Input{Conn: admin(), Database: dbName, PgDump: pgDump, Objects: objects, Info: info, Now: now})
		Expect(err).NotTo(HaveOccurred())
		tarBuf, err = os.ReadFile(dst)
		Expect(err).NotTo(HaveOccurred())
		files, order = untar(tarBuf)
		root = "acme-export-1/"
		Expect(json.Unmarshal(files[root+"data/datapackage.json"], &dp)).To(Succeed())
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(1), "only the bag, no temporary file")
	}, NodeTimeout(120*time.Second))

	It("returns the tar's digest, size, Payload-Oxum and tables", func() {
		Expect(res.Path).To(Equal(dst))
		Expect(res.BagName).To(Equal("acme-export-1"))
		Expect(res.SHA256).To(Equal(sha256Hex(tarBuf)))
		Expect(res.Bytes).To(Equal(int64(len(tarBuf))))
		var payload int64
		n := 0
		for name, b := range files {
			if strings.HasPrefix(name, root+"data/") {
				payload += int64(len(b))
				n++
			}
		}
		Expect(res.Files).To(Equal(n))
		Expect(res.PayloadOxum).To(Equal(fmt.Sprintf("%d.%d", payload, n)))
		var names []string
		for _, t := range res.Tables {
			names = append(names, t.Name)
			Expect(t.SHA256).To(Equal(sha256Hex(files[root+"data/"+t.Path])))
			Expect(t.Bytes).To(Equal(int64(len(files[root+"data/"+t.Path]))))
		}
		Expect(names).To(Equal([]string{`clinic."Mixed"`, `clinic."Patiënt ""records"", 2024"`, "clinic.mixed",
			"public.animals", "public.dogs", "public.empty_table", "public.measurements", "public.\"odd/name\nwith \"\"newline\"\" \\ and ~\"", "public.orders", "public.people"}))
		rows := map[string]int64{}
		for _, t := range res.Tables {
			rows[t.Name] = t.Rows
		}
		Expect(rows).To(Equal(map[string]int64{`clinic."Mixed"`: 1, `clinic."Patiënt ""records"", 2024"`: 3, "clinic.mixed": 2,
			"public.animals": 1, "public.dogs": 1, "public.empty_table": 0, "public.measurements": 2, "public.orders": 3, "public.people": 4,
			"public.\"odd/name\nwith \"\"newline\"\" \\ and ~\"": 1}))
	})

	It("lays the bag out in one top-level directory, bagit.txt first and the tag files last", func() {
		for _, name := range order {
			Expect(name).To(HavePrefix(root))
		}
		Expect(order[0]).To(Equal(root + "bagit.txt"))
		Expect(order[len(order)-6:]).To(Equal([]string{root + "data/README.md", root + "bag-info.txt", root + "manifest-sha256.txt",
			root + "manifest-sha512.txt", root + "tagmanifest-sha256.txt", root + "tagmanifest-sha512.txt"}))
		Expect(string(files[root+"bagit.txt"])).To(Equal("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"))
		Expect(files).To(HaveKey(root + "data/schema/schema.sql"))
		Expect(string(files[root+"data/schema/schema.sql"])).To(ContainSubstring(`CREATE TABLE clinic."Patiënt ""records"", 2024"`))
		Expect(string(files[root+"data/schema/schema.sql"])).NotTo(ContainSubstring("OWNER TO"))
		Expect(files[root+"data/objects/ns-a/configmaps/settings.yaml"]).To(Equal(objects[0].Data))
		Expect(files[root+"data/objects/ns-a/secrets/100%.yaml"]).To(Equal(objects[1].Data))
		readme := string(files[root+"data/README.md"])
		Expect(readme).To(ContainSubstring("unquoted `\\N`"))
		Expect(readme).To(ContainSubstring(`clinic."Patiënt ""records"", 2024"`))
	})

	It("writes bag-info.txt and manifests of every payload file", func() {
		bi := string(files[root+"bag-info.txt"])
		for _, line := range []string{"Source-Organization: Hosting B.V.", "External-Identifier: VWO-2024-017",
			"External-Description: Exit export\n  of tenant acme", "Contact-Name: Dr. Ann Example", "Contact-Email: ann@example.org",
			"Bagging-Date: 2026-11-24", "Bag-Software-Agent: custos", "Payload-Oxum: " + res.PayloadOxum, "Custos-Tenant: acme"} {
			Expect(bi).To(ContainSubstring(line + "\n"))
		}
		m := string(files[root+"manifest-sha256.txt"])
		Expect(strings.Count(m, "\n")).To(Equal(res.Files))
		Expect(m).To(ContainSubstring(sha256Hex(files[root+"data/tables/public.people.csv"]) + "  data/tables/public.people.csv\n"))
		Expect(m).To(ContainSubstring("  data/objects/ns-a/secrets/100%25.yaml\n"))
		tm := string(files[root+"tagmanifest-sha256.txt"])
		for _, tag := range []string{"bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt"} {
			Expect(tm).To(ContainSubstring(sha256Hex(files[root+tag]) + "  " + tag + "\n"))
		}
	})

	It("writes every table so that encoding/csv with the NULL rule reads back exactly what PostgreSQL holds", func(ctx context.Context) {
		db, err := admin().ConnectDB(ctx, dbName)
		Expect(err).NotTo(HaveOccurred())
		defer db.Close(ctx)
		_, err = db.Exec(ctx, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET bytea_output = 'hex'")
		Expect(err).NotTo(HaveOccurred())
		checked := 0
		for _, r := range dp.Resources {
			if r.Type != "table" {
				continue
			}
			data, ok := files[root+"data/"+r.Path]
			Expect(ok).To(BeTrue(), r.Path)
			header, rows := readCSV(data)
			var names []string
			for _, f := range r.Schema.Fields {
				names = append(names, f.Name)
			}
			Expect(header).To(Equal(names), r.Name)
			from := "ONLY " + pgx.Identifier{r.PostgreSQL.Schema, r.PostgreSQL.Table}.Sanitize()
			if r.PostgreSQL.Kind == "partitioned table" {
				from = pgx.Identifier{r.PostgreSQL.Schema, r.PostgreSQL.Table}.Sanitize()
			}
			want := expectedRows(ctx, db, from, names)
			Expect(rows).To(HaveLen(len(want)), r.Name)
			Expect(int64(len(rows))).To(Equal(r.PostgreSQL.Rows))
			Expect(canon(rows)).To(Equal(canon(want)), r.Name)
			checked++
		}
		Expect(checked).To(Equal(10))

		// The cases the NULL convention is about, spelled out.
		people := string(files[root+"data/tables/public.people.csv"])
		Expect(people).To(ContainSubstring("\n2,\"\\N\","), `the text \N is quoted`)
		Expect(people).To(ContainSubstring("\"\"\"quoted\"\", with, commas\nand newline\r\nCRLF\""), "CRLF inside a value is kept")
		Expect(people).To(ContainSubstring("\n4,,, ,"), "empty strings are empty fields")
		Expect(people).To(ContainSubstring(`\x00ff0a0d22`))
		Expect(people).To(ContainSubstring("12345678901234567890.12345678901234567890"))
		Expect(people).To(ContainSubstring("3.14159265358979323846264338327950288419716939937510582097494459"))
		Expect(people).To(ContainSubstring("2024-03-31 00:59:59.123456+00"))
		Expect(people).To(ContainSubstring("2024-10-27 01:30:00+00"))
		Expect(people).To(ContainSubstring("0044-03-15 BC"))
		Expect(people).To(ContainSubstring("Zoë 😀 漢字"))
		clinic := files[root+"data/"+dp.resource(res.Tables[1].Path[len("tables/"):len(res.Tables[1].Path)-len(".csv")]).Path]
		Expect(strings.SplitN(string(clinic), "\n", 2)[0]).To(Equal(`"Naam, ""quoted""","\N",person,ID`))
		animals, _ := readCSV(files[root+"data/tables/public.animals.csv"])
		Expect(animals).To(Equal([]string{"name"}))
		Expect(string(files[root+"data/tables/public.animals.csv"])).To(Equal("name\ngeneric\n"), "ONLY the parent's own rows")
		Expect(string(files[root+"data/tables/public.empty_table.csv"])).To(Equal("id,label\n"))
	})

	It("describes every table in datapackage.json: types, required, keys, comments, bytes and hashes", func() {
		Expect(dp.Schema).To(Equal("https://datapackage.org/profiles/2.0/datapackage.json"))
		Expect(dp.Name).To(Equal("acme"))
		Expect(dp.Created).To(Equal("2026-11-24T09:30:00Z"))
		for _, r := range dp.Resources {
			data, ok := files[root+"data/"+r.Path]
			Expect(ok).To(BeTrue(), r.Path)
			Expect(r.Bytes).To(Equal(int64(len(data))), r.Name)
			Expect(r.Hash).To(Equal("sha256:"+sha256Hex(data)), r.Name)
			Expect(r.Name).To(MatchRegexp(`^[-a-z0-9._/]+$`), "a valid name even for Frictionless v1 readers")
		}
		Expect(dp.Resources).To(HaveLen(10 + 1 + 2))

		people := dp.resource("public.people")
		Expect(people.Type).To(Equal("table"))
		Expect(people.Path).To(Equal("tables/public.people.csv"))
		Expect([]string{people.Format, people.Mediatype, people.Encoding}).To(Equal([]string{"csv", "text/csv", "utf-8"}))
		Expect(people.Title).To(Equal("public.people"))
		Expect(people.Description).To(Equal("People we know"))
		Expect(people.Schema.MissingValues).To(Equal([]string{`\N`}))
		Expect(people.Schema.PrimaryKey).To(Equal([]string{"id"}))
		types := map[string]string{}
		for _, f := range people.Schema.Fields {
			types[f.Name] = f.Type + "/" + f.Format
		}
		Expect(types).To(Equal(map[string]string{
			"id": "integer/", "name": "string/", "note": "string/", "nick": "string/", "active": "boolean/", "born": "date/",
			"seen": "datetime/any", "local_ts": "datetime/any", "at_time": "time/", "tags": "string/", "grid": "string/",
			"doc": "string/", "raw": "string/", "photo": "string/", "balance": "number/", "big": "number/", "score": "number/",
			"u": "string/uuid", "feeling": "string/", "span": "string/", "code": "string/",
		}))
		Expect(people.field("id").Constraints.Required).To(BeTrue())
		Expect(people.field("name").Constraints.Required).To(BeTrue())
		Expect(people.field("note").Constraints.Required).To(BeFalse())
		Expect(people.field("name").Description).To(Equal(`Full name, as "written"`))
		Expect(people.field("photo").Description).To(HavePrefix("Passport photo\n\n"))
		Expect(people.field("photo").Description).To(ContainSubstring("hex"))
		Expect(people.field("tags").Description).To(ContainSubstring("array literal"))
		Expect(people.field("tags").PostgreSQLType).To(Equal("text[]"))
		Expect(people.field("doc").Description).To(ContainSubstring("JSON"))
		Expect(people.field("active").TrueValues).To(Equal([]string{"t"}))
		Expect(people.field("active").FalseValues).To(Equal([]string{"f"}))
		Expect(people.field("nick").Constraints.MaxLength).To(Equal(20))
		Expect(people.field("code").Constraints.MaxLength).To(Equal(10), "through the domain")
		Expect(people.field("code").PostgreSQLType).To(Equal("public.short_code"), "qualified: the export runs with search_path pg_catalog")
		Expect(people.field("balance").PostgreSQLType).To(Equal("numeric(40,20)"))
		Expect(people.field("feeling").Constraints.Enum).To(Equal([]string{"sad", "ok", "happy"}))

		orders := dp.resource("public.orders")
		Expect(orders.Schema.PrimaryKey).To(Equal([]string{"id"}))
		Expect(orders.Schema.UniqueKeys).To(Equal([][]string{{"person_id", "id"}}))
		Expect(orders.Schema.ForeignKeys).To(HaveLen(2))
		fks := map[string]string{}
		for _, fk := range orders.Schema.ForeignKeys {
			ref := "(self)"
			if fk.Reference.Resource != nil {
				ref = *fk.Reference.Resource
			}
			fks[strings.Join(fk.Fields, ",")] = ref + ":" + strings.Join(fk.Reference.Fields, ",")
		}
		Expect(fks).To(Equal(map[string]string{"person_id": "public.people:id", "parent_id": "(self):id"}))

		var clinic dpResource
		for _, r := range dp.Resources {
			if r.PostgreSQL != nil && r.PostgreSQL.Table == `Patiënt "records", 2024` {
				clinic = r
			}
		}
		Expect(clinic.Name).To(MatchRegexp(`^clinic\.pati-nt-records-2024-[0-9a-f]{12}$`))
		Expect(clinic.Path).To(Equal("tables/" + clinic.Name + ".csv"))
		Expect(clinic.Title).To(Equal(`clinic."Patiënt ""records"", 2024"`))
		Expect(clinic.PostgreSQL.Schema).To(Equal("clinic"))
		Expect(clinic.Description).To(Equal(`Patiëntendossiers 🏥, with "quotes"`))
		Expect(clinic.Schema.PrimaryKey).To(Equal([]string{"ID"}))
		Expect(clinic.field(`\N`).Description).To(Equal("A column named backslash-N"))
		Expect(*clinic.Schema.ForeignKeys[0].Reference.Resource).To(Equal("public.people"))
		Expect(clinic.Schema.ForeignKeys[0].Fields).To(Equal([]string{"person"}))

		Expect(dp.resource("public.measurements").PostgreSQL.Kind).To(Equal("partitioned table"))
		Expect(dp.resource("public.measurements").field("at").Constraints.Required).To(BeTrue())
		Expect(dp.resource("clinic.mixed").Path).NotTo(Equal(dp.resource(tableResourceName(dp, `Mixed`)).Path))
		Expect(dp.resource("schema").Path).To(Equal("schema/schema.sql"))
		Expect(dp.resource("objects/ns-a/configmaps/settings.yaml").Mediatype).To(Equal("application/yaml"))
	})

	It("is verified OK by Verify", func() {
		rep, err := export.Verify(bytes.NewReader(tarBuf))
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Problems).To(BeEmpty())
		Expect(rep.OK).To(BeTrue())
		Expect(rep.BagName).To(Equal("acme-export-1"))
		Expect(rep.Files).To(Equal(res.Files))
		Expect(rep.PayloadOxum).To(Equal(res.PayloadOxum))
		Expect(rep.Tables).To(Equal(res.Tables))
	})

	It("unpacks with the system's tar and checks with sha256sum -c", func(ctx context.Context) {
		tarBin, err := exec.LookPath("tar")
		if err != nil {
			Skip("no tar on PATH")
		}
		out := GinkgoT().TempDir()
		b, err := exec.CommandContext(ctx, tarBin, "-xf", dst, "-C", out).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(b))
		got, err := os.ReadFile(filepath.Join(out, "acme-export-1", "data", "tables", "public.people.csv"))
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(files[root+"data/tables/public.people.csv"]))
		if sum, err := exec.LookPath("sha512sum"); err == nil {
			// 100%25.yaml is percent-encoded in the manifest (RFC 8493), which coreutils does not decode: leave it out.
			var m bytes.Buffer
			for _, l := range strings.SplitAfter(string(files[root+"manifest-sha512.txt"]), "\n") {
				if l != "" && !strings.Contains(l, "%") {
					m.WriteString(l)
				}
			}
			cmd := exec.CommandContext(ctx, sum, "--strict", "-c", "-")
			cmd.Dir = filepath.Join(out, "acme-export-1")
			cmd.Stdin = &m
			b, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(b))
		}
	})

	Describe("Verify finds damage", func() {
		verify := func(data []byte) []string {
			rep, err := export.Verify(bytes.NewReader(data))
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.OK).To(BeFalse())
			Expect(rep.Problems).NotTo(BeEmpty())
			return rep.Problems
		}
		people := "data/tables/public.people.csv"

		It("a flipped byte in a CSV", func() {
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) {
				if name == root+people {
					data = append([]byte(nil), data...)
					data[len(data)/2] ^= 0x01
				}
				return data, true
			})
			problems := verify(damaged)
			Expect(problems).To(ContainElement(HavePrefix(people + ": sha256 does not match manifest-sha256.txt")))
			Expect(problems).To(ContainElement(HavePrefix(people + ": sha512 does not match manifest-sha512.txt")))
			Expect(problems).To(ContainElement(HavePrefix("data/datapackage.json: resource public.people hash does not match tables/public.people.csv")))
			Expect(problems).To(HaveLen(3))
		})

		It("a flipped byte in datapackage.json", func() {
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) {
				if name == root+"data/datapackage.json" {
					data = bytes.Replace(data, []byte("People we know"), []byte("People we knew"), 1)
				}
				return data, true
			})
			problems := verify(damaged)
			Expect(problems).To(ConsistOf(
				HavePrefix("data/datapackage.json: sha256 does not match manifest-sha256.txt"),
				HavePrefix("data/datapackage.json: sha512 does not match manifest-sha512.txt")))
		})

		It("a flipped byte in a manifest", func() {
			var first string
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) {
				if name == root+"manifest-sha256.txt" {
					data = append([]byte(nil), data...)
					first = strings.Fields(string(data))[1]
					if data[0] == '0' { // another hex digit
						data[0] = '1'
					} else {
						data[0] = '0'
					}
				}
				return data, true
			})
			problems := verify(damaged)
			Expect(problems).To(ConsistOf(
				HavePrefix(first+": sha256 does not match manifest-sha256.txt"),
				HavePrefix("manifest-sha256.txt: sha256 does not match tagmanifest-sha256.txt"),
				HavePrefix("manifest-sha256.txt: sha512 does not match tagmanifest-sha512.txt")))
		})

		It("a missing file", func() {
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) {
				return data, name != root+"data/tables/public.orders.csv"
			})
			problems := verify(damaged)
			Expect(problems).To(ContainElements(
				"manifest-sha256.txt: data/tables/public.orders.csv is listed but missing from the bag",
				"manifest-sha512.txt: data/tables/public.orders.csv is listed but missing from the bag",
				"data/datapackage.json: resource public.orders path tables/public.orders.csv is missing from the bag",
				HavePrefix("bag-info.txt: Payload-Oxum is "+res.PayloadOxum+", the payload is ")))
			Expect(problems).To(HaveLen(4))
		})

		It("an extra payload file", func() {
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) { return data, true },
				entry{root + "data/extra.txt", []byte("not in any manifest\n")})
			problems := verify(damaged)
			Expect(problems).To(ConsistOf(
				"data/extra.txt: not listed in manifest-sha256.txt",
				"data/extra.txt: not listed in manifest-sha512.txt",
				HavePrefix("bag-info.txt: Payload-Oxum is "+res.PayloadOxum+", the payload is ")))
		})

		It("a wrong Payload-Oxum", func() {
			damaged := rewrite(tarBuf, func(name string, data []byte) ([]byte, bool) {
				if name == root+"bag-info.txt" {
					data = bytes.Replace(data, []byte("Payload-Oxum: "+res.PayloadOxum), []byte("Payload-Oxum: 1.1"), 1)
				}
				return data, true
			})
			problems := verify(damaged)
			Expect(problems).To(ConsistOf(
				"bag-info.txt: Payload-Oxum is 1.1, the payload is "+res.PayloadOxum+" (bytes.files)",
				HavePrefix("bag-info.txt: sha256 does not match tagmanifest-sha256.txt"),
				HavePrefix("bag-info.txt: sha512 does not match tagmanifest-sha512.txt")))
		})

		It("a truncated tar, and says so instead of failing", func() {
			problems := verify(tarBuf[:len(tarBuf)/2])
			Expect(problems).To(ContainElement(ContainSubstring("cannot be read")))
		})

		It("returns an error when the reader fails", func() {
			_, err := export.Verify(io.MultiReader(bytes.NewReader(tarBuf[:4096]), failingReader{}))
			Expect(err).To(MatchError("disk on fire"))
		})
	})
})

func tableResourceName(dp dpPackage, table string) string {
	for _, r := range dp.Resources {
		if r.PostgreSQL != nil && r.PostgreSQL.Table == table {
			return r.Name
		}
	}
	Fail("no table " + table)
	return ""
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

type entry struct {
	name string
	data []byte
}

// rewrite copies a tar, passing every regular file through fn (which may change it or drop it) and appending
// extra entries at the end.
func rewrite(src []byte, fn func(name string, data []byte) ([]byte, bool), extra ...entry) []byte {
	tr := tar.NewReader(bytes.NewReader(src))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		data, err := io.ReadAll(tr)
		Expect(err).NotTo(HaveOccurred())
		if hdr.Typeflag == tar.TypeReg {
			var keep bool
			data, keep = fn(hdr.Name, data)
			if !keep {
				continue
			}
			hdr.Size = int64(len(data))
		}
		Expect(tw.WriteHeader(hdr)).To(Succeed())
		_, err = tw.Write(data)
		Expect(err).NotTo(HaveOccurred())
	}
	for _, e := range extra {
		Expect(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.data)), Mode: 0o644})).To(Succeed())
		_, err := tw.Write(e.data)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	return out.Bytes()
}
