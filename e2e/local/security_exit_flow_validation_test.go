package local

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The exit's grace period (RetentionPolicy.spec.exitGracePeriod) as the real API server validates it.
var _ = Describe("CRD validation of the exit's grace period", Label("integration", "validation", "security"), func() {
	It("defaults exitGracePeriod to 72h", func(ctx SpecContext) {
		p := sample("RetentionPolicy")
		unstructured.RemoveNestedField(p.Object, "spec", "exitGracePeriod")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		grace, _, _ := unstructured.NestedString(p.Object, "spec", "exitGracePeriod")
		Expect(grace).To(Equal("72h"))
	})

	DescribeTable("accepts a grace period of at least an hour, or 0s",
		func(ctx SpecContext, grace string) {
			p := sample("RetentionPolicy")
			set(grace, "spec", "exitGracePeriod")(p)
			Expect(k8s.Create(ctx, p)).To(Succeed())
		},
		Entry("72h", "72h"), Entry("3d", "3d"), Entry("1h", "1h"), Entry("1d12h", "1d12h"), Entry("0s (no grace period)", "0s"),
	)

	DescribeTable("refuses a grace period that gives nobody time to notice, with a message a person can act on",
		func(ctx SpecContext, grace, want string) {
			p := sample("RetentionPolicy")
			set(grace, "spec", "exitGracePeriod")(p)
			expectRejected(k8s.Create(ctx, p), want)
		},
		Entry("72s (meant 72h)", "72s", "a grace period must be at least 1h"),
		Entry("90m", "90m", "a grace period must be at least 1h"),
		Entry("0h", "0h", "a grace period must be at least 1h"),
		Entry("0d", "0d", "a grace period must be at least 1h"),
		Entry("in months", "3mo", "must be a duration in days, hours, minutes and seconds"),
		Entry("negative", "-72h", "must be a duration in days, hours, minutes and seconds"),
	)
})
