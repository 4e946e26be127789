package local

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/signing"
	"github.com/custos-io/custos/internal/testharness"
)

// auditSegments returns the tenant's audit trail segments by number.
func auditSegments(ctx context.Context, g Gomega, t *custosv1alpha1.Tenant) map[int]corev1.ConfigMap {
	var cms corev1.ConfigMapList
	g.Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": t.Name})).To(Succeed())
	out := map[int]corev1.ConfigMap{}
	for _, cm := range cms.Items {
		n, err := strconv.Atoi(cm.Labels["custos.io/audit-segment"])
		g.Expect(err).NotTo(HaveOccurred())
		out[n] = cm
	}
	return out
}

func segmentNumbers(m map[int]corev1.ConfigMap) []int {
	var out []int
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// trailOf reads every segment of the trail, linked as stored, for evidence.VerifyTrail.
func trailOf(ctx context.Context, g Gomega, t *custosv1alpha1.Tenant) []evidence.Segment {
	var out []evidence.Segment
	for n, cm := range auditSegments(ctx, g, t) {
		es, err := evidence.ParseLines([]byte(cm.Data["entries.jsonl"]))
		g.Expect(err).NotTo(HaveOccurred())
		s := evidence.Segment{SegmentLink: evidence.SegmentLink{Number: n, Name: cm.Name,
			PrevName: cm.Annotations["custos.io/audit-prev-segment"], PrevHash: cm.Annotations["custos.io/audit-prev-hash"]}, Entries: es}
		if v := cm.Annotations["custos.io/audit-prev-seq"]; v != "" {
			s.PrevSeq, err = strconv.ParseInt(v, 10, 64)
			g.Expect(err).NotTo(HaveOccurred())
		}
		out = append(out, s)
	}
	return out
}

var _ = Describe("Evidence: the audit trail", Ordered, Label("integration", "security", "evidence"), func() {
	const (
		primary = "evidence-primary"
		offsite = "evidence-offsite"
		policy  = "evidence-every-minute"
		server  = "evidence-pg"
	)
	var (
		offsiteSrv *testharness.RestServer
		lost       *losingRunner
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		offsiteSrv, err = testharness.StartRestServer(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(offsiteSrv.Stop)
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primary},
			Spec: custosv1alpha1.BackupLocationSpec{URL: filepath.Join(GinkgoT().TempDir(), "primary"), Jurisdiction: "NL"}})
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsite},
			Spec: custosv1alpha1.BackupLocationSpec{URL: offsiteSrv.URL, Jurisdiction: "DE"}})
		everyMinutePolicy(ctx, policy, primary, offsite)
		ensureObject(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}})
		databaseServerFor(ctx, server, pg, "NL")
		nsCtx, stopNS := context.WithCancel(context.Background())
		go finalizeNamespaces(nsCtx)
		DeferCleanup(stopNS)
		// One entry per segment, so a trail of a few entries has a first, middle and last segment. The runner loses
		// the first result of a Shred at the primary location of tenants named evidence-shred-*, as a crash between
		// the Shred and the status write would.
		mgr := startManager(func(o *controllers.Options) {
			o.AuditSegmentBytes = 1
			o.WrapRunner = func(r runner.Runner) runner.Runner {
				lost = &losingRunner{Runner: r, match: "/" + string(custosv1alpha1.TaskShred) + "/" + primary + "/", tenantPrefix: "evidence-shred-"}
				return lost
			}
		})
		DeferCleanup(func() { mgr.stop() })
	})

	It("names the repository a Shred destroyed although its outcome was lost before it reached status", func(ctx SpecContext) {
		t := newTenant("evidence-shred")
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = server
		t.Spec.Exit = custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				b, _ := yaml.Marshal(t.Status)
				AddReportEntry("tenant status", string(b))
			}
		})
		expectReady(ctx, t)
		repoID := ""
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			for _, b := range t.Status.Backups {
				if b.Location == primary && b.Snapshots > 0 {
					repoID = b.RepositoryID
				}
			}
			g.Expect(repoID).NotTo(BeEmpty(), "a snapshot at the primary location")
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("ending the contract; the first Shred at the primary location destroys the repository and its result is lost")
		updateSpec(ctx, t, func() { t.Spec.Contract.End = &metav1.Time{Time: time.Now().Add(-time.Second).Truncate(time.Second)} })
		Eventually(func(g Gomega) custosv1alpha1.TenantPhase {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.Phase
		}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(lost.dropped()).To(ContainElement(HavePrefix(t.Name+"/")), "the first Shred's result was lost")

		By("reading the certificate: the primary repository is named by the id recorded before the Shred")
		cert := &custosv1alpha1.DestructionCertificate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, cert)).To(Succeed())
		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: signing.DefaultName}, &cm)).To(Succeed())
		h, err := evidence.ParseKeyHistory([]byte(cm.Data["history.json"]))
		Expect(err).NotTo(HaveOccurred())
		env := evidence.EnvelopeFromAPI(cert.Spec.Envelope)
		_, pub, err := h.KeyFor(env)
		Expect(err).NotTo(HaveOccurred())
		st, err := evidence.Verify(env, pub)
		Expect(err).NotTo(HaveOccurred())
		var repo *evidence.Location
		for i, l := range st.Predicate.Locations {
			if l.Kind == evidence.KindRepository && l.Location == primary {
				repo = &st.Predicate.Locations[i]
			}
		}
		Expect(repo).NotTo(BeNil())
		Expect(repo.Identifier).To(ContainSubstring(repoID))
		Expect(repo.Identifier).NotTo(ContainSubstring("no repository existed"))
		Expect(t.Status.Exit.ShredIntents).To(ContainElement(And(HaveField("Location", primary), HaveField("RepositoryID", repoID))))
	})

	It("names the legal hold the trail records on the certificate, set and lifted before the destruction", func(ctx SpecContext) {
		t := newTenant("evidence-hold")
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = server
		t.Spec.Exit = custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				b, _ := yaml.Marshal(t.Status)
				AddReportEntry("tenant status", string(b))
			}
		})
		expectReady(ctx, t)

		By("holding the tenant and ending its contract: the exit stops before any destruction")
		updateSpec(ctx, t, func() {
			t.Spec.LegalHold = &custosv1alpha1.LegalHold{Reason: "court order 2026/17"}
			t.Spec.Contract.End = &metav1.Time{Time: time.Now().Add(-time.Second).Truncate(time.Second)}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(condOf(t, custosv1alpha1.ConditionLegalHold)).To(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonLegalHoldActive))
		}).WithTimeout(time.Minute).Should(Succeed())

		By("lifting the hold: the exit goes on to Destroyed")
		updateSpec(ctx, t, func() { t.Spec.LegalHold = nil })
		Eventually(func(g Gomega) custosv1alpha1.TenantPhase {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.Phase
		}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))

		By("reading the hold on the signed certificate, verified by keyid from the published key history")
		cert := &custosv1alpha1.DestructionCertificate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, cert)).To(Succeed())
		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: signing.DefaultName}, &cm)).To(Succeed())
		h, err := evidence.ParseKeyHistory([]byte(cm.Data["history.json"]))
		Expect(err).NotTo(HaveOccurred())
		env := evidence.EnvelopeFromAPI(cert.Spec.Envelope)
		_, pub, err := h.KeyFor(env)
		Expect(err).NotTo(HaveOccurred())
		st, err := evidence.Verify(env, pub)
		Expect(err).NotTo(HaveOccurred())
		Expect(evidence.CheckComplete(st)).To(BeEmpty())
		Expect(st.Predicate.LegalHold).NotTo(BeNil(), "the certificate names the hold the trail records")
		Expect(st.Predicate.LegalHold.Reason).To(Equal("court order 2026/17"))
		Expect(st.Predicate.LegalHold.SetAt).NotTo(BeZero())
		Expect(st.Predicate.LegalHold.LiftedAt).NotTo(BeZero())
		for _, l := range st.Predicate.Locations {
			Expect(l.StartedAt).NotTo(BeTemporally("<", st.Predicate.LegalHold.LiftedAt), "%s %s destroyed after the hold was lifted", l.Kind, l.Identifier)
		}
	})

	It("detects a deleted middle segment, refuses to append (no fork), names the gap, and goes on once it is restored", func(ctx SpecContext) {
		t := newTenant("evidence-gap")
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = server
		Expect(k8s.Create(ctx, t)).To(Succeed())
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				b, _ := yaml.Marshal(t.Status)
				AddReportEntry("tenant status", string(b))
			}
		})
		expectReady(ctx, t)

		By("waiting for a trail of at least three segments (Provisioned, then the first snapshot and copy)")
		var before map[int]corev1.ConfigMap
		Eventually(func(g Gomega) {
			before = auditSegments(ctx, g, t)
			g.Expect(len(before)).To(BeNumerically(">=", 3))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			all, err := evidence.VerifyTrail(trailOf(ctx, g, t), evidence.TrailHead{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.AuditLength).To(BeEquivalentTo(len(all)), "status shows the trail's length")
			g.Expect(t.Status.AuditHead).To(Equal("sha256:" + all[len(all)-1].Hash))
		}).WithTimeout(30 * time.Second).WithPolling(time.Second).Should(Succeed())

		By("deleting segment 2")
		removed := before[2]
		Expect(k8s.Delete(ctx, &removed)).To(Succeed())

		By("seeing the manager refuse the next entry with a condition that names the gap")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			c := condOf(t, custosv1alpha1.ConditionAuditTrail)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(custosv1alpha1.ReasonAuditTrailBroken))
			g.Expect(c.Message).To(ContainSubstring("segment 2 (ConfigMap %s/%s) is missing", managerNamespace, removed.Name))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("finding no fork: no new segment 2 and nothing appended after the gap")
		got := auditSegments(ctx, Default, t)
		Expect(got).NotTo(HaveKey(2))
		last := segmentNumbers(got)[len(got)-1]
		Consistently(func(g Gomega) []int { return segmentNumbers(auditSegments(ctx, g, t)) }).
			WithTimeout(5 * time.Second).Should(Equal(segmentNumbers(got)))
		Expect(t.Status.Tasks).NotTo(BeEmpty(), "the backup task whose entry could not be written is not done")

		By("reading the whole trail: the gap is an error")
		_, err := evidence.VerifyTrail(trailOf(ctx, Default, t), evidence.TrailHead{})
		Expect(err).To(MatchError(ContainSubstring("segment 2 is missing")))
		log := &audittrail.Store{Client: k8s, Reader: k8s, Namespace: managerNamespace}
		_, err = log.Entries(ctx, t)
		Expect(err).To(MatchError(ContainSubstring("segment 2 is missing")))

		By("restoring segment 2 from a copy: the manager appends again, after the last segment, and the trail is whole")
		restored := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: removed.Namespace, Name: removed.Name,
			Labels: removed.Labels, Annotations: removed.Annotations}, Data: removed.Data}
		Expect(k8s.Create(ctx, &restored)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(condOf(t, custosv1alpha1.ConditionAuditTrail)).To(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonAuditTrailIntact))
			segs := auditSegments(ctx, g, t)
			g.Expect(segmentNumbers(segs)[len(segs)-1]).To(BeNumerically(">", last))
			all, err := evidence.VerifyTrail(trailOf(ctx, g, t), evidence.TrailHead{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(t.Status.AuditLength).To(BeNumerically("<=", len(all)))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	})

	It("detects deleted last segments against the head in the index and in status", func(ctx SpecContext) {
		t := newTenant("evidence-cut")
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = server
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		var segs map[int]corev1.ConfigMap
		Eventually(func(g Gomega) {
			segs = auditSegments(ctx, g, t)
			g.Expect(len(segs)).To(BeNumerically(">=", 2))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("deleting the last segment: what is left is an intact chain, but not the trail")
		nums := segmentNumbers(segs)
		lastSeg := segs[nums[len(nums)-1]]
		Expect(k8s.Delete(ctx, &lastSeg)).To(Succeed())
		log := &audittrail.Store{Client: k8s, Reader: k8s, Namespace: managerNamespace}
		Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
		_, err := log.Entries(ctx, t)
		Expect(err).To(MatchError(ContainSubstring(fmt.Sprintf("segment %d is missing", nums[len(nums)-1]))))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			c := condOf(t, custosv1alpha1.ConditionAuditTrail)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(custosv1alpha1.ReasonAuditTrailBroken))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Expect(auditSegments(ctx, Default, t)).NotTo(HaveKey(nums[len(nums)-1]), "the deleted segment is not written again with other entries")
	})
})

