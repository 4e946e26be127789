package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

const statusUsage = `Usage: custos status <tenant> [-o json] [--kubeconfig PATH] [--events N]

Reads one Tenant from the cluster (KUBECONFIG, or --kubeconfig) with what belongs to it and prints where it
stands: phase, contract end, retention policy and exit choices; every condition (type, status, reason, since,
message); per backup location its role, snapshots, newest and oldest snapshot, goneBy, next run, last copy, last
integrity check and its result, last error and its reason; the next backup, the last restore drill, the backup
tasks running; the legal hold; the exit (step, grace period, suspension, the exit's DataExport and its phase,
acknowledgement, purge, backupsGoneBy, destroyed locations) and the DestructionCertificate with its Verified
condition; the tenant's latest Events (the last N, newest last). Times are UTC, RFC 3339, with how long ago or
how far ahead in parentheses. It changes nothing.

-o json prints one JSON document instead, for scripts. Its fields (times RFC 3339 UTC, or null when not set;
lists are [] when empty):
  tenant, uid, displayName, readAt, phase, contractID, contractStart, contractEnd, retentionPolicy,
  dataReturn, backupDisposal, database {server, name, role, oid},
  conditions[] {type, status, reason, message, since, observedGeneration},
  backups[] {location, role, repositoryID, snapshots, newest, oldest, goneBy, listedAt, nextRun, lastCopy,
             lastCheck, lastCheckSucceeded (true, false or null), lastError, lastErrorReason},
  nextBackup, lastDrill {time, succeeded, tables, snapshot, duration, durationSeconds, message} or null,
  tasks[] {key, kind, location, slot, startedAt, attempts, notBefore, lastError},
  legalHold {reason, until} or null,
  exit {step {action, startedAt, attempts, lastError} or null, endObservedAt, destructionNotBefore,
        terminatedAt, export {name, uid, bag, found, phase, uidMatches} or null, exportAcknowledgedAt,
        exportAcknowledgeTimedOut, liveDataPurgedAt, disposalStartedAt, backupsGoneBy, destroyedAt,
        destroyed (how many locations were verified gone)} or null,
  certificate {name, issuedAt, verified ("True", "False" or "Unknown"), verifiedReason, verifiedMessage} or null,
  events[] {time, type, reason, action, message, count, reportingController, namespace, name} (newest last),
  eventsTotal, readErrors[] (what could not be read; the rest is still printed).

Exit status: 0 the tenant was read (whatever its state); 2 usage error, the tenant cannot be read (no cluster,
no permission, no such Tenant), or something belonging to it could not be read (readErrors: the output is then
incomplete).`

// now is the clock the relative times are computed from (a variable so tests can fix it).
var now = time.Now

// statusReport is the JSON document of "custos status -o json". Field names are stable: scripts rely on them.
type statusReport struct {
	Tenant          string            `json:"tenant"`
	UID             string            `json:"uid"`
	DisplayName     string            `json:"displayName"`
	ReadAt          time.Time         `json:"readAt"`
	Phase           string            `json:"phase"`
	ContractID      string            `json:"contractID"`
	ContractStart   *time.Time        `json:"contractStart"`
	ContractEnd     *time.Time        `json:"contractEnd"`
	RetentionPolicy string            `json:"retentionPolicy"`
	DataReturn      string            `json:"dataReturn"`
	BackupDisposal  string            `json:"backupDisposal"`
	Database        *statusDatabase   `json:"database"`
	Conditions      []statusCondition `json:"conditions"`
	Backups         []statusLocation  `json:"backups"`
	NextBackup      *time.Time        `json:"nextBackup"`
	LastDrill       *statusDrill      `json:"lastDrill"`
	Tasks           []statusTask      `json:"tasks"`
	LegalHold       *statusLegalHold  `json:"legalHold"`
	Exit            *statusExit       `json:"exit"`
	Certificate     *statusCert       `json:"certificate"`
	Events          []statusEvent     `json:"events"`
	EventsTotal     int               `json:"eventsTotal"`
	ReadErrors      []string          `json:"readErrors"`
}

