package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/testharness"
)

// These specs need pods that run: the testbox image (hack/cluster/testbox, imported by hack/cluster images) and
// kubectl to exec into them. They are skipped on a cluster without CUSTOS_E2E_TESTBOX_IMAGE.
var (
	testboxImage = os.Getenv("CUSTOS_E2E_TESTBOX_IMAGE")
	nodeIP       = os.Getenv("CUSTOS_E2E_NODE_IP") // where the platform's PostgreSQL listens
	databasePort = os.Getenv("CUSTOS_E2E_DATABASE_PORT")
)

const probePort = 8080

func kubectlPath() string {
	if p := os.Getenv("KUBECTL"); p != "" {
		return p
	}
	root, err := testharness.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	return filepath.Join(root, "bin", "kubectl")
}

// restricted is a container that meets the restricted Pod Security Standard.
func restricted(name string, args ...string) corev1.Container {
	return corev1.Container{Name: name, Image: testboxImage, ImagePullPolicy: corev1.PullNever, Args: args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: mustQuantity("5m"), corev1.ResourceMemory: mustQuantity("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("32Mi")}},
		SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}}
}

func podSpec(args ...string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{restricted("box", args...)}, TerminationGracePeriodSeconds: ptr.To[int64](1),
		AutomountServiceAccountToken: ptr.To(false), RestartPolicy: corev1.RestartPolicyAlways}
}

// server is a pod answering TCP on probePort, with a Service in front of it.
func server(ctx context.Context, ns string) (podIP, serviceIP string) {
	GinkgoHelper()
	labels := map[string]string{"app": "probe-server"}
	Expect(k8s.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe-server", Namespace: ns, Labels: labels},
		Spec: podSpec("serve", fmt.Sprint(probePort))})).To(Succeed())
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "probe-server", Namespace: ns}, Spec: corev1.ServiceSpec{Selector: labels,
		Ports: []corev1.ServicePort{{Port: probePort, TargetPort: intstr.FromInt32(probePort)}}}}
	Expect(k8s.Create(ctx, svc)).To(Succeed())
	return runningIP(ctx, ns, "probe-server"), svc.Spec.ClusterIP
}

// client is a pod that only runs; the specs exec testbox dial in it.
func probeClient(ctx context.Context, ns string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe-client", Namespace: ns}, Spec: podSpec("pause")})).To(Succeed())
	runningIP(ctx, ns, "probe-client")
}

func runningIP(ctx context.Context, ns, name string) string {
	GinkgoHelper()
	var ip string
	Eventually(func(g Gomega) {
		var p corev1.Pod
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p)).To(Succeed())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s/%s: %+v", ns, name, p.Status)
		g.Expect(p.Status.PodIP).NotTo(BeEmpty())
		ip = p.Status.PodIP
	}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	return ip
}

