package controllers

import (
	"net"
	"net/url"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var _ = Describe("Tenant resources", func() {
	t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "clinic"}}
	server := &custosv1alpha1.DatabaseServer{Spec: custosv1alpha1.DatabaseServerSpec{Host: "db.example.eu", Port: 6432}}

	It("denies all traffic by default and opens only the tenant, DNS and its database", func() {
		p := networkPolicies(t, server, []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("fd00::7")})
		Expect(p).To(HaveLen(4))
		deny := p[custosv1alpha1.PolicyDefaultDeny]
		Expect(deny.PodSelector.MatchLabels).To(BeEmpty())
		Expect(deny.Ingress).To(BeEmpty())
		Expect(deny.Egress).To(BeEmpty())
		Expect(deny.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))

		tenant := p[policyAllowTenant]
		byName := []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"clinic"}}}
		Expect(tenant.Ingress[0].From[0].NamespaceSelector.MatchExpressions).To(Equal(byName))
		Expect(tenant.Egress[0].To[0].NamespaceSelector.MatchExpressions).To(Equal(byName))
		Expect(tenant.Ingress[0].From[0].NamespaceSelector.MatchLabels).To(BeEmpty(), "never by the forgeable custos label")

		db := p[policyAllowDatabase]
		Expect(db.Egress[0].To).To(HaveLen(2))
		Expect(db.Egress[0].To[0].IPBlock.CIDR).To(Equal("10.0.0.7/32"))
		Expect(db.Egress[0].To[1].IPBlock.CIDR).To(Equal("fd00::7/128"))
		Expect(db.Egress[0].Ports[0].Port.IntValue()).To(Equal(6432))
		Expect(db.Ingress).To(BeEmpty())
	})

	It("opens no database egress when the host does not resolve", func() {
		Expect(networkPolicies(t, server, nil)).NotTo(HaveKey(policyAllowDatabase))
	})

	It("writes out the LimitRange defaults the API server would add, so its object equals ours", func() {
		item := limitRangeItem(&custosv1alpha1.TenantLimits{
			Max:     corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
			Default: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
		})
		Expect(item.Default).To(Equal(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("4Gi")}))
		Expect(item.DefaultRequest).To(Equal(item.Default))
		Expect(item.Max).To(Equal(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")}))
	})

	It("binds users and groups by API group and service accounts by namespace", func() {
		o := &custosv1alpha1.Tenant{Spec: custosv1alpha1.TenantSpec{Owners: []custosv1alpha1.TenantOwner{
			{Kind: "User", Name: "alice"}, {Kind: "ServiceAccount", Name: "ci", Namespace: "tools"},
		}}}
		Expect(ownerSubjects(o)).To(Equal([]rbacv1.Subject{
			{Kind: "User", Name: "alice", APIGroup: rbacv1.GroupName},
			{Kind: "ServiceAccount", Name: "ci", Namespace: "tools"},
		}))
	})

	It("writes credentials a client library can parse", func() {
		d := credentialsData("db.example.eu", 0, "verify-full", "tenant_clinic", "tenant_clinic", "pw_-abc")
		Expect(string(d["port"])).To(Equal("5432"))
		u, err := url.Parse(string(d["uri"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(u.Host).To(Equal("db.example.eu:5432"))
		Expect(u.Path).To(Equal("/tenant_clinic"))
		pw, _ := u.User.Password()
		Expect(pw).To(Equal("pw_-abc"))
		Expect(u.Query().Get("sslmode")).To(Equal("verify-full"))
		Expect(string(d["jdbc-uri"])).To(Equal("jdbc:postgresql://db.example.eu:5432/tenant_clinic?user=tenant_clinic&password=pw_-abc&ssl=true&sslmode=verify-full"))
	})
})
