package controllers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var (
	metricLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_last_success_timestamp_seconds",
		Help: "Time of the newest snapshot of a tenant in a location.",
	}, []string{"tenant", "location"})
	metricDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "custos_backup_duration_seconds",
		Help:    "Duration of successful backup tasks, by kind (Snapshot, Copy, Expiry, Check, Drill).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	}, []string{"kind"})
	metricTasks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custos_backup_tasks_total",
		Help: "Backup tasks finished, by kind and result (success, failed: given up after its attempts).",
	}, []string{"kind", "result"})
	metricSnapshots = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_snapshots",
		Help: "Snapshots of a tenant held in a location.",
	}, []string{"tenant", "location"})
	metricExpiryDeadline = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_expiry_deadline_timestamp_seconds",
		Help: "Time by which the oldest snapshot of a tenant is gone from every location (the latest of the locations' deadlines; alert on custos_backup_location_expiry_deadline_timestamp_seconds, which a single overdue location does not hide behind another's later deadline).",
	}, []string{"tenant"})
	metricLocationExpiryDeadline = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_backup_location_expiry_deadline_timestamp_seconds",
		Help: "Time by which the oldest snapshot of a tenant is gone from one location (retired locations included); in the past means that location is overdue.",
	}, []string{"tenant", "location"})
	metricDrillSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "custos_restore_drill_last_success_timestamp_seconds",
		Help: "Time of the latest successful restore drill of a tenant.",
	}, []string{"tenant"})
	metricDestruction = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custos_destruction_total",
		Help: "Destructive exit steps: storage locations verified destroyed (result=verified), steps that failed and will be retried (result=failed), certificates signed (result=certified).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(metricLastSuccess, metricDuration, metricTasks, metricSnapshots, metricExpiryDeadline, metricLocationExpiryDeadline, metricDrillSuccess, metricDestruction)
}

func metricTaskResult(_, kind, _ string, ok bool, d time.Duration) {
	if ok {
		metricTasks.WithLabelValues(kind, "success").Inc()
		metricDuration.WithLabelValues(kind).Observe(d.Seconds())
		return
	}
	metricTasks.WithLabelValues(kind, "failed").Inc()
}

// metricsFromStatus sets the gauges from what status says, so they survive a restart (status is the record).
func metricsFromStatus(t *custosv1alpha1.Tenant, _ *backupScope) {
	var deadline time.Time
	for _, lb := range t.Status.Backups {
		metricSnapshots.WithLabelValues(t.Name, lb.Location).Set(float64(lb.Snapshots))
		if lb.Newest != nil {
			metricLastSuccess.WithLabelValues(t.Name, lb.Location).Set(float64(lb.Newest.Unix()))
		}
		if lb.GoneBy == nil {
			metricLocationExpiryDeadline.DeleteLabelValues(t.Name, lb.Location)
			continue
		}
		metricLocationExpiryDeadline.WithLabelValues(t.Name, lb.Location).Set(float64(lb.GoneBy.Unix()))
		if lb.GoneBy.After(deadline) {
			deadline = lb.GoneBy.Time
		}
	}
	// From the exit on, the exit controller sets the tenant's deadline (status.exit.backupsGoneBy).
	if !deadline.IsZero() && !t.Status.Phase.ExitStarted() {
		metricExpiryDeadline.WithLabelValues(t.Name).Set(float64(deadline.Unix()))
	}
	if d := t.Status.LastDrill; d != nil && d.Succeeded {
		metricDrillSuccess.WithLabelValues(t.Name).Set(float64(d.Time.Unix()))
	}
}

// forgetTenantMetrics drops the per-tenant series of a destroyed tenant, so dashboards do not alert on a tenant
// that no longer exists.
func forgetTenantMetrics(tenant string) {
	for _, v := range []*prometheus.GaugeVec{metricLastSuccess, metricSnapshots, metricLocationExpiryDeadline} {
		v.DeletePartialMatch(prometheus.Labels{"tenant": tenant})
	}
	metricExpiryDeadline.DeleteLabelValues(tenant)
	metricDrillSuccess.DeleteLabelValues(tenant)
	metricDatabaseMissing.DeleteLabelValues(tenant)
}