type statusDatabase struct {
	Server string `json:"server"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	OID    int64  `json:"oid"`
}

type statusCondition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"`
	Reason             string     `json:"reason"`
	Message            string     `json:"message"`
	Since              *time.Time `json:"since"`
	ObservedGeneration int64      `json:"observedGeneration"`
}

type statusLocation struct {
	Location           string     `json:"location"`
	Role               string     `json:"role"`
	RepositoryID       string     `json:"repositoryID"`
	Snapshots          int32      `json:"snapshots"`
	Newest             *time.Time `json:"newest"`
	Oldest             *time.Time `json:"oldest"`
	GoneBy             *time.Time `json:"goneBy"`
	ListedAt           *time.Time `json:"listedAt"`
	NextRun            *time.Time `json:"nextRun"`
	LastCopy           *time.Time `json:"lastCopy"`
	LastCheck          *time.Time `json:"lastCheck"`
	LastCheckSucceeded *bool      `json:"lastCheckSucceeded"`
	LastError          string     `json:"lastError"`
	LastErrorReason    string     `json:"lastErrorReason"`
}

type statusDrill struct {
	Time            time.Time `json:"time"`
	Succeeded       bool      `json:"succeeded"`
	Tables          int32     `json:"tables"`
	Snapshot        string    `json:"snapshot"`
	Duration        string    `json:"duration"`
	DurationSeconds float64   `json:"durationSeconds"`
	Message         string    `json:"message"`
}

type statusTask struct {
	Key       string     `json:"key"`
	Kind      string     `json:"kind"`
	Location  string     `json:"location"`
	Slot      time.Time  `json:"slot"`
	StartedAt *time.Time `json:"startedAt"`
	Attempts  int32      `json:"attempts"`
	NotBefore *time.Time `json:"notBefore"`
	LastError string     `json:"lastError"`
}

type statusLegalHold struct {
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until"`
}

type statusExit struct {
	Step                      *statusExitStep   `json:"step"`
	EndObservedAt             *time.Time        `json:"endObservedAt"`
	DestructionNotBefore      *time.Time        `json:"destructionNotBefore"`
	TerminatedAt              *time.Time        `json:"terminatedAt"`
	Export                    *statusExitExport `json:"export"`
	ExportAcknowledgedAt      *time.Time        `json:"exportAcknowledgedAt"`
	ExportAcknowledgeTimedOut bool              `json:"exportAcknowledgeTimedOut"`
	LiveDataPurgedAt          *time.Time        `json:"liveDataPurgedAt"`
	DisposalStartedAt         *time.Time        `json:"disposalStartedAt"`
	BackupsGoneBy             *time.Time        `json:"backupsGoneBy"`
	DestroyedAt               *time.Time        `json:"destroyedAt"`
	Destroyed                 int               `json:"destroyed"`
}

type statusExitStep struct {
	Action    string    `json:"action"`
	StartedAt time.Time `json:"startedAt"`
	Attempts  int32     `json:"attempts"`
	LastError string    `json:"lastError"`
}

type statusExitExport struct {
	Name  string `json:"name"`
	UID   string `json:"uid"`
	Bag   string `json:"bag"`
	Found bool   `json:"found"`
	// Phase of the DataExport of that name; "" when it does not exist.
	Phase string `json:"phase"`
	// UIDMatches is false when an object of that name exists with another UID: it is not the exit's export.
	UIDMatches bool `json:"uidMatches"`
}

type statusCert struct {
	Name            string     `json:"name"`
	IssuedAt        *time.Time `json:"issuedAt"`
	Verified        string     `json:"verified"`
	VerifiedReason  string     `json:"verifiedReason"`
	VerifiedMessage string     `json:"verifiedMessage"`
}

