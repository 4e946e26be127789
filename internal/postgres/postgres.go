// Package postgres provisions and checks tenant databases and roles on a PostgreSQL server through pgx. Every
// identifier is quoted with pgx.Identifier; every value is a bind parameter or a verifier computed here.
package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ConnConfig says how to reach a server as its administrator.
type ConnConfig struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// SSLMode is libpq's sslmode: disable, require, verify-ca or verify-full.
	SSLMode string
	// CAPEM is the CA bundle for verify-ca / verify-full; empty means the system roots.
	CAPEM []byte
}

// URL is a connection URL for database db (the maintenance database when empty).
func (c ConnConfig) URL(db string) string {
	if db == "" {
		db = c.Database
	}
	q := url.Values{}
	q.Set("sslmode", c.SSLMode)
	q.Set("connect_timeout", "10")
	// Every administrative session, in the maintenance database or in a tenant's, starts with only the catalog on
	// its search path: a tenant owns its database and can give it a search_path (ALTER DATABASE … SET) that puts
	// its own objects before pg_catalog, so that an unqualified name read by the administrator runs the tenant's
	// code with the administrator's rights. A parameter of the connection request outranks the database's and the
	// role's defaults. pg_temp is named last so that it is not searched first.
	q.Set("search_path", AdminSearchPath)
	u := url.URL{Scheme: "postgres", User: url.UserPassword(c.User, c.Password),
		Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// AdminSearchPath is the search_path of every session custos opens as a server's administrator.
const AdminSearchPath = "pg_catalog, pg_temp"

// FailureReason classifies a connection error for a condition reason: Unreachable, AuthenticationFailed or
// TLSFailed; "" when err is something else. It looks at the error types first; the text fallback only matches
// phrases of the drivers, never user-chosen names.
func FailureReason(err error) string {
	if err == nil {
		return ""
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification (pg_hba)
			return "AuthenticationFailed"
		}
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuthority) || errors.As(err, &hostErr) || errors.As(err, &recordErr) {
		return "TLSFailed"
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "server refused tls connection"), strings.Contains(msg, "tls: "), strings.Contains(msg, "x509: "):
		return "TLSFailed"
	case strings.Contains(msg, "password authentication failed"), strings.Contains(msg, "failed sasl auth"):
		return "AuthenticationFailed"
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &netErr) || errors.As(err, &opErr) || errors.As(err, &dnsErr) || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "no such host") {
		return "Unreachable"
	}
	return ""
}

// redacted wraps an error so that its text never carries the password, while errors.As still sees the cause.
type redacted struct {
	err      error
	password string
}

func (r *redacted) Error() string { return Redact(r.err.Error(), r.password) }
func (r *redacted) Unwrap() error { return r.err }

func redact(err error, password string) error {
	if err == nil {
		return nil
	}
	return &redacted{err: err, password: password}
}

// Redact removes a password from an error message before it goes into a condition, an Event or a log line.
func Redact(msg, password string) string {
	if password == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, password, "<redacted>")
	return strings.ReplaceAll(msg, url.QueryEscape(password), "<redacted>")
}

// db is what Server needs of a connection or a pool.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Server is an administrative session (a connection or a pool) on one PostgreSQL server.
type Server struct {
	cfg   ConnConfig
	conn  db
	close func(context.Context) error
}

// Connect opens an administrative session on the maintenance database.
func Connect(ctx context.Context, cfg ConnConfig) (*Server, error) {
	conn, err := cfg.connect(ctx, "")
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, conn: conn, close: conn.Close}, nil
}

// ConnectDB opens a session on database db (the maintenance database when empty) with cfg's credentials.
func (c ConnConfig) ConnectDB(ctx context.Context, db string) (*pgx.Conn, error) {
	return c.connect(ctx, db)
}

// connect opens a session on database db, trusting cfg.CAPEM when given; errors never carry the password.
func (c ConnConfig) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(c.URL(db))
	if err != nil {
		return nil, redact(err, c.Password)
	}
	if err := c.trustCA(pc); err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, redact(err, c.Password)
	}
	return conn, nil
}

// trustCA makes every TLS config of pc (and its fallbacks) trust CAPEM instead of the system roots.
func (c ConnConfig) trustCA(pc *pgx.ConnConfig) error {
	if len(c.CAPEM) == 0 {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return errors.New("the CA bundle holds no PEM certificate")
	}
	for _, t := range append([]*tls.Config{pc.TLSConfig}, fallbackTLS(pc)...) {
		if t != nil {
			t.RootCAs = pool
		}
	}
	return nil
}

func fallbackTLS(pc *pgx.ConnConfig) []*tls.Config {
	var out []*tls.Config
	for _, f := range pc.Fallbacks {
		out = append(out, f.TLSConfig)
	}
	return out
}

