package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DrillPrefix begins the name of every restore-drill database and role. Tenant database names may not begin with
// ReservedPrefix (which contains it), so no tenant's live database can ever carry a drill database's name.
const (
	ReservedPrefix = "custos_"
	DrillPrefix    = ReservedPrefix + "drill_"
)

// DrillName is the name of the scratch database (and of its role) of a tenant's restore drill.
func DrillName(tenant string) string { return DrillPrefix + strings.ReplaceAll(tenant, "-", "_") }

// DrillMarker is the COMMENT custos writes on a tenant's scratch database and role: a drill drops a database or
// role of that name only when it carries exactly this marker (and, for the database, is owned by the scratch role).
func DrillMarker(tenant, uid string) string {
	return fmt.Sprintf("custos.io/drill=%s uid=%s", tenant, uid)
}

// ErrNotDrill says a database or role has a drill's name but is not that tenant's drill scratch: it is left alone.
var ErrNotDrill = errors.New("is not a restore-drill scratch of this tenant")

// Scratch is a restore drill's scratch database and the role that owns it and restores into it.
type Scratch struct {
	// Name of both the database and the role.
	Name string
	// OID of the database, checked again before it is dropped.
	OID uint32
	// Conn reaches the scratch database as the scratch role (not as the administrator).
	Conn ConnConfig
}

// CreateScratch makes a restore drill's scratch: first it drops a scratch of the same name left by an earlier
// drill (only one carrying marker, see DropScratch); then a fresh LOGIN role with a random password and no
// attribute beyond LOGIN (NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS), a member of tenantRole
// so that the dump's OWNER TO and GRANT statements can be replayed, and a database owned by it, closed to PUBLIC;
// both carry marker. The dump is then replayed through a session of that role: whatever the tenant's own code
// does during the restore (a trigger, a CHECK constraint, a policy, RESET ROLE), it does with no more rights than
// the tenant's role has, plus ownership of the scratch database.
func (s *Server) CreateScratch(ctx context.Context, name, marker, tenantRole string) (Scratch, error) {
	sc := Scratch{Name: name}
	if !strings.HasPrefix(name, DrillPrefix) {
		return sc, fmt.Errorf("scratch name %q does not begin with %s", name, DrillPrefix)
	}
	// Membership in a role that has a superuser's privileges (or is one) would hand them to the tenant's code.
	var super bool
	if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
		WHERE r.rolsuper AND pg_catalog.pg_has_role($1, r.oid, 'USAGE'))`, tenantRole).Scan(&super); err != nil {
		return sc, fmt.Errorf("reading the rights of role %s: %w", tenantRole, err)
	}
	if super {
		return sc, fmt.Errorf("role %s is or inherits a superuser: custos does not restore its dump with its rights", tenantRole)
	}
	if err := s.DropScratch(ctx, name, marker, 0); err != nil {
		return sc, err
	}
	pw, err := NewPassword()
	if err != nil {
		return sc, err
	}
	verifier, err := SCRAMVerifier(pw)
	if err != nil {
		return sc, err
	}
	id := pgx.Identifier{name}.Sanitize()
	if err := s.tx(ctx,
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT 4 PASSWORD %s", id, quoteLiteral(verifier)),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", id, quoteLiteral(marker)),
		fmt.Sprintf("GRANT %s TO %s", pgx.Identifier{tenantRole}.Sanitize(), id),
	); err != nil {
		return sc, fmt.Errorf("creating the drill role %s: %w", name, err)
	}
	if _, err := s.conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s ENCODING 'UTF8' TEMPLATE template0", id, id)); err != nil {
		return sc, errors.Join(fmt.Errorf("creating the drill database %s: %w", name, err), s.DropScratch(context.WithoutCancel(ctx), name, marker, 0))
	}
	if err := s.conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_database WHERE datname = $1", name).Scan(&sc.OID); err != nil {
		return sc, fmt.Errorf("reading the OID of the drill database %s: %w", name, err)
	}
	// A crash before the comment leaves a database without marker, owned by the marked role: DropScratch
	// recognises it by that owner.
	// The tenant's role gets CREATE (not CONNECT) on the scratch database and its public schema, as in the
	// tenant's own database: the dump gives its objects (and the schema) to that role, and PostgreSQL wants the
	// new owner to be able to create them.
	tenant := pgx.Identifier{tenantRole}.Sanitize()
	if err := s.tx(ctx,
		fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", id),
		fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", id, tenant),
		fmt.Sprintf("COMMENT ON DATABASE %s IS %s", id, quoteLiteral(marker)),
	); err != nil {
		return sc, errors.Join(fmt.Errorf("closing and marking the drill database %s: %w", name, err), s.DropScratch(context.WithoutCancel(ctx), name, marker, sc.OID))
	}
	if err := s.inScratch(ctx, name, "ALTER SCHEMA public OWNER TO "+tenant); err != nil {
		return sc, errors.Join(fmt.Errorf("giving the public schema of the drill database %s to %s: %w", name, tenantRole, err), s.DropScratch(context.WithoutCancel(ctx), name, marker, sc.OID))
	}
	sc.Conn = s.cfg
	sc.Conn.User, sc.Conn.Password, sc.Conn.Database = name, pw, name
	return sc, nil
}

// inScratch runs a statement as the administrator in the (empty, just made) scratch database.
func (s *Server) inScratch(ctx context.Context, name, stmt string) error {
	conn, err := s.cfg.connect(ctx, name)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	_, err = conn.Exec(ctx, stmt)
	return err
}

// DropScratch drops a drill's scratch database and role of that name, when there are any, after verifying that
// they are the drill's: the database carries marker as its comment, is owned by the role of the same name and,
// when oid is not 0, has that OID; the role carries marker. Anything else of that name is refused (ErrNotDrill)
// and left as it is. It verifies that both are gone.
func (s *Server) DropScratch(ctx context.Context, name, marker string, oid uint32) error {
	id := pgx.Identifier{name}.Sanitize()
	role, err := s.roleInfo(ctx, name)
	if err != nil {
		return err
	}
	if role.exists && role.comment != marker {
		return fmt.Errorf("role %s (comment %q) %w: custos does not drop it; the drill needs the name, so rename or remove that role", name, role.comment, ErrNotDrill)
	}
	db, err := s.dbInfo(ctx, name)
	if err != nil {
		return err
	}
	if db.exists {
		// A database without comment owned by the marked role is one a crash left between CREATE DATABASE and
		// its COMMENT (only the administrator can make a database owned by that role).
		marked := db.comment == marker || (db.comment == "" && role.exists)
		if !marked || db.owner != name || (oid != 0 && db.oid != oid) {
			return fmt.Errorf("database %s (OID %d, owner %s, comment %q) %w: custos does not drop it; the drill needs the name, so rename or remove that database",
				name, db.oid, db.owner, db.comment, ErrNotDrill)
		}
		if _, err := s.conn.Exec(ctx, "DROP DATABASE "+id+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping the drill database %s: %w", name, err)
		}
		var n int
		if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_database WHERE oid = $1", db.oid).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("the drill database %s (OID %d) is still there after DROP DATABASE", name, db.oid)
		}
	}
	if role.exists {
		if _, err := s.conn.Exec(ctx, "DROP ROLE "+id); err != nil {
			return fmt.Errorf("dropping the drill role %s: %w", name, err)
		}
	}
	return nil
}
