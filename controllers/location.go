package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/storage"
)

// backend is how restic reaches a BackupLocation: the base URL (with rest-server credentials in it) and the
// environment (S3 keys, CA file).
type backend struct {
	kind    string // local, rest, s3
	base    string
	display string // base without credentials, for messages
	env     []string
	user    string
	pass    string
	caPEM   []byte
}

// resolveBackend reads the location's Secrets. A CA bundle is written into dir for restic.
func resolveBackend(ctx context.Context, r client.Reader, namespace string, bl *custosv1alpha1.BackupLocation, dir string) (backend, error) {
	u := strings.TrimRight(bl.Spec.URL, "/")
	b := backend{base: u, display: u}
	switch {
	case strings.HasPrefix(u, "/"):
		b.kind = "local"
	case strings.HasPrefix(u, "rest:"):
		b.kind = "rest"
	default:
		b.kind = "s3"
	}
	if ref := bl.Spec.CredentialsSecretRef; ref != nil {
		switch b.kind {
		case "rest":
			creds, err := credentialsSecret(ctx, r, namespace, ref.Name, "BackupLocation/"+bl.Name, "username", "password")
			if err != nil {
				return b, err
			}
			b.user, b.pass = string(creds["username"]), string(creds["password"])
			pu, err := url.Parse(strings.TrimPrefix(u, "rest:"))
			if err != nil {
				return b, err
			}
			pu.User = url.UserPassword(b.user, b.pass)
			b.base = "rest:" + pu.String()
		case "s3":
			keys := []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
			creds, err := credentialsSecret(ctx, r, namespace, ref.Name, "BackupLocation/"+bl.Name, keys...)
			if err != nil {
				return b, err
			}
			for _, k := range keys {
				b.env = append(b.env, k+"="+string(creds[k]))
			}
		}
	}
	if ref := bl.Spec.CASecretRef; ref != nil {
		ca, err := secretKey(ctx, r, namespace, ref.Name, "ca.crt")
		if err != nil {
			return b, err
		}
		b.caPEM = ca
		if dir != "" {
			p := filepath.Join(dir, "location-ca-"+bl.Name+".crt")
			if err := os.WriteFile(p, ca, 0o600); err != nil {
				return b, err
			}
			b.env = append(b.env, "RESTIC_CACERT="+p)
		}
	}
	return b, nil
}

// hasS3Keys reports whether the location's Secret gave S3 keys (without one, restic finds credentials its own way).
func (b backend) hasS3Keys() bool {
	for _, kv := range b.env {
		if strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") {
			return true
		}
	}
	return false
}

// repositoryURL is the tenant's repository at the location: <base>/<tenant>-<first 8 of uid>.
func (b backend) repositoryURL(t *custosv1alpha1.Tenant) string {
	return b.base + "/" + t.RepositoryName()
}

// repository opens the tenant's repository with password.
func (b backend) repository(progs Programs, cacheDir string, t *custosv1alpha1.Tenant, password string) restic.Repository {
	return restic.Repository{Binary: progs.Restic, URL: b.repositoryURL(t), Password: password, Env: b.env, CacheDir: cacheDir,
		RetryLock: 10 * time.Minute, BackendRetryLimit: progs.BackendRetryLimit}
}

// probeError is a failed reachability check with its condition reason.
type probeError struct{ reason, msg string }

func (e *probeError) Error() string { return e.msg }

// probe checks within a few seconds that the location answers (restic itself retries an unreachable backend for
// many minutes, so every task probes first and fails fast with a reason).
func (b backend) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch b.kind {
	case "local":
		if err := os.MkdirAll(b.base, 0o700); err != nil {
			return &probeError{custosv1alpha1.ReasonNotWritable, fmt.Sprintf("cannot create %s: %v", b.base, err)}
		}
		f, err := os.CreateTemp(b.base, ".custos-probe-")
		if err != nil {
			return &probeError{custosv1alpha1.ReasonNotWritable, fmt.Sprintf("cannot write into %s: %v", b.base, err)}
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil
	case "rest", "s3":
		raw := strings.TrimPrefix(strings.TrimPrefix(b.display, "rest:"), "s3:")
		if !strings.Contains(raw, "://") {
			raw = "https://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			return &probeError{custosv1alpha1.ReasonUnreachable, fmt.Sprintf("%s is not a URL: %v", b.display, err)}
		}
		if b.kind == "s3" {
			u.Path = "/"
		} else {
			u.Path = strings.TrimRight(u.Path, "/") + "/"
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
		if len(b.caPEM) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b.caPEM) {
				return &probeError{custosv1alpha1.ReasonTLSFailed, "the CA bundle holds no PEM certificate"}
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return &probeError{custosv1alpha1.ReasonUnreachable, err.Error()}
		}
		if b.user != "" {
			req.SetBasicAuth(b.user, b.pass)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			var certErr *tls.CertificateVerificationError
			var unknown x509.UnknownAuthorityError
			var hostErr x509.HostnameError
			if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &hostErr) {
				return &probeError{custosv1alpha1.ReasonTLSFailed, fmt.Sprintf("%s: %v", b.display, err)}
			}
			return &probeError{custosv1alpha1.ReasonUnreachable, fmt.Sprintf("%s does not answer: %v", b.display, unwrapURLError(err))}
		}
		_ = resp.Body.Close()
		if b.kind == "rest" && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return &probeError{custosv1alpha1.ReasonAuthenticationFailed, fmt.Sprintf("%s refused the credentials: HTTP %d", b.display, resp.StatusCode)}
		}
		if resp.StatusCode >= 500 {
			return &probeError{custosv1alpha1.ReasonUnreachable, fmt.Sprintf("%s answered HTTP %d", b.display, resp.StatusCode)}
		}
		if b.kind == "s3" && b.hasS3Keys() {
			// The endpoint answers; now whether it accepts the keys, with one signed request to the bucket.
			if err := storage.ProbeS3(ctx, b.display, b.env); err != nil {
				var ae *storage.S3AccessError
				switch {
				case errors.As(err, &ae) && ae.MissingBucket():
					return &probeError{custosv1alpha1.ReasonBucketMissing, fmt.Sprintf("%s: the bucket does not exist; create it (custos does not create buckets, and restic would retry a missing bucket for about 15 minutes)", b.display)}
				case errors.As(err, &ae) && ae.Credentials():
					return &probeError{custosv1alpha1.ReasonAuthenticationFailed, fmt.Sprintf("%s refused the credentials: %v", b.display, err)}
				}
				return &probeError{custosv1alpha1.ReasonUnreachable, err.Error()}
			}
		}
		return nil
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// probeReason is the condition reason of a probe or Secret failure.
func probeReason(err error) string {
	var pe *probeError
	var se *errSecret
	var nb *errSecretNotBound
	switch {
	case errors.As(err, &pe):
		return pe.reason
	case errors.As(err, &se):
		return custosv1alpha1.ReasonSecretMissing
	case errors.As(err, &nb):
		return custosv1alpha1.ReasonSecretNotBound
	}
	return custosv1alpha1.ReasonUnreachable
}