// Close ends the session.
func (s *Server) Close(ctx context.Context) error { return s.close(ctx) }

// Version is the server's server_version.
func (s *Server) Version(ctx context.Context) (string, error) {
	var v string
	err := s.conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}

// Owner identifies the tenant a database and role belong to. custos writes the first two as the COMMENT of both,
// and records the OIDs the server gave them when they were made.
//
// Ownership rests on facts the tenant cannot change. The tenant owns its database and can COMMENT ON it, so the
// comment only decides the first adoption (nothing recorded yet). Once DatabaseOID or RoleOID is recorded, that
// object is the tenant's exactly when the object of that name has that OID; the comment is then ignored (and
// written back when the tenant changed it).
type Owner struct {
	Tenant string
	UID    string
	// DatabaseOID and RoleOID are the OIDs recorded when the database and role were made (0: not recorded yet).
	DatabaseOID, RoleOID uint32
}

func (o Owner) comment() string { return fmt.Sprintf("custos.io/tenant=%s uid=%s", o.Tenant, o.UID) }

// ErrNotOwned says a database or role of the wanted name exists and does not belong to the tenant.
var ErrNotOwned = errors.New("exists and does not belong to this tenant")

// ErrDatabaseMissing says the tenant's database, whose OID was recorded, is gone. custos never makes it again on
// its own: an empty database of the same name would be backed up in place of the lost one.
var ErrDatabaseMissing = errors.New("is missing")

// roleInfo and dbInfo are what ownership is decided on.
type roleInfo struct {
	exists  bool
	oid     uint32
	comment string
}

type dbInfo struct {
	exists  bool
	oid     uint32
	comment string
	owner   string
}

func (s *Server) roleInfo(ctx context.Context, name string) (roleInfo, error) {
	var r roleInfo
	var c *string
	err := s.conn.QueryRow(ctx, `SELECT oid, pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = $1`, name).Scan(&r.oid, &c)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("reading role %s: %w", name, err)
	}
	r.exists = true
	if c != nil {
		r.comment = *c
	}
	return r, nil
}

func (s *Server) dbInfo(ctx context.Context, name string) (dbInfo, error) {
	var d dbInfo
	var c *string
	err := s.conn.QueryRow(ctx, `SELECT oid, pg_catalog.shobj_description(oid, 'pg_database'), pg_catalog.pg_get_userbyid(datdba)
		FROM pg_catalog.pg_database WHERE datname = $1`, name).Scan(&d.oid, &c, &d.owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("reading database %s: %w", name, err)
	}
	d.exists = true
	if c != nil {
		d.comment = *c
	}
	return d, nil
}

// owned reads the role and database named name and decides whether each, when it exists, is owner's (see Owner).
func (s *Server) owned(ctx context.Context, name string, owner Owner) (roleInfo, dbInfo, error) {
	comment := owner.comment()
	role, err := s.roleInfo(ctx, name)
	if err != nil {
		return role, dbInfo{}, err
	}
	switch {
	case !role.exists:
	case owner.RoleOID != 0 && role.oid != owner.RoleOID:
		return role, dbInfo{}, fmt.Errorf("role %s %w: it has OID %d, not the OID %d recorded for this tenant (it was made again outside custos)", name, ErrNotOwned, role.oid, owner.RoleOID)
	case owner.RoleOID == 0 && role.comment != comment:
		return role, dbInfo{}, fmt.Errorf("role %s %w (its comment is %q)", name, ErrNotOwned, role.comment)
	}
	db, err := s.dbInfo(ctx, name)
	if err != nil {
		return role, db, err
	}
	switch {
	case !db.exists:
	case owner.DatabaseOID != 0 && db.oid != owner.DatabaseOID:
		return role, db, fmt.Errorf("database %s %w: it has OID %d, not the OID %d recorded for this tenant (it was made again outside custos)", name, ErrNotOwned, db.oid, owner.DatabaseOID)
	case owner.DatabaseOID != 0:
		// The recorded OID decides; the comment, which the tenant can change, does not.
	case db.comment == comment:
	case db.comment == "" && role.exists && db.owner == name:
		// CREATE DATABASE cannot share a transaction with its COMMENT: a crash between the two leaves the
		// database without comment. It is still ours when its owner is the tenant's own (commented) role.
	default:
		return role, db, fmt.Errorf("database %s %w (its comment is %q)", name, ErrNotOwned, db.comment)
	}
	return role, db, nil
}

// TenantDatabase is what EnsureTenant wants.
type TenantDatabase struct {
	Owner Owner
	// Name of both the database and its owning role.
	Name            string
	ConnectionLimit int
	Extensions      []string
	// Password of the role. It is set (as a SCRAM verifier, never in clear) when the role is created, and on an
	// existing role only when ResetPassword is true.
	Password      string
	ResetPassword bool
	// InDatabase asks to check inside the database too (public schema ownership, extensions); it always happens
	// when the database is created. It costs a connection to the tenant database.
	InDatabase bool
}

