package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/testharness"
)

// startControlPlane starts a kube-apiserver and etcd with custos' CRDs for the container it is called in (stopped
// when the container ends) and writes a kubeconfig for user, a cluster admin, into dir. It skips the container
// when bin/ has no kube-apiserver and etcd (make tools-test builds them).
func startControlPlane(user, dir string) (client.Client, string) {
	GinkgoHelper()
	for _, t := range []string{"kube-apiserver", "etcd"} {
		if _, err := testharness.Tool(t); err != nil {
			Skip(err.Error())
		}
	}
	cp, err := testharness.StartControlPlane()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	u, err := cp.Env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := u.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig := filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, kc, 0o600)).To(Succeed())
	return cp.Client, kubeconfig
}

// The commands that read the cluster, against a real kube-apiserver and etcd with custos' CRDs. One control plane
// serves all of them; it is started only when these specs run (the offline specs need none), and they are
// skipped when bin/ has no kube-apiserver and etcd (make tools-test builds them).
var _ = Describe("against a cluster", Ordered, Label("cluster"), func() {
	var (
		k8s        client.Client
		kubeconfig string
		dir        string
		ctx        = context.Background()
	)

	BeforeAll(func(SpecContext) {
		dir = GinkgoT().TempDir()
		k8s, kubeconfig = startControlPlane("data-controller", dir)
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "custos-system"}})).To(Succeed())
	}, NodeTimeout(120*time.Second))

	cli := func(args ...string) (int, string, string) {
		return runCLI(append(args, "--kubeconfig", kubeconfig)...)
	}

	Describe("export fetch", func() {
		var delivery, received string
		BeforeEach(func() {
			delivery = filepath.Join(GinkgoT().TempDir(), "exports") // the manager's export volume
			received = filepath.Join(GinkgoT().TempDir(), "received")
		})

		// readyExport creates a DataExport whose status says the bag at location, with digest sha, is Ready.
		readyExport := func(name, location, sha string, bytes int64, phase v1alpha1.DataExportPhase) {
			de := &v1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.DataExportSpec{
				TenantRef: v1alpha1.ObjectReference{Name: "clinic"},
				Include:   v1alpha1.ExportInclude{Database: true, KubernetesObjects: true},
				Delivery:  v1alpha1.ExportDelivery{Filesystem: v1alpha1.FilesystemDelivery{Path: filepath.Dir(location)}},
			}}
			Expect(k8s.Create(ctx, de)).To(Succeed())
			de.Status = v1alpha1.DataExportStatus{Phase: phase}
			if phase == v1alpha1.ExportReady || phase == v1alpha1.ExportAcknowledged {
				de.Status.Artefact = &v1alpha1.ExportArtefact{Location: location, SHA256: sha, Bytes: bytes}
			}
			Expect(k8s.Status().Update(ctx, de)).To(Succeed())
		}
		receipt := func(name string) *v1alpha1.ExportReceipt {
			var de v1alpha1.DataExport
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &de)).To(Succeed())
			return de.Spec.Receipt
		}
		entries := func(d string) []string {
			es, _ := os.ReadDir(d)
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			return names
		}

		It("copies a Ready bag, verifies it and writes the receipt with the digest it computed", func() {
			res := writeBag(delivery, "clinic-exit-1")
			readyExport("clinic-exit-1", res.Path, res.SHA256, res.Bytes, v1alpha1.ExportReady)

			code, out, errOut := cli("export", "fetch", "clinic-exit-1", "--to", received, "--received-by", "j.jansen@clinic.example")
			Expect(errOut).To(BeEmpty())
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("DataExport clinic-exit-1 of tenant clinic: Ready"))
			Expect(out).To(ContainSubstring("sha256         " + res.SHA256))
			Expect(out).To(ContainSubstring("\nVERIFIED\n"))
			Expect(out).To(ContainSubstring("Receipt written: spec.receipt.sha256 " + res.SHA256 + ", receivedBy j.jansen@clinic.example."))

			copied, err := os.ReadFile(filepath.Join(received, "clinic-exit-1.tar"))
			Expect(err).NotTo(HaveOccurred())
			Expect(sum(copied)).To(Equal(res.SHA256))
			Expect(entries(received)).To(Equal([]string{"clinic-exit-1.tar"})) // no partial file left
			Expect(receipt("clinic-exit-1")).To(Equal(&v1alpha1.ExportReceipt{SHA256: res.SHA256, ReceivedBy: "j.jansen@clinic.example"}))

			By("fetching again: the same receipt is not written twice")
			code, out, _ = cli("export", "fetch", "clinic-exit-1", "--to", received, "--received-by", "j.jansen@clinic.example")
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("already has this receipt"))

			By("the copy the bag verifies offline as well")
			code, out, _ = runCLI("verify-export", filepath.Join(received, "clinic-exit-1.tar"))
			Expect(code).To(Equal(0), out)
		})

		It("writes no receipt and leaves no file when the bag's sha256 is not the one recorded", func() {
			res := writeBag(delivery, "clinic-exit-2")
			recorded := sum([]byte("another bag"))
			readyExport("clinic-exit-2", res.Path, recorded, res.Bytes, v1alpha1.ExportReady)

			code, out, _ := cli("export", "fetch", "clinic-exit-2", "--to", received)
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("its sha256 is " + res.SHA256 + ", but custos recorded " + recorded))
			Expect(out).To(ContainSubstring("No receipt was written."))
			Expect(receipt("clinic-exit-2")).To(BeNil())
			Expect(entries(received)).To(BeEmpty())
		})

		It("writes no receipt for a damaged bag", func() {
			res := writeBag(delivery, "clinic-exit-3")
			readyExport("clinic-exit-3", res.Path, res.SHA256, res.Bytes, v1alpha1.ExportReady)
			data, _ := os.ReadFile(res.Path)
			data[bytes.Index(data, []byte(objectMarker))] ^= 0x20
			Expect(os.WriteFile(res.Path, data, 0o600)).To(Succeed())

			code, out, _ := cli("export", "fetch", "clinic-exit-3", "--to", received)
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("NOT VERIFIED"))
			Expect(out).To(ContainSubstring("the bag does not verify"))
			Expect(receipt("clinic-exit-3")).To(BeNil())
			Expect(entries(received)).To(BeEmpty())
		})

		It("fetches without acknowledging with --no-receipt, and reads the bag from --from", func() {
			res := writeBag(delivery, "clinic-exit-4")
			readyExport("clinic-exit-4", "/var/lib/custos/exports/clinic-exit-4.tar", res.SHA256, res.Bytes, v1alpha1.ExportReady)

			code, out, _ := cli("export", "fetch", "clinic-exit-4", "--to", received, "--no-receipt")
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("this must run where the export volume is mounted"))

			code, out, _ = cli("export", "fetch", "clinic-exit-4", "--to", received, "--no-receipt", "--from", delivery)
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("no receipt written (--no-receipt)"))
			Expect(entries(received)).To(Equal([]string{"clinic-exit-4.tar"}))
			Expect(receipt("clinic-exit-4")).To(BeNil())
		})

		It("refuses an export that is not Ready, and one that does not exist", func() {
			readyExport("clinic-exit-5", filepath.Join(delivery, "clinic-exit-5.tar"), "", 0, v1alpha1.ExportRunning)
			code, out, _ := cli("export", "fetch", "clinic-exit-5", "--to", received)
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("the export is Running; a bag can be fetched when it is Ready or Acknowledged"))
			Expect(receipt("clinic-exit-5")).To(BeNil())

			code, out, _ = cli("export", "fetch", "no-such-export", "--to", received)
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("not found"))
		})

		It("exits 2 on usage errors", func() {
			for _, args := range [][]string{
				{"export"},
				{"export", "push"},
				{"export", "fetch"},
				{"export", "fetch", "a", "b"},
				{"export", "fetch", "a", "--no-receipt", "--received-by", "me"},
				{"export", "fetch", "a", "--received-by", strings.Repeat("x", 257)},
			} {
				code, _, errOut := runCLI(args...)
				Expect(code).To(Equal(2), "%v", args)
				Expect(errOut).NotTo(BeEmpty())
			}
		})
	})

	Describe("audit <tenant>", func() {
		// chain is a trail of n entries of tenant.
		chain := func(tenant string, n int) []evidence.Entry {
			var out []evidence.Entry
			var prev *evidence.Entry
			actions := evidence.Actions()
			for i := range n {
				out = append(out, evidence.Append(prev, evidence.Entry{Time: at("2026-03-01T00:00:00Z").Add(time.Duration(i) * time.Hour),
					Tenant: tenant, Action: actions[i%len(actions)], Actor: "custos-manager", Detail: map[string]string{"i": strconv.Itoa(i + 1)}}))
				prev = &out[len(out)-1]
			}
			return out
		}
		// segment stores entries as the manager does: ConfigMap custos-audit-<tenant>-<uid8>-<n>.
		segment := func(tenant, uid string, n int, entries []evidence.Entry) *corev1.ConfigMap {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "custos-system",
				Name:        fmt.Sprintf("custos-audit-%s-%s-%d", tenant, uid[:8], n),
				Labels:      map[string]string{labelAuditTenant: tenant, labelAuditSegment: strconv.Itoa(n), "custos.io/purpose": "audit-trail"},
				Annotations: map[string]string{annotationUID: uid}},
				Data: map[string]string{auditDataKey: string(evidence.MarshalLines(entries))}}
			Expect(k8s.Create(ctx, cm)).To(Succeed())
			return cm
		}
		const uid = "0b6f3c2e-5d1a-4d8e-9b1f-2f6a7c8d9e01"

		It("reads the segments in order, verifies the chain and prints the head; exports it for audit verify", func() {
			t := chain("dental", 14)
			// Segment 10 sorts before 2 as text: the order must be numeric.
			segment("dental", uid, 10, t[11:])
			segment("dental", uid, 1, t[:3])
			for i := 2; i <= 9; i++ {
				segment("dental", uid, i, t[i+1:i+2])
			}
			head, _ := evidence.Head(t)
			code, out, _ := cli("audit", "dental")
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("audit trail of tenant dental in namespace custos-system, tenant uid " + uid))
			Expect(out).To(ContainSubstring("segment 1   ConfigMap custos-audit-dental-0b6f3c2e-1: 3 entries"))
			Expect(out).To(ContainSubstring("segment 10  ConfigMap custos-audit-dental-0b6f3c2e-10: 3 entries"))
			Expect(out).To(MatchRegexp(`SEQ\s+TIME\s+TENANT\s+ACTION\s+ACTOR\s+DETAIL`))
			Expect(out).To(MatchRegexp(`\n14\s+2026-03-01T13:00:00Z\s+dental\s+\S+\s+custos-manager\s+i=14\n`))
			Expect(out).To(ContainSubstring("entries  14\nhead     " + head + "\nchain    intact\n"))
			Expect(out).To(HaveSuffix("\nVERIFIED\n"))

			file := filepath.Join(dir, "dental.jsonl")
			code, out, _ = cli("audit", "dental", "--export", file)
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("written to " + file))
			Expect(os.ReadFile(file)).To(Equal(evidence.MarshalLines(t)))
			code, out, _ = runCLI("audit", "verify", file, "--head", head, "--length", "14")
			Expect(code).To(Equal(0), out)
		})

		It("fails a trail with an altered line, and one with a missing segment", func() {
			t := chain("ortho", 8)
			segment("ortho", uid, 1, t[:5])
			second := segment("ortho", uid, 2, t[5:])
			code, out, _ := cli("audit", "ortho")
			Expect(code).To(Equal(0), out)

			second.Data[auditDataKey] = strings.Replace(second.Data[auditDataKey], `"actor":"custos-manager"`, `"actor":"intruder"`, 1)
			Expect(k8s.Update(ctx, second)).To(Succeed())
			code, out, _ = cli("audit", "ortho")
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("chain    BROKEN"))
			Expect(out).To(ContainSubstring("audit chain broken at seq 6: entry altered"))
			Expect(out).To(ContainSubstring("\nNOT VERIFIED\n"))

			By("exporting a broken trail still writes it, for the record")
			file := filepath.Join(dir, "ortho.jsonl")
			code, _, _ = cli("audit", "ortho", "--export", file)
			Expect(code).To(Equal(1))
			code, out, _ = runCLI("audit", "verify", file)
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("audit chain broken at seq 6"))

			u := chain("physio", 6)
			segment("physio", uid, 1, u[:2])
			segment("physio", uid, 3, u[4:])
			code, out, _ = cli("audit", "physio")
			Expect(code).To(Equal(1), out)
			Expect(out).To(ContainSubstring("segment 2 is missing (found segment 3 after 1)"))
		})

		It("asks which trail when a tenant of that name existed twice", func() {
			const other = "7d2a91c4-0000-4000-8000-000000000000"
			segment("gp", uid, 1, chain("gp", 3))
			segment("gp", other, 1, chain("gp", 5))
			code, _, errOut := cli("audit", "gp")
			Expect(code).To(Equal(2))
			Expect(errOut).To(ContainSubstring("existed 2 times"))
			Expect(errOut).To(ContainSubstring(uid))
			Expect(errOut).To(ContainSubstring(other))
			code, out, _ := cli("audit", "gp", "--uid", other[:8])
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("entries  5\n"))
			code, out, _ = cli("audit", "gp", "--uid", uid)
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("entries  3\n"))
		})

		It("exits 2 when there is no trail or no cluster", func() {
			code, _, errOut := cli("audit", "nobody")
			Expect(code).To(Equal(2))
			Expect(errOut).To(ContainSubstring(`no audit trail of tenant "nobody" in namespace custos-system`))
			code, _, errOut = runCLI("audit", "nobody", "--kubeconfig", filepath.Join(dir, "missing"))
			Expect(code).To(Equal(2))
			Expect(errOut).NotTo(BeEmpty())
		})
	})

	Describe("pubkey --cluster", func() {
		It("prints the published public key and its keyid", func() {
			pub, _, err := evidence.GenerateKey()
			Expect(err).NotTo(HaveOccurred())
			pem, _ := evidence.MarshalPublicKey(pub)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "custos-system", Name: "custos-signing-key"},
				Data: map[string]string{"public.pem": string(pem), "keyid": evidence.KeyID(pub)}}
			Expect(k8s.Create(ctx, cm)).To(Succeed())

			code, out, errOut := cli("pubkey", "--cluster")
			Expect(code).To(Equal(0), errOut)
			Expect(out).To(Equal(string(pem)))
			Expect(errOut).To(ContainSubstring("keyid " + evidence.KeyID(pub)))
			code, out, _ = cli("pubkey", "--cluster", "--keyid")
			Expect(code).To(Equal(0))
			Expect(out).To(Equal(evidence.KeyID(pub) + "\n"))

			code, _, errOut = cli("pubkey", "--cluster", "--namespace", "default")
			Expect(code).To(Equal(2))
			Expect(errOut).To(ContainSubstring("default/custos-signing-key"))

			cm.Data["keyid"] = strings.Repeat("0", 64)
			Expect(k8s.Update(ctx, cm)).To(Succeed())
			code, _, errOut = cli("pubkey", "--cluster")
			Expect(code).To(Equal(1))
			Expect(errOut).To(ContainSubstring("says keyid 0000"))

			code, _, _ = runCLI("pubkey", "--namespace", "x", "key.pem")
			Expect(code).To(Equal(2))
		})
	})
})
