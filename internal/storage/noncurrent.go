package storage

import (
	"context"
	"fmt"
	"strings"

	"github.com/custos-io/custos/internal/restic"
)

// DeletedVersions is what PurgeDeletedVersions removed.
type DeletedVersions struct {
	// Objects is how many deleted objects (a delete marker is their current version) were removed for good.
	Objects int
	// Versions is how many noncurrent versions and delete markers were deleted by their versionId.
	Versions int
	// Bytes is the size of the noncurrent versions deleted.
	Bytes int64
}

// PurgeDeletedVersions removes for good what a routine prune deleted from a repository in a versioned S3
// bucket. There, restic's DELETE only puts a delete marker in front of the object: the data stays as a
// noncurrent version, readable with the bucket's keys, for as long as the bucket keeps versions, so the snapshots
// an expiry forgot would outlive the retention window. For every restic object of the repository whose current
// version is a delete marker, each noncurrent version and then the marker are deleted by their versionId.
//
// Objects whose current version is live are never touched (not even their older versions: restic writes a name
// once, so these are not expired data), nor keys under the prefix that restic does not write. A version written
// between the listing and the deletion is a new versionId and stays. Repositories elsewhere (local, rest-server,
// an S3 server without versions) keep nothing of a deleted object: the result is zero.
func PurgeDeletedVersions(ctx context.Context, repo restic.Repository) (DeletedVersions, error) {
	var out DeletedVersions
	if !strings.HasPrefix(repo.URL, "s3:") {
		return out, nil
	}
	b, err := newS3Backend(repo.URL, repo.Env)
	if err != nil {
		return out, err
	}
	objs, _, err := b.listAll(ctx)
	if err != nil || b.noVersions {
		return out, redact(err, repo)
	}
	// listAll sorts the versions of a name together, the current one last.
	deleted := map[string]bool{}
	for _, o := range objs {
		if o.latest && o.marker {
			deleted[o.path] = true
		}
	}
	var versions, markers []object
	for _, o := range objs {
		switch {
		case !deleted[o.path]:
		case o.marker:
			markers = append(markers, o)
		default:
			versions = append(versions, o)
			out.Bytes += o.Size
		}
	}
	out.Objects = len(deleted)
	// The data first, the markers after: a marker deleted before its versions would make the newest of them
	// current again for a moment.
	n, err := b.remove(ctx, versions)
	out.Versions += n
	if err != nil {
		return out, fmt.Errorf("deleting noncurrent versions in %s: %w", b.display(), redact(err, repo))
	}
	n, err = b.remove(ctx, markers)
	out.Versions += n
	if err != nil {
		return out, fmt.Errorf("deleting delete markers in %s: %w", b.display(), redact(err, repo))
	}
	return out, nil
}
