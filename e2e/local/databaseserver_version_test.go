package local

import (
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/postgres"
)

// The unsupported side (a PostgreSQL 16, a pg_dump older than the server) cannot run here: only Debian's
// postgresql-15 is installed. internal/postgres's TestSupportedVersion covers that decision; this spec proves the
// real server is within the tested range and reported so.
var _ = Describe("DatabaseServer version", Ordered, Label("integration", "databaseserver"), func() {
	const name = "pg-version"

	BeforeAll(func() {
		mgr := startManager()
		DeferCleanup(func() { mgr.stop() })
	})

	It("reports the harness's PostgreSQL Ready, within the tested range, with its version in status", func(ctx SpecContext) {
		databaseServerFor(ctx, name, pg, "NL")
		s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: name}}
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(And(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled),
				HaveField("Message", ContainSubstring("within the range custos is tested against (%s)", postgres.TestedRange()))))

		By("recording what the server itself reports")
		admin, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer admin.Close(ctx)
		var version string
		var num int
		Expect(admin.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num')::int").
			Scan(&version, &num)).To(Succeed())
		Expect(s.Status.Version).To(Equal(version))
		Expect(s.Status.Version).To(HavePrefix(postgres.FormatVersionNum(num)))
		Expect(postgres.ServerMajor(num)).To(And(BeNumerically(">=", postgres.MinServerMajor), BeNumerically("<=", postgres.MaxServerMajor)))
		Expect(s.Status.LastCheckedAt).NotTo(BeNil())
		Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))

		By("saying so in a Normal Event")
		Eventually(func(g Gomega) {
			var list eventsv1.EventList
			g.Expect(k8s.List(ctx, &list)).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Kind == "DatabaseServer" && e.Regarding.Name == name && e.Type == corev1.EventTypeNormal {
					reasons = append(reasons, e.Reason)
				}
			}
			g.Expect(reasons).To(ContainElement(custosv1alpha1.ReasonReconciled))
		}).Should(Succeed())
		Expect(warningEvents(ctx, name)).To(BeEmpty())

		By("the manager's pg_dump being able to dump it")
		dumpMajor, err := postgres.PgDumpMajor(ctx, programs.PgDump)
		Expect(err).NotTo(HaveOccurred())
		Expect(dumpMajor).To(BeNumerically(">=", postgres.ServerMajor(num)))
		Expect(postgres.SupportedVersion(num, dumpMajor)).To(Succeed())
	})
})
