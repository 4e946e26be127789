package pgdump

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/zeebo/xxh3"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

const (
	zeroChecksum       = "xxh3sum:00000000000000000000000000000000"
	zeroSHA256Checksum = "sha256sum:0000000000000000000000000000000000000000000000000000000000000000"
)

// rowSum is one row's hash as the lanes the table sum adds up, computed with the libraries' one-shot functions.
func rowSum(alg Algorithm, row string) []uint64 {
	if alg == SHA256 {
		h := sha256.Sum256([]byte(row))
		return []uint64{binary.BigEndian.Uint64(h[0:]), binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:]), binary.BigEndian.Uint64(h[24:])}
	}
	h := xxh3.Hash128([]byte(row))
	return []uint64{h.Hi, h.Lo}
}

func lanes(alg Algorithm, sum [4]uint64) string {
	n := 2
	if alg == SHA256 {
		n = 4
	}
	var b []byte
	for _, v := range sum[:n] {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return string(alg) + ":" + hex.EncodeToString(b)
}

// filterString runs Filter on dump and checks that the output is the input, byte for byte.
func filterString(dump string) (Stats, error) {
	var out bytes.Buffer
	st, err := Filter(strings.NewReader(dump), &out)
	ExpectWithOffset(1, out.String() == dump).To(BeTrue(), "Filter changed the stream")
	ExpectWithOffset(1, st.Bytes).To(Equal(int64(len(dump))))
	return st, err
}

func mustFilter(dump string) Stats {
	st, err := filterString(dump)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return st
}

func block(table string, rows ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "COPY %s (a, b) FROM stdin;\n", table)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\\.\n\n")
	return b.String()
}

// reference computes the stats the slow, obvious way: whole lines, a map, lane sums of one-shot hashes.
func reference(dump string) []TableStats { return referenceWith(XXH3, dump) }

