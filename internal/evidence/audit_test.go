package evidence

import (
	"errors"
	"fmt"
	"strings"
	"time"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func chain(n int) []Entry {
	var out []Entry
	var prev *Entry
	start := at("2024-01-01T00:00:00Z")
	for i := range n {
		action := ActionSnapshot
		detail := map[string]string{"location": "ams", "snapshot": fmt.Sprintf("%08x", i)}
		if i == 0 {
			action, detail = ActionProvisioned, map[string]string{"uid": "0b6f3c2e", "database": "tenant_clinic"}
		}
		e := Append(prev, Entry{Time: start.Add(time.Duration(i) * 24 * time.Hour), Tenant: "clinic", Action: action,
			Actor: "custos-manager", Detail: detail})
		out = append(out, e)
		prev = &out[len(out)-1]
	}
	return out
}

func chainErr(err error) *ChainError {
	var ce *ChainError
	ExpectWithOffset(1, errors.As(err, &ce)).To(BeTrue(), "want a *ChainError, got %v", err)
	return ce
}

var _ = g.Describe("audit chain", func() {
	g.It("appends 100 entries that verify, and reports head and length", func() {
		c := chain(100)
		Expect(VerifyChain(c)).To(Succeed())
		Expect(c[0].Seq).To(BeEquivalentTo(1))
		Expect(c[0].Prev).To(Equal(Genesis))
		Expect(c[99].Seq).To(BeEquivalentTo(100))
		Expect(c[50].Prev).To(Equal(c[49].Hash))
		head, n := Head(c)
		Expect(head).To(Equal(c[99].Hash))
		Expect(n).To(Equal(100))
	})

	g.It("hashes the canonical JSON without hash, in a documented form", func() {
		e := Append(nil, Entry{Time: time.Date(2024, 1, 1, 1, 0, 0, 500, time.FixedZone("CET", 3600)), Tenant: "clinic",
			Action: ActionProvisioned, Actor: "custos-manager", Detail: map[string]string{"z": "<&>", "a": "1"}})
		Expect(string(CanonicalEntry(e))).To(Equal(
			`{"seq":1,"time":"2024-01-01T00:00:00.0000005Z","tenant":"clinic","action":"Provisioned","actor":"custos-manager",` +
				`"detail":{"a":"1","z":"<&>"},"prev":"` + Genesis + `"}`))
		Expect(e.Hash).To(Equal(digest(string(CanonicalEntry(e)))))
		Expect(string(MarshalLine(e))).To(Equal(strings.TrimSuffix(string(CanonicalEntry(e)), "}") + `,"hash":"` + e.Hash + `"}`))
	})

	g.It("round-trips JSON lines and verifies after parsing", func() {
		c := chain(100)
		data := MarshalLines(c)
		Expect(strings.Count(string(data), "\n")).To(Equal(100))
		back, err := ParseLines(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(back).To(Equal(c))
		Expect(VerifyChain(back)).To(Succeed())
		// Segments concatenated with blank lines in between still parse.
		half := len(MarshalLines(c[:40]))
		joined := string(data[:half]) + "\n\n" + string(data[half:])
		back, err = ParseLines([]byte(joined))
		Expect(err).NotTo(HaveOccurred())
		Expect(VerifyChain(back)).To(Succeed())
	})

	g.It("refuses unknown fields in a line, naming the line", func() {
		data := MarshalLines(chain(3))
		lines := strings.Split(string(data), "\n")
		lines[1] = strings.Replace(lines[1], `"seq":2`, `"seq":2,"note":"x"`, 1)
		_, err := ParseLines([]byte(strings.Join(lines, "\n")))
		Expect(err).To(MatchError(ContainSubstring(`line 2: json: unknown field "note"`)))
	})

	g.It("reports an altered field at its seq", func() {
		c := chain(100)
		c[36].Detail["snapshot"] = "deadbeef"
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(37))
		Expect(ce.Reason).To(HavePrefix("entry altered"))
		Expect(ce.Error()).To(HavePrefix("audit chain broken at seq 37: entry altered"))
	})

	g.It("reports an altered time, actor and action", func() {
		for _, mutate := range []func(e *Entry){
			func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) },
			func(e *Entry) { e.Actor = "someone" },
			func(e *Entry) { e.Action = ActionShredded },
			func(e *Entry) { e.Tenant = "other" },
			func(e *Entry) { e.Seq = 99 },
		} {
			c := chain(20)
			mutate(&c[9])
			Expect(chainErr(VerifyChain(c)).Seq).To(BeEquivalentTo(10))
		}
	})

	g.It("reports a deleted entry as missing", func() {
		c := chain(100)
		c = append(c[:49:49], c[50:]...)
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(50))
		Expect(ce.Reason).To(Equal("entry 50 is missing (found 51 after 49)"))
	})

	g.It("reports several deleted entries", func() {
		c := chain(100)
		c = append(c[:49:49], c[53:]...)
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(50))
		Expect(ce.Reason).To(ContainSubstring("entries 50 to 53 are missing"))
	})

	g.It("reports two swapped entries as out of order", func() {
		c := chain(100)
		c[9], c[10] = c[10], c[9]
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(10))
		Expect(ce.Reason).To(ContainSubstring("out of order"))
	})

	g.It("reports an altered entry that was rehashed by its prev link", func() {
		c := chain(100)
		c[36].Actor = "intruder"
		c[36].Hash = EntryHash(c[36])
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(38))
		Expect(ce.Reason).To(ContainSubstring("is not the hash of seq 37"))
	})

	g.It("reports a replaced first entry by the genesis", func() {
		c := chain(5)
		c[0].Prev = strings.Repeat("1", 64)
		c[0].Hash = EntryHash(c[0])
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(1))
		Expect(ce.Reason).To(ContainSubstring("genesis"))
	})

	g.It("reports a deleted first entry", func() {
		ce := chainErr(VerifyChain(chain(5)[1:]))
		Expect(ce.Seq).To(BeEquivalentTo(1))
		Expect(ce.Reason).To(ContainSubstring("entry 1 is missing"))
	})

	g.It("reports a duplicated entry", func() {
		c := chain(10)
		c = append(c[:5:5], append([]Entry{c[4]}, c[5:]...)...)
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(6))
		Expect(ce.Reason).To(ContainSubstring("seq 5 appears again"))
	})

	g.It("reports an entry of another tenant spliced in", func() {
		c := chain(10)
		other := Append(&c[4], Entry{Time: c[4].Time, Tenant: "other", Action: ActionCopy, Actor: "x"})
		c = append(c[:5:5], other)
		ce := chainErr(VerifyChain(c))
		Expect(ce.Seq).To(BeEquivalentTo(6))
		Expect(ce.Reason).To(ContainSubstring(`tenant "other"`))
	})

	g.It("verifies a segment from the hash before it", func() {
		c := chain(30)
		Expect(VerifyChainFrom(c[19].Hash, 21, c[20:])).To(Succeed())
		Expect(VerifyChainFrom(c[18].Hash, 21, c[20:])).To(HaveOccurred())
		h, n := Head(c[20:])
		Expect(h).To(Equal(c[29].Hash))
		Expect(n).To(Equal(30))
	})

	g.It("has an empty chain with the genesis as head", func() {
		Expect(VerifyChain(nil)).To(Succeed())
		h, n := Head(nil)
		Expect(h).To(Equal(Genesis))
		Expect(n).To(BeZero())
	})

	g.It("knows its actions", func() {
		Expect(Actions()).To(HaveLen(16))
		Expect(ActionLegalHoldLifted.Known()).To(BeTrue())
		Expect(Action("Teleported").Known()).To(BeFalse())
	})
})
