package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/export"
	"github.com/custos-io/custos/internal/signing"
)

var phaseMeaning = map[custosv1alpha1.TenantPhase]string{
	custosv1alpha1.TenantActive:      "the contract runs",
	custosv1alpha1.TenantTerminating: "suspending: the database role loses LOGIN and its sessions end, only deny-all network policies stay, workloads scale to zero",
	custosv1alpha1.TenantExporting:   "writing the bag (the DataExport in status.exit.exportRef); nothing is destroyed before the receipt",
	custosv1alpha1.TenantPurging:     "deleting the database and its role, the Secrets and the namespaces, and checking each is gone",
	custosv1alpha1.TenantAwaitingBackupExpiry: "exit.backups Shred: deleting both backup repositories, then their keys " +
		"(cryptographic erase); with Expire it would wait for keepWithin",
	custosv1alpha1.TenantDestroyed: "every copy verified gone; the DestructionCertificate is signed",
}

// phaseWatcher prints every phase the tenant is seen in.
type phaseWatcher struct {
	d    *demo
	last custosv1alpha1.TenantPhase
}

func (w *phaseWatcher) see(t *custosv1alpha1.Tenant) {
	if t.Status.Phase == w.last {
		return
	}
	w.last = t.Status.Phase
	w.d.say("phase %-21s %s", t.Status.Phase, phaseMeaning[t.Status.Phase])
}

