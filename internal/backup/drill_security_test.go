package backup_test

import (
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
)

var _ = Describe("A restore drill of a dump that holds a trap", Ordered, func() {
	It("replays the tenant's CHECK constraint with the tenant's rights only, and leaves a live database of the drill's name alone", func(ctx SpecContext) {
		db := clinicDB(ctx, "tenant_trapped")
		conn, err := admin().ConnectDB(ctx, "")
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP ROLE IF EXISTS other_tenant; CREATE ROLE other_tenant NOLOGIN; ALTER ROLE tenant_trapped LOGIN PASSWORD 'trapped-pw'")
		Expect(err).NotTo(HaveOccurred())
		// As the tenant itself: SET ROLE from the administrator's session would not do, the function's RESET ROLE
		// would make it the administrator again.
		tenant := admin()
		tenant.User, tenant.Password = "tenant_trapped", "trapped-pw"
		tdb, err := tenant.ConnectDB(ctx, db.Name)
		Expect(err).NotTo(HaveOccurred())
		defer tdb.Close(ctx)
		_, err = tdb.Exec(ctx, `
			CREATE FUNCTION public.sneak() RETURNS boolean LANGUAGE plpgsql AS $$
			BEGIN
				BEGIN
					EXECUTE 'GRANT other_tenant TO tenant_trapped';
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				BEGIN
					EXECUTE 'RESET ROLE';
					EXECUTE 'ALTER ROLE tenant_trapped CREATEDB';
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				RETURN true;
			END $$;
			CREATE TABLE public.visits (id int PRIMARY KEY, CONSTRAINT sneaky CHECK (public.sneak()));
			INSERT INTO public.visits SELECT generate_series(1, 25)`)
		Expect(err).NotTo(HaveOccurred())

		tmp := GinkgoT().TempDir()
		repo := restic.Repository{Binary: resticBin, URL: filepath.Join(tmp, "repo"), Password: "trap-key"}
		_, _, err = backup.Open(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		_, err = backup.Snapshot(ctx, repo, backup.SnapshotInput{Tenant: "trapped", Slot: time.Now().UTC().Truncate(time.Hour), Database: db, TempDir: tmp})
		Expect(err).NotTo(HaveOccurred())

		granted := func() bool {
			var ok bool
			Expect(conn.QueryRow(ctx, `SELECT pg_has_role('tenant_trapped', 'other_tenant', 'MEMBER')
				OR (SELECT rolcreatedb FROM pg_roles WHERE rolname = 'tenant_trapped')`).Scan(&ok)).To(Succeed())
			return ok
		}
		Expect(granted()).To(BeFalse(), "the tenant's own rights do not reach")
		in := backup.DrillInput{Tenant: "trapped", UID: "uid-trapped", Role: db.Name, Database: db, TempDir: tmp}
		res, err := backup.Drill(ctx, repo, in)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Differences).To(BeEmpty(), "the drill still passes")
		Expect(res.Rows).To(Equal(int64(20004 + 25)))
		Expect(granted()).To(BeFalse(), "the CHECK ran during the restore without the administrator's rights")

		By("refusing to drop a live database that has the drill's name")
		name := postgres.DrillName("trapped")
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name+" OWNER other_tenant")
		Expect(err).NotTo(HaveOccurred())
		_, err = backup.Drill(ctx, repo, in)
		Expect(err).To(MatchError(postgres.ErrNotDrill))
		var n int
		Expect(conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)).To(Succeed())
		Expect(n).To(Equal(1))
		_, err = conn.Exec(ctx, "DROP DATABASE "+name)
		Expect(err).NotTo(HaveOccurred())
	})
})
