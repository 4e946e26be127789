// Package storage destroys a tenant's restic repository at its backend and verifies that it is gone: the "Shred"
// disposal of backups, a cryptographic erase (restic encrypts everything with AES-256 under a master key that
// only the key files, each sealed with a password, unlock; with every object deleted and the password Secret
// deleted by the caller, no copy of the key is left).
//
// Shred works in four steps, each safe to repeat:
//
//  1. restic forget --prune --max-unused 0 of every snapshot (prune alone when there are none): restic itself
//     deletes the data packs, so a backend that keeps deleted files somewhere (a trash, versioning) keeps less.
//  2. Every object left at the backend is deleted without restic, in the order data, index, snapshots, config,
//     keys, locks: a local directory file by file, then the emptied directories and the repository directory; a
//     rest-server with DELETE requests (see rest.go for the protocol and what rest-server leaves on its disk); S3
//     with a DELETE of every version and delete marker by its versionId (see s3.go). The backend is listed again
//     and swept again, up to three times, until the listing is empty.
//  3. The listing of the backend must be empty and restic must answer "repository does not exist" (exit code 10).
//  4. The repository's directory in restic's local cache is removed.
//
// A repository that does not exist (already shredded, never created, or half shredded: a config deleted before
// the keys) is swept and verified like any other and yields a Report with no RepositoryID. Only the given
// repository's path is ever touched: nothing above it is listed or deleted, so other tenants' repositories at the
// same location are safe.
//
// A repository the password does not open (restic exit code 12), or one there is no password for (an empty
// Repository.Password: restic refuses those outright), is refused by default, with nothing deleted: a
// repository custos cannot open is one it cannot prove is the tenant's, and destroying data is not undone.
// Options.DeleteUnopenable deletes it anyway (for a key Secret that was lost), and the result is verified the same
// way. Backends other than local paths, rest: and s3: (sftp:, b2:, azure:, gs:, swift:, rclone:) are refused with
// ErrUnsupported.
package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/custos-io/custos/internal/restic"
)

// Report is what a Shred did, for the certificate of destruction. It never holds credentials.
type Report struct {
	// Repository is the repository's address without credentials.
	Repository string `json:"repository"`
	// Backend is local, rest or s3.
	Backend string `json:"backend"`
	// RepositoryID is restic's id of the repository before destruction; empty when there was none to open.
	RepositoryID string `json:"repositoryID,omitempty"`
	// SnapshotsBefore is how many snapshots the repository held.
	SnapshotsBefore int `json:"snapshotsBefore"`
	// ObjectsDeleted and BytesDeleted count the files of the repository at the backend that were there when
	// Shred started or appeared during it (prune writes a new index), all of which are gone now; in a versioned
	// S3 bucket every version and delete marker counts. Sizes a server does not list are not counted.
	ObjectsDeleted int   `json:"objectsDeleted"`
	BytesDeleted   int64 `json:"bytesDeleted"`
	// Method says what was done, step by step.
	Method string `json:"method"`
	// Tool and ToolVersion are the program that opened the repository and verified its absence.
	Tool        string    `json:"tool"`
	ToolVersion string    `json:"toolVersion"`
	StartedAt   time.Time `json:"startedAt"`
	CompletedAt time.Time `json:"completedAt"`
	// Verification says what was checked after the deletion, and found.
	Verification string `json:"verification"`
}

// Step is a stage of a Shred, told to Options.Progress when it is done.
type Step string

// Steps, in order.
const (
	// StepInventoried: the backend was listed.
	StepInventoried Step = "Inventoried"
	// StepOpened: restic opened the repository (absent when there was none, or the key did not open it).
	StepOpened Step = "Opened"
	// StepPruned: every snapshot was forgotten and the repository pruned.
	StepPruned Step = "Pruned"
	// StepDeleted: the objects of one type were deleted (Event.Type, Event.Objects).
	StepDeleted Step = "Deleted"
	// StepVerified: the repository is verified gone.
	StepVerified Step = "Verified"
)

// Event is one completed step.
type Event struct {
	Step Step
	// Type is the object type of a StepDeleted.
	Type string
	// Objects is how many objects a StepDeleted deleted.
	Objects int
}

// Options change what Shred does.
type Options struct {
	// Now is the clock of the Report's times; nil is time.Now.
	Now func() time.Time
	// DeleteUnopenable deletes the objects of a repository the password does not open (restic exit code 12)
	// instead of refusing with ErrUnopenable.
	DeleteUnopenable bool
	// Progress, when set, is told each completed step (for logs and events).
	Progress func(Event)
}

// ErrUnopenable is returned, with nothing deleted, for a repository the password does not open.
var ErrUnopenable = errors.New("the repository's password does not open it, so it cannot be shown to be the tenant's")

// errNoPassword is the reason a repository was not opened when the caller has no password for it (a key Secret
// that is gone).
var errNoPassword = errors.New("no password to open it with")

func hasConfig(objs []object) bool {
	for _, o := range objs {
		if o.Type == "config" {
			return true
		}
	}
	return false
}