// exit ends the contract and follows the exit to Destroyed.
func (d *demo) exit(ctx context.Context) error {
	creds, err := d.credentials(ctx)
	if err != nil {
		return err
	}
	if err := queryAsTenant(ctx, creds); err != nil {
		return fmt.Errorf("the clinic cannot log in while its contract runs: %w", err)
	}
	d.say("Before the end: the clinic's application logs in as %s and reads its appointments.", creds["user"])

	end := time.Now().Add(-time.Second).Truncate(time.Second)
	if err := d.updateTenant(ctx, func(t *custosv1alpha1.Tenant) { t.Spec.Contract.End = &metav1.Time{Time: end} }); err != nil {
		return err
	}
	d.say("spec.contract.end set to %s (now): the exit starts.", end.UTC().Format(time.RFC3339))
	w := &phaseWatcher{d: d, last: custosv1alpha1.TenantActive}
	var t *custosv1alpha1.Tenant
	err = waitFor(ctx, "the export", 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if t, err = d.getTenant(ctx); err != nil {
			return false, "", err
		}
		w.see(t)
		return t.Status.Phase == custosv1alpha1.TenantExporting, "phase " + string(t.Status.Phase), nil
	})
	if err != nil {
		return err
	}
	if t.Status.Exit != nil && t.Status.Exit.TerminatedAt != nil {
		d.say("Suspended at %s (status.exit.terminatedAt).", clock(t.Status.Exit.TerminatedAt.Time))
	}
	if err := d.showSuspension(ctx, creds); err != nil {
		return err
	}

	// The DataExport custos made for the exit.
	err = waitFor(ctx, "status.exit.exportRef", time.Minute, 500*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if t, err = d.getTenant(ctx); err != nil {
			return false, "", err
		}
		return t.Status.Exit != nil && t.Status.Exit.ExportRef != nil, "not recorded yet", nil
	})
	if err != nil {
		return err
	}
	d.exportName = t.Status.Exit.ExportRef.Name
	de := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: d.exportName}}
	err = waitFor(ctx, "DataExport "+de.Name+" Ready", 2*time.Minute, 500*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if err := d.c.Get(ctx, client.ObjectKeyFromObject(de), de); err != nil {
			if apierrors.IsNotFound(err) {
				return false, "not created yet", nil
			}
			return false, "", err
		}
		if de.Status.Phase == custosv1alpha1.ExportFailed {
			c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionReady)
			msg := ""
			if c != nil {
				msg = c.Message
			}
			return false, "", fmt.Errorf("the export failed: %s", msg)
		}
		return de.Status.Phase == custosv1alpha1.ExportReady, "phase " + string(de.Status.Phase), nil
	})
	if err != nil {
		return err
	}
	art := de.Status.Artefact
	d.say("DataExport %s Ready: the bag %s, %d bytes, %d payload files (it waits for the clinic's receipt):", de.Name, art.Location, art.Bytes, art.Files)
	expires := "-"
	if de.Status.ExpiresAt != nil {
		expires = de.Status.ExpiresAt.UTC().Format("2006-01-02 15:04:05")
	}
	d.say("kubectl get dataexports -o wide (its columns, times in UTC):")
	d.block(table([][]string{{"NAME", "TENANT", "PHASE", "SHA256", "BYTES", "EXPIRES"},
		{de.Name, de.Spec.TenantRef.Name, string(de.Status.Phase), art.SHA256, fmt.Sprint(art.Bytes), expires}}))
	if err := d.inspectBag(art.Location, art.SHA256); err != nil {
		return err
	}

	d.say("The clinic fetches the bag with the custos CLI: it copies it, verifies it, checks its sha256 against the one")
	d.say("custos recorded and only then writes the receipt (spec.receipt: the sha256 it computed, and who received it).")
	if err := d.custos(ctx, "export", "fetch", de.Name, "--to", ".", "--received-by", "J. Jansen, privacy officer Kliniek Noord"); err != nil {
		return err
	}

	// Receipt to Destroyed.
	err = waitFor(ctx, "Destroyed", 4*time.Minute, 200*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if t, err = d.getTenant(ctx); err != nil {
			return false, "", err
		}
		w.see(t)
		detail := "phase " + string(t.Status.Phase)
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c != nil {
			detail += ", Ready " + string(c.Status) + " " + c.Reason + ": " + c.Message
		}
		if t.Status.Exit != nil && t.Status.Exit.Step != nil && t.Status.Exit.Step.LastError != "" {
			detail += ", step " + t.Status.Exit.Step.Action + ": " + t.Status.Exit.Step.LastError
		}
		return t.Status.Phase == custosv1alpha1.TenantDestroyed, detail, nil
	})
	if err != nil {
		return err
	}
	ex := t.Status.Exit
	d.say("The exit, from status.exit:")
	var tl []string
	add := func(what string, at *metav1.Time) {
		if at != nil {
			tl = append(tl, fmt.Sprintf("%-30s %s", what, clock(at.Time)))
		}
	}
	add("contract end", &metav1.Time{Time: end})
	add("suspended", ex.TerminatedAt)
	add("export acknowledged (receipt)", ex.ExportAcknowledgedAt)
	add("live data purged", ex.LiveDataPurgedAt)
	add("backups shredding started", ex.DisposalStartedAt)
	add("everything verified gone", ex.DestroyedAt)
	d.block(strings.Join(tl, "\n"))
	d.say("What was destroyed, how, and how its absence was checked (status.exit.destroyed):")
	var rows []string
	for _, l := range ex.Destroyed {
		rows = append(rows, fmt.Sprintf("%-10s %-41s %-5s %s", l.Kind, l.Name, l.Method, oneLine(l.Verification, 64)))
	}
	d.block(strings.Join(rows, "\n"))
	if err := d.checkGone(ctx, t); err != nil {
		return err
	}
	return d.printTenants(ctx)
}

// queryAsTenant logs in with the tenant's credentials and reads its data.
func queryAsTenant(ctx context.Context, creds map[string]string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, creds["uri"])
	if err != nil {
		return err
	}
	defer conn.Close(cctx)
	var n int
	return conn.QueryRow(cctx, "SELECT count(*) FROM appointments").Scan(&n)
}

// showSuspension shows what the suspension did: no login, deny-all network, workloads at zero.
func (d *demo) showSuspension(ctx context.Context, creds map[string]string) error {
	err := queryAsTenant(ctx, creds)
	if err == nil {
		return errors.New("the suspended tenant can still log in to its database")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		d.say("The clinic's login is refused now: %s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
	} else {
		d.say("The clinic's login is refused now: %s", oneLine(err.Error(), 160))
	}
	var nps []string
	for _, ns := range []string{tenantName, tenantName + "-jobs"} {
		var list networkingv1.NetworkPolicyList
		if err := d.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, np := range list.Items {
			nps = append(nps, ns+"/"+np.Name)
		}
	}
	d.say("Network policies left: %s", strings.Join(nps, ", "))
	var dep appsv1.Deployment
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: tenantName, Name: "agenda"}, &dep); err != nil {
		return err
	}
	d.say("Deployment agenda: %d replicas (was 2)", ptrOr(dep.Spec.Replicas, 1))
	return nil
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > n {
		return string([]rune(s)[:n-1]) + "…"
	}
	return s
}

