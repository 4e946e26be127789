package pgdump

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// StatsFileEnv names the environment variable that turns a process into the dump helper: a process started with
// it set runs os.Args[1:] through Filter and writes the Stats to the file it names (see the package documentation).
const StatsFileEnv = "CUSTOS_PGDUMP_STATS_FILE"

// Command returns the argv restic should run: the current executable (see Self) followed by the dump command
// argv. The caller puts StatsFileEnv=<path> into restic's environment (restic passes its environment to the
// command); the stats file exists afterwards only when the dump succeeded.
func Command(dump []string) ([]string, error) {
	if len(dump) == 0 || dump[0] == "" {
		return nil, errors.New("pgdump: no dump command")
	}
	return append([]string{Self()}, dump...), nil
}

// Self is the path that re-executes the running program. On Linux it is /proc/<pid>/exe, which reaches this
// process's own executable even when the file on disk was replaced or removed meanwhile (a package upgrade, a
// rebuilt test binary), so the helper is always the same build as the manager; elsewhere os.Executable.
func Self() string {
	proc := fmt.Sprintf("/proc/%d/exe", os.Getpid())
	if _, err := os.Lstat(proc); err == nil {
		return proc
	}
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// init turns the process into the dump helper when StatsFileEnv is set, and never returns in that case: the host
// program (the manager, a test binary) must not start. See the package documentation for why this is an init.
func init() {
	path := os.Getenv(StatsFileEnv)
	if path == "" {
		return
	}
	os.Exit(runHelper(path, os.Args[1:]))
}

// runHelper runs the dump command args with its standard output piped through Filter to os.Stdout; when both
// succeeded it appends the Trailer line and writes the stats to path. It returns the exit code for the helper
// process.
func runHelper(path string, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "custos pgdump helper: "+format+"\n", a...)
		return 1
	}
	_ = os.Unsetenv(StatsFileEnv)
	// A stats file left by an earlier run must not pass for this one's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail("removing the old stats file: %v", err)
	}
	if len(args) == 0 || args[0] == "" {
		return fail("no dump command given")
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	growPipe(pr)
	growPipe(os.Stdout)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = nil
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childSysProcAttr()
	// Forward termination requests to the dump, which then fails and makes the helper fail.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return fail("starting %s: %v", args[0], err)
	}
	_ = pw.Close()
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()

	stats, ferr := Filter(pr, os.Stdout)
	// Closing the read end makes a dump still writing (the consumer went away) fail with EPIPE instead of blocking.
	_ = pr.Close()
	werr := cmd.Wait()
	signal.Stop(sigs)

	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ExitCode() > 0 {
			fmt.Fprintf(os.Stderr, "custos pgdump helper: %s failed: %v\n", args[0], werr)
			return ee.ExitCode()
		}
		return fail("%s failed: %v", args[0], werr)
	}
	if ferr != nil {
		return fail("copying the dump: %v", ferr)
	}
	trailer, err := Trailer(stats)
	if err != nil {
		return fail("writing the figures: %v", err)
	}
	if _, err := os.Stdout.Write(trailer); err != nil {
		return fail("writing the figures: %v", err)
	}
	if err := writeStats(path, stats); err != nil {
		return fail("writing the stats: %v", err)
	}
	return 0
}

// writeStats writes s as JSON to path.tmp, syncs it and renames it to path.
func writeStats(path string, s Stats) error {
	if s.Tables == nil {
		s.Tables = []TableStats{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// ReadStatsFile reads the stats the helper wrote.
func ReadStatsFile(path string) (Stats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, fmt.Errorf("pgdump: %s: %w", path, err)
	}
	return s, nil
}
