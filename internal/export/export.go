package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/custos-io/custos/internal/postgres"
)

// Object is one Kubernetes object of the tenant, as YAML, written to data/objects/<Path>.
type Object struct {
	// Path is relative to data/objects/, e.g. "ns-a/configmaps/x.yaml": slash-separated, clean (no "." or ".."
	// parts, no empty parts), without control characters or backslashes.
	Path string
	Data []byte
}

// BagInfo is what bag-info.txt says about the bag. Empty fields are left out.
type BagInfo struct {
	// SourceOrganization is the processor that made the export.
	SourceOrganization string
	// ExternalIdentifier is the contract id.
	ExternalIdentifier  string
	ExternalDescription string
	// ContactName and ContactEmail are the data controller's.
	ContactName, ContactEmail string
	Tenant                    string
}

// Input is what one export holds.
type Input struct {
	// Conn is the administrative connection; its Database is ignored (Database is exported).
	Conn postgres.ConnConfig
	// Database is the tenant database to export; "" exports no database (no tables, no schema.sql).
	Database string
	// PgDump is the path of pg_dump, which writes data/schema/schema.sql.
	PgDump string
	// Objects are the tenant's Kubernetes objects (may be empty).
	Objects []Object
	Info    BagInfo
	// Now is the Bagging-Date and the time stamp of every entry in the tar.
	Now time.Time
}