// The signing key is never replaced silently (each case in a namespace of its own, as in signingkey_test.go).
var _ = Describe("Evidence: the signing key history", Label("integration", "security", "evidence"), func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signing-history-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		DeferCleanup(func(ctx SpecContext) { Expect(k8s.Delete(ctx, n)).To(Succeed()) })
	})
	keys := func(allowNew bool) *signing.Keys {
		return &signing.Keys{Client: k8s, Reader: k8s, Namespace: ns, AllowNew: allowNew}
	}
	history := func(ctx SpecContext) evidence.KeyHistory {
		GinkgoHelper()
		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.DefaultName}, &cm)).To(Succeed())
		h, err := evidence.ParseKeyHistory([]byte(cm.Data["history.json"]))
		Expect(err).NotTo(HaveOccurred())
		return h
	}
	// signed is a complete certificate statement signed with key, issued now.
	signed := func(key ed25519.PrivateKey) evidence.Envelope {
		GinkgoHelper()
		now := time.Now().UTC().Truncate(time.Second)
		loc := evidence.Location{Kind: evidence.KindDatabase, Identifier: "database tenant_x OID 1", Method: evidence.MethodClear,
			Technique: "DROP DATABASE", Tool: evidence.Tool{Name: "PostgreSQL"}, StartedAt: now.Add(-time.Minute), CompletedAt: now.Add(-time.Minute),
			Verification: evidence.Verification{Method: "pg_database has no row", Result: evidence.ResultVerified}}
		d := evidence.Destruction{Tenant: evidence.Tenant{Name: "x", UID: "u"}, Contract: evidence.Contract{ID: "c", Start: now.Add(-time.Hour)},
			DataController: evidence.DataController{Name: "n", Contact: "c"}, Processor: evidence.Processor{Name: "p"},
			Locations: []evidence.Location{loc}, Audit: evidence.AuditRef{Head: strings.Repeat("a", 64), Length: 3}, IssuedAt: now}
		env, err := evidence.Sign(evidence.Statement{Subject: []evidence.Subject{evidence.InventorySubject(d.Locations), evidence.AuditSubject(d.Audit)}, Predicate: d}, key)
		Expect(err).NotTo(HaveOccurred())
		return env
	}
	verifyWith := func(h evidence.KeyHistory, env evidence.Envelope) error {
		k, pub, err := h.KeyFor(env)
		if err != nil {
			return err
		}
		st, err := evidence.Verify(env, pub)
		if err != nil {
			return err
		}
		return k.ValidAt(st.Predicate.IssuedAt)
	}

	It("refuses to sign with a new key when the Secret is lost; with --allow-new-signing-key the old certificates still verify against the history", func(ctx SpecContext) {
		By("the first key of an installation is made without the flag")
		first, err := keys(false).Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		oldCert := signed(first)
		Expect(history(ctx)).To(HaveLen(1))

		By("deleting the key Secret")
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: signing.DefaultName}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.DefaultName}, &corev1.Secret{}))
		}).WithTimeout(10 * time.Second).Should(BeTrue())

		By("a manager without the flag refuses, names the key in use and the way out, and replaces nothing")
		_, err = keys(false).Key(ctx)
		var refused *signing.NewKeyRefusedError
		Expect(errors.As(err, &refused)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(And(ContainSubstring("is missing"), ContainSubstring(evidence.KeyID(first.Public().(ed25519.PublicKey))),
			ContainSubstring("--allow-new-signing-key"))))
		err = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.DefaultName}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no key generated: %v", err)
		h := history(ctx)
		Expect(h).To(HaveLen(1))
		Expect(verifyWith(h, oldCert)).To(Succeed())

		By("with the flag, a new key signs; the old one stays published, closed, and its certificates verify")
		second, err := keys(true).Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(second.Equal(first)).To(BeFalse())
		h = history(ctx)
		Expect(h).To(HaveLen(2))
		Expect(h[0].KeyID).To(Equal(evidence.KeyID(first.Public().(ed25519.PublicKey))))
		Expect(h[0].ValidUntil).NotTo(BeZero())
		cur, ok := h.Current()
		Expect(ok).To(BeTrue())
		Expect(cur.KeyID).To(Equal(evidence.KeyID(second.Public().(ed25519.PublicKey))))
		Expect(verifyWith(h, oldCert)).To(Succeed(), "a certificate signed before the new key still verifies")
		Expect(verifyWith(h, signed(second))).To(Succeed())

		By("a later manager without the flag signs with the new key (it is the key in use)")
		third, err := keys(false).Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(third.Equal(second)).To(BeTrue())
	})

	It("refuses another key put into the Secret unless allowed", func(ctx SpecContext) {
		first, err := keys(false).Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: signing.DefaultName}})).To(Succeed())
		_, other, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pem, err := evidence.MarshalPrivateKey(other)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			return k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: signing.DefaultName},
				Data: map[string][]byte{"ed25519.pem": pem}})
		}).WithTimeout(10 * time.Second).Should(Succeed())
		_, err = keys(false).Key(ctx)
		Expect(err).To(MatchError(ContainSubstring("certificates were signed with key " + evidence.KeyID(first.Public().(ed25519.PublicKey)))))
		Expect(history(ctx)).To(HaveLen(1))
	})
})

// losingRunner loses the first result of tasks whose key contains match (for tenants named tenantPrefix*), as a
// manager that crashed after the task and before its status write would: the task ran, its outcome is gone, and
// the next Submit runs it again.
type losingRunner struct {
	runner.Runner
	match, tenantPrefix string
	mu                  sync.Mutex
	lost                []string
}

func (l *losingRunner) Result(key string) (runner.Result, bool) {
	res, ok := l.Runner.Result(key)
	if !ok || !strings.HasPrefix(key, l.tenantPrefix) || !strings.Contains(key, l.match) {
		return res, ok
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.lost, key) {
		return res, ok
	}
	l.lost = append(l.lost, key)
	l.Runner.Forget(key)
	return runner.Result{}, false
}

func (l *losingRunner) dropped() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lost)
}
