package controllers

import (
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Names of what custos creates in each tenant namespace.
const (
	quotaName           = "custos-quota"
	limitRangeName      = "custos-limits"
	ownersBindingName   = "custos-owners"
	policyAllowTenant   = "custos-allow-tenant"
	policyAllowDNS      = "custos-allow-dns"
	policyAllowDatabase = "custos-allow-database"
	masterPasswordKey   = "password"
)

func mergeLabels(dst map[string]string, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// networkPolicies are the four policies of a tenant namespace: deny everything, then allow traffic among the
// tenant's own namespaces, DNS, and egress to the tenant's database server.
func networkPolicies(t *custosv1alpha1.Tenant, server *custosv1alpha1.DatabaseServer, serverIPs []net.IP) map[string]networkingv1.NetworkPolicySpec {
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	// Peers by kubernetes.io/metadata.name, which the API server sets and nobody can forge, rather than by the
	// custos.io/tenant label, which anyone who can create a namespace could put on it.
	sameTenant := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: t.NamespaceNames(),
	}}}}}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dnsPort := intstr.FromInt32(53)
	dbPort := intstr.FromInt32(server.Spec.Port)
	if server.Spec.Port == 0 {
		dbPort = intstr.FromInt32(5432)
	}
	dbPeers := make([]networkingv1.NetworkPolicyPeer, 0, len(serverIPs))
	for _, ip := range serverIPs {
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		dbPeers = append(dbPeers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("%s/%d", ip.String(), bits)}})
	}
	specs := map[string]networkingv1.NetworkPolicySpec{
		custosv1alpha1.PolicyDefaultDeny: {PodSelector: metav1.LabelSelector{}, PolicyTypes: both},
		policyAllowTenant: {
			PodSelector: metav1.LabelSelector{}, PolicyTypes: both,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: sameTenant}},
			Egress:  []networkingv1.NetworkPolicyEgressRule{{To: sameTenant}},
		},
		policyAllowDNS: {
			PodSelector: metav1.LabelSelector{}, PolicyTypes: egress,
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dnsPort}, {Protocol: &tcp, Port: &dnsPort}},
			}},
		},
	}
	if len(dbPeers) > 0 {
		specs[policyAllowDatabase] = networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{}, PolicyTypes: egress,
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: dbPeers, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &dbPort}}}},
		}
	}
	return specs
}

// ownerSubjects turns spec.owners into RBAC subjects.
func ownerSubjects(t *custosv1alpha1.Tenant) []rbacv1.Subject {
	out := make([]rbacv1.Subject, 0, len(t.Spec.Owners))
	for _, o := range t.Spec.Owners {
		s := rbacv1.Subject{Kind: o.Kind, Name: o.Name}
		switch o.Kind {
		case rbacv1.ServiceAccountKind:
			s.Namespace = o.Namespace
		default:
			s.APIGroup = rbacv1.GroupName
		}
		out = append(out, s)
	}
	return out
}

// credentialsData is the content of the credentials Secret in each tenant namespace.
func credentialsData(host string, port int32, sslMode, db, user, password string) map[string][]byte {
	if port == 0 {
		port = 5432
	}
	hp := net.JoinHostPort(host, fmt.Sprint(port))
	uri := fmt.Sprintf("postgresql://%s:%s@%s/%s?sslmode=%s", user, password, hp, db, sslMode)
	jdbcSSL := "false"
	if sslMode != "disable" {
		jdbcSSL = "true"
	}
	jdbc := fmt.Sprintf("jdbc:postgresql://%s/%s?user=%s&password=%s&ssl=%s&sslmode=%s", hp, db, user, password, jdbcSSL, sslMode)
	return map[string][]byte{
		"host": []byte(host), "port": []byte(fmt.Sprint(port)), "dbname": []byte(db), "user": []byte(user),
		"password": []byte(password), "sslmode": []byte(sslMode), "uri": []byte(uri), "jdbc-uri": []byte(jdbc),
	}
}

// limitRangeItem is the container item of the tenant's LimitRange, with the defaults the API server would fill in
// itself (default from max, defaultRequest from default) written out: otherwise every reconcile would see the
// server's object differ from ours, update it, and be woken by its own update.
func limitRangeItem(l *custosv1alpha1.TenantLimits) corev1.LimitRangeItem {
	item := corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: l.Max.DeepCopy(), Default: l.Default.DeepCopy(), DefaultRequest: l.DefaultRequest.DeepCopy()}
	for name, q := range item.Max {
		if _, ok := item.Default[name]; !ok {
			if item.Default == nil {
				item.Default = corev1.ResourceList{}
			}
			item.Default[name] = q.DeepCopy()
		}
	}
	for name, q := range item.Default {
		if _, ok := item.DefaultRequest[name]; !ok {
			if item.DefaultRequest == nil {
				item.DefaultRequest = corev1.ResourceList{}
			}
			item.DefaultRequest[name] = q.DeepCopy()
		}
	}
	return item
}
