package postgres

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// recorded is the Owner of tenant_<tenant> with the OIDs EnsureTenant reported, as custos records them in status.
func recorded(tenant string, res EnsureResult) Owner {
	return Owner{Tenant: tenant, UID: "uid-" + tenant, DatabaseOID: res.OID, RoleOID: res.RoleOID}
}

var _ = Describe("Ownership, drills and admin sessions against a tenant's tricks, on a real PostgreSQL", func() {
	var s *Server
	BeforeEach(func(ctx SpecContext) {
		var err error
		s, err = Connect(ctx, adminConfig())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(s.Close(ctx)).To(Succeed()) })
	})
	exists := func(ctx context.Context, query string, args ...any) bool {
		GinkgoHelper()
		var ok bool
		Expect(s.conn.QueryRow(ctx, "SELECT EXISTS ("+query+")", args...).Scan(&ok)).To(Succeed())
		return ok
	}

	It("decides by the recorded OIDs: a tenant that rewrites its database's COMMENT is still suspended and dropped", func(ctx SpecContext) {
		pw, res := provision(ctx, s, "cmt")
		Expect(res.RoleOID).NotTo(BeZero())
		a, err := connectAs(ctx, "tenant_cmt", pw, "tenant_cmt")
		Expect(err).NotTo(HaveOccurred())
		_, err = a.Exec(ctx, "COMMENT ON DATABASE tenant_cmt IS 'mine, not custos''s'")
		Expect(err).NotTo(HaveOccurred(), "the owner of a database may comment on it")
		Expect(a.Close(ctx)).To(Succeed())

		Expect(s.CheckOwnership(ctx, "tenant_cmt", Owner{Tenant: "cmt", UID: "uid-cmt"})).To(MatchError(ErrNotOwned),
			"by the comment alone (before anything is recorded), the database is no longer the tenant's")
		owner := recorded("cmt", res)
		Expect(s.CheckOwnership(ctx, "tenant_cmt", owner)).To(Succeed())

		_, err = s.Suspend(ctx, "tenant_cmt", owner)
		Expect(err).NotTo(HaveOccurred())
		_, err = connectAs(ctx, "tenant_cmt", pw, "tenant_cmt")
		Expect(err).To(MatchError(ContainSubstring("not permitted to log in")))

		By("writing custos' comment back when the provisioning corrects the database")
		_, err = s.EnsureTenant(ctx, TenantDatabase{Owner: owner, Name: "tenant_cmt", ConnectionLimit: 5})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.CheckOwnership(ctx, "tenant_cmt", Owner{Tenant: "cmt", UID: "uid-cmt"})).To(Succeed())

		_, err = s.conn.Exec(ctx, "COMMENT ON DATABASE tenant_cmt IS 'changed again'")
		Expect(err).NotTo(HaveOccurred())
		drop, err := s.DropTenant(ctx, "tenant_cmt", owner, 0)
		Expect(err).NotTo(HaveOccurred())
		Expect(drop.DatabaseDropped && drop.RoleDropped).To(BeTrue())
	})

	It("refuses a database or a role made again under the recorded name, even with custos' comment", func(ctx SpecContext) {
		_, res := provision(ctx, s, "twin")
		owner := recorded("twin", res)
		for _, stmt := range []string{
			"DROP DATABASE tenant_twin",
			"CREATE DATABASE tenant_twin OWNER tenant_twin",
			"COMMENT ON DATABASE tenant_twin IS 'custos.io/tenant=twin uid=uid-twin'",
		} {
			_, err := s.conn.Exec(ctx, stmt)
			Expect(err).NotTo(HaveOccurred(), stmt)
		}
		err := s.CheckOwnership(ctx, "tenant_twin", owner)
		Expect(err).To(MatchError(ErrNotOwned))
		Expect(err).To(MatchError(ContainSubstring("not the OID")))
		_, err = s.Suspend(ctx, "tenant_twin", owner)
		Expect(err).To(MatchError(ErrNotOwned))
		_, err = s.DropTenant(ctx, "tenant_twin", owner, 0)
		Expect(err).To(MatchError(ErrNotOwned))
		Expect(exists(ctx, "SELECT 1 FROM pg_database WHERE datname = 'tenant_twin'")).To(BeTrue(), "the stand-in is not dropped")

		By("and a role made again")
		_, role := provision(ctx, s, "twinrole")
		for _, stmt := range []string{"DROP DATABASE tenant_twinrole", "DROP ROLE tenant_twinrole", "CREATE ROLE tenant_twinrole LOGIN",
			"COMMENT ON ROLE tenant_twinrole IS 'custos.io/tenant=twinrole uid=uid-twinrole'"} {
			_, err := s.conn.Exec(ctx, stmt)
			Expect(err).NotTo(HaveOccurred(), stmt)
		}
		_, err = s.Suspend(ctx, "tenant_twinrole", Owner{Tenant: "twinrole", UID: "uid-twinrole", RoleOID: role.RoleOID})
		Expect(err).To(MatchError(ContainSubstring("role tenant_twinrole exists and does not belong")))
	})

	It("never makes a recorded database again", func(ctx SpecContext) {
		pw, res := provision(ctx, s, "gone")
		_, err := s.conn.Exec(ctx, "DROP DATABASE tenant_gone")
		Expect(err).NotTo(HaveOccurred())
		_, err = s.EnsureTenant(ctx, TenantDatabase{Owner: recorded("gone", res), Name: "tenant_gone", ConnectionLimit: 5, Password: pw})
		Expect(err).To(MatchError(ErrDatabaseMissing))
		Expect(exists(ctx, "SELECT 1 FROM pg_database WHERE datname = 'tenant_gone'")).To(BeFalse())

		By("making it, empty, once the loss is accepted (the database OID forgotten)")
		accepted := recorded("gone", res)
		accepted.DatabaseOID = 0
		again, err := s.EnsureTenant(ctx, TenantDatabase{Owner: accepted, Name: "tenant_gone", ConnectionLimit: 5, Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(again.CreatedDB).To(BeTrue())
		Expect(again.OID).NotTo(Equal(res.OID))
		Expect(again.RoleOID).To(Equal(res.RoleOID))
	})

	It("pins search_path on its sessions in a tenant's database, so a tenant's pg_extension is never read as admin", func(ctx SpecContext) {
		pw, res := provision(ctx, s, "trap")
		_, err := s.conn.Exec(ctx, "CREATE ROLE victim_of_trap NOLOGIN")
		Expect(err).NotTo(HaveOccurred())
		a, err := connectAs(ctx, "tenant_trap", pw, "tenant_trap")
		Expect(err).NotTo(HaveOccurred())
		defer a.Close(context.Background())
		_, err = a.Exec(ctx, `
			CREATE TABLE public.caught (who text);
			GRANT INSERT ON public.caught TO PUBLIC;
			CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE plpgsql AS $$
			BEGIN
				INSERT INTO public.caught VALUES (current_user);
				BEGIN
					EXECUTE 'GRANT victim_of_trap TO tenant_trap';
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				RETURN true;
			END $$;
			CREATE VIEW public.pg_extension AS SELECT e.* FROM pg_catalog.pg_extension e WHERE public.trap();
			ALTER DATABASE tenant_trap SET search_path = public, pg_catalog`)
		Expect(err).NotTo(HaveOccurred())

		made, err := s.EnsureTenant(ctx, TenantDatabase{Owner: recorded("trap", res), Name: "tenant_trap", ConnectionLimit: 5,
			Extensions: []string{"pgcrypto", "citext"}, InDatabase: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(made.ExtensionsMade).To(ConsistOf("citext"), "pgcrypto was found in the real catalog")

		var caught int
		Expect(a.QueryRow(ctx, "SELECT count(*) FROM public.caught").Scan(&caught)).To(Succeed())
		Expect(caught).To(BeZero(), "the tenant's function never ran in the administrator's session")
		Expect(exists(ctx, `SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
			WHERE r.rolname = 'victim_of_trap' AND u.rolname = 'tenant_trap'`)).To(BeFalse(), "no role was granted to the tenant")
	})

	Describe("restore-drill scratch databases", func() {
		It("drops only a scratch carrying the tenant's marker, owned by its scratch role", func(ctx SpecContext) {
			provision(ctx, s, "drilled")
			name, marker := DrillName("dr-a"), DrillMarker("dr-a", "uid-dr-a")
			Expect(name).To(Equal("custos_drill_dr_a"))

			By("leaving alone a live database that has the drill's name")
			_, err := s.conn.Exec(ctx, "CREATE DATABASE "+name+" OWNER tenant_drilled")
			Expect(err).NotTo(HaveOccurred())
			_, err = s.CreateScratch(ctx, name, marker, "tenant_drilled")
			Expect(err).To(MatchError(ErrNotDrill))
			Expect(s.DropScratch(ctx, name, marker, 0)).To(MatchError(ErrNotDrill))
			Expect(exists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name)).To(BeTrue())
			_, err = s.conn.Exec(ctx, "DROP DATABASE "+name)
			Expect(err).NotTo(HaveOccurred())

			By("making a scratch: a LOGIN role with no attribute, a member of the tenant's role, owning a database closed to PUBLIC")
			sc, err := s.CreateScratch(ctx, name, marker, "tenant_drilled")
			Expect(err).NotTo(HaveOccurred())
			Expect(exists(ctx, `SELECT 1 FROM pg_roles WHERE rolname = $1 AND rolcanlogin AND NOT (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)`, name)).To(BeTrue())
			Expect(exists(ctx, `SELECT 1 FROM pg_database WHERE datname = $1 AND oid = $2 AND pg_get_userbyid(datdba) = $1 AND NOT has_database_privilege('public', datname, 'CONNECT')`, name, sc.OID)).To(BeTrue())
			c, err := sc.Conn.ConnectDB(ctx, name)
			Expect(err).NotTo(HaveOccurred(), "the scratch role logs in with its own password")
			var user string
			Expect(c.QueryRow(ctx, "SELECT current_user").Scan(&user)).To(Succeed())
			Expect(user).To(Equal(name))
			Expect(c.Close(ctx)).To(Succeed())

			By("refusing to drop it under another OID, or another tenant's marker")
			Expect(s.DropScratch(ctx, name, marker, sc.OID+1)).To(MatchError(ErrNotDrill))
			Expect(s.DropScratch(ctx, name, DrillMarker("dr-a", "another-uid"), 0)).To(MatchError(ErrNotDrill))

			By("dropping a leftover of its own before the next drill, and the scratch after it")
			again, err := s.CreateScratch(ctx, name, marker, "tenant_drilled")
			Expect(err).NotTo(HaveOccurred())
			Expect(again.OID).NotTo(Equal(sc.OID))
			Expect(s.DropScratch(ctx, name, marker, again.OID)).To(Succeed())
			Expect(exists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name)).To(BeFalse())
			Expect(exists(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1", name)).To(BeFalse())
		})

		It("refuses to restore with the rights of a role that has a superuser's", func(ctx SpecContext) {
			_, err := s.CreateScratch(ctx, DrillName("dr-super"), DrillMarker("dr-super", "u"), pg.User)
			Expect(err).To(MatchError(ContainSubstring("superuser")))
		})
	})
})
