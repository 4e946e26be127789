// Package export writes a tenant's structured data export and verifies one offline.
//
// # The bag
//
// An export is a BagIt 1.0 bag (RFC 8493) serialized as one tar file. Following the BagIt serialization
// convention, the tar holds a single top-level directory named after the file without ".tar"
// (acme-export-1.tar unpacks to acme-export-1/), and inside it, in this order:
//
//	bagit.txt                       BagIt-Version 1.0, UTF-8
//	data/tables/<name>.csv          one CSV per table (see File names)
//	data/schema/schema.sql          pg_dump --schema-only --no-owner --no-privileges, same snapshot as the tables
//	data/objects/<path>             the Kubernetes objects as given (YAML)
//	data/datapackage.json           Frictionless Data Package v2 describing every payload file above
//	data/README.md                  what every file is, how values are written, how to check the bag
//	bag-info.txt                    Source-Organization, Contact-Name/-Email, External-Description/-Identifier,
//	                                Bagging-Date, Bag-Software-Agent (custos), Payload-Oxum, Bag-Size, Custos-*
//	manifest-sha256.txt             every payload file
//	manifest-sha512.txt             every payload file
//	tagmanifest-sha256.txt          bagit.txt, bag-info.txt, both manifests
//	tagmanifest-sha512.txt          the same
//
// Directory entries (mode 0755) precede the files (mode 0644); every entry carries Input.Now as its time, so the
// same input gives the same tar. bagit.txt comes first so that a reader of the stream sees at once what it is;
// the tag files come last because they depend on the payload. Manifest paths are percent-encoded for CR, LF and
// % only (RFC 8493 §2.1.3). datapackage.json lists every payload file except itself and README.md: tables as
// tabular resources (type "table") with a Table Schema, schema.sql and the objects as plain resources, so that
// the package is valid (a Data Package needs at least one resource) even when there is no database.
//
// # Tables
//
// Every ordinary table and every top-level partitioned table (read through its parent, so partitions are not
// listed again) of every schema except pg_* and information_schema, not temporary, and not belonging to an
// extension unless the extension marked it as configuration (as pg_dump does). An inheritance parent holds only
// its own rows (COPY reads ONLY that table); children are tables of their own. Views, materialized views and
// foreign tables hold no data of their own here: their definitions are in schema.sql.
//
// All tables are read in one REPEATABLE READ, READ ONLY transaction; pg_dump imports its exported snapshot, so
// schema.sql and the CSV files describe the same instant. The transaction pins what would change how values are
// written (TimeZone UTC, DateStyle ISO, IntervalStyle iso_8601, extra_float_digits 3, bytea_output hex) and what
// could stop or shorten the export (statement, lock, idle and transaction timeouts off; row_security off, so a
// table the administrator could only partly see fails instead of being exported short). search_path is set to
// pg_catalog by the first, fully qualified, statement, so no function or operator of the tenant ever runs with
// the administrator's rights.
//
// Each table is `COPY … TO STDOUT WITH (FORMAT csv, HEADER true, NULL E'\\N', ENCODING 'UTF8')`: PostgreSQL quotes
// every value equal to the NULL string, so an unquoted \N is NULL, a quoted "\N" is the text \N and an empty field
// is the empty string; the Table Schema says "missingValues": ["\\N"]. The COPY output is passed through
// unchanged: no Go code looks at rows.
//
// # File names
//
// A table whose schema and name are both plain lower-case identifiers ([a-z_][a-z0-9_]*, up to 48 bytes, not a
// Windows device name) is tables/<schema>.<table>.csv. Any other is tables/<slug(schema)>.<slug(table)>-<h>.csv:
// the slug lower-cases ASCII letters, keeps digits and underscores, turns every run of other bytes into one '-'
// and is cut to 48 bytes; h is 12 hex digits of the SHA-256 of schema, NUL, table. Names are thus short, ASCII,
// lower-case (safe on case-insensitive file systems), need no escaping in a manifest, a URL or a shell, and are
// valid Frictionless resource names even for v1 readers ([-a-z0-9._/]); plain and hashed names cannot collide
// (plain names have no '-'), and a collision of two hashed names is refused. The resource name is the file name
// without .csv; the real names are in the resource's title (quote_ident form) and its "postgresql" object. The
// datapackage path is the truth.
//
// # Types
//
// Field types are what a Frictionless reader parses correctly from PostgreSQL's text output:
//
//	smallint, integer, bigint, oid               integer
//	numeric, real, double precision              number (NaN, Infinity, -Infinity written as PostgreSQL does)
//	boolean                                      boolean, trueValues ["t"], falseValues ["f"]
//	date                                         date
//	timestamp, timestamptz                       datetime, format "any" (ISO 8601 with a space, "+00" offset)
//	time                                         time;  timetz: time, format "any"
//	uuid                                         string, format uuid
//	varchar(n)                                   string, constraints.maxLength n (also through domains)
//	enum                                         string, constraints.enum = the labels in order
//	json, jsonb                                  string (a column may hold arrays and scalars, not only objects)
//	bytea, arrays, interval, money, other types  string, with a description of how the value is written
//
// Domains are mapped by their base type. NOT NULL is constraints.required; primary keys, unique constraints and
// foreign keys (to tables in the export) become primaryKey, uniqueKeys and foreignKeys; table and column
// comments are descriptions (a note on the value's form is appended to a column's comment). Every field also
// carries "postgresqlType" (format_type, schema-qualified), every table resource a "postgresql" object (schema,
// table, qualified name, kind, rows): properties of custos, which the standard allows.
//
// # Streaming and the tar headers
//
// A tar header holds the size before the content, and COPY output's size is known only at its end. WriteFile
// writes the tar straight into the destination's temporary *os.File: a header with size 0, then the content,
// then it patches the header's size and checksum in place (pwrite). Sizes below 8 GiB are written as ustar's 11
// octal digits; larger ones in the base-256 form of GNU tar and star (read by GNU tar, bsdtar/libarchive,
// Python's tarfile, Go's archive/tar and 7-Zip), which fills the same 12 bytes. Long or non-ASCII names get PAX
// records from archive/tar. Nothing is spooled: COPY's rows are gathered into 1 MiB chunks (at most 4 in flight),
// and each chunk is hashed with SHA-256 and with SHA-512 and written to the file by three goroutines side by
// side. pgx reads COPY output through a 256 KiB buffer (its own is 8 KiB: a system call per 8 KiB).
//
// The digest of the whole tar cannot be computed on the way out, because a header is final only after its
// content. A goroutine reads the file back (from the page cache) and hashes everything below a mark that moves
// past each finished entry, so finished tables are hashed while later ones stream; what is left at the end
// (at least the last table) is hashed while the file is fsynced. pg_dump runs while the tables stream, into an
// unlinked temporary file next to the bag; its output follows the tables. Memory is a few MiB whatever the size of
// the database (see the memory spec and make bench-export).
//
// # Verify
//
// Verify reads a tar once, hashing every file with SHA-256 and SHA-512 and keeping only the tag files and
// datapackage.json in memory, and then checks bagit.txt, every entry of both manifests (present and matching),
// that every payload file is listed in both, the tag manifests, Payload-Oxum and the bytes and hash of every
// datapackage.json resource. It reports every problem it finds as one sentence; its error is only for a failing
// reader (a damaged tar is a problem, not an error).
package export
