package chart

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/signing"
)

var _ = Describe("helm lint", func() {
	It("passes with the default values", func(ctx SpecContext) {
		out, err := runHelm(ctx, "lint", "--strict", chartDir)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("0 chart(s) failed"))
	})

	It("passes with the non-default values", func(ctx SpecContext) {
		out, err := runHelm(ctx, "lint", "--strict", chartDir, "-f", prodValues())
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("0 chart(s) failed"))
	})
})

var _ = Describe("helm template with the default values", func() {
	var objs rendered
	BeforeEach(func(ctx SpecContext) { objs = render(ctx, "custos", defaultNamespace) })

	It("runs the manager with leader election, probes on the probe address and the default runner flags", func() {
		d := objs.deployment("custos")
		Expect(d.Namespace).To(Equal(defaultNamespace))
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
		c := manager(d)
		Expect(c.Image).To(Equal("ghcr.io/custos-io/custos:0.1.0"), "the chart's appVersion when image.tag is empty")
		flags := flagValues(c.Args)
		Expect(flags).To(Equal(map[string]string{
			"leader-elect":                    "true",
			"metrics-bind-address":            ":8080",
			"health-probe-bind-address":       ":8081",
			"work-dir":                        "/var/lib/custos/work",
			"backup-concurrency":              "2",
			"backup-concurrency-per-location": "2",
			"task-timeout":                    "6h",
			"backend-retry-limit":             "3m",
			"tenant-concurrency":              "4",
			"kube-api-qps":                    "50",
			"kube-api-burst":                  "100",
			"zap-log-level":                   "info",
			"signing-key-secret":              signing.DefaultName,
		}), "no --processor and no --export-dir unless set")

		By("probing /healthz and /readyz on the port --health-probe-bind-address binds")
		Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		Expect(c.LivenessProbe.HTTPGet.Port).To(Equal(intstr.FromString("probes")))
		Expect(c.ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromString("probes")))
		Expect(port(c, "probes")).To(BeEquivalentTo(8081))
		Expect(port(c, "metrics")).To(BeEquivalentTo(8080))

		By("knowing its namespace from the downward API")
		Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "POD_NAMESPACE",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}))
		Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
		Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
	})

	It("runs as non-root on a read-only root filesystem without capabilities, scratch space on emptyDirs", func() {
		d := objs.deployment("custos")
		pod := d.Spec.Template.Spec
		Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(*pod.SecurityContext.RunAsUser).To(BeEquivalentTo(65532))
		Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		c := manager(d)
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(c.SecurityContext.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
		Expect(c.SecurityContext.Capabilities.Add).To(BeEmpty())

		Expect(mountPath(c, "work")).To(Equal(flagValues(c.Args)["work-dir"]))
		Expect(volume(d, "work").EmptyDir).NotTo(BeNil())
		Expect(mountPath(c, "tmp")).To(Equal("/tmp"))
		Expect(volume(d, "tmp").EmptyDir).NotTo(BeNil())
		Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "HOME", Value: "/tmp"}))
		Expect(mountPath(c, "exports")).To(BeEmpty())
	})

	It("serves metrics behind a Service; no ServiceMonitor, namespace, claim or RetentionPolicy", func() {
		svc := typed[corev1.Service](objs.one("Service", "custos-metrics"))
		Expect(svc.Namespace).To(Equal(defaultNamespace))
		Expect(svc.Spec.Ports).To(HaveLen(1))
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(8080))
		Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("metrics")))
		d := objs.deployment("custos")
		for k, v := range svc.Spec.Selector {
			Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(k, v), "the Service selects the manager's pods")
		}
		for _, kind := range []string{"ServiceMonitor", "Namespace", "PersistentVolumeClaim", "RetentionPolicy", "BackupLocation"} {
			Expect(objs.ofKind(kind)).To(BeEmpty(), "%s rendered: %v", kind, objs.kinds())
		}
	})

	It("binds the generated ClusterRole to the manager's ServiceAccount and ships the admission policy", func() {
		sa := objs.one("ServiceAccount", "custos")
		Expect(sa.GetNamespace()).To(Equal(defaultNamespace))
		Expect(objs.deployment("custos").Spec.Template.Spec.ServiceAccountName).To(Equal("custos"))
		objs.one("ClusterRole", "custos-manager")
		crb := typed[rbacv1.ClusterRoleBinding](objs.one("ClusterRoleBinding", "custos-manager"))
		Expect(crb.RoleRef.Name).To(Equal("custos-manager"))
		Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "custos", Namespace: defaultNamespace}))
		objs.one("ValidatingAdmissionPolicy", "custos-tenant-deletion-guard")
		objs.one("ValidatingAdmissionPolicyBinding", "custos-tenant-deletion-guard")
		guard := objs.one("ValidatingAdmissionPolicy", "custos-manager-guard")
		conds, _, _ := unstructured.NestedSlice(guard.Object, "spec", "matchConditions")
		Expect(conds).To(HaveLen(1))
		Expect(conds[0]).To(HaveKeyWithValue("expression",
			"request.userInfo.username == 'system:serviceaccount:"+defaultNamespace+":custos'"), "the guard names the release's service account")
		objs.one("ValidatingAdmissionPolicyBinding", "custos-manager-guard")
	})

	It("ships every generated CRD with --include-crds", func(ctx SpecContext) {
		crds := render(ctx, "custos", defaultNamespace, "--include-crds").ofKind("CustomResourceDefinition")
		var names []string
		for _, c := range crds {
			names = append(names, c.GetName())
		}
		bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(bases).To(HaveLen(6))
		var want []string
		for _, b := range bases {
			want = append(want, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(b), "custos.io_"), ".yaml")+".custos.io")
		}
		Expect(names).To(ConsistOf(want))
	})
})

