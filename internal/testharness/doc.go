// Package testharness starts the real components custos' integration suites run against: a kube-apiserver and
// etcd built by hack/tools.sh (envtest), a throwaway PostgreSQL cluster from the system's packages, and restic's
// rest-server. Nothing is downloaded at run time; every binary comes from bin/ or from the system.
package testharness