// CheckOwnership reads, without changing anything, whether a role or database named name exists that does not
// belong to owner (ErrNotOwned; see Owner for how that is decided). Callers run it before creating anything else
// for a tenant, so that a refused name leaves nothing half-made.
func (s *Server) CheckOwnership(ctx context.Context, name string, owner Owner) error {
	_, _, err := s.owned(ctx, name, owner)
	return err
}

// EnsureResult reports what EnsureTenant found and did.
type EnsureResult struct {
	OID         uint32
	RoleOID     uint32
	CreatedRole bool
	CreatedDB   bool
	PasswordSet bool
	// Isolated is true when the database's owner or access list had to be corrected.
	Isolated       bool
	ExtensionsMade []string
}

// EnsureTenant creates or corrects the tenant's role and database: role LOGIN with no other privilege and the
// connection limit; database owned by the role, CONNECT and TEMP revoked from PUBLIC; extensions created. It
// refuses (ErrNotOwned) when a role or database of that name exists without this tenant's comment.
func (s *Server) EnsureTenant(ctx context.Context, want TenantDatabase) (EnsureResult, error) {
	var res EnsureResult
	id := pgx.Identifier{want.Name}.Sanitize()
	comment := want.Owner.comment()

	role, db, err := s.owned(ctx, want.Name, want.Owner)
	if err != nil {
		return res, err
	}
	roleExists, dbExists := role.exists, db.exists
	if !dbExists && want.Owner.DatabaseOID != 0 {
		return res, fmt.Errorf("database %s (OID %d) %w", want.Name, want.Owner.DatabaseOID, ErrDatabaseMissing)
	}
	if dbExists && db.comment != comment {
		// Ours (decided above) with another comment: one lost to a crash right after CREATE DATABASE, or one the
		// tenant changed. Written back; it no longer decides anything once the OID is recorded.
		if _, err := s.conn.Exec(ctx, fmt.Sprintf("COMMENT ON DATABASE %s IS %s", id, quoteLiteral(comment))); err != nil {
			return res, fmt.Errorf("marking database %s: %w", want.Name, err)
		}
	}
	verifier := ""
	if !roleExists || want.ResetPassword {
		if want.Password == "" {
			return res, fmt.Errorf("role %s: no password given to set", want.Name)
		}
		if verifier, err = SCRAMVerifier(want.Password); err != nil {
			return res, err
		}
	}
	if !roleExists {
		// The comment is written in the same transaction, so a role without it is never ours.
		if err := s.tx(ctx,
			fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT %d PASSWORD %s",
				id, want.ConnectionLimit, quoteLiteral(verifier)),
			fmt.Sprintf("COMMENT ON ROLE %s IS %s", id, quoteLiteral(comment)),
		); err != nil {
			return res, fmt.Errorf("creating role %s: %w", want.Name, err)
		}
		res.CreatedRole, res.PasswordSet = true, true
	} else {
		// Only what differs is altered: naming SUPERUSER, REPLICATION or BYPASSRLS at all needs a superuser, and
		// an unchanged role is left untouched.
		var super, createdb, createrole, replication, bypassrls, login bool
		var limit int
		if err := s.conn.QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin, rolconnlimit
			FROM pg_catalog.pg_roles WHERE rolname = $1`, want.Name).Scan(&super, &createdb, &createrole, &replication, &bypassrls, &login, &limit); err != nil {
			return res, fmt.Errorf("reading role %s: %w", want.Name, err)
		}
		var attrs []string
		for _, a := range []struct {
			bad  bool
			want string
		}{{super, "NOSUPERUSER"}, {createdb, "NOCREATEDB"}, {createrole, "NOCREATEROLE"}, {replication, "NOREPLICATION"}, {bypassrls, "NOBYPASSRLS"}, {!login, "LOGIN"}} {
			if a.bad {
				attrs = append(attrs, a.want)
			}
		}
		if limit != want.ConnectionLimit {
			attrs = append(attrs, fmt.Sprintf("CONNECTION LIMIT %d", want.ConnectionLimit))
		}
		if want.ResetPassword {
			attrs = append(attrs, "PASSWORD "+quoteLiteral(verifier))
			res.PasswordSet = true
		}
		if len(attrs) > 0 {
			if _, err := s.conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s %s", id, strings.Join(attrs, " "))); err != nil {
				return res, fmt.Errorf("correcting role %s: %w", want.Name, err)
			}
		}
	}
	if !dbExists {
		// CREATE DATABASE cannot run in a transaction; the comment follows at once (see above for a crash between).
		if _, err := s.conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s ENCODING 'UTF8' TEMPLATE template0", id, id)); err != nil {
			return res, fmt.Errorf("creating database %s: %w", want.Name, err)
		}
		// Close it to PUBLIC at once: a failure further down must not leave it open to every role.
		if err := s.tx(ctx,
			fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", id),
			fmt.Sprintf("COMMENT ON DATABASE %s IS %s", id, quoteLiteral(comment)),
		); err != nil {
			return res, fmt.Errorf("closing and marking database %s: %w", want.Name, err)
		}
		res.CreatedDB = true
	}
	// Owned by the tenant's role and closed to PUBLIC (no access entry for grantee 0; a NULL acl means the
	// defaults, which give PUBLIC CONNECT and TEMPORARY). Corrected only when it differs.
	var isolated bool
	if err := s.conn.QueryRow(ctx, `SELECT pg_catalog.pg_get_userbyid(datdba) = $1 AND datacl IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(datacl) a WHERE a.grantee = 0)
		FROM pg_catalog.pg_database WHERE datname = $1`, want.Name).Scan(&isolated); err != nil {
		return res, fmt.Errorf("reading the owner and access list of database %s: %w", want.Name, err)
	}
	if !isolated {
		if err := s.tx(ctx,
			fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", id, id),
			fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", id),
			fmt.Sprintf("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE %s TO %s", id, id),
		); err != nil {
			return res, fmt.Errorf("isolating database %s: %w", want.Name, err)
		}
		res.Isolated = true
	}
	if err := s.conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_database WHERE datname = $1", want.Name).Scan(&res.OID); err != nil {
		return res, fmt.Errorf("reading the OID of database %s: %w", want.Name, err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1", want.Name).Scan(&res.RoleOID); err != nil {
		return res, fmt.Errorf("reading the OID of role %s: %w", want.Name, err)
	}
	if !want.InDatabase && !res.CreatedDB {
		return res, nil
	}
	made, err := s.ensureInDatabase(ctx, want)
	res.ExtensionsMade = made
	return res, err
}

// ensureInDatabase connects to the tenant database itself: locks down the public schema and creates extensions.
// The tenant owns that database and everything in it but the catalog: the session's search_path is pinned to
// pg_catalog by the connection (see ConnConfig.URL, whatever ALTER DATABASE … SET search_path says) and every
// catalog name is qualified, so no object of the tenant's is ever read or called with the administrator's rights.
func (s *Server) ensureInDatabase(ctx context.Context, want TenantDatabase) ([]string, error) {
	conn, err := s.cfg.connect(ctx, want.Name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var path string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('search_path')").Scan(&path); err != nil {
		return nil, err
	}
	if strings.ReplaceAll(path, " ", "") != strings.ReplaceAll(AdminSearchPath, " ", "") {
		return nil, fmt.Errorf("the administrative session in %s has search_path %q, not %q: refusing to work in it", want.Name, path, AdminSearchPath)
	}
	id := pgx.Identifier{want.Name}.Sanitize()
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER SCHEMA public OWNER TO %s", id)); err != nil {
		return nil, fmt.Errorf("giving the public schema of %s to its role: %w", want.Name, err)
	}
	if _, err := conn.Exec(ctx, "REVOKE ALL ON SCHEMA public FROM PUBLIC"); err != nil {
		return nil, fmt.Errorf("revoking the public schema of %s from PUBLIC: %w", want.Name, err)
	}
	var made []string
	for _, ext := range want.Extensions {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = $1)", ext).Scan(&exists); err != nil {
			return made, err
		}
		if exists {
			continue
		}
		// The tenant owns schema public and could have planted objects there that an extension script would call
		// with the administrator's rights; the script runs with only pg_catalog on the search path.
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO pg_catalog, pg_temp"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE EXTENSION IF NOT EXISTS %s SCHEMA public", pgx.Identifier{ext}.Sanitize()))
			return err
		})
		if err != nil {
			return made, fmt.Errorf("creating extension %s in %s: %w", ext, want.Name, err)
		}
		made = append(made, ext)
	}
	return made, nil
}

// DatabaseOID returns the OID of database name, or ok=false when there is none.
func (s *Server) DatabaseOID(ctx context.Context, name string) (oid uint32, ok bool, err error) {
	err = s.conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_database WHERE datname = $1", name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return oid, err == nil, err
}

// CountTenantDatabases counts the databases custos made on this server (those with a custos comment).
func (s *Server) CountTenantDatabases(ctx context.Context) (int, error) {
	var n int
	err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_database d
		JOIN pg_catalog.pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass
		WHERE c.description LIKE 'custos.io/tenant=%'`).Scan(&n)
	return n, err
}

func (s *Server) tx(ctx context.Context, stmts ...string) error {
	return pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st); err != nil {
				return err
			}
		}
		return nil
	})
}

// quoteLiteral quotes a string literal for statements that take no bind parameters (CREATE ROLE, COMMENT ON).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
