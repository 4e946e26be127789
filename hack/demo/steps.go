package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// installPlatform creates what the platform team sets up once: where backups go, how long they live, the
// database server.
func (d *demo) installPlatform(ctx context.Context) error {
	every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
	objs := []client.Object{
		&custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: d.primaryDir, Jurisdiction: "NL"}},
		&custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: d.offsite.URL, Jurisdiction: "DE"}},
		&custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: primaryName}, Offsite: &custosv1alpha1.ObjectReference{Name: offsiteName},
			Schedule: every, CopySchedule: every, ExpirySchedule: every,
			KeepWithin: "90d", MaxSnapshotAge: "26h",
			// The demo turns the exit's grace period off (the default keeps everything 72h after contract.end) and
			// lets the bag live 10s after its receipt (the agreement says 10d): the certificate waits for it.
			ExitGracePeriod: "0s",
			Export: custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "10s", AcknowledgeTimeout: "30d",
				Delivery: &custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: d.exportDir}}},
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: serverName + "-admin", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/" + serverName}},
			StringData: map[string]string{"username": d.pg.User, "password": d.pg.Password}},
		&custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: serverName}, Spec: custosv1alpha1.DatabaseServerSpec{
			Host: d.pg.Host, Port: int32(d.pg.Port), SSLMode: "disable", Jurisdiction: "NL",
			AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: serverName + "-admin"}, MaintenanceDatabase: "postgres",
		}},
	}
	for _, o := range objs {
		if err := d.c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	d.say("BackupLocation %s: the primary repository, jurisdiction NL (a directory here; S3 or rest-server in production)", primaryName)
	d.say("BackupLocation %s: the offsite copy, jurisdiction DE (rest-server)", offsiteName)
	d.say("RetentionPolicy %s: snapshot, offsite copy and expiry every minute (daily in production, so the demo is quick),", policyName)
	d.say("  keepWithin 90d, exports delivered to %s, acknowledgeTimeout 30d, EEA only", d.exportDir)
	d.say("DatabaseServer %s: the local PostgreSQL, jurisdiction NL; its admin Secret %s/%s-admin, annotated custos.io/credentials-for: DatabaseServer/%s", serverName, managerNamespace, serverName, serverName)

	ready := func(name string, obj client.Object, conds func() []metav1.Condition) error {
		return waitFor(ctx, name+" Ready", time.Minute, 250*time.Millisecond, func(ctx context.Context) (bool, string, error) {
			if err := d.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return false, "", err
			}
			c := meta.FindStatusCondition(conds(), custosv1alpha1.ConditionReady)
			if c == nil {
				return false, "no Ready condition yet", nil
			}
			return c.Status == metav1.ConditionTrue, c.Reason + ": " + c.Message, nil
		})
	}
	bl1 := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName}}
	bl2 := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName}}
	rp := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}}
	ds := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: serverName}}
	for _, w := range []struct {
		name  string
		obj   client.Object
		conds func() []metav1.Condition
	}{
		{"BackupLocation " + primaryName, bl1, func() []metav1.Condition { return bl1.Status.Conditions }},
		{"BackupLocation " + offsiteName, bl2, func() []metav1.Condition { return bl2.Status.Conditions }},
		{"RetentionPolicy " + policyName, rp, func() []metav1.Condition { return rp.Status.Conditions }},
		{"DatabaseServer " + serverName, ds, func() []metav1.Condition { return ds.Status.Conditions }},
	} {
		if err := ready(w.name, w.obj, w.conds); err != nil {
			return err
		}
	}
	d.say("custos checked each: the locations answer, the policy's jurisdictions admit them, it can log in to PostgreSQL:")
	return d.kubectl(ctx, "get", "backuplocations,retentionpolicies,databaseservers")
}

func (d *demo) tenant() *custosv1alpha1.Tenant {
	return &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tenantName}}
}

func (d *demo) getTenant(ctx context.Context) (*custosv1alpha1.Tenant, error) {
	t := d.tenant()
	return t, d.c.Get(ctx, client.ObjectKeyFromObject(t), t)
}

