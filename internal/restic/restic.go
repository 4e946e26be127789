// Package restic wraps the restic command line: typed commands, --json output parsed by pure functions, exit
// codes mapped to errors a person can act on, and an environment of its own per repository (the password goes
// through RESTIC_PASSWORD, never through the arguments, so it does not show in a process list).
package restic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Exit codes of restic (https://restic.readthedocs.io/en/stable/075_scripting.html#exit-codes).
const (
	ExitFatal         = 1
	ExitPartial       = 3
	ExitNoRepository  = 10
	ExitLocked        = 11
	ExitWrongPassword = 12
)

// Error is a failed restic command.
type Error struct {
	// Command is the subcommand (backup, forget, …).
	Command string
	// Code is restic's exit code; -1 when it did not run.
	Code int
	// Message is restic's own message (from its JSON exit_error on stderr, or the stderr text).
	Message string
	// Stalled is set when custos stopped the command because the backend kept failing (Repository.BackendRetryLimit).
	Stalled *BackendStalled
}

// Unwrap gives errors.As the BackendStalled behind the error, if any.
func (e *Error) Unwrap() error {
	if e.Stalled == nil {
		return nil
	}
	return e.Stalled
}

func (e *Error) Error() string {
	return fmt.Sprintf("restic %s: %s (exit code %d)", e.Command, e.Message, e.Code)
}

// Reason is a condition reason for the failure.
func (e *Error) Reason() string {
	if e.Stalled != nil {
		return "Unreachable"
	}
	switch e.Code {
	case ExitNoRepository:
		return "RepositoryNotFound"
	case ExitLocked:
		return "RepositoryLocked"
	case ExitWrongPassword:
		return "WrongRepositoryPassword"
	case ExitPartial:
		return "PartialBackup"
	default:
		return "ResticFailed"
	}
}

// IsCode reports whether err is a restic Error with exit code code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Repository is one restic repository and how to open it.
type Repository struct {
	// Binary is the restic program.
	Binary string
	// URL is the repository: a local path, rest:http(s)://…, s3:….
	URL string
	// Password of the repository's key.
	Password string
	// Env adds backend settings (rest-server or S3 credentials) as KEY=VALUE.
	Env []string
	// CacheDir is restic's cache; empty runs with --no-cache.
	CacheDir string
	// Dir is the working directory of restic (BackupDir's paths are relative to it).
	Dir string
	// RetryLock makes a command wait this long for a lock another command holds (a prune holds an exclusive
	// one) instead of failing at once with exit code 11.
	RetryLock time.Duration
	// BackendRetryLimit stops a command once one backend operation has kept failing this long (restic itself
	// retries for 15 minutes); the error then carries a BackendStalled. Zero leaves it to restic.
	BackendRetryLimit time.Duration
}

// run runs restic with args and returns stdout. stderr is kept for the error only.
func (r Repository) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := r.stream(ctx, stdin, &stdout, nil, args...)
	return stdout.Bytes(), err
}

// stream runs restic with args, its stdout going to stdout. The repository (and the source repository of a copy)
// go through the environment, not the arguments, so that backend credentials never show in a process list.
func (r Repository) stream(ctx context.Context, stdin io.Reader, stdout io.Writer, extraEnv []string, args ...string) error {
	full := append([]string{"--json"}, args...)
	if r.RetryLock > 0 {
		full = append([]string{"--retry-lock", r.RetryLock.String()}, full...)
	}
	if r.CacheDir == "" {
		full = append([]string{"--no-cache"}, full...)
	} else {
		full = append([]string{"--cache-dir", r.CacheDir}, full...)
	}
	runCtx := ctx
	var stderr bytes.Buffer
	var errOut io.Writer = &stderr
	var watch *stallWatch
	if r.BackendRetryLimit > 0 {
		c, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		runCtx = c
		watch = newStallWatch(r.BackendRetryLimit, time.Now, cancel)
		errOut = io.MultiWriter(&stderr, watch)
		defer watch.every(min(r.BackendRetryLimit/4, 5*time.Second))()
	}
	cmd := exec.CommandContext(runCtx, r.Binary, full...)
	cmd.Env = append(baseEnv(), "RESTIC_REPOSITORY="+r.URL, "RESTIC_PASSWORD="+r.Password)
	cmd.Env = append(cmd.Env, r.Env...)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Dir = r.Dir
	cmd.Stdin = stdin
	// restic exits cleanly (removing its lock) on SIGINT; a context cancel sends that first.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout, cmd.Stderr = stdout, errOut
	err := cmd.Run()
	if err == nil {
		return nil
	}
	code := -1
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	if watch != nil && ctx.Err() == nil {
		if st := watch.Stalled(); st != nil {
			return &Error{Command: args[0], Code: code, Message: st.Error() + "; custos stopped it", Stalled: st}
		}
	}
	msg := ParseExitError(stderr.Bytes())
	if msg == "" {
		msg = err.Error()
	}
	if strings.Contains(msg, "command failed") {
		// The command restic ran (pg_dump) said why on the shared stderr; keep its last words.
		if why := commandStderr(stderr.Bytes(), 3); why != "" {
			msg += ": " + why
		}
	}
	if ctx.Err() != nil {
		msg = fmt.Sprintf("%s (stopped: %v)", msg, context.Cause(ctx))
	}
	return &Error{Command: args[0], Code: code, Message: msg}
}

