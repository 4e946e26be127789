package pgdump

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// benchDump is a synthetic plain dump of about 64 MiB whose rows are about rowSize bytes long.
func benchDump(rowSize int) []byte {
	rng := rand.New(rand.NewPCG(7, uint64(rowSize)))
	var b bytes.Buffer
	b.Grow(65 << 20)
	b.WriteString("--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\n\n")
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\\"
	row := make([]byte, 0, 2*rowSize)
	for t := 0; b.Len() < 64<<20; t++ {
		fmt.Fprintf(&b, "CREATE TABLE public.t%d (id bigint, name text, payload text);\n\n", t)
		fmt.Fprintf(&b, "COPY public.t%d (id, name, payload) FROM stdin;\n", t)
		for i := 0; i < 100000 && b.Len() < 64<<20; i++ {
			row = fmt.Appendf(row[:0], "%d\tname %d\t", i, rng.Uint32())
			for n := rowSize/2 + rng.IntN(rowSize); len(row) < n; {
				row = append(row, alphabet[rng.IntN(len(alphabet))])
			}
			b.Write(append(row, '\n'))
		}
		b.WriteString("\\.\n\n\n")
	}
	b.WriteString("--\n-- PostgreSQL database dump complete\n--\n\n")
	return b.Bytes()
}

var benchDumps = sync.OnceValue(func() map[string][]byte {
	return map[string][]byte{"rows=100B": benchDump(100), "rows=8KiB": benchDump(8 << 10)}
})

// Hide io.Discard's ReaderFrom and bytes.Reader's WriterTo, so the baseline copies through a buffer as Filter does.
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }

// BenchmarkFilter compares Filter (XXH3, one hashing goroutine) with a plain io.Copy of the same ~64 MiB dump
// through a 1 MiB buffer, with XXH3 hashed by one goroutine per core, and with SHA-256 (one per core, and one);
// MB/s is dump bytes per second.
func BenchmarkFilter(b *testing.B) {
	for _, shape := range []string{"rows=100B", "rows=8KiB"} {
		dump := benchDumps()[shape]
		b.Run(shape+"/io.Copy", func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			buf := make([]byte, 1<<20)
			for b.Loop() {
				if _, err := io.CopyBuffer(onlyWriter{io.Discard}, onlyReader{bytes.NewReader(dump)}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(shape+"/Filter", func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			for b.Loop() {
				st, err := Filter(bytes.NewReader(dump), io.Discard)
				if err != nil || st.Bytes != int64(len(dump)) {
					b.Fatal(err, st.Bytes)
				}
			}
		})
		b.Run(shape+"/Filter-xxh3-hashers=GOMAXPROCS", func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			for b.Loop() {
				if _, err := filter(bytes.NewReader(dump), io.Discard, config{hashers: runtime.GOMAXPROCS(0), chunk: 1 << 20, job: 256 << 10, alg: XXH3}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "hashers")
		})
		b.Run(shape+"/Filter-sha256", func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			for b.Loop() {
				if _, err := FilterWith(bytes.NewReader(dump), io.Discard, SHA256); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "hashers")
		})
		b.Run(shape+"/Filter-sha256-hashers=1", func(b *testing.B) {
			b.SetBytes(int64(len(dump)))
			for b.Loop() {
				if _, err := filter(bytes.NewReader(dump), io.Discard, config{hashers: 1, chunk: 1 << 20, job: 256 << 10, alg: SHA256}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
