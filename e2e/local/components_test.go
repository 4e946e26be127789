package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"

	"github.com/custos-io/custos/internal/testharness"
)

// runRestic runs bin/restic against repo with password and returns stdout; stderr goes into the error.
func runRestic(ctx context.Context, repo, password string, stdin []byte, args ...string) ([]byte, error) {
	bin, err := testharness.Tool("restic")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--repo", repo, "--no-cache"}, args...)...)
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+password)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("restic %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

var _ = Describe("The real components answer", Label("integration"), func() {
	It("kube-apiserver serves the custos API group and stores objects", func(ctx SpecContext) {
		dc, err := discovery.NewDiscoveryClientForConfig(controlPlane.Config)
		Expect(err).NotTo(HaveOccurred())
		resources, err := dc.ServerResourcesForGroupVersion("custos.io/v1alpha1")
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, r := range resources.APIResources {
			if !strings.Contains(r.Name, "/") {
				names = append(names, r.Name)
				Expect(r.Namespaced).To(BeFalse(), "%s must be cluster-scoped", r.Name)
			}
		}
		Expect(names).To(ConsistOf("tenants", "retentionpolicies", "dataexports", "backuplocations",
			"databaseservers", "destructioncertificates"))

		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "components-"}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		var got corev1.Namespace
		Expect(k8s.Get(ctx, keyOf(ns), &got)).To(Succeed())
		Expect(got.UID).To(Equal(ns.UID))
	})

	It("PostgreSQL accepts a password connection over TCP and runs SQL", func(ctx SpecContext) {
		conn, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var version string
		Expect(conn.QueryRow(ctx, "SHOW server_version").Scan(&version)).To(Succeed())
		Expect(version).To(MatchRegexp(`^\d+`))
		_, err = conn.Exec(ctx, "CREATE TABLE components_probe (id int PRIMARY KEY, note text)")
		Expect(err).NotTo(HaveOccurred())
		_, err = conn.Exec(ctx, "INSERT INTO components_probe VALUES (1, 'ok'), (2, NULL)")
		Expect(err).NotTo(HaveOccurred())
		var n int
		Expect(conn.QueryRow(ctx, "SELECT count(*) FROM components_probe WHERE note IS NULL").Scan(&n)).To(Succeed())
		Expect(n).To(Equal(1))

		By("refusing a wrong password")
		bad := strings.Replace(pg.URL("postgres"), pg.Password, "wrong"+pg.Password, 1)
		_, err = pgx.Connect(ctx, bad)
		Expect(err).To(MatchError(ContainSubstring("password authentication failed")))
	})

	DescribeTable("restic initialises a repository, stores a snapshot and lists it",
		func(ctx SpecContext, repo func() string) {
			r := repo()
			const password = "components-probe-password"
			_, err := runRestic(ctx, r, password, nil, "init")
			Expect(err).NotTo(HaveOccurred())

			cfg, err := runRestic(ctx, r, password, nil, "cat", "config")
			Expect(err).NotTo(HaveOccurred())
			var repoConfig struct {
				ID string `json:"id"`
			}
			Expect(json.Unmarshal(cfg, &repoConfig)).To(Succeed())
			Expect(repoConfig.ID).To(MatchRegexp(`^[0-9a-f]{64}$`))

			_, err = runRestic(ctx, r, password, []byte("id,name\n1,probe\n"), "backup", "--stdin",
				"--stdin-filename", "probe.csv", "--tag", "tenant=probe", "--host", "probe", "--json")
			Expect(err).NotTo(HaveOccurred())
			out, err := runRestic(ctx, r, password, nil, "snapshots", "--json")
			Expect(err).NotTo(HaveOccurred())
			var snaps []struct {
				Tags []string `json:"tags"`
			}
			Expect(json.Unmarshal(out, &snaps)).To(Succeed())
			Expect(snaps).To(HaveLen(1))
			Expect(snaps[0].Tags).To(ConsistOf("tenant=probe"))

			content, err := runRestic(ctx, r, password, nil, "dump", "latest", "/probe.csv")
			Expect(err).NotTo(HaveOccurred())
			Expect(string(content)).To(Equal("id,name\n1,probe\n"))

			By("refusing the wrong password with exit code 12")
			_, err = runRestic(ctx, r, "not-the-password", nil, "snapshots", "--json")
			Expect(err).To(HaveOccurred())
			Expect(errorsAsExit(err)).To(Equal(12), "restic exits 12 on a wrong password: %v", err)
		},
		Entry("in a local directory", func() string { return filepath.Join(GinkgoT().TempDir(), "repo") }),
		Entry("on rest-server", func() string { return restServer.URL + "components-probe" }),
	)
})
