// Package metrics holds custos' Prometheus metrics, registered once on controller-runtime's registry (served by
// the manager's metrics endpoint), and the functions the controllers set them with.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var (
	lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_last_success_timestamp_seconds",
		Help: "Time of the newest snapshot of a tenant in a location.",
	}, []string{"tenant", "location"})
	duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "custos_backup_duration_seconds",
		Help:    "Duration of successful backup tasks, by kind (Snapshot, Copy, Expiry, Check, Drill).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	}, []string{"kind"})
	tasks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custos_backup_tasks_total",
		Help: "Backup tasks finished, by kind and result (success; failed: given up after its attempts, or a check that found damage, or a drill whose data differed).",
	}, []string{"kind", "result"})
	snapshots = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_snapshots",
		Help: "Snapshots of a tenant held in a location.",
	}, []string{"tenant", "location"})
	expiryDeadline = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_expiry_deadline_timestamp_seconds",
		Help: "Time by which the oldest snapshot of a tenant is gone from every location (the latest of the locations' deadlines; alert on custos_backup_location_expiry_deadline_timestamp_seconds, which a single overdue location does not hide behind another's later deadline).",
	}, []string{"tenant"})
	locationExpiryDeadline = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_location_expiry_deadline_timestamp_seconds",
		Help: "Time by which the oldest snapshot of a tenant is gone from one location (retired locations included); in the past means that location is overdue.",
	}, []string{"tenant", "location"})
	drillSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_restore_drill_last_success_timestamp_seconds",
		Help: "Time of the latest successful restore drill of a tenant.",
	}, []string{"tenant"})
	destruction = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custos_destruction_total",
		Help: "Destructive exit steps: storage locations verified destroyed (result=verified), steps that failed and will be retried (result=failed), certificates signed (result=certified).",
	}, []string{"result"})
	databaseMissing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_database_missing",
		Help: "1 while a tenant's database, whose OID custos recorded, is missing: no new snapshot is taken and none expires until a person accepts the loss.",
	}, []string{"tenant"})
	signingKeyReady = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "custos_signing_key_ready",
		Help: "1 when the manager has its certificate signing key; 0 when it refuses one (Secret missing or another key than the one in use, without --allow-new-signing-key).",
	})
	auditFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custos_audit_append_failures_total",
		Help: "Audit entries that could not be written (the trail has a gap, or the write failed); the step that wanted to record is retried.",
	}, []string{"tenant"})
)

func init() {
	metrics.Registry.MustRegister(lastSuccess, duration, tasks, snapshots, expiryDeadline, locationExpiryDeadline, drillSuccess, destruction,
		databaseMissing, signingKeyReady, auditFailures)
}

// TaskResult counts a finished backup task of kind, and its duration when it succeeded.
func TaskResult(kind custosv1alpha1.TaskKind, ok bool, d time.Duration) {
	if ok {
		tasks.WithLabelValues(string(kind), "success").Inc()
		duration.WithLabelValues(string(kind)).Observe(d.Seconds())
		return
	}
	tasks.WithLabelValues(string(kind), "failed").Inc()
}

// FromStatus sets the backup gauges from what status says, so they survive a restart (status is the record).
func FromStatus(t *custosv1alpha1.Tenant) {
	var deadline time.Time
	for _, lb := range t.Status.Backups {
		snapshots.WithLabelValues(t.Name, lb.Location).Set(float64(lb.Snapshots))
		if lb.Newest != nil {
			lastSuccess.WithLabelValues(t.Name, lb.Location).Set(float64(lb.Newest.Unix()))
		}
		if lb.GoneBy == nil {
			locationExpiryDeadline.DeleteLabelValues(t.Name, lb.Location)
			continue
		}
		locationExpiryDeadline.WithLabelValues(t.Name, lb.Location).Set(float64(lb.GoneBy.Unix()))
		if lb.GoneBy.After(deadline) {
			deadline = lb.GoneBy.Time
		}
	}
	// From the exit on, the exit controller sets the tenant's deadline (status.exit.backupsGoneBy).
	if !deadline.IsZero() && !t.Status.Phase.ExitStarted() {
		expiryDeadline.WithLabelValues(t.Name).Set(float64(deadline.Unix()))
	}
	if d := t.Status.LastDrill; d != nil && d.Succeeded {
		drillSuccess.WithLabelValues(t.Name).Set(float64(d.Time.Unix()))
	}
}

// ExpiryDeadline sets the time by which the tenant's backups are gone (the exit's status.exit.backupsGoneBy).
func ExpiryDeadline(tenant string, at time.Time) {
	expiryDeadline.WithLabelValues(tenant).Set(float64(at.Unix()))
}

// Destruction counts a destructive exit step by result: verified, failed or certified.
func Destruction(result string) { destruction.WithLabelValues(result).Inc() }

// DatabaseMissing sets whether the tenant's recorded database is missing.
func DatabaseMissing(tenant string, missing bool) {
	v := 0.0
	if missing {
		v = 1
	}
	databaseMissing.WithLabelValues(tenant).Set(v)
}

// SigningKeyReady sets whether the manager has its certificate signing key.
func SigningKeyReady(ready bool) {
	v := 0.0
	if ready {
		v = 1
	}
	signingKeyReady.Set(v)
}

// AuditAppendFailed counts an audit entry of the tenant that could not be written.
func AuditAppendFailed(tenant string) { auditFailures.WithLabelValues(tenant).Inc() }

// ForgetTenant drops the per-tenant series of a destroyed tenant, so dashboards do not alert on a tenant that no
// longer exists.
func ForgetTenant(tenant string) {
	for _, v := range []*prometheus.GaugeVec{lastSuccess, snapshots, locationExpiryDeadline} {
		v.DeletePartialMatch(prometheus.Labels{"tenant": tenant})
	}
	expiryDeadline.DeleteLabelValues(tenant)
	drillSuccess.DeleteLabelValues(tenant)
	databaseMissing.DeleteLabelValues(tenant)
}
