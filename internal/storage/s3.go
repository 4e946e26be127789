package storage

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// An S3 repository is every object under <bucket>/<prefix>/. A bucket with versioning keeps a deleted object as a
// noncurrent version behind a delete marker, so a shred lists with ListObjectVersions and deletes each version
// and each delete marker by its versionId (DELETE /<bucket>/<key>?versionId=…), which removes it for good; a
// server without versioning support (ListObjectVersions answering 501) is listed with ListObjectsV2 and its
// objects deleted plainly. Requests are signed with AWS Signature Version 4 (no SDK: a few requests do not need
// one) and addressed path-style (https://endpoint/bucket/key), which AWS and S3-compatible servers accept.
// Credentials are restic's: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN in the environment; the
// region is AWS_DEFAULT_REGION, or the bucket's location, or us-east-1.

// s3Backend is a repository in an S3 bucket.
type s3Backend struct {
	endpoint *url.URL // scheme://host
	bucket   string
	prefix   string     // with a trailing /
	mu       sync.Mutex // guards region
	region   string
	key      string
	secret   string
	token    string
	client   *http.Client
	// versioned is what the bucket's versioning said, for the report.
	versioning string
	// noVersions is set when the server does not implement ListObjectVersions.
	noVersions bool
}

// newS3Backend parses restic's s3: forms: s3:http(s)://endpoint/bucket/prefix and s3:endpoint/bucket/prefix (https).
func newS3Backend(raw string, env []string) (*s3Backend, error) {
	return parseS3(raw, env, false)
}

// parseS3 is newS3Backend; wholeBucket admits an address without a prefix (for reading, never for a shred).
func parseS3(raw string, env []string, wholeBucket bool) (*s3Backend, error) {
	b := &s3Backend{region: envValue(env, "AWS_DEFAULT_REGION")}
	var host, rest string
	useHTTP := false
	switch s := strings.TrimPrefix(raw, "s3:"); {
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("the s3: repository address is not a URL")
		}
		host, rest, useHTTP = u.Host, strings.TrimPrefix(u.Path, "/"), u.Scheme == "http"
	default:
		s = strings.TrimPrefix(s, "//")
		host, rest, _ = strings.Cut(s, "/")
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if prefix != "" {
		prefix = path.Clean(prefix)
	}
	scheme := "https"
	if useHTTP {
		scheme = "http"
	}
	b.endpoint = &url.URL{Scheme: scheme, Host: host}
	b.bucket = bucket
	if host == "" || bucket == "" {
		return nil, fmt.Errorf("s3: repository %s: no endpoint or bucket", b.displayOf(prefix))
	}
	switch {
	case strings.HasPrefix(prefix, ".."):
		return nil, fmt.Errorf("s3: repository %s: the path leaves the bucket", b.displayOf(prefix))
	case prefix == "" || prefix == "." || prefix == "/":
		if !wholeBucket {
			// A whole bucket is nobody's tenant repository: a wrong URL must not empty it.
			return nil, fmt.Errorf("s3: repository %s: refusing to delete a whole bucket", b.displayOf(prefix))
		}
		b.prefix = ""
	default:
		b.prefix = strings.Trim(prefix, "/") + "/"
	}
	b.key = envValue(env, "AWS_ACCESS_KEY_ID")
	b.secret = envValue(env, "AWS_SECRET_ACCESS_KEY")
	b.token = envValue(env, "AWS_SESSION_TOKEN")
	if b.key == "" || b.secret == "" {
		return nil, fmt.Errorf("s3: repository %s: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set", b.display())
	}
	var err error
	if b.client, err = httpClient(env, b.display()); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *s3Backend) displayOf(prefix string) string {
	return "s3:" + b.endpoint.String() + "/" + b.bucket + "/" + strings.Trim(prefix, "/")
}

func (b *s3Backend) kind() string    { return "s3" }
func (b *s3Backend) display() string { return b.displayOf(b.prefix) }
func (b *s3Backend) absence() string {
	if b.noVersions {
		return fmt.Sprintf("ListObjectsV2 of bucket %s, prefix %s lists no object (the server keeps no versions)", b.bucket, b.prefix)
	}
	return fmt.Sprintf("ListObjectVersions of bucket %s, prefix %s lists no version and no delete marker", b.bucket, b.prefix)
}

