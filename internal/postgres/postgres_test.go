package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// connectAs connects as a tenant would: with the database's and role's own search_path (the administrator's
// sessions pin theirs to the catalog).
func connectAs(ctx context.Context, user, password, db string) (*pgx.Conn, error) {
	cfg := adminConfig()
	cfg.User, cfg.Password = user, password
	pc, err := pgx.ParseConfig(cfg.URL(db))
	if err != nil {
		return nil, err
	}
	delete(pc.RuntimeParams, "search_path")
	return pgx.ConnectConfig(ctx, pc)
}

// provision makes a tenant database and returns its password.
func provision(ctx context.Context, s *Server, tenant string) (string, EnsureResult) {
	pw, err := NewPassword()
	Expect(err).NotTo(HaveOccurred())
	res, err := s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: tenant, UID: "uid-" + tenant}, Name: "tenant_" + tenant,
		ConnectionLimit: 5, Extensions: []string{"pgcrypto"}, Password: pw})
	Expect(err).NotTo(HaveOccurred())
	return pw, res
}

var _ = Describe("Tenant databases on a real PostgreSQL", func() {
	var s *Server
	BeforeEach(func(ctx SpecContext) {
		var err error
		s, err = Connect(ctx, adminConfig())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(s.Close(ctx)).To(Succeed()) })
	})

	It("creates a role and a database that only that role can reach", func(ctx SpecContext) {
		pwA, resA := provision(ctx, s, "iso_a")
		pwB, _ := provision(ctx, s, "iso_b")
		Expect(resA.CreatedRole).To(BeTrue())
		Expect(resA.CreatedDB).To(BeTrue())
		Expect(resA.OID).NotTo(BeZero())
		Expect(resA.ExtensionsMade).To(ConsistOf("pgcrypto"))

		By("letting A use its own database")
		a, err := connectAs(ctx, "tenant_iso_a", pwA, "tenant_iso_a")
		Expect(err).NotTo(HaveOccurred())
		defer a.Close(ctx)
		_, err = a.Exec(ctx, "CREATE TABLE patients (id int PRIMARY KEY, name text)")
		Expect(err).NotTo(HaveOccurred())
		_, err = a.Exec(ctx, "INSERT INTO patients VALUES (1, 'secret of A')")
		Expect(err).NotTo(HaveOccurred())
		var digest string
		Expect(a.QueryRow(ctx, "SELECT encode(digest('x', 'sha256'), 'hex')").Scan(&digest)).To(Succeed(), "pgcrypto is installed")

		By("refusing B's credentials on A's database")
		_, err = connectAs(ctx, "tenant_iso_b", pwB, "tenant_iso_a")
		Expect(err).To(MatchError(ContainSubstring("permission denied for database")))

		By("refusing A's password for B's role")
		_, err = connectAs(ctx, "tenant_iso_b", pwA, "tenant_iso_b")
		Expect(err).To(MatchError(ContainSubstring("password authentication failed")))

		By("refusing a role that belongs to no tenant")
		_, err = s.conn.Exec(ctx, "CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
		Expect(err).NotTo(HaveOccurred())
		for _, db := range []string{"tenant_iso_a", "tenant_iso_b"} {
			_, err = connectAs(ctx, "outsider", "outsider-pw", db)
			Expect(err).To(MatchError(ContainSubstring("permission denied for database")), db)
		}

		By("keeping B, connected to its own database, away from A's tables and roles")
		b, err := connectAs(ctx, "tenant_iso_b", pwB, "tenant_iso_b")
		Expect(err).NotTo(HaveOccurred())
		defer b.Close(ctx)
		var n int
		Expect(b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'patients'").Scan(&n)).To(Succeed())
		Expect(n).To(BeZero(), "B sees no table of A")
		_, err = b.Exec(ctx, "CREATE DATABASE stolen")
		Expect(err).To(MatchError(ContainSubstring("permission denied to create database")))
		_, err = b.Exec(ctx, "GRANT tenant_iso_a TO tenant_iso_b")
		Expect(err).To(MatchError(ContainSubstring("must have admin option on role")))
	})

	It("is idempotent and keeps the OID", func(ctx SpecContext) {
		_, first := provision(ctx, s, "idem")
		again, err := s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "idem", UID: "uid-idem"}, Name: "tenant_idem",
			ConnectionLimit: 7, Extensions: []string{"pgcrypto"}, InDatabase: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(again.CreatedDB).To(BeFalse())
		Expect(again.CreatedRole).To(BeFalse())
		Expect(again.PasswordSet).To(BeFalse())
		Expect(again.OID).To(Equal(first.OID))
		Expect(again.ExtensionsMade).To(BeEmpty())
		Expect(again.Isolated).To(BeFalse(), "nothing to correct")

		By("correcting a database reopened to PUBLIC by hand")
		_, err = s.conn.Exec(ctx, "GRANT CONNECT ON DATABASE tenant_idem TO PUBLIC")
		Expect(err).NotTo(HaveOccurred())
		fixed, err := s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "idem", UID: "uid-idem"}, Name: "tenant_idem", ConnectionLimit: 7})
		Expect(err).NotTo(HaveOccurred())
		Expect(fixed.Isolated).To(BeTrue())
		var public bool
		Expect(s.conn.QueryRow(ctx, "SELECT has_database_privilege('public', 'tenant_idem', 'CONNECT')").Scan(&public)).To(Succeed())
		Expect(public).To(BeFalse())
		var limit int
		Expect(s.conn.QueryRow(ctx, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'tenant_idem'").Scan(&limit)).To(Succeed())
		Expect(limit).To(Equal(7))
	})

	It("rotates the password: the old one stops working, the new one works", func(ctx SpecContext) {
		oldPw, _ := provision(ctx, s, "rot")
		newPw, err := NewPassword()
		Expect(err).NotTo(HaveOccurred())
		res, err := s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "rot", UID: "uid-rot"}, Name: "tenant_rot", ConnectionLimit: 5, Password: newPw, ResetPassword: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.PasswordSet).To(BeTrue())
		_, err = connectAs(ctx, "tenant_rot", oldPw, "tenant_rot")
		Expect(err).To(MatchError(ContainSubstring("password authentication failed")))
		c, err := connectAs(ctx, "tenant_rot", newPw, "tenant_rot")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Close(ctx)).To(Succeed())
	})

	It("never adopts a database or role it did not create for this tenant", func(ctx SpecContext) {
		_, err := s.conn.Exec(ctx, "CREATE ROLE tenant_squat LOGIN")
		Expect(err).NotTo(HaveOccurred())
		v := "x"
		_, err = s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "squat", UID: "u1"}, Name: "tenant_squat", ConnectionLimit: 1, Password: v})
		Expect(err).To(MatchError(ErrNotOwned))

		_, err = s.conn.Exec(ctx, "CREATE DATABASE tenant_lonely")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.CheckOwnership(ctx, "tenant_lonely", Owner{Tenant: "lonely", UID: "u2"})).To(MatchError(ErrNotOwned))
		_, err = s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "lonely", UID: "u2"}, Name: "tenant_lonely", ConnectionLimit: 1, Password: v})
		Expect(err).To(MatchError(ErrNotOwned))
		var exists bool
		Expect(s.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenant_lonely')").Scan(&exists)).To(Succeed())
		Expect(exists).To(BeFalse(), "nothing half-made: the role was not created either")

		By("refusing a second tenant with the same database name")
		provision(ctx, s, "first")
		Expect(s.CheckOwnership(ctx, "tenant_first", Owner{Tenant: "first", UID: "uid-first"})).To(Succeed())
		Expect(s.CheckOwnership(ctx, "tenant_first", Owner{Tenant: "second", UID: "u3"})).To(MatchError(ErrNotOwned))
		Expect(s.CheckOwnership(ctx, "tenant_nobody", Owner{Tenant: "nobody", UID: "u5"})).To(Succeed())
		_, err = s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "second", UID: "u3"}, Name: "tenant_first", ConnectionLimit: 1, Password: v})
		Expect(err).To(MatchError(ErrNotOwned))
	})

	It("quotes identifiers that need quoting", func(ctx SpecContext) {
		v := "pw"
		name := `tenant_"odd"; drop`
		_, err := s.EnsureTenant(ctx, TenantDatabase{Owner: Owner{Tenant: "odd", UID: "u4"}, Name: name, ConnectionLimit: 1, Password: v})
		Expect(err).NotTo(HaveOccurred())
		_, ok, err := s.DatabaseOID(ctx, name)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
	})

	It("classifies connection failures and never puts the password in the error", func(ctx SpecContext) {
		cfg := adminConfig()
		cfg.Password = "Wrong-" + strings.Repeat("p", 20)
		_, err := Connect(ctx, cfg)
		Expect(FailureReason(err)).To(Equal("AuthenticationFailed"))
		Expect(err.Error()).NotTo(ContainSubstring(cfg.Password))

		cfg = adminConfig()
		cfg.Port = 1
		_, err = Connect(ctx, cfg)
		Expect(FailureReason(err)).To(Equal("Unreachable"), fmt.Sprint(err))

		cfg = adminConfig()
		cfg.SSLMode = "verify-full"
		_, err = Connect(ctx, cfg)
		Expect(FailureReason(err)).To(Equal("TLSFailed"), fmt.Sprint(err))
	})
})

