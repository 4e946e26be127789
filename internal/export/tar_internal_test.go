package export

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = ginkgo.Describe("tar writing", func() {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

	ginkgo.It("patches streamed headers so that archive/tar reads every entry, long and non-ASCII names included", func() {
		f, err := os.Create(filepath.Join(ginkgo.GinkgoT().TempDir(), "t.tar"))
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		w := newTarWriter(f, now)
		long := "bag/data/tables/" + strings.Repeat("x", 200) + "/Patiënt 😀.csv"
		content := map[string]string{
			"bag/a.txt":          "known size",
			"bag/data/empty.csv": "",
			long:                 strings.Repeat("row,1\n", 300000), // more than one chunk
		}
		_, err = w.addBytes("bag/a.txt", []byte(content["bag/a.txt"]))
		Expect(err).NotTo(HaveOccurred())
		for _, name := range []string{"bag/data/empty.csv", long} {
			s, err := w.stream(name, func(out io.Writer) error {
				// Written in small pieces, as COPY hands rows over.
				data := content[name]
				for len(data) > 0 {
					n := min(len(data), 7)
					if _, err := out.Write([]byte(data[:n])); err != nil {
						return err
					}
					data = data[n:]
				}
				return nil
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(s.Size).To(Equal(int64(len(content[name]))))
		}
		Expect(w.close()).To(Succeed())

		_, err = f.Seek(0, io.SeekStart)
		Expect(err).NotTo(HaveOccurred())
		tr := tar.NewReader(f)
		got := map[string]string{}
		var dirs []string
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			if hdr.Typeflag == tar.TypeDir {
				dirs = append(dirs, hdr.Name)
				continue
			}
			Expect(hdr.ModTime.Equal(now)).To(BeTrue())
			b, err := io.ReadAll(tr)
			Expect(err).NotTo(HaveOccurred())
			got[hdr.Name] = string(b)
		}
		Expect(got).To(Equal(content))
		Expect(dirs).To(ContainElements("bag/", "bag/data/", "bag/data/tables/"))
	})

	ginkgo.It("writes sizes of 8 GiB and more in base-256, which archive/tar reads back", func() {
		for _, size := range []int64{0, 1, maxOctalSize, maxOctalSize + 1, 1 << 40} {
			b, err := headerBlocks(&tar.Header{Typeflag: tar.TypeReg, Name: "x", Mode: 0o644, ModTime: now})
			Expect(err).NotTo(HaveOccurred())
			hdr := b[len(b)-blockSize:]
			Expect(patchSize(hdr, size)).To(Succeed())
			h, err := tar.NewReader(bytes.NewReader(hdr)).Next()
			Expect(err).NotTo(HaveOccurred(), "size %d", size)
			Expect(h.Size).To(Equal(size))
			if size <= maxOctalSize {
				Expect(string(hdr[124:135])).To(MatchRegexp(`^[0-7]{11}$`))
			} else {
				Expect(hdr[124]).To(Equal(byte(0x80)))
			}
		}
	})
})

var _ = ginkgo.Describe("file names", func() {
	ginkgo.It("keeps plain names and hashes the others into safe, distinct, lower-case names", func() {
		Expect(tableBase("public", "orders")).To(Equal("public.orders"))
		Expect(tableBase("public", "order_lines_2")).To(Equal("public.order_lines_2"))
		odd := tableBase("clinic", `Patiënt "records", 2024`)
		Expect(odd).To(MatchRegexp(`^clinic\.pati-nt-records-2024-[0-9a-f]{12}$`))
		names := map[string]bool{}
		for _, n := range [][2]string{{"public", "Mixed"}, {"public", "mixed"}, {"public", "MIXED"}, {"a.b", "c"}, {"a", "b.c"},
			{"public", "a/b"}, {"public", "a\\b"}, {"public", "😀"}, {"public", "🏥"}, {"public", ""}, {"con", "x"},
			{"public", strings.Repeat("é", 31)}, {"public", "-"}, {"public", ".."}} {
			b := tableBase(n[0], n[1])
			Expect(b).To(MatchRegexp(`^[a-z0-9_][a-z0-9_.-]*$`), "%q", n)
			Expect(len(b)).To(BeNumerically("<", 120))
			Expect(names).NotTo(HaveKey(b))
			names[b] = true
		}
		Expect(tableBase("con", "x")).To(HavePrefix("_con."))
	})

	ginkgo.It("percent-encodes only CR, LF and % in manifest paths, and decodes them back", func() {
		for _, p := range []string{"data/a b.csv", "data/100%.yaml", "data/a\nb", "data/a\r\nb", "data/%0A"} {
			Expect(decodePath(encodePath(p))).To(Equal(p))
			Expect(encodePath(p)).NotTo(ContainSubstring("\n"))
		}
		Expect(encodePath("data/a b.csv")).To(Equal("data/a b.csv"))
		Expect(encodePath("data/100%.yaml")).To(Equal("data/100%25.yaml"))
	})
})