type statusEvent struct {
	Time                time.Time `json:"time"`
	Type                string    `json:"type"`
	Reason              string    `json:"reason"`
	Action              string    `json:"action"`
	Message             string    `json:"message"`
	Count               int32     `json:"count"`
	ReportingController string    `json:"reportingController"`
	Namespace           string    `json:"namespace"`
	Name                string    `json:"name"`
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos status", flag.ContinueOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	var output string
	flags.StringVar(&output, "o", "text", "output format: text or json")
	flags.StringVar(&output, "output", "text", "output format: text or json (same as -o)")
	maxEvents := flags.Int("events", 10, "how many of the latest Events to print")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), statusUsage)
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "status takes the name of one Tenant, got %d arguments", len(pos))
	}
	if output != "text" && output != "json" {
		return usageError(stderr, "-o must be text or json, not %q", output)
	}
	if *maxEvents < 0 {
		return usageError(stderr, "--events must not be negative")
	}
	cl, err := connect(*kubeconfig)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	defer cancel()
	t, err := cl.tenant(ctx, pos[0])
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	rep := buildStatus(ctx, cl, t, *maxEvents)
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return usageError(stderr, "writing JSON: %v", err)
		}
	} else {
		printStatus(stdout, rep)
	}
	if len(rep.ReadErrors) > 0 {
		for _, e := range rep.ReadErrors {
			fmt.Fprintf(stderr, "custos: %s\n", e)
		}
		return exitUsage
	}
	return exitOK
}

// buildStatus gathers the report: the tenant's own status, and what it points at (the exit's DataExport, the
// certificate, the Events). What cannot be read is recorded in ReadErrors and left out.
func buildStatus(ctx context.Context, cl *cluster, t *v1alpha1.Tenant, maxEvents int) *statusReport {
	st := t.Status
	rep := &statusReport{
		Tenant: t.Name, UID: string(t.UID), DisplayName: t.Spec.DisplayName, ReadAt: now().UTC().Truncate(time.Second),
		Phase: string(st.Phase), ContractID: t.Spec.Contract.ID, ContractStart: tp(&t.Spec.Contract.Start),
		ContractEnd: tp(t.Spec.Contract.End), RetentionPolicy: t.Spec.RetentionPolicyRef.Name,
		DataReturn: string(t.Spec.Exit.DataReturn), BackupDisposal: string(t.Spec.Exit.Backups),
		NextBackup: tp(st.NextBackup),
		Conditions: []statusCondition{}, Backups: []statusLocation{}, Tasks: []statusTask{}, Events: []statusEvent{},
		ReadErrors: []string{},
	}
	if d := st.Database; d != nil {
		rep.Database = &statusDatabase{Server: d.Server, Name: d.Name, Role: d.Role, OID: d.OID}
	}
	for _, c := range st.Conditions {
		rep.Conditions = append(rep.Conditions, statusCondition{Type: c.Type, Status: string(c.Status), Reason: c.Reason,
			Message: c.Message, Since: tp(&c.LastTransitionTime), ObservedGeneration: c.ObservedGeneration})
	}
	for _, b := range st.Backups {
		rep.Backups = append(rep.Backups, statusLocation{Location: b.Location, Role: b.Role, RepositoryID: b.RepositoryID,
			Snapshots: b.Snapshots, Newest: tp(b.Newest), Oldest: tp(b.Oldest), GoneBy: tp(b.GoneBy),
			ListedAt: mtp(b.ListedAt), NextRun: tp(b.NextRun), LastCopy: tp(b.LastCopy), LastCheck: tp(b.LastCheck),
			LastCheckSucceeded: b.LastCheckSucceeded, LastError: b.LastError, LastErrorReason: b.LastErrorReason})
	}
	if d := st.LastDrill; d != nil {
		rep.LastDrill = &statusDrill{Time: d.Time.UTC(), Succeeded: d.Succeeded, Tables: d.Tables, Snapshot: d.Snapshot,
			Message: d.Message}
		if d.Duration != nil {
			rep.LastDrill.Duration = d.Duration.Duration.String()
			rep.LastDrill.DurationSeconds = d.Duration.Seconds()
		}
	}
	for _, k := range st.Tasks {
		rep.Tasks = append(rep.Tasks, statusTask{Key: k.Key, Kind: string(k.Kind), Location: k.Location, Slot: k.Slot.UTC(),
			StartedAt: tp(k.StartedAt), Attempts: k.Attempts, NotBefore: tp(k.NotBefore), LastError: k.LastError})
	}
	if h := t.Spec.LegalHold; h != nil {
		rep.LegalHold = &statusLegalHold{Reason: h.Reason, Until: tp(h.Until)}
	}
	if x := st.Exit; x != nil {
		e := &statusExit{EndObservedAt: tp(x.EndObservedAt), DestructionNotBefore: tp(x.DestructionNotBefore),
			TerminatedAt: tp(x.TerminatedAt), ExportAcknowledgedAt: tp(x.ExportAcknowledgedAt),
			ExportAcknowledgeTimedOut: x.ExportAcknowledgeTimedOut, LiveDataPurgedAt: tp(x.LiveDataPurgedAt),
			DisposalStartedAt: tp(x.DisposalStartedAt), BackupsGoneBy: tp(x.BackupsGoneBy), DestroyedAt: tp(x.DestroyedAt),
			Destroyed: len(x.Destroyed)}
		if s := x.Step; s != nil {
			e.Step = &statusExitStep{Action: s.Action, StartedAt: s.StartedAt.UTC(), Attempts: s.Attempts, LastError: s.LastError}
		}
		if r := x.ExportRef; r != nil {
			e.Export = &statusExitExport{Name: r.Name, UID: r.UID, Bag: r.Bag}
			de, err := cl.dataExportIfAny(ctx, r.Name)
			switch {
			case err != nil:
				rep.ReadErrors = append(rep.ReadErrors, err.Error())
			case de != nil:
				e.Export.Found = true
				e.Export.Phase = string(de.Status.Phase)
				if e.Export.Phase == "" {
					e.Export.Phase = "not started"
				}
				e.Export.UIDMatches = r.UID == "" || string(de.UID) == r.UID
			}
		}
		rep.Exit = e
	}
	cert, err := cl.certificateOf(ctx, t)
	if err != nil {
		rep.ReadErrors = append(rep.ReadErrors, err.Error())
	} else if cert != nil {
		c := &statusCert{Name: cert.Name, IssuedAt: tp(&cert.Spec.IssuedAt), Verified: "Unknown"}
		if v := meta.FindStatusCondition(cert.Status.Conditions, v1alpha1.ConditionVerified); v != nil {
			c.Verified, c.VerifiedReason, c.VerifiedMessage = string(v.Status), v.Reason, v.Message
		}
		rep.Certificate = c
	}
	events, err := cl.tenantEvents(ctx, t)
	if err != nil {
		rep.ReadErrors = append(rep.ReadErrors, err.Error())
	}
	all := make([]statusEvent, 0, len(events))
	for _, e := range events {
		all = append(all, statusEvent{Time: eventTime(e), Type: e.Type, Reason: e.Reason, Action: e.Action,
			Message: e.Message, Count: eventCount(e), ReportingController: cmp.Or(e.ReportingController, e.Source.Component),
			Namespace: e.Namespace, Name: e.Name})
	}
	slices.SortStableFunc(all, func(a, b statusEvent) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Name, b.Name))
	})
	rep.EventsTotal = len(all)
	rep.Events = all[max(0, len(all)-maxEvents):]
	return rep
}

