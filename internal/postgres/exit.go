package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SuspendResult reports what Suspend did.
type SuspendResult struct {
	// Terminated is how many sessions were ended.
	Terminated int
}

// Suspend stops a tenant from reaching its database without destroying anything: its role loses LOGIN, and every
// session of the role, or in the tenant's database, is ended. It verifies both before returning. A role or
// database that belongs to someone else is refused (ErrNotOwned); one that does not exist is already suspended.
// Ownership is decided by the OIDs recorded in owner (see Owner), so a tenant that changes its database's comment
// cannot keep its LOGIN.
func (s *Server) Suspend(ctx context.Context, name string, owner Owner) (SuspendResult, error) {
	var res SuspendResult
	role, _, err := s.owned(ctx, name, owner)
	if err != nil {
		return res, err
	}
	if role.exists {
		if _, err := s.conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{name}.Sanitize()+" NOLOGIN"); err != nil {
			return res, fmt.Errorf("revoking LOGIN from %s: %w", name, err)
		}
	}
	// pg_terminate_backend signals; the sessions go a moment later. Ask until none is left.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := s.conn.QueryRow(ctx, `SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity
			WHERE (usename = $1 OR datname = $1) AND pid <> pg_catalog.pg_backend_pid()`, name).Scan(&n)
		if err != nil {
			return res, fmt.Errorf("ending the sessions of %s: %w", name, err)
		}
		if n == 0 {
			break
		}
		res.Terminated += n
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d session(s) of %s still open after 30s", n, name)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	var canLogin bool
	err = s.conn.QueryRow(ctx, "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1", name).Scan(&canLogin)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, err
	}
	if canLogin {
		return res, fmt.Errorf("role %s can still log in after ALTER ROLE NOLOGIN", name)
	}
	return res, nil
}

// Suspended reports whether the role cannot log in and no session of it is open.
func (s *Server) Suspended(ctx context.Context, name string) (bool, error) {
	var canLogin bool
	err := s.conn.QueryRow(ctx, "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1", name).Scan(&canLogin)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	var n int
	if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = $1 OR datname = $1", name).Scan(&n); err != nil {
		return false, err
	}
	return !canLogin && n == 0, nil
}

// DropResult reports what DropTenant destroyed and how it checked.
type DropResult struct {
	// OID of the database that was dropped (0 when there was none).
	OID uint32
	// DatabaseDropped and RoleDropped say whether each existed and was dropped now.
	DatabaseDropped, RoleDropped bool
	// Verification says what was checked afterwards.
	Verification string
}

// DropTenant destroys a tenant's database and role: sessions ended, DROP DATABASE … WITH (FORCE), then DROP ROLE;
// afterwards it checks that no database has the old OID or the name and that the role is gone. It refuses a
// database or role that does not belong to owner (ErrNotOwned). Running it again after success finds nothing and
// reports nothing dropped. knownOID is the OID recorded when the database was made (0 when unknown): it is
// checked too, so that a retry after a drop whose outcome was not recorded still verifies the right database.
// Ownership is decided by the OIDs recorded in owner (knownOID counts as owner.DatabaseOID when that is 0).
func (s *Server) DropTenant(ctx context.Context, name string, owner Owner, knownOID uint32) (DropResult, error) {
	if owner.DatabaseOID == 0 {
		owner.DatabaseOID = knownOID
	}
	knownOID = owner.DatabaseOID
	res := DropResult{OID: knownOID}
	if err := s.CheckOwnership(ctx, name, owner); err != nil {
		return res, err
	}
	id := pgx.Identifier{name}.Sanitize()
	oid, exists, err := s.DatabaseOID(ctx, name)
	if err != nil {
		return res, err
	}
	if exists && knownOID != 0 && oid != knownOID {
		return res, fmt.Errorf("database %s has OID %d, not the OID %d recorded for this tenant: it was made again outside custos; refusing to drop it", name, oid, knownOID)
	}
	if !exists {
		oid = knownOID
	}
	if exists {
		res.OID = oid
		if _, err := s.Suspend(ctx, name, owner); err != nil {
			return res, err
		}
		if _, err := s.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
			return res, fmt.Errorf("dropping database %s: %w", name, err)
		}
		res.DatabaseDropped = true
	}
	if role, err := s.roleInfo(ctx, name); err != nil {
		return res, err
	} else if role.exists {
		if _, err := s.conn.Exec(ctx, "DROP ROLE IF EXISTS "+id); err != nil {
			return res, fmt.Errorf("dropping role %s: %w", name, err)
		}
		res.RoleDropped = true
	}
	var n int
	if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_database WHERE datname = $1 OR ($2::pg_catalog.oid <> 0 AND oid = $2::pg_catalog.oid)", name, oid).Scan(&n); err != nil {
		return res, fmt.Errorf("verifying database %s is gone: %w", name, err)
	}
	if n != 0 {
		return res, fmt.Errorf("database %s (OID %d) still in pg_database after DROP", name, oid)
	}
	if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		return res, fmt.Errorf("verifying role %s is gone: %w", name, err)
	}
	if n != 0 {
		return res, fmt.Errorf("role %s still in pg_roles after DROP ROLE", name)
	}
	res.Verification = fmt.Sprintf("pg_database has no row with datname %s or OID %d; pg_roles has no role %s", name, oid, name)
	return res, nil
}
