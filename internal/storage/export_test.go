package storage

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custos-io/custos/internal/restic"
)

// CreateS3Bucket creates the bucket of an s3: repository, with versioning on when versioned.
func CreateS3Bucket(ctx context.Context, repo restic.Repository, versioned bool) error {
	b, err := newS3Backend(repo.URL, repo.Env)
	if err != nil {
		return err
	}
	if _, err := b.send(ctx, http.MethodPut, "", nil, nil, "us-east-1"); err != nil {
		return err
	}
	if !versioned {
		return nil
	}
	conf := `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>`
	_, err = b.send(ctx, http.MethodPut, "", url.Values{"versioning": {""}}, []byte(conf), "us-east-1")
	return err
}

// S3Versions counts the versions and delete markers under an s3: repository's prefix, restic's or not.
func S3Versions(ctx context.Context, repo restic.Repository) (int, error) {
	b, err := newS3Backend(repo.URL, repo.Env)
	if err != nil {
		return 0, err
	}
	objs, foreign, err := b.listAll(ctx)
	return len(objs) + len(foreign), err
}