var _ = Describe("helm template with non-default values", func() {
	var objs rendered
	BeforeEach(func(ctx SpecContext) { objs = render(ctx, "custos-prod", "default", "-f", prodValues()) })

	It("passes the values to the manager's flags, image, ports and volumes", func() {
		d := objs.deployment("custos-prod")
		Expect(d.Namespace).To(Equal("custos-prod"), "namespace.name overrides the release namespace")
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
		c := manager(d)
		Expect(c.Image).To(Equal("registry.example.eu/custos:1.2.3"))
		Expect(c.ImagePullPolicy).To(Equal(corev1.PullAlways))
		Expect(d.Spec.Template.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "registry-example"}))
		flags := flagValues(c.Args)
		Expect(flags).To(Equal(map[string]string{
			"leader-elect":                    "true",
			"metrics-bind-address":            ":9090",
			"health-probe-bind-address":       ":9091",
			"work-dir":                        "/scratch",
			"backup-concurrency":              "6",
			"backup-concurrency-per-location": "3",
			"task-timeout":                    "2h30m",
			"backend-retry-limit":             "90s",
			"tenant-concurrency":              "8",
			"kube-api-qps":                    "20",
			"kube-api-burst":                  "40",
			"zap-log-level":                   "debug",
			"processor":                       "Example Hosting B.V.: processor",
			"export-dir":                      "/var/lib/custos/exports",
			"zap-encoder":                     "json",
			"signing-key-secret":              "example-hosting-signing-key",
		}))
		Expect(port(c, "metrics")).To(BeEquivalentTo(9090))
		Expect(port(c, "probes")).To(BeEquivalentTo(9091))
		Expect(c.Resources.Limits.Memory().String()).To(Equal("4Gi"))
		Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "GOMAXPROCS", Value: "2"}))

		By("mounting the work dir, the export claim and the extra volume")
		Expect(mountPath(c, "work")).To(Equal("/scratch"))
		Expect(volume(d, "work").EmptyDir.SizeLimit.String()).To(Equal("50Gi"))
		Expect(mountPath(c, "exports")).To(Equal("/var/lib/custos/exports"))
		Expect(volume(d, "exports").PersistentVolumeClaim.ClaimName).To(Equal("custos-prod-exports"))
		Expect(mountPath(c, "backups")).To(Equal("/var/lib/custos/backups"))
		pvc := typed[corev1.PersistentVolumeClaim](objs.one("PersistentVolumeClaim", "custos-prod-exports"))
		Expect(pvc.Namespace).To(Equal("custos-prod"))
		Expect(pvc.Spec.AccessModes).To(ConsistOf(corev1.ReadWriteMany))
		Expect(*pvc.Spec.StorageClassName).To(Equal("nfs"))
		Expect(pvc.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	})

	It("renders the ServiceMonitor for the metrics Service", func() {
		svc := typed[corev1.Service](objs.one("Service", "custos-prod-metrics"))
		sm := objs.one("ServiceMonitor", "custos-prod")
		Expect(sm.GetAPIVersion()).To(Equal("monitoring.coreos.com/v1"))
		Expect(sm.GetNamespace()).To(Equal("custos-prod"))
		Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "prometheus"))
		sel, _, err := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		Expect(err).NotTo(HaveOccurred())
		Expect(sel).NotTo(BeEmpty())
		for k, v := range sel {
			Expect(svc.Labels).To(HaveKeyWithValue(k, v), "the ServiceMonitor selects the metrics Service")
		}
		eps, _, err := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		Expect(err).NotTo(HaveOccurred())
		Expect(eps).To(ConsistOf(HaveKeyWithValue("port", svc.Spec.Ports[0].Name)))
		Expect(eps[0]).To(HaveKeyWithValue("interval", "1m"))
	})

	It("creates the namespace under the restricted Pod Security Standard", func() {
		ns := objs.one("Namespace", "custos-prod")
		Expect(ns.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
		Expect(ns.GetLabels()).To(HaveKeyWithValue("team", "platform"))
		Expect(ns.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	})

	It("renders the default RetentionPolicy and its BackupLocations, kept on uninstall", func() {
		rp := typed[custosv1alpha1.RetentionPolicy](objs.one("RetentionPolicy", "ehealth-3-months"))
		Expect(rp.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		Expect(rp.Spec.Primary.Name).To(Equal("primary-ams"))
		Expect(rp.Spec.Offsite).To(Equal(&custosv1alpha1.ObjectReference{Name: "offsite-fra"}))
		Expect(rp.Spec.KeepWithin).To(BeEquivalentTo("90d"))
		Expect(rp.Spec.AllowedJurisdictions).To(ConsistOf(custosv1alpha1.JurisdictionSelector("EEA")))
		Expect(rp.Spec.Schedule.Cron).To(Equal("0 1 * * *"))
		Expect(rp.Spec.Schedule.TimeZone).To(Equal("Europe/Amsterdam"))
		Expect(rp.Spec.Export.ExpireAfterDelivery).To(BeEquivalentTo("10d"))

		primary := typed[custosv1alpha1.BackupLocation](objs.one("BackupLocation", "primary-ams"))
		Expect(primary.Spec.URL).To(Equal("/var/lib/custos/backups"))
		Expect(primary.Spec.Jurisdiction).To(BeEquivalentTo("NL"))
		Expect(primary.Spec.CredentialsSecretRef).To(BeNil())
		offsite := typed[custosv1alpha1.BackupLocation](objs.one("BackupLocation", "offsite-fra"))
		Expect(offsite.Spec.URL).To(Equal("rest:https://backup.fra.example.eu:8000/custos"))
		Expect(offsite.Spec.CredentialsSecretRef).To(Equal(&custosv1alpha1.SecretReference{Name: "offsite-fra-credentials"}))
		Expect(offsite.Spec.CASecretRef).To(Equal(&custosv1alpha1.SecretReference{Name: "offsite-fra-ca"}))
		Expect(offsite.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	})
})

var _ = Describe("helm template refuses inconsistent values", func() {
	DescribeTable("with a message naming the problem",
		func(ctx SpecContext, message string, set ...string) {
			args := []string{"template", "custos", chartDir, "--namespace", defaultNamespace}
			for _, s := range set {
				args = append(args, "--set", s)
			}
			_, err := runHelm(ctx, args...)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("two managers without leader election", "needs leaderElection", "replicas=2", "leaderElection=false"),
		Entry("an export volume without a path", "needs export.path", "export.persistence.enabled=true"),
		Entry("a ServiceMonitor without metrics", "needs metrics.enabled", "metrics.enabled=false", "metrics.serviceMonitor.enabled=true"),
		Entry("a default policy without a location URL", "BackupLocation primary needs a url",
			"defaultRetentionPolicy.enabled=true", "defaultRetentionPolicy.primary.jurisdiction=NL"),
	)
})

var _ = Describe("the manager's command line", func() {
	It("defines every flag the chart passes", func(ctx SpecContext) {
		known := managerFlags()
		for _, objs := range []rendered{
			render(ctx, "custos", defaultNamespace),
			render(ctx, "custos-prod", "default", "-f", prodValues()),
			render(ctx, "custos", defaultNamespace, "--set", "metrics.enabled=false,processor=x,export.path=/x"),
		} {
			deployments := objs.ofKind("Deployment")
			Expect(deployments).To(HaveLen(1))
			for name := range flagValues(manager(typed[appsv1.Deployment](deployments[0])).Args) {
				Expect(known).To(HaveKey(name), "--%s is a flag of cmd/manager", name)
			}
		}
	})

	It("defines every flag the image's entrypoint passes; the image pins restic and Go as the repository does", func() {
		dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
		Expect(err).NotTo(HaveOccurred())
		entry := regexp.MustCompile(`(?s)ENTRYPOINT \[(.*?)\]`).FindSubmatch(dockerfile)
		Expect(entry).NotTo(BeNil(), "the Dockerfile has an exec-form ENTRYPOINT")
		known := managerFlags()
		flags := regexp.MustCompile(`"--([a-z0-9-]+)=`).FindAllSubmatch(entry[1], -1)
		Expect(flags).To(HaveLen(3), "--restic, --pg-dump and --psql")
		for _, f := range flags {
			Expect(known).To(HaveKey(string(f[1])))
		}

		tools, err := os.ReadFile(filepath.Join(root, "hack", "tools.sh"))
		Expect(err).NotTo(HaveOccurred())
		want := regexp.MustCompile(`RESTIC_VERSION=\$\{RESTIC_VERSION:-(v[0-9.]+)\}`).FindSubmatch(tools)
		Expect(want).NotTo(BeNil())
		Expect(string(dockerfile)).To(ContainSubstring("ARG RESTIC_VERSION="+string(want[1])+"\n"), "restic as pinned in hack/tools.sh")

		gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
		Expect(err).NotTo(HaveOccurred())
		goVersion := regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`).FindSubmatch(gomod)
		Expect(goVersion).NotTo(BeNil())
		Expect(string(dockerfile)).To(ContainSubstring("ARG GO_VERSION="+string(goVersion[1])+"\n"), "Go as go.mod names it")
	})
})

var _ = Describe("the rendered objects on a kube-apiserver", func() {
	It("are all accepted with the default values (CRDs as a dry run)", func(ctx SpecContext) {
		objs := render(ctx, "custos", defaultNamespace, "--include-crds")
		applyAll(ctx, objs, defaultNamespace)
		podAdmitted(ctx, objs.deployment("custos"))
	})

	It("are all accepted with non-default values, the ServiceMonitor rendered but not served", func(ctx SpecContext) {
		objs := render(ctx, "custos-prod", "default", "-f", prodValues(), "--include-crds")
		applyAll(ctx, objs, "custos-prod")
		podAdmitted(ctx, objs.deployment("custos-prod"))

		By("creating a Tenant that references the default RetentionPolicy")
		var rp custosv1alpha1.RetentionPolicy
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "ehealth-3-months"}, &rp)).To(Succeed())
		Expect(rp.Spec.MaxSnapshotAge).To(BeEquivalentTo("26h"))
		Expect(rp.Spec.RestoreDrill.Enabled).NotTo(BeNil(), "the CRD's defaults fill what the values left out")
	})
})

// applyAll applies every rendered object with server-side apply, namespaces first, after creating the release
// namespace (enforcing the restricted Pod Security Standard) when the chart does not render it. CRDs are applied
// as a dry run: the harness installed the same ones from config/crd/bases. The ServiceMonitor's CRD is not
// installed: it is checked to be unserved and skipped. Every namespaced object must be in the manager's namespace.
func applyAll(ctx context.Context, objs rendered, namespace string) {
	GinkgoHelper()
	if len(objs.ofKind("Namespace")) == 0 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace,
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, ns))).To(Succeed())
	}
	var ordered rendered
	ordered = append(ordered, objs.ofKind("Namespace")...)
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			ordered = append(ordered, o)
		}
	}
	applied := 0
	for _, o := range ordered {
		gvk := o.GroupVersionKind()
		mapping, err := k8s.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if gvk.Kind == "ServiceMonitor" {
			Expect(meta.IsNoMatchError(err)).To(BeTrue(), "no ServiceMonitor CRD in the harness: %v", err)
			Expect(o.GetNamespace()).To(Equal(namespace))
			continue
		}
		Expect(err).NotTo(HaveOccurred(), "%s is served", gvk)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			Expect(o.GetNamespace()).To(Equal(namespace), "%s %s is in the manager's namespace", gvk.Kind, o.GetName())
		} else {
			Expect(o.GetNamespace()).To(BeEmpty(), "%s %s is cluster-scoped", gvk.Kind, o.GetName())
		}
		opts := []client.ApplyOption{client.FieldOwner("custos-chart-e2e"), client.ForceOwnership}
		if gvk.Kind == "CustomResourceDefinition" {
			opts = append(opts, client.DryRunAll)
		}
		Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...)).
			To(Succeed(), "%s %s is a valid object", gvk.Kind, o.GetName())
		applied++
		if gvk.Kind == "CustomResourceDefinition" {
			continue
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(gvk)
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), got)).To(Succeed())
		for k, v := range o.GetLabels() {
			Expect(got.GetLabels()).To(HaveKeyWithValue(k, v))
		}
	}
	Expect(applied).To(BeNumerically(">=", 10), "applied: %v", objs.kinds())
}

// podAdmitted creates the Deployment's pod as a dry run in its namespace, which enforces the restricted Pod
// Security Standard; and, as a control that the admission plugin is at work, a variant allowing privilege
// escalation, which must be refused.
func podAdmitted(ctx context.Context, dep *appsv1.Deployment) {
	GinkgoHelper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: dep.Namespace, Name: dep.Name + "-psa-check",
		Labels: dep.Spec.Template.Labels}, Spec: *dep.Spec.Template.Spec.DeepCopy()}
	Expect(k8s.Create(ctx, pod.DeepCopy(), client.DryRunAll)).To(Succeed(), "the manager's pod meets the restricted Pod Security Standard")

	bad := pod.DeepCopy()
	yes := true
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
	err := k8s.Create(ctx, bad, client.DryRunAll)
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "PodSecurity admission refuses a privilege-escalating pod: %v", err)
	Expect(err.Error()).To(ContainSubstring("restricted"))
}

// values.yaml names the ConfigMap the manager publishes the public key in, which auditors' tools read.
var _ = It("documents the ConfigMap the public signing key is published in", func() {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(string(values)).To(ContainSubstring("ConfigMap `" + signing.DefaultName + "`"))
})
