package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// The REST backend protocol (restic doc/REST_backend.rst, implemented by rest-server's repo/repo.go):
//
//	HEAD   {path}/config           200 when the repository has a config, 404 otherwise
//	DELETE {path}/config           removes it (rest-server: 200 also when it was not there)
//	GET    {path}/{type}/          lists a type; with Accept: application/vnd.x.restic.rest.v2 as
//	                               [{"name": …, "size": …}] (v1, the default, is a list of names); 404 when the
//	                               repository (or the type's directory) does not exist
//	DELETE {path}/{type}/{name}    removes one file (rest-server: 200 also when it was not there; 403 in
//	                               --append-only mode, except for locks)
//	DELETE {path}                  "deletes the repository", 501 when not implemented, 403 when refused. rest-server
//	                               0.14 does not implement it: it answers 405 Method Not Allowed (only POST
//	                               ?create=true is routed to the repository root), so the empty directories it made
//	                               at init (data/00 … data/ff, index, keys, locks, snapshots) stay on its disk.
const (
	mimeRESTv1 = "application/vnd.x.restic.rest.v1"
	mimeRESTv2 = "application/vnd.x.restic.rest.v2"
)

// restObjectName is what the REST protocol accepts as a file name (rest-server's BlobPathRE).
var restObjectName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// restBackend is a repository on a rest-server (or any server speaking restic's REST protocol).
type restBackend struct {
	base       *url.URL // the repository, no credentials, path ending in /
	user, pass string
	auth       bool
	client     *http.Client
}

func newRestBackend(raw string, env []string) (*restBackend, error) {
	u, err := url.Parse(strings.TrimPrefix(raw, "rest:"))
	if err != nil {
		// url.Parse quotes the input, credentials included: say no more than that it is not a URL.
		return nil, fmt.Errorf("the rest: repository address is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("rest: repository %s: scheme %q is neither http nor https", redactURL(u), u.Scheme)
	}
	b := &restBackend{}
	if u.User != nil {
		b.user = u.User.Username()
		b.pass, _ = u.User.Password()
		b.auth = true
	} else if user, pass := envValue(env, "RESTIC_REST_USERNAME"), envValue(env, "RESTIC_REST_PASSWORD"); user != "" || pass != "" {
		b.user, b.pass, b.auth = user, pass, true
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	if strings.Trim(u.Path, "/") == "" {
		// The server's root repository is nobody's tenant repository: a wrong URL must not empty it.
		return nil, fmt.Errorf("rest: repository %s: refusing to delete the server's root repository", u.String())
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/"
	u.RawPath = ""
	b.base = u

	if b.client, err = httpClient(env, b.display()); err != nil {
		return nil, err
	}
	return b, nil
}

// envValue is the value of KEY in a KEY=VALUE list (the last one wins, as in exec).
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (b *restBackend) kind() string    { return "rest" }
func (b *restBackend) display() string { return "rest:" + strings.TrimSuffix(b.base.String(), "/") }
func (b *restBackend) absence() string {
	return fmt.Sprintf("HEAD %sconfig answers 404 and GET of data/, index/, keys/, locks/, snapshots/ (REST API v2) lists nothing", b.base.Path)
}

func (b *restBackend) url(p string) string {
	u := *b.base
	u.Path += p
	return u.String()
}

func (b *restBackend) do(ctx context.Context, method, p string, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.url(p), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if b.auth {
		req.SetBasicAuth(b.user, b.pass)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		// *url.Error carries the URL, which holds no credentials here (they go in the header).
		return nil, err
	}
	return resp, nil
}

// statusError is an unexpected HTTP answer.
func (b *restBackend) statusError(method, p string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(body))
	hint := ""
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		hint = " (the server refused the credentials)"
	case http.StatusForbidden:
		hint = " (the server refuses deletion: is it running with --append-only?)"
	}
	return fmt.Errorf("%s %s: HTTP %d %s%s", method, b.url(p), resp.StatusCode, msg, hint)
}

func (b *restBackend) list(ctx context.Context) ([]object, error) {
	var objs []object
	resp, err := b.do(ctx, http.MethodHead, "config", "")
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		objs = append(objs, object{Type: "config", Name: "config", Size: resp.ContentLength})
	case http.StatusNotFound:
	default:
		return nil, b.statusError(http.MethodHead, "config", resp)
	}
	for _, t := range []string{"data", "index", "keys", "locks", "snapshots"} {
		got, err := b.listType(ctx, t)
		if err != nil {
			return nil, err
		}
		objs = append(objs, got...)
	}
	sortObjects(objs)
	return objs, nil
}

func (b *restBackend) listType(ctx context.Context, t string) ([]object, error) {
	resp, err := b.do(ctx, http.MethodGet, t+"/", mimeRESTv2)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, b.statusError(http.MethodGet, t+"/", resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", b.url(t+"/"), err)
	}
	var objs []object
	if resp.Header.Get("Content-Type") == mimeRESTv2 {
		var blobs []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		}
		if err := json.Unmarshal(body, &blobs); err != nil {
			return nil, fmt.Errorf("GET %s: parsing the v2 listing: %w", b.url(t+"/"), err)
		}
		for _, bl := range blobs {
			objs = append(objs, object{Type: t, Name: bl.Name, Size: bl.Size})
		}
		return objs, nil
	}
	// A server that speaks only v1 lists names; sizes are then unknown (-1).
	var names []string
	if err := json.Unmarshal(body, &names); err != nil {
		return nil, fmt.Errorf("GET %s: parsing the v1 listing: %w", b.url(t+"/"), err)
	}
	for _, n := range names {
		objs = append(objs, object{Type: t, Name: n, Size: -1})
	}
	return objs, nil
}

func (b *restBackend) remove(ctx context.Context, objs []object) (int, error) {
	return removeParallel(ctx, objs, b.removeOne)
}

func (b *restBackend) removeOne(ctx context.Context, o object) error {
	p := "config"
	if o.Type != "config" {
		if !restObjectName.MatchString(o.Name) {
			// The protocol has no way to delete it: a temporary file of an upload the server did not finish
			// (rest-server writes <id>.rest-server-temp next to the final file) or something put there by hand.
			return fmt.Errorf("%s/%s at %s cannot be deleted through the REST protocol (not an object id): it must be removed on the server", o.Type, o.Name, b.display())
		}
		p = o.Type + "/" + o.Name
	}
	resp, err := b.do(ctx, http.MethodDelete, p, "")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return b.statusError(http.MethodDelete, p, resp)
}

func (b *restBackend) removeContainer(ctx context.Context) (string, error) {
	resp, err := b.do(ctx, http.MethodDelete, "", "")
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return "the repository path deleted (DELETE " + b.base.Path + ")", nil
	case http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusForbidden, http.StatusNotFound:
		return fmt.Sprintf("the server does not delete a repository path (DELETE %s: HTTP %d), so its empty directories stay", b.base.Path, resp.StatusCode), nil
	}
	return "", b.statusError(http.MethodDelete, "", resp)
}
