package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/export"
)

// runCLI runs the command line in-process.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// objectMarker is a string that occurs once in a bag written by writeBag: inside a payload file.
const objectMarker = "colour: PURPLE-UNIQUE-MARKER"

// writeBag writes a bag without a database (Kubernetes objects only, so no PostgreSQL is needed) as
// dir/name.tar.
func writeBag(dir, name string) export.Result {
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	res, err := export.WriteFile(context.Background(), filepath.Join(dir, name+".tar"), export.Input{
		Objects: []export.Object{
			{Path: "clinic/configmap/settings.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: clinic\ndata:\n  " + objectMarker + "\n")},
			{Path: "clinic/deployment/web.yaml", Data: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: clinic\n")},
		},
		Info: export.BagInfo{SourceOrganization: "Hosting B.V.", ExternalIdentifier: "VO-2024-017", ContactName: "J. Jansen",
			ContactEmail: "j.jansen@clinic.example", Tenant: "clinic"},
		Now: at("2026-03-31T00:00:00Z"),
	})
	Expect(err).NotTo(HaveOccurred())
	return res
}

var _ = Describe("verify-export", func() {
	var (
		dir string
		res export.Result
	)
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		res = writeBag(dir, "clinic-exit")
	})

	It("verifies a bag and prints its name, payload, Payload-Oxum and the sha256 of the file", func() {
		data, err := os.ReadFile(res.Path)
		Expect(err).NotTo(HaveOccurred())
		code, out, errOut := runCLI("verify-export", res.Path)
		Expect(errOut).To(BeEmpty())
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("bag            clinic-exit\n"))
		Expect(out).To(ContainSubstring("sha256         " + sum(data) + "\n"))
		Expect(sum(data)).To(Equal(res.SHA256))
		Expect(out).To(ContainSubstring("payload files  4\n")) // two objects, datapackage.json, README.md
		Expect(out).To(ContainSubstring("Payload-Oxum   " + res.PayloadOxum + "\n"))
		Expect(out).To(ContainSubstring("tables         none\n"))
		Expect(out).To(HaveSuffix("\nVERIFIED\n"))
	})

	It("prints the report as JSON, and reads standard input", func() {
		code, out, _ := runCLI("verify-export", "--json", res.Path)
		Expect(code).To(Equal(0), out)
		var got struct {
			File, SHA256, BagName, PayloadOxum string
			Bytes                              int64
			OK                                 bool
			Files                              int
		}
		Expect(json.Unmarshal([]byte(out), &got)).To(Succeed())
		Expect(got.SHA256).To(Equal(res.SHA256))
		Expect(got.Bytes).To(Equal(res.Bytes))
		Expect(got.OK).To(BeTrue())
		Expect(got.BagName).To(Equal("clinic-exit"))
		Expect(got.Files).To(Equal(4))
		Expect(got.PayloadOxum).To(Equal(res.PayloadOxum))

		data, _ := os.ReadFile(res.Path)
		stdin = bytes.NewReader(data)
		DeferCleanup(func() { stdin = os.Stdin })
		code, out, _ = runCLI("verify-export", "-")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("file           standard input, "))
	})

	It("fails a bag with one byte of the payload changed, naming the file", func() {
		data, _ := os.ReadFile(res.Path)
		i := bytes.Index(data, []byte(objectMarker))
		Expect(i).To(BeNumerically(">", 0))
		Expect(bytes.Count(data, []byte(objectMarker))).To(Equal(1))
		data[i] = 'C'
		bad := filepath.Join(dir, "flipped.tar")
		Expect(os.WriteFile(bad, data, 0o600)).To(Succeed())
		code, out, _ := runCLI("verify-export", bad)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("sha256         " + sum(data)))
		Expect(out).To(ContainSubstring("data/objects/clinic/configmap/settings.yaml: sha256 does not match manifest-sha256.txt"))
		Expect(out).To(ContainSubstring("data/objects/clinic/configmap/settings.yaml: sha512 does not match manifest-sha512.txt"))
		Expect(out).To(MatchRegexp(`\nNOT VERIFIED: \d+ problem\(s\)\n`))
		Expect(out).NotTo(ContainSubstring("\nVERIFIED"))

		code, out, _ = runCLI("verify-export", "--json", bad)
		Expect(code).To(Equal(1))
		Expect(out).To(ContainSubstring(`"ok": false`))
	})

	It("fails a truncated bag (exit 1: it was read, and it is damaged)", func() {
		data, _ := os.ReadFile(res.Path)
		short := filepath.Join(dir, "short.tar")
		Expect(os.WriteFile(short, data[:len(data)/2], 0o600)).To(Succeed())
		code, out, _ := runCLI("verify-export", short)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("unexpected EOF"))
		Expect(out).To(ContainSubstring("NOT VERIFIED"))
	})

	It("fails a file that is no tar at all", func() {
		junk := filepath.Join(dir, "junk.tar")
		Expect(os.WriteFile(junk, []byte(strings.Repeat("not a tar ", 100)), 0o600)).To(Succeed())
		code, out, _ := runCLI("verify-export", junk)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("NOT VERIFIED"))
	})

	It("exits 2 on usage errors and on a file that cannot be read", func() {
		for _, args := range [][]string{
			{"verify-export"},
			{"verify-export", res.Path, res.Path},
			{"verify-export", filepath.Join(dir, "missing.tar")},
			{"verify-export", dir}, // a directory opens, but cannot be read
			{"verify-export", res.Path, "--nope"},
		} {
			code, _, errOut := runCLI(args...)
			Expect(code).To(Equal(2), "%v", args)
			Expect(errOut).NotTo(BeEmpty())
		}
	})

	It("lists the tables of a bag with a database", func() {
		var out bytes.Buffer
		printBagCheck(&out, bagCheck{File: "x.tar", SHA256: strings.Repeat("a", 64), Bytes: 10240, Report: export.Report{
			OK: true, BagName: "x", Files: 5, PayloadOxum: "2048.5", Tables: []export.Table{
				{Name: "public.orders", Path: "tables/public.orders.csv", Rows: 3},
				{Name: `clinic."Patiënt"`, Path: "tables/clinic.pati-nt-1a2b3c4d5e6f.csv", Rows: 1200},
			}}})
		Expect(out.String()).To(ContainSubstring("tables         2\n"))
		Expect(out.String()).To(MatchRegexp(`\n  public\.orders\s+tables/public\.orders\.csv\s+3 rows\n`))
		Expect(out.String()).To(MatchRegexp(`\n  clinic\."Patiënt"\s+tables/clinic\.pati-nt-1a2b3c4d5e6f\.csv\s+1200 rows\n`))
	})
})
