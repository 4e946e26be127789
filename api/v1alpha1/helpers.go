package v1alpha1

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// eu27 are the member states of the European Union; the EEA adds Iceland, Liechtenstein and Norway.
var eu27 = map[Jurisdiction]bool{
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true, "EE": true, "FI": true,
	"FR": true, "DE": true, "GR": true, "HU": true, "IE": true, "IT": true, "LV": true, "LT": true, "LU": true,
	"MT": true, "NL": true, "PL": true, "PT": true, "RO": true, "SK": true, "SI": true, "ES": true, "SE": true,
}

var eeaOnly = map[Jurisdiction]bool{"IS": true, "LI": true, "NO": true}

// Admits reports whether the selector admits jurisdiction j.
func (s JurisdictionSelector) Admits(j Jurisdiction) bool {
	switch s {
	case "EU":
		return eu27[j]
	case "EEA":
		return eu27[j] || eeaOnly[j]
	default:
		return string(s) == string(j)
	}
}

// JurisdictionAdmitted reports whether any of allowed admits j.
func JurisdictionAdmitted(allowed []JurisdictionSelector, j Jurisdiction) bool {
	for _, s := range allowed {
		if s.Admits(j) {
			return true
		}
	}
	return false
}

var durationRE = regexp.MustCompile(`^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$`)

// MaxDuration is the longest Duration: the span Go's time.Duration holds, 106751d23h47m16s. The schema refuses
// longer ones with the same limit.
const MaxDuration = 9223372036 * time.Second

// Parse returns the length of d. It accepts exactly what the CRD schema accepts; a duration longer than
// MaxDuration is an error, never a wrapped-around or zero value.
func (d Duration) Parse() (time.Duration, error) {
	m := durationRE.FindStringSubmatch(string(d))
	if m == nil || d == "" {
		return 0, fmt.Errorf("duration %q: want days, hours, minutes and seconds such as 90d or 1d12h", string(d))
	}
	units := []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second}
	tooLarge := fmt.Errorf("duration %q is too large: at most 106751d (about 292 years)", string(d))
	var total time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(MaxDuration/u) {
			return 0, tooLarge
		}
		if time.Duration(n)*u > MaxDuration-total {
			return 0, tooLarge
		}
		total += time.Duration(n) * u
	}
	if total <= 0 {
		return 0, fmt.Errorf("duration %q must be longer than zero", string(d))
	}
	return total, nil
}

// Parse returns the grace period; "0s" is zero.
func (g GraceDuration) Parse() (time.Duration, error) {
	if g == "0s" {
		return 0, nil
	}
	return Duration(g).Parse()
}

// DatabaseName is the PostgreSQL database (and role) name of the tenant: spec.database.name, or "tenant_" and the
// tenant name with dashes turned into underscores. Tenant names are at most 48 characters, so this fits in 63 bytes.
func (t *Tenant) DatabaseName() string {
	if t.Spec.Database.Name != "" {
		return t.Spec.Database.Name
	}
	return "tenant_" + strings.ReplaceAll(t.Name, "-", "_")
}

// NamespaceNames lists the tenant's namespaces: spec.namespaces.names, or <tenant>, <tenant>-2, … for a count.
func (t *Tenant) NamespaceNames() []string {
	if len(t.Spec.Namespaces.Names) > 0 {
		return append([]string(nil), t.Spec.Namespaces.Names...)
	}
	n := int32(1)
	if t.Spec.Namespaces.Count != nil {
		n = *t.Spec.Namespaces.Count
	}
	names := make([]string, 0, n)
	for i := int32(1); i <= n; i++ {
		if i == 1 {
			names = append(names, t.Name)
			continue
		}
		names = append(names, fmt.Sprintf("%s-%d", t.Name, i))
	}
	return names
}