// eventTime is when an Event last happened: the latest of a series, else the last of the old counting, else when
// it was first seen.
func eventTime(e corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.UTC()
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.UTC()
	case !e.EventTime.IsZero():
		return e.EventTime.UTC()
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.UTC()
	}
	return e.CreationTimestamp.UTC()
}

func eventCount(e corev1.Event) int32 {
	if e.Series != nil && e.Series.Count > 0 {
		return e.Series.Count
	}
	return max(e.Count, 1)
}

// tp is a metav1.Time as a *time.Time in UTC; nil for nil or zero.
func tp(t *metav1.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func mtp(t *metav1.MicroTime) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// stamp is a time as "2026-03-31T09:00:00Z (3h ago)" or "(in 3h)", relative to the report's read time; "-" for none.
func stamp(t *time.Time, ref time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(*t, ref) + ")"
}

func relative(t, ref time.Time) string {
	d := ref.Sub(t).Round(time.Second)
	switch {
	case d == 0:
		return "now"
	case d > 0:
		return duration.HumanDuration(d) + " ago"
	default:
		return "in " + duration.HumanDuration(-d)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a message on its line in the text output.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// printStatus prints the report as aligned sections.
func printStatus(w io.Writer, r *statusReport) {
	ref := r.ReadAt
	section := func(title string) *tabwriter.Writer {
		fmt.Fprintf(w, "\n%s\n", title)
		return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	}

	title := "Tenant " + r.Tenant
	if r.DisplayName != "" {
		title += " (" + r.DisplayName + ")"
	}
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  uid\t%s\n", r.UID)
	fmt.Fprintf(tw, "  phase\t%s\n", orDash(r.Phase))
	fmt.Fprintf(tw, "  contract\t%s, from %s\n", r.ContractID, stamp(r.ContractStart, ref))
	if r.ContractEnd != nil {
		fmt.Fprintf(tw, "  contract end\t%s\n", stamp(r.ContractEnd, ref))
	} else {
		fmt.Fprintf(tw, "  contract end\tnot set\n")
	}
	fmt.Fprintf(tw, "  retention policy\t%s\n", r.RetentionPolicy)
	fmt.Fprintf(tw, "  at the exit\tdataReturn %s, backups %s\n", orDash(r.DataReturn), orDash(r.BackupDisposal))
	if d := r.Database; d != nil {
		fmt.Fprintf(tw, "  database\t%s on %s, role %s, oid %d\n", d.Name, d.Server, d.Role, d.OID)
	}
	if h := r.LegalHold; h != nil {
		until := "until it is removed"
		if h.Until != nil {
			until = "until " + stamp(h.Until, ref)
		}
		fmt.Fprintf(tw, "  legal hold\t%s, %s\n", oneLine(h.Reason), until)
	} else {
		fmt.Fprintf(tw, "  legal hold\tnone\n")
	}
	fmt.Fprintf(tw, "  read at\t%s\n", r.ReadAt.Format(time.RFC3339))
	tw.Flush()

	tw = section("Conditions")
	if len(r.Conditions) == 0 {
		fmt.Fprintln(tw, "  none yet")
	} else {
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
		for _, c := range r.Conditions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, orDash(c.Reason), stamp(c.Since, ref), oneLine(c.Message))
		}
	}
	tw.Flush()

	tw = section("Backups")
	fmt.Fprintf(tw, "  next backup\t%s\n", stamp(r.NextBackup, ref))
	if len(r.Backups) == 0 {
		fmt.Fprintln(tw, "  locations\tnone yet")
	}
	for _, b := range r.Backups {
		fmt.Fprintf(tw, "  %s\t(%s)\n", b.Location, orDash(b.Role))
		fmt.Fprintf(tw, "    snapshots\t%d\n", b.Snapshots)
		fmt.Fprintf(tw, "    newest\t%s\n", stamp(b.Newest, ref))
		fmt.Fprintf(tw, "    oldest\t%s\n", stamp(b.Oldest, ref))
		fmt.Fprintf(tw, "    gone by\t%s\n", stamp(b.GoneBy, ref))
		fmt.Fprintf(tw, "    next run\t%s\n", stamp(b.NextRun, ref))
		if b.LastCopy != nil {
			fmt.Fprintf(tw, "    last copy\t%s\n", stamp(b.LastCopy, ref))
		}
		check := stamp(b.LastCheck, ref)
		if b.LastCheck != nil && b.LastCheckSucceeded != nil {
			if *b.LastCheckSucceeded {
				check += ", succeeded"
			} else {
				check += ", FAILED"
			}
		}
		fmt.Fprintf(tw, "    last check\t%s\n", check)
		if b.LastError != "" || b.LastErrorReason != "" {
			fmt.Fprintf(tw, "    last error\t%s: %s\n", orDash(b.LastErrorReason), oneLine(b.LastError))
		}
		if b.RepositoryID != "" {
			fmt.Fprintf(tw, "    repository\t%s\n", b.RepositoryID)
		}
	}
	if d := r.LastDrill; d != nil {
		result := "succeeded"
		if !d.Succeeded {
			result = "FAILED"
		}
		line := fmt.Sprintf("%s, %s, %d tables", stamp(&d.Time, ref), result, d.Tables)
		if d.Duration != "" {
			line += ", restored in " + d.Duration
		}
		if d.Snapshot != "" {
			line += ", snapshot " + d.Snapshot
		}
		if d.Message != "" {
			line += ": " + oneLine(d.Message)
		}
		fmt.Fprintf(tw, "  last drill\t%s\n", line)
	} else {
		fmt.Fprintf(tw, "  last drill\tnone yet\n")
	}
	tw.Flush()

	tw = section("Tasks running")
	if len(r.Tasks) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintln(tw, "  KIND\tLOCATION\tSLOT\tATTEMPTS\tLAST ERROR")
		for _, k := range r.Tasks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", k.Kind, orDash(k.Location), stamp(&k.Slot, ref), k.Attempts,
				orDash(oneLine(k.LastError)))
		}
	}
	tw.Flush()

	if x := r.Exit; x != nil {
		tw = section("Exit")
		if s := x.Step; s != nil {
			line := fmt.Sprintf("%s, started %s, attempt %d", s.Action, stamp(&s.StartedAt, ref), s.Attempts)
			if s.LastError != "" {
				line += ", last error: " + oneLine(s.LastError)
			}
			fmt.Fprintf(tw, "  step\t%s\n", line)
		} else {
			fmt.Fprintf(tw, "  step\tnone in progress\n")
		}
		fmt.Fprintf(tw, "  end observed\t%s\n", stamp(x.EndObservedAt, ref))
		fmt.Fprintf(tw, "  destruction not before\t%s\n", stamp(x.DestructionNotBefore, ref))
		fmt.Fprintf(tw, "  terminated at\t%s\n", stamp(x.TerminatedAt, ref))
		if e := x.Export; e != nil {
			var state string
			switch {
			case !e.Found:
				state = "does not exist"
			case !e.UIDMatches:
				state = "an object of that name with another UID: not the exit's export (" + e.Phase + ")"
			default:
				state = e.Phase
			}
			fmt.Fprintf(tw, "  export\tDataExport %s: %s\n", e.Name, state)
			if e.Bag != "" {
				fmt.Fprintf(tw, "  bag\t%s\n", e.Bag)
			}
		} else {
			fmt.Fprintf(tw, "  export\tnone\n")
		}
		ack := stamp(x.ExportAcknowledgedAt, ref)
		if x.ExportAcknowledgeTimedOut {
			ack += ", without a receipt (acknowledgeTimeout passed)"
		}
		fmt.Fprintf(tw, "  acknowledged\t%s\n", ack)
		fmt.Fprintf(tw, "  live data purged\t%s\n", stamp(x.LiveDataPurgedAt, ref))
		fmt.Fprintf(tw, "  disposal started\t%s\n", stamp(x.DisposalStartedAt, ref))
		fmt.Fprintf(tw, "  backups gone by\t%s\n", stamp(x.BackupsGoneBy, ref))
		fmt.Fprintf(tw, "  destroyed\t%d location(s) verified gone\n", x.Destroyed)
		fmt.Fprintf(tw, "  destroyed at\t%s\n", stamp(x.DestroyedAt, ref))
		tw.Flush()
	}

	if c := r.Certificate; c != nil {
		tw = section("Certificate")
		fmt.Fprintf(tw, "  name\tDestructionCertificate %s\n", c.Name)
		fmt.Fprintf(tw, "  issued\t%s\n", stamp(c.IssuedAt, ref))
		v := c.Verified
		if c.VerifiedReason != "" {
			v += ", " + c.VerifiedReason
		}
		if c.VerifiedMessage != "" {
			v += ": " + oneLine(c.VerifiedMessage)
		}
		fmt.Fprintf(tw, "  Verified\t%s\n", v)
		tw.Flush()
	}

	title = fmt.Sprintf("Events (the last %d of %d, newest last)", len(r.Events), r.EventsTotal)
	if len(r.Events) == r.EventsTotal {
		title = "Events (newest last)"
	}
	tw = section(title)
	if len(r.Events) == 0 {
		fmt.Fprintln(tw, "  none (the API server keeps Events for an hour by default)")
	} else {
		fmt.Fprintln(tw, "  TIME\tTYPE\tREASON\tACTION\tMESSAGE")
		for _, e := range r.Events {
			msg := oneLine(e.Message)
			if e.Count > 1 {
				msg += fmt.Sprintf(" (×%d)", e.Count)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", stamp(&e.Time, ref), e.Type, e.Reason, orDash(e.Action), msg)
		}
	}
	tw.Flush()

	if len(r.ReadErrors) > 0 {
		fmt.Fprintln(w, "\nCould not read (this output is incomplete)")
		for _, e := range r.ReadErrors {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
}