// Shred destroys the repository and verifies that it is gone (see the package comment). It is idempotent: a
// repository that does not exist is verified absent and yields a Report with RepositoryID "" and no error. A
// failure partway returns an error (and the Report so far, which is no proof of anything) and leaves the rest to
// a later call; success is never reported without verification.
func Shred(ctx context.Context, repo restic.Repository, now func() time.Time) (Report, error) {
	return ShredWith(ctx, repo, Options{Now: now})
}

// ShredWith is Shred with options.
func ShredWith(ctx context.Context, repo restic.Repository, opts Options) (rep Report, err error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	emit := func(e Event) {
		if opts.Progress != nil {
			opts.Progress(e)
		}
	}
	rep = Report{Tool: "restic", StartedAt: now().UTC()}
	defer func() { err = redact(err, repo) }()
	be, err := newBackend(repo)
	if err != nil {
		return rep, err
	}
	rep.Repository, rep.Backend = be.display(), be.kind()
	if rep.ToolVersion, err = repo.Version(ctx); err != nil {
		return rep, err
	}

	// What is there before anything is deleted; listing first also fails fast on an unreachable server (restic
	// itself retries one for minutes).
	before, err := be.list(ctx)
	if err != nil {
		return rep, fmt.Errorf("listing %s: %w", be.display(), err)
	}
	deleted := map[string]int64{}
	count := func(objs []object) {
		for _, o := range objs {
			deleted[o.key()] = o.Size
		}
	}
	count(before)
	emit(Event{Step: StepInventoried, Objects: len(before)})

	var method []string
	var id string
	if repo.Password == "" {
		// restic refuses an empty password (exit code 1) before it looks at the repository, so it cannot tell
		// here whether there is one: the config at the backend can.
		err = errNoPassword
		if !hasConfig(before) {
			err = &restic.Error{Command: "cat", Code: restic.ExitNoRepository, Message: "no config at the backend"}
		}
	} else {
		id, err = repo.ID(ctx)
	}
	switch {
	case err == nil:
		rep.RepositoryID = id
		emit(Event{Step: StepOpened})
		n, what, err := forgetAll(ctx, repo)
		rep.SnapshotsBefore = n
		if err != nil {
			if ctx.Err() != nil || restic.IsCode(err, restic.ExitLocked) {
				// Stopped, or another command holds the repository (a backup still running): try again later.
				return rep, fmt.Errorf("%s of %s: %w", what, be.display(), err)
			}
			// A damaged repository must not keep its data: the objects are deleted below all the same.
			method = append(method, fmt.Sprintf("%s failed (%v), so the objects were deleted without it", what, err))
		} else {
			method = append(method, what)
			emit(Event{Step: StepPruned})
		}
	case restic.IsCode(err, restic.ExitNoRepository):
		method = append(method, "restic found no repository to open (exit code 10)")
	case restic.IsCode(err, restic.ExitWrongPassword), errors.Is(err, errNoPassword):
		if !opts.DeleteUnopenable {
			return rep, fmt.Errorf("%w: %s: nothing deleted: %w", ErrUnopenable, be.display(), err)
		}
		why := "the password did not open the repository (restic exit code 12)"
		if errors.Is(err, errNoPassword) {
			why = "there was no password to open the repository with"
		}
		method = append(method, why+": its objects were deleted unread, as asked")
	default:
		return rep, fmt.Errorf("opening %s: %w", be.display(), err)
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}

	swept, err := sweep(ctx, be, count, emit)
	if err != nil {
		return rep, err
	}
	if swept > 0 {
		method = append(method, fmt.Sprintf("the %d objects left at the backend deleted, in the order %s", swept, strings.Join(deleteOrder, ", ")))
	} else {
		method = append(method, "no object left at the backend to delete")
	}
	container, err := be.removeContainer(ctx)
	if err != nil {
		return rep, fmt.Errorf("removing %s: %w", be.display(), err)
	}
	method = append(method, container)

	verification, err := verify(ctx, repo, be, rep.ToolVersion)
	if err != nil {
		return rep, err
	}
	if removeCache(repo.CacheDir, rep.RepositoryID) {
		method = append(method, "its directory in restic's local cache removed")
	}
	for _, size := range deleted {
		if size > 0 {
			rep.BytesDeleted += size
		}
	}
	rep.ObjectsDeleted = len(deleted)
	rep.Method = strings.Join(append(method, "verified"), "; ")
	rep.Verification = verification
	rep.CompletedAt = now().UTC()
	emit(Event{Step: StepVerified})
	return rep, nil
}

// sweepPasses is how often the backend is listed and emptied before the verification: a server may bring an
// object back while it is being deleted (an S3 server that promotes the previous version of a key), so a second
// look finds what the first one could not.
const sweepPasses = 3