var _ = Describe("Suspending and dropping a tenant on a real PostgreSQL", func() {
	var s *Server
	BeforeEach(func(ctx SpecContext) {
		var err error
		s, err = Connect(ctx, adminConfig())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(s.Close(ctx)).To(Succeed()) })
	})

	It("suspends: LOGIN revoked and open sessions ended; then drops database and role, verified by OID, and leaves other tenants alone", func(ctx SpecContext) {
		pwA, resA := provision(ctx, s, "exit_a")
		pwB, _ := provision(ctx, s, "exit_b")
		owner := Owner{Tenant: "exit_a", UID: "uid-exit_a"}
		a, err := connectAs(ctx, "tenant_exit_a", pwA, "tenant_exit_a")
		Expect(err).NotTo(HaveOccurred())
		defer a.Close(context.Background())

		res, err := s.Suspend(ctx, "tenant_exit_a", owner)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Terminated).To(BeNumerically(">=", 1))
		Expect(a.Ping(ctx)).NotTo(Succeed(), "the open session was ended")
		_, err = connectAs(ctx, "tenant_exit_a", pwA, "tenant_exit_a")
		Expect(err).To(MatchError(ContainSubstring("not permitted to log in")))
		ok, err := s.Suspended(ctx, "tenant_exit_a")
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())

		By("refusing to drop a tenant's database for another owner")
		_, err = s.DropTenant(ctx, "tenant_exit_a", Owner{Tenant: "exit_b", UID: "uid-exit_b"}, 0)
		Expect(err).To(MatchError(ErrNotOwned))

		_, err = s.DropTenant(ctx, "tenant_exit_a", owner, resA.OID+1)
		Expect(err).To(MatchError(ContainSubstring("not the OID")), "a database made again under the same name is not dropped")
		drop, err := s.DropTenant(ctx, "tenant_exit_a", owner, resA.OID)
		Expect(err).NotTo(HaveOccurred())
		Expect(drop.OID).To(Equal(resA.OID))
		Expect(drop.DatabaseDropped).To(BeTrue())
		Expect(drop.RoleDropped).To(BeTrue())
		Expect(drop.Verification).To(ContainSubstring(fmt.Sprint(resA.OID)))
		_, exists, err := s.DatabaseOID(ctx, "tenant_exit_a")
		Expect(err).NotTo(HaveOccurred())
		Expect(exists).To(BeFalse())

		By("running again: nothing left, nothing dropped, no error")
		drop, err = s.DropTenant(ctx, "tenant_exit_a", owner, resA.OID)
		Expect(err).NotTo(HaveOccurred())
		Expect(drop.DatabaseDropped || drop.RoleDropped).To(BeFalse())
		Expect(drop.Verification).To(ContainSubstring(fmt.Sprint(resA.OID)), "a retry still verifies the recorded OID")

		By("leaving tenant B working")
		b, err := connectAs(ctx, "tenant_exit_b", pwB, "tenant_exit_b")
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Close(ctx)).To(Succeed())
	})
})
