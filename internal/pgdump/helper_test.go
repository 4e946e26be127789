package pgdump

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// runHelperCommand runs Command(dump) (this test binary, re-executed) with StatsFileEnv=statsFile, as restic would.
func runHelperCommand(ctx context.Context, statsFile string, dump ...string) (stdout, stderr []byte, exitCode int) {
	argv, err := Command(dump)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	ExpectWithOffset(1, argv).To(Equal(append([]string{Self()}, dump...)))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), StatsFileEnv+"="+statsFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		Fail("running the helper: " + err.Error())
	}
	return out.Bytes(), errb.Bytes(), cmd.ProcessState.ExitCode()
}

var _ = Describe("The dump helper (this test binary re-executed with "+StatsFileEnv+")", func() {
	var statsFile string
	BeforeEach(func() {
		statsFile = filepath.Join(GinkgoT().TempDir(), "stats.json")
	})

	It("refuses an empty dump command", func() {
		_, err := Command(nil)
		Expect(err).To(HaveOccurred())
	})

	It("passes the output through, appends the figures as the last line, writes the stats, and hides the variable from the dump", func(ctx context.Context) {
		script := `printf 'SET x = 1;\nCOPY public.t (a) FROM stdin;\n%s\n\\.\n' "${` + StatsFileEnv + `-unset}"; echo to-stderr >&2`
		out, errOut, code := runHelperCommand(ctx, statsFile, "/bin/sh", "-c", script)
		Expect(code).To(BeZero(), string(errOut))
		dump := "SET x = 1;\nCOPY public.t (a) FROM stdin;\nunset\n\\.\n"
		Expect(string(out)).To(HavePrefix(dump))
		Expect(string(errOut)).To(Equal("to-stderr\n"))
		st, err := ReadStatsFile(statsFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(st).To(Equal(Stats{Bytes: int64(len(dump)), Tables: []TableStats{{Table: "public.t", Rows: 1, Checksum: rowChecksum("unset")}}}))
		Expect(statsFile + ".tmp").NotTo(BeAnExistingFile())

		trailer, ok, err := ParseTrailer(out[len(dump):])
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue(), "the output after the dump is the trailer: %q", out[len(dump):])
		Expect(trailer).To(Equal(st), "the trailer holds the same figures as the stats file")
		Expect(out[len(out)-1]).To(Equal(byte('\n')))

		By("reading the helper's output back through the filter, as a drill does")
		var last LastLine
		again, err := Filter(bytes.NewReader(out), &last)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Tables).To(Equal(st.Tables), "the trailer is a comment: it adds no table and no row")
		recorded, ok, err := ParseTrailer(last.Line())
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		Expect(recorded).To(Equal(st))
	})

	It("writes stats with an empty list of tables for a dump without data", func(ctx context.Context) {
		_, errOut, code := runHelperCommand(ctx, statsFile, "/bin/true")
		Expect(code).To(BeZero(), string(errOut))
		b, err := os.ReadFile(statsFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal(`{"tables":[],"bytes":0}` + "\n"))
	})

	It("exits with the dump's exit code and leaves no stats file (not even an old one) when the dump fails", func(ctx context.Context) {
		Expect(os.WriteFile(statsFile, []byte(`{"tables":[],"bytes":1}`), 0o600)).To(Succeed())
		out, _, code := runHelperCommand(ctx, statsFile, "/bin/sh", "-c", "printf 'COPY public.t (a) FROM stdin;\\n1\\n\\\\.\\n'; exit 3")
		Expect(code).To(Equal(3))
		Expect(string(out)).To(Equal("COPY public.t (a) FROM stdin;\n1\n\\.\n"), "no figures after a failed dump")
		Expect(statsFile).NotTo(BeAnExistingFile())
	})

	It("fails without stats when the dump is killed by a signal", func(ctx context.Context) {
		_, _, code := runHelperCommand(ctx, statsFile, "/bin/sh", "-c", "kill -TERM $$")
		Expect(code).NotTo(BeZero())
		Expect(statsFile).NotTo(BeAnExistingFile())
	})

	It("fails without stats when the dump command cannot be started", func(ctx context.Context) {
		_, errOut, code := runHelperCommand(ctx, statsFile, filepath.Join(GinkgoT().TempDir(), "no-such-pg_dump"))
		Expect(code).To(Equal(1))
		Expect(string(errOut)).To(ContainSubstring("no-such-pg_dump"))
		Expect(statsFile).NotTo(BeAnExistingFile())
	})

	It("fails without stats when the dump exits 0 but ends inside a data block", func(ctx context.Context) {
		_, errOut, code := runHelperCommand(ctx, statsFile, "/bin/sh", "-c", "printf 'COPY public.t (a) FROM stdin;\\n1\\n'")
		Expect(code).To(Equal(1))
		Expect(string(errOut)).To(ContainSubstring("ended inside the data of public.t"))
		Expect(statsFile).NotTo(BeAnExistingFile())
	})
})