// Table is one exported table.
type Table struct {
	// Name is the qualified name as PostgreSQL quotes it, e.g. public.orders or clinic."Patiënt ""records"", 2024"
	// (the form pg_dump's COPY lines and internal/pgdump use).
	Name string `json:"name"`
	// Path is the CSV file's path under data/, e.g. tables/public.orders.csv.
	Path   string `json:"path"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Result describes a written bag.
type Result struct {
	Path string `json:"path"`
	// SHA256 is the hex SHA-256 of the whole tar file, Bytes its size.
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	// BagName is the bag's top-level directory inside the tar.
	BagName string `json:"bagName"`
	// PayloadOxum is "<payload bytes>.<payload files>" as in bag-info.txt; Files is the number of payload files.
	PayloadOxum string  `json:"payloadOxum"`
	Files       int     `json:"files"`
	Tables      []Table `json:"tables,omitempty"`
}

// Fixed names inside the bag.
const (
	BagitTxt          = "bagit.txt"
	BagInfoTxt        = "bag-info.txt"
	ManifestSHA256    = "manifest-sha256.txt"
	ManifestSHA512    = "manifest-sha512.txt"
	TagManifestSHA256 = "tagmanifest-sha256.txt"
	TagManifestSHA512 = "tagmanifest-sha512.txt"
	DataPackageJSON   = "data/datapackage.json"
	ReadmeMD          = "data/README.md"
	SchemaSQL         = "data/schema/schema.sql"
	TablesDir         = "data/tables/"
	ObjectsDir        = "data/objects/"

	bagitContent = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
	// SoftwareAgent is bag-info.txt's Bag-Software-Agent.
	SoftwareAgent = "custos"
)

// testHookChunk, when set (tests only), runs after every chunk of a streamed file has been written.
var testHookChunk func(name string)

// BagName is the name of the bag's top-level directory for a tar written to path: the file name without a
// trailing ".tar" (the BagIt serialization convention: a serialized bag unpacks to one directory named like the
// file without its extension).
func BagName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".tar")
}

// WriteFile writes the bag as a tar to dst, atomically: into a temporary file in the same directory
// (".<name>.partial-<random>"), synced, then renamed; the directory is synced after the rename. A failure or a
// cancelled ctx never leaves a file at dst and removes the temporary file; a crash may leave the temporary file,
// which the next WriteFile to the same dst removes (so two WriteFile calls must not write to the same dst at the
// same time). Table data streams from COPY into the file through the hashers; memory does not grow with the
// database. An existing file at dst is replaced.
func WriteFile(ctx context.Context, dst string, in Input) (res Result, err error) {
	if in.Now.IsZero() {
		return Result{}, errors.New("export: Input.Now is not set")
	}
	if in.Database != "" && in.PgDump == "" {
		return Result{}, errors.New("export: Input.PgDump is not set")
	}
	name := BagName(dst)
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "\x00\r\n") {
		return Result{}, fmt.Errorf("export: %q is not a usable bag name", name)
	}
	objects, err := checkObjects(in.Objects)
	if err != nil {
		return Result{}, err
	}
	partial := "." + filepath.Base(dst) + ".partial-"
	if stale, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), globEscape(partial)+"*")); len(stale) > 0 {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(dst), partial+"*")
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	b := &bag{ctx: ctx, in: in, root: name + "/", tw: newTarWriter(f, in.Now), dir: filepath.Dir(dst)}
	b.tw.afterChunk = testHookChunk
	th := startTarHasher(f)
	b.tw.final = th.advance
	if err := b.write(objects); err != nil {
		th.stop()
		return Result{}, fmt.Errorf("export: %w", err)
	}
	// fsync and the rest of the archive's hash (from the page cache) at the same time.
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	sum, hashErr := th.finish(b.tw.off)
	if err := <-synced; err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	if hashErr != nil {
		return Result{}, fmt.Errorf("export: hashing the tar: %w", hashErr)
	}
	size := b.tw.off
	if err := f.Close(); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return Result{Path: dst, SHA256: sum, Bytes: size, BagName: name, PayloadOxum: b.oxum(), Files: len(b.payload),
		Tables: b.tables}, nil
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

// checkObjects validates object paths and returns the objects sorted by path.
func checkObjects(objs []Object) ([]Object, error) {
	out := append([]Object(nil), objs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	seen := map[string]bool{}
	for _, o := range out {
		p := o.Path
		bad := p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") ||
			strings.ContainsAny(p, "\\") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
		if bad {
			return nil, fmt.Errorf("export: object path %q must be relative, clean, without backslashes or control characters", p)
		}
		if seen[p] {
			return nil, fmt.Errorf("export: two objects at %q", p)
		}
		seen[p] = true
	}
	for p := range seen {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if seen[d] {
				return nil, fmt.Errorf("export: object path %q is also a directory of %q", d, p)
			}
		}
	}
	return out, nil
}

// bag is one bag being written.
type bag struct {
	ctx  context.Context
	in   Input
	root string
	tw   *tarWriter

	payload   map[string]fileSum // path relative to the bag → sums
	tags      map[string]fileSum
	tables    []Table
	resources []resource
	// dir is where the bag is written; temporary files go there too.
	dir string
}

func (b *bag) addPayload(rel string, data []byte) (fileSum, error) {
	if err := b.ctx.Err(); err != nil {
		return fileSum{}, err
	}
	s, err := b.tw.addBytes(b.root+rel, data)
	if err == nil {
		b.payload[rel] = s
	}
	return s, err
}

func (b *bag) addTag(rel string, data []byte) error {
	s, err := b.tw.addBytes(b.root+rel, data)
	if err == nil {
		b.tags[rel] = s
	}
	return err
}

func (b *bag) oxum() string {
	var n int64
	for _, s := range b.payload {
		n += s.Size
	}
	return fmt.Sprintf("%d.%d", n, len(b.payload))
}

// write writes every entry: bagit.txt first (so that a reader sees at once what this is), then the payload
// (schema, tables, objects, datapackage.json, README.md), then the tag files that depend on the payload.
func (b *bag) write(objects []Object) error {
	b.payload, b.tags = map[string]fileSum{}, map[string]fileSum{}
	if err := b.tw.mkdirs(b.root + "data/x"); err != nil {
		return err
	}
	if err := b.addTag(BagitTxt, []byte(bagitContent)); err != nil {
		return err
	}
	if b.in.Database != "" {
		if err := b.database(); err != nil {
			return err
		}
	}
	for _, o := range objects {
		rel := ObjectsDir + o.Path
		s, err := b.addPayload(rel, o.Data)
		if err != nil {
			return err
		}
		r := resource{Name: resourceName(strings.TrimPrefix(rel, "data/")), Path: strings.TrimPrefix(rel, "data/"),
			Bytes: s.Size, Hash: "sha256:" + s.SHA256}
		switch strings.ToLower(path.Ext(o.Path)) {
		case ".yaml", ".yml":
			r.Format, r.Mediatype, r.Encoding = "yaml", "application/yaml", "utf-8"
		case ".json":
			r.Format, r.Mediatype, r.Encoding = "json", "application/json", "utf-8"
		}
		b.resources = append(b.resources, r)
	}
	dp, err := json.MarshalIndent(b.dataPackage(), "", "  ")
	if err != nil {
		return err
	}
	if _, err := b.addPayload(DataPackageJSON, append(dp, '\n')); err != nil {
		return err
	}
	if _, err := b.addPayload(ReadmeMD, []byte(b.readme())); err != nil {
		return err
	}
	if err := b.addTag(BagInfoTxt, []byte(b.bagInfo())); err != nil {
		return err
	}
	if err := b.addTag(ManifestSHA256, manifest(b.payload, func(s fileSum) string { return s.SHA256 })); err != nil {
		return err
	}
	if err := b.addTag(ManifestSHA512, manifest(b.payload, func(s fileSum) string { return s.SHA512 })); err != nil {
		return err
	}
	tags := b.tags
	b.tags = map[string]fileSum{}
	if err := b.addTag(TagManifestSHA256, manifest(tags, func(s fileSum) string { return s.SHA256 })); err != nil {
		return err
	}
	if err := b.addTag(TagManifestSHA512, manifest(tags, func(s fileSum) string { return s.SHA512 })); err != nil {
		return err
	}
	return b.tw.close()
}

// manifest is a BagIt manifest: "<digest>  <path>" per file, sorted by path, paths encoded by encodePath.
func manifest(files map[string]fileSum, digest func(fileSum) string) []byte {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out bytes.Buffer
	for _, p := range paths {
		fmt.Fprintf(&out, "%s  %s\n", digest(files[p]), encodePath(p))
	}
	return out.Bytes()
}

// encodePath percent-encodes CR, LF and % in a manifest path, and only those (RFC 8493 §2.1.3).
func encodePath(p string) string {
	if !strings.ContainsAny(p, "%\r\n") {
		return p
	}
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(p)
}

// decodePath undoes encodePath (accepting lower-case hex too).
func decodePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	return strings.NewReplacer("%25", "%", "%0D", "\r", "%0A", "\n", "%0d", "\r", "%0a", "\n").Replace(p)
}

// bagInfo is bag-info.txt. Values are folded as RFC 8493 §2.2.2 allows: a line break inside a value continues on
// the next line, indented.
func (b *bag) bagInfo() string {
	info := b.in.Info
	var out strings.Builder
	add := func(label, value string) {
		if value == "" {
			return
		}
		value = strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\r", "\n")
		out.WriteString(label + ": " + strings.ReplaceAll(value, "\n", "\n  ") + "\n")
	}
	var size int64
	for _, s := range b.payload {
		size += s.Size
	}
	add("Source-Organization", info.SourceOrganization)
	add("Contact-Name", info.ContactName)
	add("Contact-Email", info.ContactEmail)
	add("External-Description", info.ExternalDescription)
	add("External-Identifier", info.ExternalIdentifier)
	add("Bagging-Date", b.in.Now.UTC().Format("2006-01-02"))
	add("Bag-Software-Agent", SoftwareAgent)
	add("Payload-Oxum", b.oxum())
	add("Bag-Size", humanBytes(size))
	add("Custos-Tenant", info.Tenant)
	add("Custos-Database", b.in.Database)
	add("Custos-Exported-At", b.in.Now.UTC().Format(time.RFC3339))
	return out.String()
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func (b *bag) dataPackage() dataPackage {
	info := b.in.Info
	dp := dataPackage{Schema: ProfileDataPackage, Created: b.in.Now.UTC().Format(time.RFC3339), Description: info.ExternalDescription}
	if info.Tenant != "" {
		dp.Name = resourceName(strings.ToLower(info.Tenant))
		dp.Title = "Data export of tenant " + info.Tenant
	}
	if info.SourceOrganization != "" {
		dp.Contributors = append(dp.Contributors, contributor{Title: info.SourceOrganization, Roles: []string{"HostingInstitution", "Distributor"}})
	}
	if info.ContactName != "" || info.ContactEmail != "" {
		t := info.ContactName
		if t == "" {
			t = info.ContactEmail
		}
		dp.Contributors = append(dp.Contributors, contributor{Title: t, Email: info.ContactEmail, Roles: []string{"RightsHolder", "ContactPerson"}})
	}
	dp.Resources = b.resources
	if dp.Resources == nil {
		dp.Resources = []resource{}
	}
	return dp
}

// database exports the tenant database: one REPEATABLE READ, READ ONLY transaction whose snapshot pg_dump shares
// for schema.sql, then every table through COPY … TO STDOUT straight into the tar. pg_dump runs while the tables
// stream, into an unlinked temporary file next to the bag, and schema.sql follows the tables in the tar.
func (b *bag) database() error {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	conn, err := b.connect(ctx)
	if err != nil {
		return fmt.Errorf("connecting to database %s: %w", b.in.Database, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(cctx)
	}()
	if _, err := tx.Exec(ctx, sessionSettings); err != nil {
		return fmt.Errorf("session settings: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config(name, '0', true) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout'`); err != nil {
		return fmt.Errorf("session settings: %w", err)
	}
	var snapshot string
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.pg_export_snapshot()`).Scan(&snapshot); err != nil {
		return fmt.Errorf("exporting the snapshot for pg_dump: %w", err)
	}

	schema, err := os.CreateTemp(b.dir, ".custos-export-schema-*")
	if err != nil {
		return err
	}
	_ = os.Remove(schema.Name()) // the open file stays readable; a crash leaves nothing behind
	defer schema.Close()
	dumped := make(chan error, 1)
	go func() { dumped <- b.pgDump(ctx, snapshot, schema) }()
	waitDump := func() error {
		if dumped == nil {
			return nil
		}
		err := <-dumped
		dumped = nil
		return err
	}
	defer func() {
		cancel()
		_ = waitDump()
	}()

	tables, types, err := readCatalog(ctx, tx)
	if err != nil {
		return err
	}
	names := map[uint32]string{}
	for _, t := range tables {
		names[t.oid] = t.base
	}
	for _, t := range tables {
		rel := TablesDir + t.base + ".csv"
		var rows int64
		s, err := b.tw.stream(b.root+rel, func(w io.Writer) error {
			tag, err := conn.PgConn().CopyTo(ctx, w, copySQL(t))
			rows = tag.RowsAffected()
			return err
		})
		if err != nil {
			if b.ctx.Err() != nil {
				return b.ctx.Err()
			}
			return fmt.Errorf("table %s: %w", t.qualified, err)
		}
		b.payload[rel] = s
		kind := "table"
		if t.partitioned {
			kind = "partitioned table"
		}
		b.tables = append(b.tables, Table{Name: t.qualified, Path: strings.TrimPrefix(rel, "data/"), Rows: rows, Bytes: s.Size, SHA256: s.SHA256})
		b.resources = append(b.resources, resource{
			Name: t.base, Type: "table", Path: strings.TrimPrefix(rel, "data/"), Format: "csv", Mediatype: "text/csv",
			Encoding: "utf-8", Bytes: s.Size, Hash: "sha256:" + s.SHA256, Title: t.qualified, Description: t.comment,
			Dialect:    &dialect{Header: true, Delimiter: ",", LineTerminator: "\n", QuoteChar: `"`, DoubleQuote: true},
			Schema:     schemaOf(t, types, names),
			PostgreSQL: &pgSource{Schema: t.schema, Table: t.name, Name: t.qualified, Kind: kind, Rows: rows},
		})
	}

	if err := waitDump(); err != nil {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		return fmt.Errorf("schema (pg_dump): %w", err)
	}
	st, err := schema.Stat()
	if err != nil {
		return err
	}
	if _, err := schema.Seek(0, io.SeekStart); err != nil {
		return err
	}
	s, err := b.tw.addReader(b.root+SchemaSQL, schema, st.Size())
	if err != nil {
		return err
	}
	b.payload[SchemaSQL] = s
	b.resources = append(b.resources, resource{Name: "schema", Path: strings.TrimPrefix(SchemaSQL, "data/"), Format: "sql",
		Mediatype: "application/sql", Encoding: "utf-8", Bytes: s.Size, Hash: "sha256:" + s.SHA256,
		Title: "Database schema", Description: "pg_dump --schema-only --no-owner --no-privileges of database " + b.in.Database +
			", from the same snapshot as the tables."})
	return nil
}