// ProbeS3 sends one signed request (ListObjectsV2, one key) to the bucket of an s3: location base
// (s3:endpoint/bucket[/prefix]) with the credentials in env, so that a BackupLocation reports wrong keys or a
// missing bucket before any backup runs. A missing bucket matters: restic creates one at `init`, but before that
// it reads the repository's config, and retries "the specified bucket does not exist" for about 15 minutes. The
// error is an *S3AccessError when the server answered with an S3 error.
func ProbeS3(ctx context.Context, base string, env []string) error {
	b, err := parseS3(base, env, true)
	if err != nil {
		return err
	}
	q := url.Values{"list-type": {"2"}, "max-keys": {"1"}}
	if b.prefix != "" {
		q.Set("prefix", b.prefix)
	}
	_, err = b.request(ctx, http.MethodGet, "", q)
	var se *s3Error
	if errors.As(err, &se) {
		return &S3AccessError{Status: se.Status, Code: se.Code, msg: fmt.Sprintf("%s: HTTP %d %s: %s", b.displayOf(b.prefix), se.Status, se.Code, se.Message)}
	}
	return err
}

// S3AccessError is an S3 server's refusal of a probe.
type S3AccessError struct {
	Status int
	Code   string // the S3 error code: InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied, …
	msg    string
}

func (e *S3AccessError) Error() string { return e.msg }

// MissingBucket reports whether the bucket does not exist.
func (e *S3AccessError) MissingBucket() bool { return e.Code == "NoSuchBucket" }

// CreateS3Bucket creates the bucket of an s3: address (a location base or a repository), with versioning on when
// versioned. Platform tooling and tests use it; custos itself never creates buckets.
func CreateS3Bucket(ctx context.Context, base string, env []string, versioned bool) error {
	b, err := parseS3(base, env, true)
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

// Credentials reports whether the server refused the credentials (rather than, say, failing).
func (e *S3AccessError) Credentials() bool {
	switch e.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
		"XAdminUserNotFound": // versitygw's answer (HTTP 404) to an access key it does not know
		return true
	}
	return e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized
}

// s3Error is an S3 error response.
type s3Error struct {
	Status  int
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
	Region  string `xml:"Region"`
	op      string
}

func (e *s3Error) Error() string {
	hint := ""
	switch e.Code {
	case "AccessDenied":
		hint = " (do the credentials allow s3:ListBucketVersions and s3:DeleteObjectVersion?)"
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		hint = " (the server refused the credentials)"
	}
	return fmt.Sprintf("%s: HTTP %d %s: %s%s", e.op, e.Status, e.Code, e.Message, hint)
}

// request signs and sends one request; query values are sent as given. A 2xx answer's body is returned.
func (b *s3Backend) request(ctx context.Context, method, key string, query url.Values) ([]byte, error) {
	b.mu.Lock()
	if b.region == "" {
		b.region = b.bucketRegion(ctx)
	}
	region := b.region
	b.mu.Unlock()
	body, err := b.send(ctx, method, key, query, nil, region)
	var se *s3Error
	if errors.As(err, &se) && se.Code == "AuthorizationHeaderMalformed" && se.Region != "" && se.Region != region {
		// Signed for the wrong region: AWS says which is right.
		b.mu.Lock()
		b.region = se.Region
		b.mu.Unlock()
		body, err = b.send(ctx, method, key, query, nil, se.Region)
	}
	return body, err
}

// bucketRegion asks the bucket's location (GetBucketLocation may be signed for us-east-1 from anywhere).
func (b *s3Backend) bucketRegion(ctx context.Context) string {
	body, err := b.send(ctx, http.MethodGet, "", url.Values{"location": {""}}, nil, "us-east-1")
	if err != nil {
		return "us-east-1"
	}
	var loc struct {
		Region string `xml:",chardata"`
	}
	if xml.Unmarshal(body, &loc) != nil || strings.TrimSpace(loc.Region) == "" {
		return "us-east-1"
	}
	return strings.TrimSpace(loc.Region)
}

