package v1alpha1

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var _ = Describe("Duration", func() {
	DescribeTable("parses what the schema accepts",
		func(in string, want time.Duration) {
			got, err := Duration(in).Parse()
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
		},
		Entry("three months as 90 days", "90d", 90*24*time.Hour),
		Entry("thirty days", "30d", 30*24*time.Hour),
		Entry("hours", "240h", 240*time.Hour),
		Entry("days and hours", "1d12h", 36*time.Hour),
		Entry("every unit", "1d2h3m4s", 24*time.Hour+2*time.Hour+3*time.Minute+4*time.Second),
		Entry("zero days and some hours", "0d1h", time.Hour),
		Entry("leading zeros", "007d", 7*24*time.Hour),
	)
	DescribeTable("refuses what the schema refuses",
		func(in, msg string) {
			_, err := Duration(in).Parse()
			Expect(err).To(MatchError(ContainSubstring(msg)))
		},
		Entry("empty", "", "want days"),
		Entry("months", "3mo", "want days"),
		Entry("years", "1y", "want days"),
		Entry("units out of order", "12h1d", "want days"),
		Entry("a space", "10 d", "want days"),
		Entry("negative", "-1d", "want days"),
		Entry("zero", "0d0h", "longer than zero"),
		Entry("overflow", "99999999999999d", "too large"),
		Entry("overflow of the sum of units", "106751d24h", "too large"),
		Entry("overflow of the sum by seconds", "106751d23h47m17s", "too large"),
		Entry("a number past int64", "99999999999999999999s", "too large"),
	)
	It("accepts the longest duration the schema accepts", func() {
		got, err := Duration("106751d23h47m16s").Parse()
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(time.Duration(9223372036) * time.Second))
	})
	It("says the limit in the error", func() {
		_, err := Duration("200000d").Parse()
		Expect(err).To(MatchError(ContainSubstring("at most 106751d")))
	})
})

var _ = Describe("Jurisdictions", func() {
	DescribeTable("a selector admits",
		func(sel JurisdictionSelector, j Jurisdiction, want bool) {
			Expect(sel.Admits(j)).To(Equal(want))
		},
		Entry("EEA admits an EU member", JurisdictionSelector("EEA"), Jurisdiction("NL"), true),
		Entry("EEA admits Norway", JurisdictionSelector("EEA"), Jurisdiction("NO"), true),
		Entry("EU does not admit Norway", JurisdictionSelector("EU"), Jurisdiction("NO"), false),
		Entry("EEA does not admit Switzerland", JurisdictionSelector("EEA"), Jurisdiction("CH"), false),
		Entry("EEA does not admit the United States", JurisdictionSelector("EEA"), Jurisdiction("US"), false),
		Entry("EEA does not admit the United Kingdom", JurisdictionSelector("EEA"), Jurisdiction("GB"), false),
		Entry("a country admits itself", JurisdictionSelector("DE"), Jurisdiction("DE"), true),
		Entry("a country admits no other", JurisdictionSelector("DE"), Jurisdiction("NL"), false),
	)
	It("counts 27 EU members and 30 EEA members", func() {
		eu, eea := 0, 0
		for _, c := range strings.Split("AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IS IT LI LT LU LV MT NL NO PL PT RO SE SI SK US", " ") {
			if JurisdictionSelector("EU").Admits(Jurisdiction(c)) {
				eu++
			}
			if JurisdictionSelector("EEA").Admits(Jurisdiction(c)) {
				eea++
			}
		}
		Expect(eu).To(Equal(27))
		Expect(eea).To(Equal(30))
	})
	It("admits when any selector admits", func() {
		allowed := []JurisdictionSelector{"NL", "DE"}
		Expect(JurisdictionAdmitted(allowed, "DE")).To(BeTrue())
		Expect(JurisdictionAdmitted(allowed, "BE")).To(BeFalse())
		Expect(JurisdictionAdmitted(nil, "NL")).To(BeFalse())
	})
})

var _ = Describe("Tenant names", func() {
	tenant := func(name string) *Tenant { return &Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}} }

	It("derives the database name from the tenant name", func() {
		Expect(tenant("clinic-zuid").DatabaseName()).To(Equal("tenant_clinic_zuid"))
		t := tenant("clinic-zuid")
		t.Spec.Database.Name = "zuid"
		Expect(t.DatabaseName()).To(Equal("zuid"))
	})
	It("fits a 48-character tenant name into PostgreSQL's 63 bytes", func() {
		Expect(len(tenant(strings.Repeat("a", 48)).DatabaseName())).To(BeNumerically("<=", 63))
	})
	It("names counted namespaces after the tenant", func() {
		t := tenant("clinic")
		Expect(t.NamespaceNames()).To(Equal([]string{"clinic"}))
		t.Spec.Namespaces.Count = ptr.To(int32(3))
		Expect(t.NamespaceNames()).To(Equal([]string{"clinic", "clinic-2", "clinic-3"}))
		t.Spec.Namespaces = TenantNamespaces{Names: []string{"a", "b"}}
		Expect(t.NamespaceNames()).To(Equal([]string{"a", "b"}))
	})
})
