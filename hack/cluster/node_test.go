package main

import (
	"slices"
	"testing"
)

func TestNetnsPaths(t *testing.T) {
	// Trimmed from `ctr -n k8s.io containers info` of a pod sandbox and of a container joining its namespaces.
	sandbox := `{"ID":"4f1c","Spec":{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network","path":"/var/run/netns/cni-8a0c4e9d-2b7f-1e2d-9a51-0c6f1d2e3a4b"}]}}}`
	member := `{"ID":"9e2a","Spec":{"linux":{"namespaces":[{"type":"pid","path":"/proc/4242/ns/pid"},{"type":"network","path":"/proc/4242/ns/net"}]}}}`
	host := `{"ID":"77aa","Spec":{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}}`
	for _, c := range []struct {
		name, info string
		want       []string
	}{
		{"a sandbox's named namespace", sandbox, []string{"/var/run/netns/cni-8a0c4e9d-2b7f-1e2d-9a51-0c6f1d2e3a4b"}},
		{"a container in its sandbox's namespace (a /proc path, gone with the process)", member, nil},
		{"host network: none", host, nil},
		{"not JSON", "ctr: container not found", nil},
	} {
		if got := netnsPaths([]byte(c.info)); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