func (b *s3Backend) send(ctx context.Context, method, key string, query url.Values, payload []byte, region string) ([]byte, error) {
	u := *b.endpoint
	u.Path = "/" + b.bucket
	if key != "" {
		u.Path += "/" + key
	}
	u.RawPath = s3Escape(u.Path)
	u.RawQuery = s3Query(query)
	op := method + " " + b.endpoint.String() + u.RawPath
	if u.RawQuery != "" {
		op += "?" + u.RawQuery
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	b.sign(req, payload, region, time.Now().UTC())
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &s3Error{Status: resp.StatusCode, op: op}
		_ = xml.Unmarshal(data, e)
		if e.Code == "" {
			e.Code = http.StatusText(resp.StatusCode)
		}
		return nil, e
	}
	return data, nil
}

// sign adds AWS Signature Version 4 headers.
func (b *s3Backend) sign(req *http.Request, payload []byte, region string, now time.Time) {
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	ps := sha256.Sum256(payload)
	payloadHash := hex.EncodeToString(ps[:])
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payloadHash)
	if b.token != "" {
		req.Header.Set("x-amz-security-token", b.token)
	}
	headers := map[string]string{
		"host":                 req.URL.Host,
		"x-amz-content-sha256": payloadHash,
		"x-amz-date":           amzDate,
	}
	if b.token != "" {
		headers["x-amz-security-token"] = b.token
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	var canonHeaders strings.Builder
	for _, k := range names {
		canonHeaders.WriteString(k + ":" + strings.TrimSpace(headers[k]) + "\n")
	}
	signed := strings.Join(names, ";")
	canonical := strings.Join([]string{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, canonHeaders.String(), signed, payloadHash}, "\n")
	scope := day + "/" + region + "/s3/aws4_request"
	sum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	k := hmacSHA256([]byte("AWS4"+b.secret), day)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, "s3")
	k = hmacSHA256(k, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(k, toSign))
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", b.key, scope, signed, sig))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// s3Escape is SigV4's URI encoding of a path: every byte but the unreserved ones and '/'.
func s3Escape(p string) string {
	var sb strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || c == '-' || c == '_' || c == '.' || c == '~' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// s3Query is SigV4's canonical query string, which is also sent as is.
func s3Query(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		for _, v := range q[k] {
			parts = append(parts, strings.ReplaceAll(s3Escape(k), "/", "%2F")+"="+strings.ReplaceAll(s3Escape(v), "/", "%2F"))
		}
	}
	return strings.Join(parts, "&")
}

// classify returns the restic object type and name of a key under the prefix; ok is false for a key restic
// does not write.
func (b *s3Backend) classify(key string) (typ, name string, ok bool) {
	rel := strings.TrimPrefix(key, b.prefix)
	if rel == "config" {
		return "config", "config", true
	}
	t, rest, found := strings.Cut(rel, "/")
	if !found || typeRank(t) >= len(deleteOrder) || t == "config" {
		return "", "", false
	}
	return t, path.Base(rest), true
}

func (b *s3Backend) list(ctx context.Context) ([]object, error) {
	objs, _, err := b.listAll(ctx)
	return objs, err
}