func referenceWith(alg Algorithm, dump string) []TableStats {
	type ref struct {
		rows int64
		sum  [4]uint64
	}
	tables := map[string]*ref{}
	var cur *ref
	for _, line := range strings.Split(strings.TrimSuffix(dump, "\n"), "\n") {
		if cur == nil {
			if name, ok := parseCopy([]byte(line)); ok {
				if tables[name] == nil {
					tables[name] = &ref{}
				}
				cur = tables[name]
			}
			continue
		}
		if line == `\.` {
			cur = nil
			continue
		}
		cur.rows++
		for i, v := range rowSum(alg, line) {
			cur.sum[i] += v
		}
	}
	out := []TableStats{}
	for name, r := range tables {
		out = append(out, TableStats{Table: name, Rows: r.rows, Checksum: lanes(alg, r.sum)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out
}

func rowChecksum(rows ...string) string { return rowChecksumWith(XXH3, rows...) }

func rowChecksumWith(alg Algorithm, rows ...string) string {
	var s [4]uint64
	for _, r := range rows {
		for i, v := range rowSum(alg, r) {
			s[i] += v
		}
	}
	return lanes(alg, s)
}

// randomDump is a dump of a few tables with rows of random length (some empty, some longer than small chunks),
// SQL between the blocks, and lines that only look like COPY statements.
func randomDump(rng *rand.Rand, size int) string {
	var b strings.Builder
	b.WriteString("--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\n")
	names := []string{`public.t`, `public."Weird (name)"`, `"s p"."a ""b"""`, `public.empty`}
	for b.Len() < size {
		t := names[rng.IntN(len(names))]
		fmt.Fprintf(&b, "CREATE TABLE %s (a text);\n-- COPY %s (a) FROM stdin;\nCOPY %s (a) TO stdout;\n", t, t, t)
		fmt.Fprintf(&b, "COPY %s (a, \"b c\") FROM stdin;\n", t)
		if t != "public.empty" {
			for range rng.IntN(50) {
				n := rng.IntN(40)
				if rng.IntN(20) == 0 {
					n = rng.IntN(5000)
				}
				row := make([]byte, n)
				for i := range row {
					row[i] = "ab\\.\tCOPY \xc3\xa9"[rng.IntN(12)]
				}
				b.Write(row)
				b.WriteByte('\n')
			}
		}
		b.WriteString("\\.\n\n\n")
	}
	b.WriteString("--\n-- PostgreSQL database dump complete\n--\n\n")
	return b.String()
}

var _ = Describe("Filter", func() {
	It("counts and checksums the rows of every COPY block of a plain pg_dump, names as written", func() {
		dump, err := os.ReadFile("testdata/plain.sql")
		Expect(err).NotTo(HaveOccurred())
		st := mustFilter(string(dump))
		Expect(st.Tables).To(Equal([]TableStats{
			{Table: `"Odd Schema"."Weird (name) ""q"""`, Rows: 2, Checksum: rowChecksum("x y\t1", "(\t\\N")},
			{Table: "public.accounts", Rows: 6, Checksum: rowChecksum(
				"1\talice\t\\N", "2\t\ttab\\there", "3\tbob\tnew\\nline", "4\tünïcødé 日本語\tback\\\\slash", "5\tdot\t\\\\.",
				"6\tCOPY public.x (a) FROM stdin;\t\\\\.")},
			{Table: "public.empty", Rows: 0, Checksum: zeroChecksum},
			{Table: "public.nocols", Rows: 2, Checksum: rowChecksum("", "")},
		}))
		Expect(st.Tables).To(Equal(reference(string(dump))))
		t, ok := st.Table("public.accounts")
		Expect(ok).To(BeTrue())
		Expect(t.Rows).To(BeEquivalentTo(6))
		_, ok = st.Table("public.missing")
		Expect(ok).To(BeFalse())
	})

	It("takes a one-row table's checksum to be that row's XXH3-128 (high half first)", func() {
		st := mustFilter(block("public.one", "1\tx"))
		h := xxh3.Hash128([]byte("1\tx")).Bytes()
		Expect(st.Tables).To(Equal([]TableStats{{Table: "public.one", Rows: 1, Checksum: "xxh3sum:" + hex.EncodeToString(h[:])}}))
	})

	It("parses quoted table names with spaces, parentheses, dots and quotes, and quoted column names", func() {
		for _, name := range []string{`public."Weird (name)"`, `"My Schema"."Odd ""name"""`, `"a.b"."c.d"`, `"x"" FROM stdin;"."("`, `t`} {
			dump := fmt.Sprintf("COPY %s (\"a b\", c, \"x)\", \"y, z\", \"q\"\"\") FROM stdin;\n1\t2\t3\t4\t5\n\\.\n", name)
			st := mustFilter(dump)
			Expect(st.Tables).To(HaveLen(1))
			Expect(st.Tables[0].Table).To(Equal(name))
			Expect(st.Tables[0].Rows).To(BeEquivalentTo(1))
		}
	})

	It("ignores lines that only look like COPY ... FROM stdin;", func() {
		for _, line := range []string{
			"COPY public.t (a) TO stdout;",
			"-- COPY public.t (a) FROM stdin;",
			" COPY public.t (a) FROM stdin;",
			"COPY public.t (a) FROM stdin; -- no",
			"COPY public.t (a FROM stdin;",
			`COPY "public.t (a) FROM stdin;`,
			"COPY public.t x (a) FROM stdin;",
			"COPY  FROM stdin;",
		} {
			st := mustFilter(line + "\nnot a row\n\\.\n")
			Expect(st.Tables).To(BeEmpty(), line)
		}
	})

	It("lists a table without rows, with the checksum of nothing", func() {
		st := mustFilter(block("public.empty") + block("public.full", "1"))
		Expect(st.Tables).To(HaveLen(2))
		Expect(st.Tables[0]).To(Equal(TableStats{Table: "public.empty", Rows: 0, Checksum: zeroChecksum}))
	})

	It("gives the same checksum whatever the order of the rows", func() {
		rows := make([]string, 1000)
		for i := range rows {
			rows[i] = fmt.Sprintf("%d\tvalue %d", i, i*i)
		}
		a := mustFilter(block("public.t", rows...))
		rand.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		b := mustFilter(block("public.t", rows...))
		Expect(b).To(Equal(a))
		rows[0] += "x"
		c := mustFilter(block("public.t", rows...))
		Expect(c.Tables[0].Rows).To(Equal(a.Tables[0].Rows))
		Expect(c.Tables[0].Checksum).NotTo(Equal(a.Tables[0].Checksum))
	})

	It("counts duplicate rows, which do not cancel out", func() {
		none := mustFilter(block("public.t"))
		one := mustFilter(block("public.t", "1\ta"))
		two := mustFilter(block("public.t", "1\ta", "1\ta"))
		three := mustFilter(block("public.t", "1\ta", "1\ta", "1\ta"))
		Expect(two.Tables[0].Rows).To(BeEquivalentTo(2))
		sums := []string{none.Tables[0].Checksum, one.Tables[0].Checksum, two.Tables[0].Checksum, three.Tables[0].Checksum}
		for i := range sums {
			for j := range i {
				Expect(sums[i]).NotTo(Equal(sums[j]))
			}
		}
		Expect(two.Tables[0].Checksum).To(Equal(rowChecksum("1\ta", "1\ta")))
		// Swapping a duplicate for another row changes the checksum too.
		Expect(mustFilter(block("public.t", "1\ta", "2\tb")).Tables[0].Checksum).NotTo(Equal(two.Tables[0].Checksum))
	})

	It("adds up the blocks of a table that appears more than once (--load-via-partition-root)", func() {
		st := mustFilter(block("public.t", "1", "2") + block("public.u", "9") + block("public.t", "3"))
		t, _ := st.Table("public.t")
		Expect(t).To(Equal(TableStats{Table: "public.t", Rows: 3, Checksum: rowChecksum("3", "1", "2")}))
	})

	It("hashes rows longer than any buffer (8 MiB of bytea) without changing the stream", func() {
		long := "1\t\\\\x" + strings.Repeat("0123456789abcdef", 8<<20/16)
		dump := "SET x = 1;\n" + block("public.blobs", "0\tshort", long, "2\t\\N") + "-- " + strings.Repeat("y", 3<<20) + "\n"
		st := mustFilter(dump)
		Expect(st.Tables).To(Equal([]TableStats{{Table: "public.blobs", Rows: 3, Checksum: rowChecksum("0\tshort", long, "2\t\\N")}}))
	})

	It("finds the same stats wherever the chunk boundaries fall", func() {
		rng := rand.New(rand.NewPCG(1, 2))
		dump := randomDump(rng, 64<<10)
		want := reference(dump)
		Expect(mustFilter(dump).Tables).To(Equal(want))
		sizes := []int{1, 2, 3, 4, 5, 7, 13, 64, 1000, 4096, 65536}
		for range 10 {
			sizes = append(sizes, 1+rng.IntN(20000))
		}
		for _, chunk := range sizes {
			for _, hashers := range []int{1, 3} {
				var out bytes.Buffer
				st, err := filter(iotest.HalfReader(strings.NewReader(dump)), &out, config{hashers: hashers, chunk: chunk, job: 1 + rng.IntN(512)})
				Expect(err).NotTo(HaveOccurred())
				Expect(out.String() == dump).To(BeTrue(), "chunk %d", chunk)
				Expect(st.Tables).To(Equal(want), "chunk %d", chunk)
			}
		}
	})

	DescribeTable("matches the reference on many random dumps and random chunk sizes", func(alg Algorithm) {
		rng := rand.New(rand.NewPCG(3, 4))
		for range 200 {
			dump := randomDump(rng, rng.IntN(8000))
			st, err := filter(strings.NewReader(dump), io.Discard, config{hashers: 2, chunk: 1 + rng.IntN(300), job: 1 + rng.IntN(300), alg: alg})
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Tables).To(Equal(referenceWith(alg, dump)))
			if len(st.Tables) > 0 {
				Expect(AlgorithmOf(st)).To(Equal(alg))
			}
		}
	},
		Entry("XXH3 (the default)", XXH3),
		Entry("SHA-256 (snapshots recorded before XXH3)", SHA256),
	)

	It("hashes with the algorithm asked for, and refuses an unknown one", func() {
		dump := block("public.t", "1\ta", "2\tb") + block("public.e")
		st, err := FilterWith(strings.NewReader(dump), io.Discard, SHA256)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Tables).To(Equal([]TableStats{
			{Table: "public.e", Rows: 0, Checksum: zeroSHA256Checksum},
			{Table: "public.t", Rows: 2, Checksum: rowChecksumWith(SHA256, "1\ta", "2\tb")},
		}))
		Expect(mustFilter(dump).Tables[1].Checksum).To(Equal(rowChecksum("1\ta", "2\tb")))
		_, err = FilterWith(strings.NewReader(dump), io.Discard, "md5sum")
		Expect(err).To(MatchError(ContainSubstring(`unknown checksum algorithm "md5sum"`)))
	})

	It("tells which algorithm recorded stats were made with", func() {
		Expect(AlgorithmOf(Stats{})).To(Equal(XXH3))
		Expect(AlgorithmOf(Stats{Tables: []TableStats{{Table: "a", Checksum: zeroSHA256Checksum}}})).To(Equal(SHA256))
		Expect(AlgorithmOf(Stats{Tables: []TableStats{{Table: "a", Checksum: zeroChecksum}}})).To(Equal(XXH3))
		_, err := AlgorithmOf(Stats{Tables: []TableStats{{Table: "a", Checksum: "md5:00"}}})
		Expect(err).To(MatchError(ContainSubstring("table a: checksum \"md5:00\": unknown algorithm")))
		_, err = AlgorithmOf(Stats{Tables: []TableStats{{Table: "a", Checksum: zeroChecksum}, {Table: "b", Checksum: zeroSHA256Checksum}}})
		Expect(err).To(MatchError(ContainSubstring("table b: checksum made with sha256sum, other tables with xxh3sum")))
	})

	It("accepts a dump whose last line has no newline", func() {
		st := mustFilter("COPY public.t (a) FROM stdin;\n1\n2\n\\.")
		Expect(st.Tables).To(Equal([]TableStats{{Table: "public.t", Rows: 2, Checksum: rowChecksum("1", "2")}}))
	})

	It("fails on a dump that ends inside a data block, after copying all of it", func() {
		for _, dump := range []string{"COPY public.t (a) FROM stdin;\n1\n2\n", "COPY public.t (a) FROM stdin;\n1\n2", "COPY public.t (a) FROM stdin;\n"} {
			_, err := filterString(dump)
			Expect(err).To(MatchError(ContainSubstring("ended inside the data of public.t")))
		}
	})

	It("returns an empty list of tables for a dump without data blocks, and for no input", func() {
		Expect(mustFilter("SET x = 1;\n").Tables).To(BeEmpty())
		Expect(mustFilter("")).To(Equal(Stats{Tables: []TableStats{}}))
	})

	It("returns read and write errors", func() {
		boom := errors.New("boom")
		_, err := Filter(iotest.ErrReader(boom), io.Discard)
		Expect(err).To(MatchError(boom))
		_, err = Filter(io.MultiReader(strings.NewReader(block("public.t", "1")), iotest.ErrReader(boom)), io.Discard)
		Expect(err).To(MatchError(boom))
		_, err = Filter(strings.NewReader(strings.Repeat(block("public.t", "1"), 1<<10)), failingWriter{boom})
		Expect(err).To(MatchError(boom))
	})

	It("does not allocate per row", func() {
		rows := []byte(strings.Repeat("1\tsome value\t\\N\n", 1000))
		var a acc
		for _, alg := range []Algorithm{XXH3, SHA256} {
			Expect(testing.AllocsPerRun(10, func() { hashRows(alg, &a, rows) })).To(BeZero(), string(alg))
		}
	})
})

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

var _ = Describe("Compare", func() {
	recorded := Stats{Tables: []TableStats{
		{Table: "public.a", Rows: 10, Checksum: rowChecksum("x")},
		{Table: "public.b", Rows: 0, Checksum: zeroChecksum},
		{Table: "public.c", Rows: 10, Checksum: rowChecksum("y")},
		{Table: `public."Odd ""name"""`, Rows: 3, Checksum: rowChecksum("z")},
	}}

	It("finds nothing to report when the same rows were restored", func() {
		Expect(Compare(recorded, recorded)).To(BeEmpty())
		Expect(Compare(Stats{}, Stats{Tables: []TableStats{}})).To(BeEmpty())
		// Bytes differ between two dumps of the same rows (a different pg_dump version, say): not a difference.
		restored := recorded
		restored.Bytes = 12345
		Expect(Compare(recorded, restored)).To(BeEmpty())
	})

	It("names missing and extra tables, row counts and contents that differ, one line each, by table name", func() {
		restored := Stats{Tables: []TableStats{
			{Table: "public.a", Rows: 9, Checksum: rowChecksum("x")},
			{Table: "public.c", Rows: 10, Checksum: rowChecksum("changed")},
			{Table: `public."Odd ""name"""`, Rows: 3, Checksum: rowChecksum("z")},
			{Table: "public.new", Rows: 1, Checksum: rowChecksum("n")},
		}}
		Expect(Compare(recorded, restored)).To(Equal([]string{
			"public.a: 10 rows recorded, 9 restored",
			"public.b: missing from the restored database (0 rows recorded)",
			"public.c: same number of rows (10) but different contents: checksum " + rowChecksum("y") + " recorded, " + rowChecksum("changed") + " restored",
			"public.new: in the restored database (1 row) but not recorded",
		}))
	})
})