// provisionTenant applies the clinic's Tenant, waits until it is Active and fills its database as the clinic's
// application would, with its own credentials.
func (d *demo) provisionTenant(ctx context.Context) error {
	start := time.Date(time.Now().Year()-1, 1, 1, 0, 0, 0, 0, time.UTC)
	t := &custosv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: tenantName},
		Spec: custosv1alpha1.TenantSpec{
			DisplayName: "Huisartsenpraktijk Kliniek Noord",
			DataController: custosv1alpha1.DataController{Name: "Kliniek Noord B.V.", Contact: "Privacy officer",
				Email: "privacy@kliniek-noord.example.nl"},
			Contract:           custosv1alpha1.Contract{ID: "DPA-2025-0117", Start: metav1.NewTime(start)},
			RetentionPolicyRef: custosv1alpha1.ObjectReference{Name: policyName},
			Namespaces:         custosv1alpha1.TenantNamespaces{Names: []string{tenantName, tenantName + "-jobs"}},
			Quota: &custosv1alpha1.TenantQuota{Hard: corev1.ResourceList{
				corev1.ResourceRequestsCPU: resource.MustParse("4"), corev1.ResourceRequestsMemory: resource.MustParse("8Gi")}},
			Limits: &custosv1alpha1.TenantLimits{Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}},
			Owners: []custosv1alpha1.TenantOwner{{Kind: "Group", Name: tenantName + "-admins"}},
			Database: custosv1alpha1.TenantDatabase{
				ServerRef: custosv1alpha1.ObjectReference{Name: serverName}, ConnectionLimit: 10, Extensions: []string{"pgcrypto"}},
			Exit: custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred},
		},
	}
	if err := d.c.Create(ctx, t); err != nil {
		return err
	}
	d.say("Tenant %s applied: contract %s, namespaces %s and %s-jobs, a database on %s,", tenantName, t.Spec.Contract.ID, tenantName, tenantName, serverName)
	d.say("  at the end of the contract: exit.dataReturn Export (the data goes back as a bag), exit.backups Shred")
	t0 := time.Now()
	err := waitFor(ctx, "tenant Active", 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if err := d.c.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, "", err
		}
		c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady)
		detail := "phase " + string(t.Status.Phase)
		if c != nil {
			detail += ", Ready " + string(c.Status) + " " + c.Reason + ": " + c.Message
		}
		return t.Status.Phase == custosv1alpha1.TenantActive && c != nil && c.Status == metav1.ConditionTrue, detail, nil
	})
	if err != nil {
		return err
	}
	d.say("Active after %s: namespaces, quota, limits, network policies, owners' RoleBinding, database role and database,", time.Since(t0).Round(100*time.Millisecond))
	d.say("  and the credentials Secret custos-database in each namespace")
	if err := d.printTenants(ctx); err != nil {
		return err
	}
	if err := d.kubectl(ctx, "-n", tenantName, "get", "secrets,networkpolicies,resourcequotas,limitranges,rolebindings"); err != nil {
		return err
	}

	// The deletion guard shipped in config/admission.
	var refusal string
	err = waitFor(ctx, "kubectl delete tenant refused", 20*time.Second, time.Second, func(ctx context.Context) (bool, string, error) {
		_, err := d.kubectlOut(ctx, "delete", "tenant", tenantName, "--dry-run=server")
		if err == nil {
			return false, "the server accepted the deletion (dry run): the admission policy is not in force yet", nil
		}
		refusal = err.Error()
		return strings.Contains(refusal, "not Destroyed"), refusal, nil
	})
	if err != nil {
		return err
	}
	d.say("$ kubectl delete tenant %s --dry-run=server", tenantName)
	if i := strings.Index(refusal, "Error from server"); i >= 0 {
		refusal = refusal[i:]
	}
	d.block(refusal)
	d.say("(the ValidatingAdmissionPolicy custos-tenant-deletion-guard: a tenant's data never goes by accident)")

	// The clinic's application: its own credentials, its own tables.
	creds, err := d.credentials(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, creds["uri"])
	if err != nil {
		return fmt.Errorf("connecting with the tenant's credentials: %w", err)
	}
	defer conn.Close(ctx)
	for _, stmt := range sampleData {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("sample data: %w\n%s", err, stmt)
		}
	}
	var patients, appts, unknownAllergies, noNote int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM appointments),
		(SELECT count(*) FROM patients WHERE allergies IS NULL), (SELECT count(*) FROM appointments WHERE note IS NULL)`).
		Scan(&patients, &appts, &unknownAllergies, &noNote); err != nil {
		return err
	}
	d.say("The clinic's application logged in as %s (from Secret %s/custos-database) and wrote its data:", creds["user"], tenantName)
	d.say("  patients: %d rows (%d with allergies unknown: NULL), appointments: %d rows (%d without a note: NULL),", patients, unknownAllergies, appts, noNote)
	d.say("  names such as Zoë Çelik, Łucja Wiśniewska, Søren Ødegård, 李伟; notes with line breaks and quotes")
	var rows pgx.Rows
	if rows, err = conn.Query(ctx, `SELECT id, name, coalesce(allergies, 'NULL') FROM patients ORDER BY id LIMIT 6`); err != nil {
		return err
	}
	var sample []string
	for rows.Next() {
		var id int
		var name, allergies string
		if err := rows.Scan(&id, &name, &allergies); err != nil {
			return err
		}
		sample = append(sample, fmt.Sprintf("%3d  %-20s %s", id, name, strings.ReplaceAll(allergies, "\n", `\n`)))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.block(strings.Join(sample, "\n"))

	// Kubernetes objects of the clinic, which the export returns too.
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "clinic-settings", Namespace: tenantName},
			Data: map[string]string{"opening-hours": "ma-vr 08:00-17:00", "emergency-line": "+31 50 000 0000", "locale": "nl_NL"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "agenda", Namespace: tenantName}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agenda"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agenda"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agenda", Image: "registry.example.nl/kliniek/agenda:2.4"}}}},
		}},
	}
	for _, o := range objs {
		if err := d.c.Create(ctx, o); err != nil {
			return err
		}
	}
	d.say("Added the clinic's ConfigMap clinic-settings and Deployment agenda (2 replicas) to namespace %s", tenantName)
	return nil
}

// sampleData is the clinic's database: patients and appointments, with NULLs, unicode, quotes and line breaks.
var sampleData = []string{
	`CREATE TABLE patients (
		id integer PRIMARY KEY,
		name text NOT NULL,
		born date,
		bsn text,
		allergies text
	)`,
	`COMMENT ON TABLE patients IS 'Patiënten van de praktijk'`,
	`CREATE TABLE appointments (
		id integer PRIMARY KEY,
		patient_id integer NOT NULL REFERENCES patients(id),
		at timestamptz NOT NULL,
		reason text NOT NULL,
		note text
	)`,
	`INSERT INTO patients VALUES
		(1, 'Anouk de Vries', '1984-03-12', '123456782', NULL),
		(2, 'Zoë Çelik', '1991-07-30', NULL, 'penicilline'),
		(3, 'Jürgen Müller', '1958-11-02', '987654321', 'noten, "pinda''s"'),
		(4, 'Łucja Wiśniewska', '2001-01-19', NULL, NULL),
		(5, 'Søren Ødegård', '1949-05-05', '111222333', E'latex\nen pleisters'),
		(6, '李伟', '1979-09-09', NULL, 'geen')`,
	`INSERT INTO patients
		SELECT g, 'Patiënt ' || g, date '1935-01-01' + (g * 131) % 30000,
			CASE WHEN g % 3 = 0 THEN NULL ELSE lpad((g * 7919)::text, 9, '0') END,
			CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN 'geen' ELSE 'hooikoorts' END
		FROM generate_series(7, 240) g`,
	`INSERT INTO appointments
		SELECT g, 1 + g % 240, timestamptz '2026-01-05 08:00+01' + (g % 200) * interval '1 day' + (g % 9) * interval '20 minutes',
			(ARRAY['controle', 'griepprik', 'bloeddruk meten', 'consult'])[1 + g % 4],
			CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN E'terugbellen\nna uitslag lab' ELSE 'ok' END
		FROM generate_series(1, 900) g`,
}

// credentials reads the tenant's credentials Secret from its namespace.
func (d *demo) credentials(ctx context.Context) (map[string]string, error) {
	var sec corev1.Secret
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: tenantName, Name: "custos-database"}, &sec); err != nil {
		return nil, fmt.Errorf("reading the tenant's credentials: %w", err)
	}
	out := map[string]string{}
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out, nil
}

// updateTenant changes the Tenant's spec, reading it again when a controller wrote its status in between.
func (d *demo) updateTenant(ctx context.Context, mutate func(*custosv1alpha1.Tenant)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t, err := d.getTenant(ctx)
		if err != nil {
			return err
		}
		mutate(t)
		return d.c.Update(ctx, t)
	})
}

func (d *demo) writeFile(name string, data []byte) (string, error) {
	p := filepath.Join(d.outDir, name)
	return p, os.WriteFile(p, data, 0o644)
}

// printTenants prints columns of `kubectl get tenants.custos.io -o wide`, with times as UTC dates and clock times
// (kubectl shows a date column as an age, and a time still to come, such as the next backup, as <invalid>).
func (d *demo) printTenants(ctx context.Context) error {
	var list custosv1alpha1.TenantList
	if err := d.c.List(ctx, &list); err != nil {
		return err
	}
	ts := func(t *metav1.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	rows := [][]string{{"NAME", "PHASE", "READY", "BACKUPS", "LAST SNAPSHOT", "CONTRACT END", "NEXT BACKUP", "BACKUPS GONE BY", "DATABASE", "AGE"}}
	for _, t := range list.Items {
		ready, backups := "-", "-"
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c != nil {
			ready = string(c.Status)
		}
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy); c != nil {
			backups = c.Reason
		}
		var newest *metav1.Time
		for _, lb := range t.Status.Backups {
			if lb.Role == "Primary" {
				newest = lb.Newest
			}
		}
		var gone *metav1.Time
		if t.Status.Exit != nil {
			gone = t.Status.Exit.BackupsGoneBy
		}
		db := "-"
		if t.Status.Database != nil {
			db = t.Status.Database.Name
		}
		rows = append(rows, []string{t.Name, string(t.Status.Phase), ready, backups, ts(newest), ts(t.Spec.Contract.End), ts(t.Status.NextBackup), ts(gone), db,
			time.Since(t.CreationTimestamp.Time).Round(time.Second).String()})
	}
	d.say("kubectl get tenants.custos.io -o wide (some of its columns, times in UTC):")
	d.block(table(rows))
	return nil
}

// table aligns rows in columns three spaces apart, as kubectl does.
func table(rows [][]string) string {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				continue
			}
			b.WriteString(c + strings.Repeat(" ", width[i]-len([]rune(c))+3))
		}
		b.WriteString("\n")
	}
	return b.String()
}
