// Package restic wraps the restic command line: typed commands, --json output parsed by pure functions, exit
// codes mapped to errors a person can act on, and an environment of its own per repository (the password goes
// through RESTIC_PASSWORD, never through the arguments, so it does not show in a process list).
package restic

import (
	"bytes"
	"context"
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
}

func (e *Error) Error() string {
	return fmt.Sprintf("restic %s: %s (exit code %d)", e.Command, e.Message, e.Code)
}

// Reason is a condition reason for the failure.
func (e *Error) Reason() string {
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
}

// run runs restic with args and returns stdout. stderr is kept for the error only.
func (r Repository) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	full := append([]string{"--repo", r.URL, "--json"}, args...)
	if r.CacheDir == "" {
		full = append([]string{"--no-cache"}, full...)
	} else {
		full = append([]string{"--cache-dir", r.CacheDir}, full...)
	}
	cmd := exec.CommandContext(ctx, r.Binary, full...)
	cmd.Env = append(baseEnv(), "RESTIC_PASSWORD="+r.Password)
	cmd.Env = append(cmd.Env, r.Env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	code := -1
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	msg := ParseExitError(stderr.Bytes())
	if msg == "" {
		msg = err.Error()
	}
	return stdout.Bytes(), &Error{Command: args[0], Code: code, Message: msg}
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