// commandStderr is the last n lines of stderr that are neither restic's own JSON messages nor its retry lines.
func commandStderr(stderr []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimSpace(l)
		if _, retry := ParseRetryLine(l); l != "" && !strings.HasPrefix(l, "{") && !retry {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// baseEnv is what restic needs of the manager's environment, and nothing else (no inherited RESTIC_* settings).
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Init creates the repository and returns its id.
func (r Repository) Init(ctx context.Context) (string, error) {
	out, err := r.run(ctx, nil, "init")
	if err != nil {
		return "", err
	}
	return ParseInit(out)
}

// ID returns the id of an existing repository (restic cat config).
func (r Repository) ID(ctx context.Context) (string, error) {
	out, err := r.run(ctx, nil, "cat", "config")
	if err != nil {
		return "", err
	}
	return ParseConfigID(out)
}

// Snapshots lists the snapshots carrying every tag in tags.
func (r Repository) Snapshots(ctx context.Context, tags ...string) ([]Snapshot, error) {
	args := []string{"snapshots"}
	if len(tags) > 0 {
		args = append(args, "--tag", strings.Join(tags, ","))
	}
	out, err := r.run(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	return ParseSnapshots(out)
}

// BackupStdin is a backup of what a command prints: restic runs the command itself
// (--stdin-from-command), so a failing command fails the backup and no snapshot is recorded.
type BackupStdin struct {
	Filename string
	Host     string
	Tags     []string
	// Time of the snapshot; zero means now. Tests back-date snapshots with it.
	Time    time.Time
	Command []string
}

// Backup runs a BackupStdin and returns restic's summary.
func (r Repository) Backup(ctx context.Context, b BackupStdin) (Summary, error) {
	if len(b.Command) == 0 {
		return Summary{}, errors.New("restic backup: no command to back up the output of")
	}
	args := []string{"backup", "--stdin-from-command", "--stdin-filename", b.Filename, "--host", b.Host}
	for _, t := range b.Tags {
		args = append(args, "--tag", t)
	}
	if !b.Time.IsZero() {
		args = append(args, "--time", b.Time.UTC().Format("2006-01-02 15:04:05"))
	}
	args = append(append(args, "--"), b.Command...)
	out, err := r.run(ctx, nil, args...)
	if err != nil {
		return Summary{}, err
	}
	return ParseBackup(out)
}

// Forget removes the given snapshots and prunes the data only they referenced, leaving nothing unused
// (--max-unused 0): their data is really gone from the repository afterwards.
func (r Repository) Forget(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := r.run(ctx, nil, append([]string{"forget", "--prune", "--max-unused", "0"}, ids...)...)
	return err
}

// Unlock removes stale locks only (never --remove-all: a live lock belongs to a running command).
func (r Repository) Unlock(ctx context.Context) error {
	_, err := r.run(ctx, nil, "unlock")
	return err
}

// BackupDir backs up paths (relative to Dir, so the snapshot holds them under /) with tags and host.
func (r Repository) BackupDir(ctx context.Context, host string, tags []string, at time.Time, paths ...string) (Summary, error) {
	args := []string{"backup", "--host", host}
	for _, t := range tags {
		args = append(args, "--tag", t)
	}
	if !at.IsZero() {
		args = append(args, "--time", at.UTC().Format("2006-01-02 15:04:05"))
	}
	args = append(append(args, "--"), paths...)
	out, err := r.run(ctx, nil, args...)
	if err != nil {
		return Summary{}, err
	}
	return ParseBackup(out)
}

// InitCopyOf creates the repository with a key of its own and the chunker parameters of from, so that snapshots
// copied from there deduplicate here.
func (r Repository) InitCopyOf(ctx context.Context, from Repository) (string, error) {
	out, err := r.runWithFrom(ctx, from, "init", "--copy-chunker-params")
	if err != nil {
		return "", err
	}
	return ParseInit(out)
}

// Copy copies the snapshots ids of from that are not here yet (restic copy skips those already copied).
func (r Repository) Copy(ctx context.Context, from Repository, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := r.runWithFrom(ctx, from, append([]string{"copy"}, ids...)...)
	return err
}

func (r Repository) runWithFrom(ctx context.Context, from Repository, args ...string) ([]byte, error) {
	// Backend settings (S3 keys) are the same variables for source and destination: restic has no FROM_ variant
	// of them. rest-server credentials travel in the repository URL, which is passed through the environment.
	env := append([]string{"RESTIC_FROM_REPOSITORY=" + from.URL, "RESTIC_FROM_PASSWORD=" + from.Password}, from.Env...)
	var stdout bytes.Buffer
	err := r.stream(ctx, nil, &stdout, env, args...)
	return stdout.Bytes(), err
}

// Check verifies the repository's structure and reads back subset of its data ("5%", "1/7"); empty reads none.
func (r Repository) Check(ctx context.Context, subset string) error {
	args := []string{"check"}
	if subset != "" {
		args = append(args, "--read-data-subset", subset)
	}
	_, err := r.run(ctx, nil, args...)
	return err
}

// Dump writes the file path of snapshot id to w, streaming.
func (r Repository) Dump(ctx context.Context, id, path string, w io.Writer) error {
	return r.stream(ctx, nil, w, nil, "dump", id, path)
}

// Prune removes every pack no snapshot references, leaving nothing unused (--max-unused 0).
func (r Repository) Prune(ctx context.Context) error {
	_, err := r.run(ctx, nil, "prune", "--max-unused", "0")
	return err
}

// Version returns the version of the restic program ("0.18.1"); it opens no repository.
func (r Repository) Version(ctx context.Context) (string, error) {
	out, err := r.run(ctx, nil, "version")
	if err != nil {
		return "", err
	}
	return ParseVersion(out)
}

// ParseVersion returns the version from `restic version --json`.
func ParseVersion(out []byte) (string, error) {
	var v struct {
		MessageType string `json:"message_type"`
		Version     string `json:"version"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &v); err != nil || v.Version == "" {
		return "", fmt.Errorf("parsing restic version output %q: %v", out, err)
	}
	return v.Version, nil
}
