package local

import (
	"context"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
)

const managerNamespace = "custos-system"

// runningManager is a custos manager started in this process against the suite's API server.
type runningManager struct {
	cancel context.CancelFunc
	done   chan error
	// clock is the manager's clock (unless configure set another): the wall clock, moved on by Advance.
	clock *shiftedClock
}

// managersContainer is the top-level container that last started a manager.
var managersContainer string

// retireLeftoverTenants deletes the Tenants that earlier containers left behind (a spec's tenant is kept for its
// exit or for a person to look at, and the deletion guard refuses a provisioned one): with no manager running, each
// one's status is cleared, so that the guard sees nothing provisioned, and the Tenant is deleted. Their databases,
// namespaces and repositories stay, unreconciled. Without this, every manager of the suite would reconcile every
// tenant of the containers before it — backups every minute to locations whose servers and directories are gone —
// and the later containers would wait on that load (seen in CI: an exit that took over two minutes, Tenants not
// Ready within one, near the end of a full run).
func retireLeftoverTenants(ctx context.Context) {
	GinkgoHelper()
	var ts custosv1alpha1.TenantList
	Expect(k8s.List(ctx, &ts)).To(Succeed())
	for i := range ts.Items {
		t := &ts.Items[i]
		t.Status = custosv1alpha1.TenantStatus{}
		if err := k8s.Status().Update(ctx, t); err != nil && !apierrors.IsNotFound(err) {
			Expect(err).NotTo(HaveOccurred(), "clearing the status of leftover Tenant %s", t.Name)
		}
		if err := k8s.Delete(ctx, t); err != nil && !apierrors.IsNotFound(err) {
			Expect(err).NotTo(HaveOccurred(), "deleting leftover Tenant %s", t.Name)
		}
	}
	Eventually(func(g Gomega) {
		g.Expect(k8s.List(ctx, &ts)).To(Succeed())
		g.Expect(ts.Items).To(BeEmpty())
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// startManager runs the controllers until stop is called. The first manager a top-level container starts begins
// with no Tenant of an earlier container (retireLeftoverTenants); one restarted within a container keeps its
// container's Tenants.
func startManager(configure ...func(*controllers.Options)) *runningManager {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	if texts := CurrentSpecReport().ContainerHierarchyTexts; len(texts) > 0 && texts[0] != managersContainer {
		retireLeftoverTenants(context.Background())
		managersContainer = texts[0]
	}
	mgr, err := ctrl.NewManager(controlPlane.Config, ctrl.Options{
		Scheme:                 controlPlane.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
		Controller:             ctrlConfigSkipNameValidation(),
	})
	Expect(err).NotTo(HaveOccurred())
	opts := controllers.Options{
		Namespace: managerNamespace, TenantConcurrency: 4, Resync: time.Minute, RetryAfter: 2 * time.Second,
		Programs: programs, WorkDir: workDir, TaskTimeout: 5 * time.Minute, Processor: "e-Health Hosting B.V.",
	}
	clk := &shiftedClock{}
	opts.Clock = clk
	for _, c := range configure {
		c(&opts)
	}
	Expect(controllers.Setup(mgr, opts)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	m := &runningManager{cancel: cancel, done: make(chan error, 1), clock: clk}
	go func() { m.done <- mgr.Start(ctx) }()
	return m
}

func (m *runningManager) stop() {
	m.cancel()
	// Running backup tasks are interrupted (SIGINT to restic, which removes its lock) and waited for.
	Eventually(m.done, 90*time.Second).Should(Receive(BeNil()))
}

// shiftedClock is the wall clock moved forward by Advance: a spec that must see a day pass tells the manager so,
// instead of waiting (restic's snapshot times stay real).
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Advance moves the clock forward by d.
func (c *shiftedClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