// readBuffer is the size of the buffer COPY output is read through: pgx reads 8 KiB at a time by default, which
// costs a system call per 8 KiB of table data.
const readBuffer = 256 << 10

// connect opens the export's session on the tenant database.
func (b *bag) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := b.in.Conn.PgxConfig(b.in.Database)
	if err != nil {
		return nil, err
	}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBuffer), w)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errors.New(postgres.Redact(err.Error(), b.in.Conn.Password))
	}
	return conn, nil
}

// sessionSettings fix, for the export's transaction only, everything that changes how values are written or
// whether the export can finish, whatever the database or role defaults say. search_path is set first and every
// function is schema-qualified, so no function or operator of the tenant's ever runs with the administrator's
// rights. row_security off makes a table the administrator could only partly see an error instead of a silently
// short export.
const sessionSettings = `SELECT pg_catalog.set_config('search_path', 'pg_catalog', true),
  pg_catalog.set_config('TimeZone', 'UTC', true),
  pg_catalog.set_config('DateStyle', 'ISO, YMD', true),
  pg_catalog.set_config('IntervalStyle', 'iso_8601', true),
  pg_catalog.set_config('extra_float_digits', '3', true),
  pg_catalog.set_config('bytea_output', 'hex', true),
  pg_catalog.set_config('row_security', 'off', true),
  pg_catalog.set_config('statement_timeout', '0', true),
  pg_catalog.set_config('lock_timeout', '0', true),
  pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)`

// pgDump runs pg_dump --schema-only on the export's snapshot, its output going to w.
func (b *bag) pgDump(ctx context.Context, snapshot string, w io.Writer) error {
	dir, err := os.MkdirTemp("", "custos-export-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := b.in.Conn.LibpqEnv(b.in.Database, "custos-export", dir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, b.in.PgDump, "--schema-only", "--no-owner", "--no-privileges", "--no-password",
		"--snapshot="+snapshot)
	cmd.Env = append(environWithoutPG(), env...)
	cmd.Stdout = w
	var stderr tailBuffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s", err, postgres.Redact(strings.TrimSpace(stderr.String()), b.in.Conn.Password))
	}
	return nil
}

// environWithoutPG is the process environment without libpq's variables, so that nothing but LibpqEnv decides
// where pg_dump connects and how (PGSERVICE, PGOPTIONS, PGSSLCERT, … of the manager's environment stay out).
func environWithoutPG() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// tailBuffer keeps the last 16 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 16<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-16<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