// inspectBag verifies the bag as custos verify-export does, lists its files and prints its sha256 and a CSV.
func (d *demo) inspectBag(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	rep, err := export.Verify(io.TeeReader(f, h))
	if err != nil {
		return fmt.Errorf("reading the bag: %w", err)
	}
	if _, err := io.Copy(h, f); err != nil { // the tar's trailing blocks, if Verify stopped before them
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if !rep.OK {
		return fmt.Errorf("the bag does not verify: %s", strings.Join(rep.Problems, "; "))
	}
	if sum != want {
		return fmt.Errorf("the bag's sha256 is %s, custos recorded %s", sum, want)
	}
	d.say("The bag verifies (BagIt manifests sha256 + sha512, tag manifests, Payload-Oxum %s, datapackage.json):", rep.PayloadOxum)
	var tables []string
	for _, tb := range rep.Tables {
		tables = append(tables, fmt.Sprintf("%-22s %5d rows   data/%s", tb.Name, tb.Rows, tb.Path))
	}
	d.block(strings.Join(tables, "\n"))
	d.say("sha256 %s (the same as status.artefact.sha256)", sum)

	// The layout, and the start of the patients' CSV.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(bufio.NewReader(f))
	var files []string
	var csv string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		files = append(files, fmt.Sprintf("%8d  %s", hdr.Size, hdr.Name))
		if strings.HasSuffix(hdr.Name, "tables/public.patients.csv") {
			b, err := io.ReadAll(io.LimitReader(tr, 4096))
			if err != nil {
				return err
			}
			csv = string(b)
		}
	}
	d.say("Its layout (tar -tvf %s):", filepath.Base(path))
	d.block(strings.Join(files, "\n"))
	if csv != "" {
		lines := strings.SplitAfter(csv, "\n")
		d.say("The first lines of data/tables/public.patients.csv (an unquoted \\N is NULL; a line break stays inside quotes):")
		d.block(strings.Join(lines[:min(9, len(lines))], ""))
	}
	return nil
}

// checkGone looks for the tenant's data everywhere it lived.
func (d *demo) checkGone(ctx context.Context, t *custosv1alpha1.Tenant) error {
	d.say("The demo checks for itself:")
	var problems []string
	check := func(what string, gone bool, err error) {
		switch {
		case err != nil:
			problems = append(problems, what+": "+err.Error())
			d.say("  ✗ %s: %v", what, err)
		case !gone:
			problems = append(problems, what+" is still there")
			d.say("  ✗ %s is still there", what)
		default:
			d.say("  ✓ %s: gone", what)
		}
	}
	admin, err := pgx.Connect(ctx, d.pg.URL("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	var n int
	err = admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1 OR oid = $2", t.DatabaseName(), t.Status.Database.OID).Scan(&n)
	check(fmt.Sprintf("database %s (OID %d)", t.DatabaseName(), t.Status.Database.OID), n == 0, err)
	err = admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", t.Status.Database.Role).Scan(&n)
	check("role "+t.Status.Database.Role, n == 0, err)
	for _, ns := range t.NamespaceNames() {
		err := d.c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		check("namespace "+ns, apierrors.IsNotFound(err), client.IgnoreNotFound(err))
	}
	for _, name := range []string{"custos-db-" + t.Name, "custos-repo-" + t.Name} {
		err := d.c.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: name}, &corev1.Secret{})
		check("Secret "+managerNamespace+"/"+name, apierrors.IsNotFound(err), client.IgnoreNotFound(err))
	}
	_, err = os.Stat(filepath.Join(d.primaryDir, repoDir(t)))
	check("primary repository "+filepath.Join(d.primaryDir, repoDir(t)), errors.Is(err, os.ErrNotExist), ignoreNotExist(err))
	files := 0
	err = filepath.WalkDir(filepath.Join(d.offsite.Dir, "data", repoDir(t)), func(_ string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files++
		}
		return ignoreNotExist(err)
	})
	check(fmt.Sprintf("offsite repository %s (files left: %d)", d.offsite.URL+repoDir(t), files), files == 0, err)
	if len(problems) > 0 {
		return fmt.Errorf("the tenant's data is not gone: %s", strings.Join(problems, "; "))
	}
	return nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// certificate fetches the DestructionCertificate and the public key and checks them, and the audit trail, with the
