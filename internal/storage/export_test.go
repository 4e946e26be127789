package storage

import (
	"context"

	"github.com/custos-io/custos/internal/restic"
)

// S3Versions counts the versions and delete markers under an s3: repository's prefix, restic's or not.
func S3Versions(ctx context.Context, repo restic.Repository) (int, error) {
	b, err := newS3Backend(repo.URL, repo.Env)
	if err != nil {
		return 0, err
	}
	objs, foreign, err := b.listAll(ctx)
	return len(objs) + len(foreign), err
}
