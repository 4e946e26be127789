// Package tenantns decides which namespaces the exit of a tenant may act on. Provisioning records each namespace
// it created for the tenant in status.namespaces (name and UID); the namespace also carries the tenant's label and
// custos' annotation naming the tenant's UID. The exit suspends, purges and deletes only a namespace for which all
// of that holds, read live: a name in the spec alone proves nothing (it may be another tenant's namespace, the
// manager's own, or a "<tenant>-2" that already belonged to someone else when count was raised). Everything else
// is left alone and reported.
//
// The package reads no clock and no client: the exit controller reads the namespaces and asks.
package tenantns

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Recorded is a namespace provisioning proved the tenant's: an entry of status.namespaces.
type Recorded struct {
	Name, UID string
}

// Live is what a GET of a namespace returned (nil in Observed: 404 Not Found).
type Live struct {
	UID string
	// TenantLabel is the custos.io/tenant label, TenantUIDAnnotation the custos.io/tenant-uid annotation.
	TenantLabel, TenantUIDAnnotation string
	// Deleting: the namespace has a deletionTimestamp.
	Deleting bool
}

// Tenant identifies the tenant whose exit asks.
type Tenant struct {
	Name, UID string
}

// Refused is a namespace the exit leaves entirely alone, and why.
type Refused struct {
	Name, Why string
}

// Result sorts every namespace the tenant ever named or recorded.
type Result struct {
	// Owned are live namespaces proven the tenant's: the exit acts on them (recorded UID).
	Owned []Recorded
	// Gone are recorded namespaces that no longer exist: a GET returns 404, or returns a namespace of the same
	// name with another UID (which is someone else's, and is in Refused).
	Gone []Recorded
	// Refused are namespaces that exist but are not proven the tenant's: named in the spec only, or recorded but
	// changed since (another UID, another tenant's label or UID annotation).
	Refused []Refused
}

// Names of the owned namespaces.
func (r Result) OwnedNames() []string {
	out := make([]string, 0, len(r.Owned))
	for _, o := range r.Owned {
		out = append(out, o.Name)
	}
	return out
}

// Message says in one sentence which namespaces are left alone and why; empty when none is.
func (r Result) Message() string {
	if len(r.Refused) == 0 {
		return ""
	}
	parts := make([]string, 0, len(r.Refused))
	for _, f := range r.Refused {
		parts = append(parts, fmt.Sprintf("namespace %q %s", f.Name, f.Why))
	}
	return "the exit acts only on namespaces provisioning recorded as this tenant's (status.namespaces, UID and custos.io/tenant-uid verified); left entirely alone: " +
		strings.Join(parts, "; ") + ". Nothing in them was suspended or deleted: if one holds this tenant's data, a person must deal with it"
}

// Classify sorts the recorded namespaces and the spec's names by what a live read observed (by name; a missing
// name is a 404). Recorded namespaces come first, in their order, then spec names nobody recorded.
func Classify(t Tenant, recorded []Recorded, specNames []string, observed map[string]*Live) Result {
	var res Result
	seen := map[string]bool{}
	for _, rec := range recorded {
		if seen[rec.Name] {
			continue
		}
		seen[rec.Name] = true
		live := observed[rec.Name]
		switch {
		case live == nil:
			res.Gone = append(res.Gone, rec)
		case rec.UID == "" || live.UID != rec.UID:
			if rec.UID != "" {
				res.Gone = append(res.Gone, rec)
			}
			res.Refused = append(res.Refused, Refused{Name: rec.Name, Why: fmt.Sprintf(
				"has uid %s, not the uid %s provisioning recorded: it is another namespace of the same name", live.UID, orNone(rec.UID))})
		case live.TenantLabel != t.Name:
			res.Refused = append(res.Refused, Refused{Name: rec.Name, Why: fmt.Sprintf(
				"is recorded, but its custos.io/tenant label is %q, not %q", live.TenantLabel, t.Name)})
		case live.TenantUIDAnnotation != t.UID:
			res.Refused = append(res.Refused, Refused{Name: rec.Name, Why: fmt.Sprintf(
				"is recorded, but its custos.io/tenant-uid annotation is %q, not this tenant's uid %s", live.TenantUIDAnnotation, t.UID)})
		default:
			res.Owned = append(res.Owned, rec)
		}
	}
	extra := []string{}
	for _, n := range specNames {
		if !seen[n] {
			seen[n] = true
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		live := observed[n]
		if live == nil {
			continue // nothing there, nothing to leave alone
		}
		why := "is named in the spec, but provisioning never recorded it as this tenant's"
		switch {
		case live.TenantLabel != "" && live.TenantLabel != t.Name:
			why += fmt.Sprintf(" (it carries tenant %q's label)", live.TenantLabel)
		case live.TenantLabel == "":
			why += " (it carries no custos.io/tenant label)"
		}
		res.Refused = append(res.Refused, Refused{Name: n, Why: why})
	}
	return res
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Remaining is an object left in a namespace being deleted: kind, name and its finalizers.
type Remaining struct {
	Kind, Name string
	Finalizers []string
	Deleting   bool
}

// StuckMessage says what keeps a namespace from going away: the objects whose finalizers remain (up to a few,
// then a count), what the namespace controller reports in the namespace's own conditions, since when it waits,
// and what a person can do. It changes only when one of those does (an Event is sent for each new message).
func StuckMessage(ns string, since time.Time, remaining []Remaining, nsConditions []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace %s is being deleted since %s and is not gone", ns, since.UTC().Format(time.RFC3339))
	var held []string
	for _, o := range remaining {
		if len(o.Finalizers) == 0 {
			continue
		}
		held = append(held, fmt.Sprintf("%s/%s (finalizers %s)", o.Kind, o.Name, strings.Join(o.Finalizers, ",")))
	}
	if len(held) > 0 {
		const show = 10
		more := ""
		if len(held) > show {
			more = fmt.Sprintf(" and %d more", len(held)-show)
			held = held[:show]
		}
		fmt.Fprintf(&b, "; objects held by finalizers: %s%s", strings.Join(held, ", "), more)
	}
	if len(nsConditions) > 0 {
		fmt.Fprintf(&b, "; the namespace controller reports: %s", strings.Join(nsConditions, "; "))
	}
	if len(held) > 0 {
		b.WriteString(". A finalizer waits for a controller to clean up; if none will (e.g. one the tenant set), remove it: " +
			"kubectl -n " + ns + " patch <kind>/<name> --type=merge -p '{\"metadata\":{\"finalizers\":null}}'. custos does not remove finalizers itself: " +
			"it cannot tell a tenant's from a controller's that still has something outside the cluster to clean up")
	}
	return b.String()
}