// custos CLI.
func (d *demo) certificate(ctx context.Context) error {
	t, err := d.getTenant(ctx)
	if err != nil {
		return err
	}
	if t.Status.Exit == nil || t.Status.Exit.CertificateRef == nil {
		return errors.New("the destroyed tenant names no certificate (status.exit.certificateRef)")
	}
	name := t.Status.Exit.CertificateRef.Name
	cert := &custosv1alpha1.DestructionCertificate{ObjectMeta: metav1.ObjectMeta{Name: name}}
	err = waitFor(ctx, "certificate "+name+" Verified", time.Minute, 500*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		if err := d.c.Get(ctx, client.ObjectKeyFromObject(cert), cert); err != nil {
			return false, "", err
		}
		c := meta.FindStatusCondition(cert.Status.Conditions, custosv1alpha1.ConditionVerified)
		if c == nil {
			return false, "no Verified condition yet", nil
		}
		return c.Status == metav1.ConditionTrue, c.Reason + ": " + c.Message, nil
	})
	if err != nil {
		return err
	}
	d.say("DestructionCertificate %s, signed by the manager with its Ed25519 key; the manager checked it against its", name)
	d.say("published key (condition Verified):")
	if err := d.kubectl(ctx, "get", "destructioncertificates", "-o", "wide"); err != nil {
		return err
	}

	certYAML, err := d.kubectlOut(ctx, "get", "dcert", name, "-o", "yaml")
	if err != nil {
		return err
	}
	certFile, err := d.writeFile(name+".yaml", []byte(certYAML))
	if err != nil {
		return err
	}
	var cm corev1.ConfigMap
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: signing.DefaultName}, &cm); err != nil {
		return err
	}
	keyFile, err := d.writeFile("processor.pub.pem", []byte(cm.Data["public.pem"]))
	if err != nil {
		return err
	}
	d.say("Wrote, into %s:", d.outDir)
	d.say("  %-28s kubectl get dcert %s -o yaml", filepath.Base(certFile), name)
	d.say("  %-28s the public key custos publishes: ConfigMap %s/%s, key public.pem (keyid %s)", filepath.Base(keyFile), managerNamespace, signing.DefaultName, cm.Data["keyid"])
	d.say("  %-28s the bag, fetched in step 4", d.exportName+".tar")
	d.say("In production the data controller gets the public key over a channel it trusts (with the agreement), not from the cluster.")
	d.say("")
	d.say("The auditor exports the tenant's hash-chained audit trail from the cluster, then checks everything offline:")
	audit := tenantName + "-audit.jsonl"
	if err := d.custos(ctx, "audit", tenantName, "--export", audit); err != nil {
		return err
	}
	if err := d.custos(ctx, "audit", "show", audit); err != nil {
		return err
	}
	if err := d.custos(ctx, "audit", "verify", audit); err != nil {
		return err
	}

	// The certificate commits to the trail as it stood when it was signed; the trail goes on with the entry that
	// records the signing (CertificateIssued).
	pub, err := evidence.ParsePublicKey([]byte(cm.Data["public.pem"]))
	if err != nil {
		return err
	}
	st, err := evidence.Verify(evidence.EnvelopeFromAPI(cert.Spec.Envelope), pub)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(d.outDir, audit))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	d.say("The certificate commits to the trail as it stood when it was signed: audit.length %d, audit.head %s;", st.Predicate.Audit.Length, short(st.Predicate.Audit.Head, 16))
	d.say("the trail has %d entries now (the signing itself is recorded after it). custos verify checks that entry %d is that head.", len(lines), st.Predicate.Audit.Length)
	if err := d.custos(ctx, "verify", filepath.Base(certFile), "--key", filepath.Base(keyFile), "--artefact", d.exportName+".tar", "--audit", audit); err != nil {
		return err
	}
	d.say("The certificate verifies offline: signature, every location verified gone, the bag the clinic holds is its subject,")
	d.say("and the audit trail holds, at the certificate's length, the head the certificate commits to.")
	return nil
}
