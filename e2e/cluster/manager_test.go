package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// The node's containerd socket (hack/cluster env sets it): the spec SIGKILLs the manager's process through it, as
// the kernel's OOM killer or a crash would, without the pod being deleted.
var containerdSocket = os.Getenv("CUSTOS_E2E_CONTAINERD_SOCKET")

const leaseName = "custos-manager.custos.io" // cmd/manager's LeaderElectionID

// Serial: these specs scale the manager's Deployment and kill its process, which would stretch the lifecycle and
// isolation specs beside them; ginkgo -p runs them alone, after the others.
var _ = Describe("The manager in its pod on a real cluster", Label("cluster"), Ordered, Serial, func() {
	var name string // the tenant whose backups and exit run across the kills

	managerPods := func(ctx context.Context, g Gomega) []corev1.Pod {
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace(cfg.namespace), client.MatchingLabels{"app.kubernetes.io/name": "custos"})).To(Succeed())
		var live []corev1.Pod
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				live = append(live, p)
			}
		}
		return live
	}
	ready := func(p corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	leader := func(ctx context.Context, g Gomega) string {
		var l coordinationv1.Lease
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: cfg.namespace, Name: leaseName}, &l)).To(Succeed())
		g.Expect(l.Spec.HolderIdentity).NotTo(BeNil())
		return *l.Spec.HolderIdentity
	}
	tenant := func(ctx context.Context, g Gomega) *custosv1alpha1.Tenant {
		t := &custosv1alpha1.Tenant{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
		return t
	}
	// snapshotsAfter waits until every location of the tenant has a snapshot newer than since (a backup the
	// restarted manager took), with BackupsHealthy=True.
	snapshotsAfter := func(ctx context.Context, since time.Time) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			t := tenant(ctx, g)
			g.Expect(t.Status.Backups).To(HaveLen(2), describe(t))
			for _, lb := range t.Status.Backups {
				g.Expect(lb.Newest).NotTo(BeNil(), "no snapshot at %s yet: %s", lb.Location, describe(t))
				g.Expect(lb.Newest.Time.After(since)).To(BeTrue(), "newest snapshot at %s is %s, not after %s: %s", lb.Location, lb.Newest, since, describe(t))
			}
			g.Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy)).To(BeTrue(), describe(t))
		}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(3 * time.Second).Should(Succeed())
	}
	scale := func(ctx context.Context, n int32) {
		GinkgoHelper()
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var d appsv1.Deployment
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.namespace, Name: "custos"}, &d); err != nil {
				return err
			}
			d.Spec.Replicas = ptr.To(n)
			return k8s.Update(ctx, &d)
		})).To(Succeed())
	}
	sigkill := func(ctx context.Context) (pod string, restarts int32) {
		GinkgoHelper()
		var p corev1.Pod
		Eventually(func(g Gomega) {
			pods := managerPods(ctx, g)
			g.Expect(pods).To(HaveLen(1))
			p = pods[0]
			g.Expect(p.Status.ContainerStatuses).NotTo(BeEmpty())
			g.Expect(p.Status.ContainerStatuses[0].State.Running).NotTo(BeNil())
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
		cs := p.Status.ContainerStatuses[0]
		id := strings.TrimPrefix(cs.ContainerID, "containerd://")
		By(fmt.Sprintf("SIGKILL of the manager's process (pod %s, container %s)", p.Name, id[:12]))
		out, err := exec.CommandContext(ctx, "ctr", "--address", containerdSocket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "ctr tasks kill: %s", out)
		return p.Name, cs.RestartCount
	}
	restarted := func(ctx context.Context, pod string, restarts int32) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			var p corev1.Pod
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: cfg.namespace, Name: pod}, &p)).To(Succeed())
			g.Expect(p.Status.ContainerStatuses).NotTo(BeEmpty())
			g.Expect(p.Status.ContainerStatuses[0].RestartCount).To(BeNumerically(">", restarts))
			g.Expect(ready(p)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	}

	BeforeAll(func(ctx SpecContext) {
		if containerdSocket == "" {
			Skip("CUSTOS_E2E_CONTAINERD_SOCKET is not set (make test-cluster sets it for the one-node cluster): these specs kill the manager's process on the node")
		}
		name = "custos-mgr-" + randomSuffix()
		t := e2eTenant(name, "manager kills")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Eventually(func(g Gomega) {
			t := tenant(ctx, g)
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
			g.Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionReady)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(cfg.provisionTimeout).WithPolling(2 * time.Second).Should(Succeed())
		snapshotsAfter(ctx, time.Time{})
	}, NodeTimeout(10*time.Minute))

	It("runs as the restricted Pod Security Standard requires: non-root, read-only root filesystem, no capabilities", func(ctx SpecContext) {
		var ns corev1.Namespace
		Expect(k8s.Get(ctx, client.ObjectKey{Name: cfg.namespace}, &ns)).To(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
		pods := managerPods(ctx, Default)
		Expect(pods).NotTo(BeEmpty())
		p := pods[0]
		Expect(ready(p)).To(BeTrue(), "pod %s is not Ready", p.Name)
		Expect(p.Spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		c := p.Spec.Containers[0]
		Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(c.SecurityContext.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
		Expect(c.Image).To(HavePrefix("localhost/custos"))
	})

	It("with two replicas only the leader acts, and the other takes over when the leader's pod is deleted by force", func(ctx SpecContext) {
		scale(ctx, 2)
		DeferCleanup(func(ctx SpecContext) { scale(ctx, 1) })
		var pods []corev1.Pod
		Eventually(func(g Gomega) {
			pods = managerPods(ctx, g)
			g.Expect(pods).To(HaveLen(2))
			for _, p := range pods {
				g.Expect(ready(p)).To(BeTrue(), "pod %s", p.Name)
			}
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		var holder string
		Eventually(func(g Gomega) {
			holder = leader(ctx, g)
			g.Expect(holder).To(Or(HavePrefix(pods[0].Name+"_"), HavePrefix(pods[1].Name+"_")))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		leaderPod, follower := pods[0].Name, pods[1].Name
		if !strings.HasPrefix(holder, leaderPod+"_") {
			leaderPod, follower = follower, leaderPod
		}
		By("the follower " + follower + " waits: its log shows no controller started")
		logs := func(pod string) string {
			out, err := exec.CommandContext(ctx, kubectlPath(), "--kubeconfig", cfg.kubeconfig, "-n", cfg.namespace, "logs", pod).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "kubectl logs %s: %s", pod, out)
			return string(out)
		}
		Expect(logs(follower)).NotTo(ContainSubstring("Starting workers"))
		Expect(logs(follower)).To(ContainSubstring("Attempting to acquire leader lease"))

		By("deleting the leader " + leaderPod + " with --grace-period=0 --force")
		out, err := exec.CommandContext(ctx, kubectlPath(), "--kubeconfig", cfg.kubeconfig, "-n", cfg.namespace, "delete", "pod", leaderPod,
			"--grace-period=0", "--force").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "kubectl delete pod: %s", out)
		takeover := time.Now()
		// The lease is not released by a pod deleted by force: once it expires, the follower or the pod the
		// Deployment made in the deleted one's place takes it, whichever asks first; either is right.
		var newLeader string
		Eventually(func(g Gomega) {
			holder := leader(ctx, g)
			g.Expect(holder).NotTo(HavePrefix(leaderPod+"_"), "the deleted pod still holds the lease")
			newLeader, _, _ = strings.Cut(holder, "_")
			g.Expect(managerPods(ctx, g)).To(ContainElement(HaveField("Name", newLeader)), "the lease holder %s is not a live manager pod", newLeader)
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		Eventually(func() string { return logs(newLeader) }).WithContext(ctx).WithTimeout(time.Minute).Should(ContainSubstring("Starting workers"))
		if newLeader != follower {
			Expect(logs(follower)).NotTo(ContainSubstring("Starting workers"), "only the lease holder %s acts", newLeader)
		}
		By("the new leader takes the next snapshots")
		snapshotsAfter(ctx, takeover)
	})

	It("resumes after its process is SIGKILLed during a backup: the interrupted task is run again, nothing is lost", func(ctx SpecContext) {
		By("waiting for a backup task to be running (status.tasks)")
		Eventually(func(g Gomega) {
			g.Expect(tenant(ctx, g).Status.Tasks).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		pod, restarts := sigkill(ctx)
		killed := time.Now()
		restarted(ctx, pod, restarts)
		snapshotsAfter(ctx, killed)
		Eventually(func(g Gomega) {
			t := tenant(ctx, g)
			for _, lb := range t.Status.Backups {
				g.Expect(lb.LastError).To(BeEmpty(), "location %s", lb.Location)
			}
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(3 * time.Second).Should(Succeed())
	})

	It("resumes after its process is SIGKILLed during the exit: the exit finishes once, and the certificate is verified", func(ctx SpecContext) {
		By("ending the contract now")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			t := tenant(ctx, Default)
			t.Spec.Contract.End = &metav1.Time{Time: time.Now().Truncate(time.Second)}
			return k8s.Update(ctx, t)
		})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(tenant(ctx, g).Status.Exit).NotTo(BeNil())
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		pod, restarts := sigkill(ctx)
		restarted(ctx, pod, restarts)

		var t *custosv1alpha1.Tenant
		Eventually(func(g Gomega) {
			t = tenant(ctx, g)
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantDestroyed), "phase %s, conditions %v", t.Status.Phase, t.Status.Conditions)
		}).WithContext(ctx).WithTimeout(cfg.disposalTimeout).WithPolling(3 * time.Second).Should(Succeed())
		for _, ns := range t.NamespaceNames() {
			err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there (%v)", ns, err)
		}
		By("each destroyed location is recorded once")
		seen := map[string]int{}
		for _, l := range t.Status.Exit.Destroyed {
			seen[string(l.Kind)+" "+l.Name]++
		}
		for k, n := range seen {
			Expect(n).To(Equal(1), "%s recorded %d times in status.exit.destroyed", k, n)
		}
		Expect(t.Status.Exit.CertificateRef).NotTo(BeNil())
		Eventually(func(g Gomega) {
			var cert custosv1alpha1.DestructionCertificate
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, &cert)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(cert.Status.Conditions, custosv1alpha1.ConditionVerified)).To(BeTrue(), "%v", cert.Status.Conditions)
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		_ = k8s.Delete(ctx, t)
	})
})
