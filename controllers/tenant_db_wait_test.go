package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Whether a tenant's provisioning waits for its DatabaseServer: decided from the server's Ready condition alone.
var _ = Describe("Waiting for the DatabaseServer", func() {
	const unsupportedMsg = "PostgreSQL 16.2 is newer than the range custos is tested against (15): point this DatabaseServer at a PostgreSQL 15 server, or run a custos release whose tested range includes 16 (server db.example:5432)"

	server := func(generation int64, conds ...metav1.Condition) *custosv1alpha1.DatabaseServer {
		return &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "pg-ams", Generation: generation},
			Status: custosv1alpha1.DatabaseServerStatus{Conditions: conds}}
	}
	ready := func(status metav1.ConditionStatus, reason, msg string, observed int64) metav1.Condition {
		return metav1.Condition{Type: custosv1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: observed}
	}
	newTenant := func() *custosv1alpha1.Tenant {
		return &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}}
	}
	provisioned := func() *custosv1alpha1.Tenant {
		t := newTenant()
		t.Status.Phase = custosv1alpha1.TenantActive
		t.Status.Database = &custosv1alpha1.DatabaseStatus{Server: "pg-ams", Name: "tenant_kliniek", Role: "tenant_kliniek", OID: 16384}
		return t
	}

	It("makes a tenant not yet provisioned wait on an UnsupportedVersion server, naming the server and quoting its message", func() {
		reason, msg, blocked := serverBlocks(newTenant(), server(1, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, unsupportedMsg, 1)))
		Expect(blocked).To(BeTrue())
		Expect(reason).To(Equal(custosv1alpha1.ReasonDatabaseServerUnsupported))
		Expect(msg).To(ContainSubstring(`DatabaseServer "pg-ams"`))
		Expect(msg).To(ContainSubstring(`%q`, unsupportedMsg))
		Expect(msg).To(ContainSubstring("no database or role is created"))
	})

	It("makes a provisioned tenant's database steps wait on an UnsupportedVersion server, keeping what it has", func() {
		reason, msg, blocked := serverBlocks(provisioned(), server(2, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, unsupportedMsg, 2)))
		Expect(blocked).To(BeTrue())
		Expect(reason).To(Equal(custosv1alpha1.ReasonDatabaseServerUnsupported))
		Expect(msg).To(ContainSubstring(`DatabaseServer "pg-ams"`))
		Expect(msg).To(ContainSubstring(`%q`, unsupportedMsg))
		Expect(msg).To(ContainSubstring("database tenant_kliniek and its role are kept as they are"))
	})

	It("blocks on an UnsupportedVersion from an older generation too (the new spec is not checked yet)", func() {
		for _, t := range []*custosv1alpha1.Tenant{newTenant(), provisioned()} {
			reason, _, blocked := serverBlocks(t, server(3, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, unsupportedMsg, 2)))
			Expect(blocked).To(BeTrue())
			Expect(reason).To(Equal(custosv1alpha1.ReasonDatabaseServerUnsupported))
		}
	})

	It("does not block on any other failure: the steps reach the server and report it themselves", func() {
		for _, r := range []string{custosv1alpha1.ReasonUnreachable, custosv1alpha1.ReasonAuthenticationFailed, custosv1alpha1.ReasonTLSFailed,
			custosv1alpha1.ReasonSecretMissing, custosv1alpha1.ReasonSecretNotBound} {
			for _, t := range []*custosv1alpha1.Tenant{newTenant(), provisioned()} {
				_, _, blocked := serverBlocks(t, server(1, ready(metav1.ConditionFalse, r, "cannot connect", 1)))
				Expect(blocked).To(BeFalse(), "reason %s, provisioned %v", r, t.Status.Database != nil)
			}
		}
	})

	It("does not block on a Ready server", func() {
		for _, t := range []*custosv1alpha1.Tenant{newTenant(), provisioned()} {
			_, _, blocked := serverBlocks(t, server(1, ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 1)))
			Expect(blocked).To(BeFalse())
		}
	})

	It("makes only a tenant not yet provisioned wait for a server not checked yet (no Ready, or one older than its spec)", func() {
		for _, ds := range []*custosv1alpha1.DatabaseServer{
			server(1),
			server(2, ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 1)),
		} {
			reason, msg, blocked := serverBlocks(newTenant(), ds)
			Expect(blocked).To(BeTrue())
			Expect(reason).To(Equal(custosv1alpha1.ReasonProgressing))
			Expect(msg).To(ContainSubstring(`DatabaseServer "pg-ams"`))

			_, _, blocked = serverBlocks(provisioned(), ds)
			Expect(blocked).To(BeFalse(), "a provisioned tenant must not stop because a check has not run yet")
		}
	})

	Describe("which DatabaseServer updates wake its tenants", func() {
		changed := func(old, cur *custosv1alpha1.DatabaseServer) bool { return serverReadyChanged(old, cur) }

		It("passes a change of Ready's status, reason or observed generation, and its first appearance", func() {
			okCond := ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 1)
			unsupported := ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, unsupportedMsg, 1)
			unreachable := ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable, "timeout", 1)
			Expect(changed(server(1), server(1, okCond))).To(BeTrue())
			Expect(changed(server(1, okCond), server(1, unsupported))).To(BeTrue())
			Expect(changed(server(1, unsupported), server(1, okCond))).To(BeTrue())
			Expect(changed(server(1, unreachable), server(1, unsupported))).To(BeTrue())
			Expect(changed(server(2, okCond), server(2, ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 2)))).To(BeTrue())
		})

		It("passes a new message of an UnsupportedVersion (the tenant quotes it), not of other reasons", func() {
			Expect(changed(server(1, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, "16.1", 1)),
				server(1, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion, "16.2", 1)))).To(BeTrue())
			Expect(changed(server(1, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable, "timeout", 1)),
				server(1, ready(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable, "connection refused", 1)))).To(BeFalse())
			Expect(changed(server(1, ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 1)),
				server(1, ready(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled, "connected", 1)))).To(BeFalse())
		})
	})
})
