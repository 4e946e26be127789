package pgdump

import (
	"bytes"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("The trailer", func() {
	st := Stats{Bytes: 42, Tables: []TableStats{{Table: `public."Visit log"`, Rows: 3, Checksum: "xxh3sum:" + string(bytes.Repeat([]byte("0"), 32))}}}

	It("round-trips the figures through one comment line", func() {
		line, err := Trailer(st)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(line)).To(HavePrefix("-- custos-stats: {"))
		Expect(bytes.Count(line, []byte("\n"))).To(Equal(1))
		Expect(line[len(line)-1]).To(Equal(byte('\n')))
		got, ok, err := ParseTrailer(line)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		Expect(got).To(Equal(st))
	})

	It("tells a line that is not a trailer from a trailer that cannot be read", func() {
		_, ok, err := ParseTrailer([]byte(`\unrestrict abc`))
		Expect(ok).To(BeFalse())
		Expect(err).NotTo(HaveOccurred())
		_, ok, err = ParseTrailer([]byte(TrailerPrefix + `{"tables": [`))
		Expect(ok).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("figures at the end of the dump")))
		_, ok, err = ParseTrailer([]byte(TrailerPrefix + `{"tables":[{"table":"t","rows":1,"checksum":"md5:00"}]}`))
		Expect(ok).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("unknown algorithm")))
	})
})

var _ = Describe("LastLine", func() {
	lastOf := func(s string) string {
		i := len(s)
		if i > 0 && s[i-1] == '\n' {
			i--
		}
		return s[bytes.LastIndexByte([]byte(s[:i]), '\n')+1 : i]
	}

	It("keeps the last line of a stream however it is split into writes", func() {
		r := rand.New(rand.NewPCG(1, 2))
		for range 300 {
			var b bytes.Buffer
			for range r.IntN(8) {
				b.WriteString(string(bytes.Repeat([]byte{byte('a' + r.IntN(26))}, r.IntN(40))))
				if r.IntN(4) > 0 {
					b.WriteByte('\n')
				}
			}
			s := b.String()
			var l LastLine
			for rest := []byte(s); len(rest) > 0; {
				n := min(1+r.IntN(12), len(rest))
				_, _ = l.Write(rest[:n])
				rest = rest[n:]
			}
			Expect(string(l.Line())).To(Equal(lastOf(s)), "%q", s)
		}
	})

	It("does not keep a line longer than Max, and keeps the next one", func() {
		l := LastLine{Max: 8}
		_, _ = l.Write([]byte("short\n0123456789abcdef"))
		Expect(l.Line()).To(BeNil())
		_, _ = l.Write([]byte("\n"))
		Expect(l.Line()).To(BeNil())
		_, _ = l.Write([]byte("ok\n"))
		Expect(string(l.Line())).To(Equal("ok"))
	})
})