// sweep deletes every object the backend lists, type by type in deleteOrder, until a listing is empty or
// sweepPasses are done, and returns how many it deleted.
func sweep(ctx context.Context, be backend, count func([]object), emit func(Event)) (int, error) {
	swept := 0
	for range sweepPasses {
		left, err := be.list(ctx)
		if err != nil {
			return swept, fmt.Errorf("listing %s: %w", be.display(), err)
		}
		if len(left) == 0 {
			break
		}
		count(left)
		for _, t := range deleteOrder {
			var objs []object
			for _, o := range left {
				if o.Type == t {
					objs = append(objs, o)
				}
			}
			if len(objs) == 0 {
				continue
			}
			n, err := be.remove(ctx, objs)
			swept += n
			if err != nil {
				return swept, fmt.Errorf("deleting the %s objects of %s: %w", t, be.display(), err)
			}
			emit(Event{Step: StepDeleted, Type: t, Objects: n})
		}
	}
	return swept, nil
}

// forgetAll forgets every snapshot and prunes with nothing left unused. It returns how many snapshots there
// were and what it ran.
func forgetAll(ctx context.Context, repo restic.Repository) (int, string, error) {
	// Stale locks only (a Shred killed earlier leaves one); a live lock makes the forget below wait RetryLock.
	_ = repo.Unlock(ctx)
	snaps, err := repo.Snapshots(ctx)
	if err != nil {
		return 0, "restic snapshots", err
	}
	if len(snaps) == 0 {
		return 0, "restic prune --max-unused 0 (no snapshots)", repo.Prune(ctx)
	}
	ids := make([]string, 0, len(snaps))
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	return len(snaps), fmt.Sprintf("restic forget --prune --max-unused 0 of all %d snapshots", len(snaps)), repo.Forget(ctx, ids)
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// removeCache removes the repository's directory in restic's cache and reports whether there was one.
func removeCache(cacheDir, id string) bool {
	if cacheDir == "" || !hexID.MatchString(id) {
		return false
	}
	dir := filepath.Join(cacheDir, id)
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	return os.RemoveAll(dir) == nil
}

// RemainsError is a verification that found objects of the repository still at the backend.
type RemainsError struct {
	Repository string
	// Objects are the remaining type/name, at most 10.
	Objects []string
	Count   int
}

func (e *RemainsError) Error() string {
	return fmt.Sprintf("%s is not gone: %d objects remain (%s)", e.Repository, e.Count, strings.Join(e.Objects, ", "))
}

// VerifyGone checks, deleting nothing, that the repository is absent: its backend lists no object of it and
// restic answers that it does not exist (exit code 10). It returns what it checked.
func VerifyGone(ctx context.Context, repo restic.Repository) (verification string, err error) {
	defer func() { err = redact(err, repo) }()
	be, err := newBackend(repo)
	if err != nil {
		return "", err
	}
	version, err := repo.Version(ctx)
	if err != nil {
		return "", err
	}
	return verify(ctx, repo, be, version)
}

func verify(ctx context.Context, repo restic.Repository, be backend, version string) (string, error) {
	objs, err := be.list(ctx)
	if err != nil {
		return "", fmt.Errorf("verifying: listing %s: %w", be.display(), err)
	}
	if len(objs) > 0 {
		e := &RemainsError{Repository: be.display(), Count: len(objs)}
		for _, o := range objs[:min(10, len(objs))] {
			e.Objects = append(e.Objects, o.key())
		}
		return "", e
	}
	_, err = repo.ID(ctx)
	switch {
	case err == nil:
		return "", fmt.Errorf("verifying: restic still opens %s", be.display())
	case !restic.IsCode(err, restic.ExitNoRepository):
		return "", fmt.Errorf("verifying that restic finds no repository at %s: %w", be.display(), err)
	}
	return fmt.Sprintf("restic %s cat config exits with code 10 (repository does not exist); %s", version, be.absence()), nil
}

// redact keeps the repository's secrets (a password in its URL, a rest-server password in its environment) out
// of an error's text; errors.Is and errors.As still see the wrapped errors.
func redact(err error, repo restic.Repository) error {
	if err == nil {
		return nil
	}
	secrets := []string{envValue(repo.Env, "RESTIC_REST_PASSWORD"), envValue(repo.Env, "AWS_SECRET_ACCESS_KEY"),
		envValue(repo.Env, "AWS_SESSION_TOKEN"), repo.Password}
	if raw, ok := strings.CutPrefix(repo.URL, "rest:"); ok {
		if _, hostPart, ok := strings.Cut(raw, "://"); ok {
			authority, _, _ := strings.Cut(hostPart, "/")
			if at := strings.LastIndex(authority, "@"); at >= 0 {
				if _, pass, ok := strings.Cut(authority[:at], ":"); ok {
					secrets = append(secrets, pass)
					if dec, err := url.PathUnescape(pass); err == nil {
						secrets = append(secrets, dec)
					}
				}
			}
		}
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		// Below minSecret characters a replacement would mangle the message more than it hides anything
		// (custos's own passwords are 32 random bytes).
		if len(s) >= minSecret {
			clean = strings.ReplaceAll(clean, s, "***")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

const minSecret = 6

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