// dial opens one TCP connection from the probe client in ns to addr; nil when it connected.
func dial(ctx context.Context, ns, addr string) error {
	out, err := exec.CommandContext(ctx, kubectlPath(), "--kubeconfig", cfg.kubeconfig, "exec", "-n", ns, "probe-client", "--",
		"/testbox", "dial", addr, "2s").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", addr, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var _ = Describe("Tenant isolation and suspension on a real cluster", Label("cluster"), Ordered, func() {
	var (
		a, b, outside string // tenant A's and B's first namespace, and a namespace of no tenant
		tenantA       string
		ips           = map[string]string{} // "<ns>/pod", "<ns>/svc"
	)

	newTenant := func(ctx context.Context, name string) *custosv1alpha1.Tenant {
		t := e2eTenant(name, "isolation")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		return t
	}
	active := func(ctx context.Context, name string) *custosv1alpha1.Tenant {
		GinkgoHelper()
		t := &custosv1alpha1.Tenant{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
			g.Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionReady)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(cfg.provisionTimeout).WithPolling(2 * time.Second).Should(Succeed())
		return t
	}
	endContract := func(ctx context.Context, name string, hold *custosv1alpha1.LegalHold) {
		GinkgoHelper()
		Eventually(func() error {
			t := &custosv1alpha1.Tenant{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, t); err != nil {
				return err
			}
			t.Spec.Contract.End = &metav1.Time{Time: time.Now().Truncate(time.Second)}
			t.Spec.LegalHold = hold
			return k8s.Update(ctx, t)
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	}

	BeforeAll(func(ctx SpecContext) {
		if testboxImage == "" || nodeIP == "" || databasePort == "" {
			Skip("CUSTOS_E2E_TESTBOX_IMAGE, CUSTOS_E2E_NODE_IP and CUSTOS_E2E_DATABASE_PORT are not set (make test-cluster sets them for the one-node cluster)")
		}
		suffix := randomSuffix()
		tenantA = "custos-iso-a-" + suffix
		tenantB := "custos-iso-b-" + suffix
		newTenant(ctx, tenantA)
		newTenant(ctx, tenantB)
		a = active(ctx, tenantA).NamespaceNames()[0]
		b = active(ctx, tenantB).NamespaceNames()[0]
		outside = "custos-iso-outside-" + suffix
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: outside}})).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: outside}})
			// Tenant B ends here (None + Shred): custos destroys it in the background; A's exit is the suspension spec's.
			endContract(ctx, tenantB, nil)
		}, NodeTimeout(time.Minute))

		for _, ns := range []string{a, b, outside} {
			pod, svc := server(ctx, ns)
			ips[ns+"/pod"], ips[ns+"/svc"] = pod, svc
			probeClient(ctx, ns)
		}
		GinkgoWriter.Printf("tenant A %s, tenant B %s, outside %s: %v\n", a, b, outside, ips)
	}, NodeTimeout(10*time.Minute))

	port := fmt.Sprint(":", probePort)
	connects := func(ctx context.Context, from, addr string) {
		GinkgoHelper()
		By(from + " reaches " + addr)
		Eventually(func() error { return dial(ctx, from, addr) }).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	}
	// refused: the policy is enforced (the enforcer may take a moment after a pod starts), and holds.
	refused := func(ctx context.Context, from, addr string) {
		GinkgoHelper()
		By(from + " cannot reach " + addr)
		Eventually(func() error { return dial(ctx, from, addr) }).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2 * time.Second).ShouldNot(Succeed())
		Consistently(func() error { return dial(ctx, from, addr) }).WithContext(ctx).WithTimeout(8 * time.Second).WithPolling(2 * time.Second).ShouldNot(Succeed())
	}

	It("lets a tenant's pod reach its own pods, Services and database", func(ctx SpecContext) {
		connects(ctx, a, ips[a+"/pod"]+port)
		connects(ctx, a, ips[a+"/svc"]+port)
		connects(ctx, a, nodeIP+":"+databasePort)
		connects(ctx, b, ips[b+"/pod"]+port)
		connects(ctx, outside, ips[outside+"/pod"]+port)
	})

	It("stops tenant A's pods from reaching tenant B's pods and Services, and the manager's metrics", func(ctx SpecContext) {
		refused(ctx, a, ips[b+"/pod"]+port)
		refused(ctx, a, ips[b+"/svc"]+port)
		refused(ctx, b, ips[a+"/pod"]+port)
		refused(ctx, a, ips[outside+"/pod"]+port)

		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace(cfg.namespace), client.MatchingLabels{"app.kubernetes.io/name": "custos"})).To(Succeed())
		Expect(pods.Items).NotTo(BeEmpty(), "the manager's pods in %s", cfg.namespace)
		metrics := pods.Items[0].Status.PodIP + ":8080"
		connects(ctx, outside, metrics) // the manager's namespace has no policy of its own: only the tenants' own hold A back
		refused(ctx, a, metrics)
	})

	It("stops a pod outside every tenant from reaching either tenant's pods", func(ctx SpecContext) {
		refused(ctx, outside, ips[a+"/pod"]+port)
		refused(ctx, outside, ips[a+"/svc"]+port)
		refused(ctx, outside, ips[b+"/pod"]+port)
	})

	It("suspends tenant A at its contract's end: every workload stops and stays stopped", func(ctx SpecContext) {
		labels := func(app string) map[string]string { return map[string]string{"app": app} }
		template := func(app string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
			s := podSpec("pause")
			s.RestartPolicy = restart
			return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(app)}, Spec: s}
		}
		By("running a Deployment, a StatefulSet, a Job, a CronJob and a bare Pod in " + a)
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: a}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: labels("web")}, Template: template("web", corev1.RestartPolicyAlways)}},
			&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: a}, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1),
				ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: labels("db")}, Template: template("db", corev1.RestartPolicyAlways)}},
			&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: a}, Spec: batchv1.JobSpec{Template: template("report", corev1.RestartPolicyNever)}},
			&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: a}, Spec: batchv1.CronJobSpec{Schedule: "* * * * *",
				ConcurrencyPolicy: batchv1.ForbidConcurrent, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: template("nightly", corev1.RestartPolicyNever)}}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: a, Labels: labels("bare")}, Spec: podSpec("pause")},
		} {
			Expect(k8s.Create(ctx, o)).To(Succeed())
		}
		running := func(g Gomega) map[string]int {
			var pods corev1.PodList
			g.Expect(k8s.List(ctx, &pods, client.InNamespace(a))).To(Succeed())
			n := map[string]int{}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					n[p.Labels["app"]]++
				}
			}
			return n
		}
		Eventually(func(g Gomega) {
			n := running(g)
			for app, want := range map[string]int{"web": 2, "db": 1, "report": 1, "nightly": 1, "bare": 1, "probe-server": 0} {
				if want > 0 {
					g.Expect(n[app]).To(Equal(want), "running pods by app: %v", n)
				}
			}
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("ending tenant A's contract now (the policy's exitGracePeriod is 0s), under a legal hold: the exit suspends it and the hold keeps its namespaces from the purge while the suspension is checked")
		endContract(ctx, tenantA, &custosv1alpha1.LegalHold{Reason: "e2e/cluster: the suspension is checked before the purge"})
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(k8s.List(ctx, &pods, client.InNamespace(a))).To(Succeed())
			var left []string
			for _, p := range pods.Items {
				left = append(left, p.Name+" "+string(p.Status.Phase))
			}
			g.Expect(left).To(BeEmpty(), "pods left in %s", a)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		By("no controller starts a pod again (the CronJob's schedule is every minute)")
		Consistently(func(g Gomega) {
			var pods corev1.PodList
			err := k8s.List(ctx, &pods, client.InNamespace(a))
			if apierrors.IsNotFound(err) {
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(75 * time.Second).WithPolling(3 * time.Second).Should(Succeed())

		By("only custos' deny-all NetworkPolicy and no RoleBinding are left in " + a)
		var nps networkingv1.NetworkPolicyList
		Expect(k8s.List(ctx, &nps, client.InNamespace(a))).To(Succeed())
		Expect(nps.Items).To(HaveLen(1))
		Expect(nps.Items[0].Name).To(Equal("custos-default-deny"))
		Expect(nps.Items[0].Spec.Ingress).To(BeEmpty())
		Expect(nps.Items[0].Spec.Egress).To(BeEmpty())
		Expect(nps.Items[0].Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		var rbs rbacv1.RoleBindingList
		Expect(k8s.List(ctx, &rbs, client.InNamespace(a))).To(Succeed())
		Expect(rbs.Items).To(BeEmpty())
	})

	It("purges tenant A through the real namespace controller: its namespaces are gone and the certificate lists them", func(ctx SpecContext) {
		var t custosv1alpha1.Tenant
		By("lifting A's legal hold: the purge may go on")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: tenantA}, &t); err != nil {
				return err
			}
			t.Spec.LegalHold = nil
			return k8s.Update(ctx, &t)
		})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: tenantA}, &t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantDestroyed), "phase %s, conditions %v", t.Status.Phase, t.Status.Conditions)
		}).WithContext(ctx).WithTimeout(cfg.disposalTimeout).WithPolling(3 * time.Second).Should(Succeed())
		for _, ns := range t.NamespaceNames() {
			err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there (%v)", ns, err)
		}
		Expect(t.Status.Exit).NotTo(BeNil())
		Expect(t.Status.Exit.CertificateRef).NotTo(BeNil())
		var cert custosv1alpha1.DestructionCertificate
		Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, &cert)).To(Succeed())
		certYAML := string(mustYAML(cert.Spec))
		for _, ns := range t.NamespaceNames() {
			Expect(certYAML).To(ContainSubstring(ns), "the certificate names namespace %s", ns)
		}
	})
})
