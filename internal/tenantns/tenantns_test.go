package tenantns

import (
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	me := Tenant{Name: "clinic", UID: "uid-clinic"}
	mine := func(uid string) *Live {
		return &Live{UID: uid, TenantLabel: "clinic", TenantUIDAnnotation: "uid-clinic"}
	}
	tests := []struct {
		name     string
		recorded []Recorded
		spec     []string
		observed map[string]*Live
		owned    []string
		gone     []string
		refused  []string
		why      string // substring of the first refusal
	}{
		{name: "recorded and verified", recorded: []Recorded{{"clinic", "u1"}}, spec: []string{"clinic"},
			observed: map[string]*Live{"clinic": mine("u1")}, owned: []string{"clinic"}},
		{name: "recorded, then gone", recorded: []Recorded{{"clinic", "u1"}}, spec: []string{"clinic"},
			observed: map[string]*Live{}, gone: []string{"clinic"}},
		{name: "recorded, replaced by another namespace of the same name", recorded: []Recorded{{"clinic", "u1"}}, spec: []string{"clinic"},
			observed: map[string]*Live{"clinic": mine("u2")}, gone: []string{"clinic"}, refused: []string{"clinic"}, why: "not the uid u1"},
		{name: "recorded, annotation changed", recorded: []Recorded{{"clinic", "u1"}},
			observed: map[string]*Live{"clinic": {UID: "u1", TenantLabel: "clinic", TenantUIDAnnotation: "other"}}, refused: []string{"clinic"}, why: "annotation"},
		{name: "recorded, label changed", recorded: []Recorded{{"clinic", "u1"}},
			observed: map[string]*Live{"clinic": {UID: "u1", TenantLabel: "other", TenantUIDAnnotation: "uid-clinic"}}, refused: []string{"clinic"}, why: "label"},
		{name: "spec names another tenant's namespace", spec: []string{"other"},
			observed: map[string]*Live{"other": {UID: "u9", TenantLabel: "other", TenantUIDAnnotation: "uid-other"}}, refused: []string{"other"}, why: `tenant "other"'s label`},
		{name: "spec names the manager's namespace", spec: []string{"custos-system"},
			observed: map[string]*Live{"custos-system": {UID: "u8"}}, refused: []string{"custos-system"}, why: "no custos.io/tenant label"},
		{name: "count raised onto a foreign <name>-2", recorded: []Recorded{{"clinic", "u1"}}, spec: []string{"clinic", "clinic-2"},
			observed: map[string]*Live{"clinic": mine("u1"), "clinic-2": {UID: "u7"}}, owned: []string{"clinic"}, refused: []string{"clinic-2"}},
		{name: "a spec name prepared with this tenant's label and uid is still not recorded", spec: []string{"clinic"},
			observed: map[string]*Live{"clinic": mine("u1")}, refused: []string{"clinic"}, why: "never recorded"},
		{name: "spec name that does not exist: nothing to report", spec: []string{"clinic-3"}, observed: map[string]*Live{}},
		{name: "recorded but no longer in the spec is still the tenant's", recorded: []Recorded{{"clinic", "u1"}, {"clinic-2", "u2"}}, spec: []string{"clinic"},
			observed: map[string]*Live{"clinic": mine("u1"), "clinic-2": mine("u2")}, owned: []string{"clinic", "clinic-2"}},
	}
	names := func(rs []Recorded) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Classify(me, tc.recorded, tc.spec, tc.observed)
			var refused []string
			for _, r := range res.Refused {
				refused = append(refused, r.Name)
			}
			if got := strings.Join(names(res.Owned), ","); got != strings.Join(tc.owned, ",") {
				t.Errorf("owned = %q, want %q", got, strings.Join(tc.owned, ","))
			}
			if got := strings.Join(names(res.Gone), ","); got != strings.Join(tc.gone, ",") {
				t.Errorf("gone = %q, want %q", got, strings.Join(tc.gone, ","))
			}
			if got := strings.Join(refused, ","); got != strings.Join(tc.refused, ",") {
				t.Errorf("refused = %q, want %q", got, strings.Join(tc.refused, ","))
			}
			if tc.why != "" && (len(res.Refused) == 0 || !strings.Contains(res.Refused[0].Why, tc.why)) {
				t.Errorf("refusal %+v does not say %q", res.Refused, tc.why)
			}
			if (len(res.Refused) > 0) != (res.Message() != "") {
				t.Errorf("Message() = %q with %d refusals", res.Message(), len(res.Refused))
			}
		})
	}
}

func TestStuckMessage(t *testing.T) {
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msg := StuckMessage("clinic", since, []Remaining{
		{Kind: "ConfigMap", Name: "keep", Finalizers: []string{"example.com/block"}, Deleting: true},
		{Kind: "Secret", Name: "plain"},
	}, []string{"NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: example.com/block in 1 resource instances"})
	for _, want := range []string{"namespace clinic is being deleted since 2026-03-01T12:00:00Z and is not gone", "ConfigMap/keep (finalizers example.com/block)",
		"the namespace controller reports: NamespaceFinalizersRemaining", "kubectl -n clinic patch"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "Secret/plain") {
		t.Errorf("message names an object without finalizers: %q", msg)
	}
	many := make([]Remaining, 12)
	for i := range many {
		many[i] = Remaining{Kind: "ConfigMap", Name: "c", Finalizers: []string{"f"}}
	}
	if msg := StuckMessage("clinic", since, many, nil); !strings.Contains(msg, "and 2 more") || strings.Contains(msg, "namespace controller reports") {
		t.Errorf("message %q", msg)
	}
}