// listAll lists the restic objects (every version and delete marker) under the prefix, and the keys of others.
func (b *s3Backend) listAll(ctx context.Context) (objs []object, foreign []string, err error) {
	if b.versioning == "" {
		b.versioning = "unknown"
		if body, err := b.request(ctx, http.MethodGet, "", url.Values{"versioning": {""}}); err == nil {
			var v struct {
				Status string `xml:"Status"`
			}
			if xml.Unmarshal(body, &v) == nil {
				b.versioning = v.Status
			}
		}
	}
	add := func(key, version string, size int64, latest bool, marker bool) {
		if t, name, ok := b.classify(key); ok {
			objs = append(objs, object{Type: t, Name: name, Size: size, Version: version, latest: latest, marker: marker, path: key})
		} else {
			foreign = append(foreign, key)
		}
	}
	if !b.noVersions {
		q := url.Values{"versions": {""}, "prefix": {b.prefix}}
		for {
			body, err := b.request(ctx, http.MethodGet, "", q)
			var se *s3Error
			if errors.As(err, &se) && se.Status == http.StatusNotImplemented {
				b.noVersions = true
				objs, foreign = nil, nil
				break
			}
			if err != nil {
				return nil, nil, err
			}
			var res struct {
				IsTruncated         bool   `xml:"IsTruncated"`
				NextKeyMarker       string `xml:"NextKeyMarker"`
				NextVersionIDMarker string `xml:"NextVersionIdMarker"`
				Versions            []struct {
					Key       string `xml:"Key"`
					VersionID string `xml:"VersionId"`
					Size      int64  `xml:"Size"`
					IsLatest  bool   `xml:"IsLatest"`
				} `xml:"Version"`
				DeleteMarkers []struct {
					Key       string `xml:"Key"`
					VersionID string `xml:"VersionId"`
					IsLatest  bool   `xml:"IsLatest"`
				} `xml:"DeleteMarker"`
			}
			if err := xml.Unmarshal(body, &res); err != nil {
				return nil, nil, fmt.Errorf("parsing ListObjectVersions of %s: %w", b.display(), err)
			}
			for _, v := range res.Versions {
				add(v.Key, orNull(v.VersionID), v.Size, v.IsLatest, false)
			}
			for _, m := range res.DeleteMarkers {
				add(m.Key, orNull(m.VersionID), 0, m.IsLatest, true)
			}
			if !res.IsTruncated {
				sortObjects(objs)
				return objs, foreign, nil
			}
			q.Set("key-marker", res.NextKeyMarker)
			q.Set("version-id-marker", res.NextVersionIDMarker)
		}
	}
	q := url.Values{"list-type": {"2"}, "prefix": {b.prefix}}
	for {
		body, err := b.request(ctx, http.MethodGet, "", q)
		if err != nil {
			return nil, nil, err
		}
		var res struct {
			IsTruncated           bool   `xml:"IsTruncated"`
			NextContinuationToken string `xml:"NextContinuationToken"`
			Contents              []struct {
				Key  string `xml:"Key"`
				Size int64  `xml:"Size"`
			} `xml:"Contents"`
		}
		if err := xml.Unmarshal(body, &res); err != nil {
			return nil, nil, fmt.Errorf("parsing ListObjectsV2 of %s: %w", b.display(), err)
		}
		for _, c := range res.Contents {
			add(c.Key, "", c.Size, true, false)
		}
		if !res.IsTruncated {
			sortObjects(objs)
			return objs, foreign, nil
		}
		q.Set("continuation-token", res.NextContinuationToken)
	}
}

func orNull(v string) string {
	if v == "" {
		return "null"
	}
	return v
}

func (b *s3Backend) remove(ctx context.Context, objs []object) (int, error) {
	return removeParallel(ctx, objs, func(ctx context.Context, o object) error {
		var q url.Values
		if o.Version != "" {
			q = url.Values{"versionId": {o.Version}}
		}
		_, err := b.request(ctx, http.MethodDelete, o.path, q)
		var se *s3Error
		if errors.As(err, &se) && (se.Code == "NoSuchKey" || se.Code == "NoSuchVersion") {
			return nil
		}
		return err
	})
}

func (b *s3Backend) removeContainer(ctx context.Context) (string, error) {
	_, foreign, err := b.listAll(ctx)
	if err != nil {
		return "", err
	}
	what := "S3 has no directories to remove"
	switch {
	case b.noVersions:
		what += "; the server keeps no object versions"
	case b.versioning != "" && b.versioning != "unknown":
		what += fmt.Sprintf("; bucket versioning %s: every version and delete marker deleted by its versionId", b.versioning)
	default:
		what += "; every version and delete marker deleted by its versionId"
	}
	if len(foreign) > 0 {
		what += fmt.Sprintf("; %d objects under the prefix that restic does not write kept (%s)", len(foreign), strings.Join(firstN(foreign, 5), ", "))
	}
	return what, nil
}
