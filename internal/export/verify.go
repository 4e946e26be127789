package export

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Report is what Verify found.
type Report struct {
	// OK is true when there are no problems.
	OK bool `json:"ok"`
	// Problems lists every problem found, one sentence each, in a stable order.
	Problems []string `json:"problems,omitempty"`
	// BagName is the bag's top-level directory.
	BagName string `json:"bagName"`
	// Files and PayloadOxum are computed from the payload actually present (not copied from bag-info.txt).
	Files       int    `json:"files"`
	PayloadOxum string `json:"payloadOxum"`
	// Tables are the table resources of datapackage.json, with the row counts it records.
	Tables []Table `json:"tables,omitempty"`
}

// maxTagFile bounds what Verify keeps in memory of one tag file or of datapackage.json.
const maxTagFile = 256 << 20

type seenFile struct {
	size   int64
	sha256 string
	sha512 string
}

// errReader remembers an error of the underlying reader, so that Verify can tell I/O errors (returned) from a
// damaged archive (reported as a problem).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// Verify checks a bag serialized as a tar (as WriteFile writes it) offline, reading it once from r: bagit.txt;
// every entry of manifest-sha256.txt and manifest-sha512.txt present and matching; every payload file listed in
// both; the tag manifests; Payload-Oxum; and the bytes and hash of every resource in data/datapackage.json. It
// reports every problem it finds, not only the first. err is only for a failing reader.
func Verify(r io.Reader) (Report, error) {
	er := &errReader{r: r}
	tr := tar.NewReader(bufio.NewReaderSize(er, chunkSize))
	var rep Report
	problem := func(format string, a ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, a...)) }
	files := map[string]seenFile{} // path relative to the bag
	kept := map[string][]byte{}    // tag files and datapackage.json
	root := ""
	outside := 0
	buf := make([]byte, chunkSize)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if er.err != nil {
				return Report{}, er.err
			}
			problem("the tar is damaged: %v", err)
			break
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		top, rel, _ := strings.Cut(name, "/")
		if root == "" {
			root = top
		}
		if top != root || (rel == "" && hdr.Typeflag != tar.TypeDir) {
			outside++
			if outside <= 10 {
				problem("%s: outside the bag directory %s/", hdr.Name, root)
			}
			continue
		}
		rel = strings.TrimSuffix(rel, "/")
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			problem("%s: not a regular file (tar type %q)", rel, hdr.Typeflag)
			continue
		}
		if rel != path.Clean(rel) || strings.HasPrefix(rel, "../") {
			problem("%s: not a clean path", hdr.Name)
			continue
		}
		if _, dup := files[rel]; dup {
			problem("%s: more than once in the tar", rel)
			continue
		}
		keep := !strings.HasPrefix(rel, "data/") || rel == DataPackageJSON
		h256, h512 := sha256.New(), sha512.New()
		var kb *bytes.Buffer
		var w io.Writer = io.MultiWriter(h256, h512)
		if keep {
			kb = &bytes.Buffer{}
			w = io.MultiWriter(h256, h512, &limitedWriter{w: kb, n: maxTagFile})
		}
		n, err := io.CopyBuffer(w, tr, buf)
		if err != nil {
			if er.err != nil {
				return Report{}, er.err
			}
			problem("%s: cannot be read: %v", rel, err)
			break
		}
		files[rel] = seenFile{size: n, sha256: hex.EncodeToString(h256.Sum(nil)), sha512: hex.EncodeToString(h512.Sum(nil))}
		if keep {
			if n > maxTagFile {
				problem("%s: larger than %d bytes, not read", rel, maxTagFile)
			} else {
				kept[rel] = kb.Bytes()
			}
		}
	}
	if outside > 10 {
		problem("%d more entries outside the bag directory", outside-10)
	}
	rep.BagName = root
	if root == "" {
		problem("the tar holds no bag")
		return rep, nil
	}

	// Payload.
	var payloadBytes int64
	var payload []string
	for p, f := range files {
		if strings.HasPrefix(p, "data/") {
			payload = append(payload, p)
			payloadBytes += f.size
		}
	}
	sort.Strings(payload)
	rep.Files = len(payload)
	rep.PayloadOxum = fmt.Sprintf("%d.%d", payloadBytes, len(payload))

	// bagit.txt.
	if bt, ok := kept[BagitTxt]; !ok {
		problem("%s: missing", BagitTxt)
	} else {
		fields, errs := parseTagFile(bt)
		for _, e := range errs {
			problem("%s: %s", BagitTxt, e)
		}
		if v := first(fields, "BagIt-Version"); v == "" {
			problem("%s: no BagIt-Version", BagitTxt)
		} else if v != "1.0" && v != "0.97" {
			problem("%s: BagIt-Version %s is not supported (1.0)", BagitTxt, v)
		}
		if enc := first(fields, "Tag-File-Character-Encoding"); !strings.EqualFold(enc, "UTF-8") {
			problem("%s: Tag-File-Character-Encoding is %q, not UTF-8", BagitTxt, enc)
		}
	}

	// Manifests: ours must both be there; any other algorithm cannot be checked here.
	digestOf := map[string]func(seenFile) string{
		"sha256": func(f seenFile) string { return f.sha256 },
		"sha512": func(f seenFile) string { return f.sha512 },
	}
	for _, alg := range []string{"sha256", "sha512"} {
		name := "manifest-" + alg + ".txt"
		m, ok := kept[name]
		if !ok {
			problem("%s: missing", name)
			continue
		}
		entries, errs := parseManifest(m, alg)
		for _, e := range errs {
			problem("%s: %s", name, e)
		}
		listed := map[string]bool{}
		for _, e := range entries {
			if listed[e.path] {
				problem("%s: %s listed more than once", name, e.path)
				continue
			}
			listed[e.path] = true
			if !strings.HasPrefix(e.path, "data/") {
				problem("%s: %s is not in data/", name, e.path)
				continue
			}
			f, ok := files[e.path]
			if !ok {
				problem("%s: %s is listed but missing from the bag", name, e.path)
				continue
			}
			if got := digestOf[alg](f); got != e.digest {
				problem("%s: %s does not match %s (listed %s, computed %s)", e.path, alg, name, e.digest, got)
			}
		}
		for _, p := range payload {
			if !listed[p] {
				problem("%s: not listed in %s", p, name)
			}
		}
	}
	var others []string
	for p := range kept {
		if alg, ok := manifestAlg(p); ok && digestOf[alg] == nil {
			others = append(others, p)
		}
	}
	sort.Strings(others)
	for _, p := range others {
		problem("%s: algorithm not supported by this verifier, not checked", p)
	}

	// Tag manifests.
	var tagFiles []string
	for p := range files {
		if !strings.HasPrefix(p, "data/") && !strings.HasPrefix(p, "tagmanifest-") {
			tagFiles = append(tagFiles, p)
		}
	}
	sort.Strings(tagFiles)
	for _, alg := range []string{"sha256", "sha512"} {
		name := "tagmanifest-" + alg + ".txt"
		m, ok := kept[name]
		if !ok {
			if alg == "sha256" {
				problem("%s: missing", name)
			}
			continue
		}
		entries, errs := parseManifest(m, alg)
		for _, e := range errs {
			problem("%s: %s", name, e)
		}
		listed := map[string]bool{}
		for _, e := range entries {
			listed[e.path] = true
			f, ok := files[e.path]
			if !ok {
				problem("%s: %s is listed but missing from the bag", name, e.path)
				continue
			}
			if got := digestOf[alg](f); got != e.digest {
				problem("%s: %s does not match %s (listed %s, computed %s)", e.path, alg, name, e.digest, got)
			}
		}
		for _, p := range tagFiles {
			if !listed[p] {
				problem("%s: not listed in %s", p, name)
			}
		}
	}

	// bag-info.txt.
	if bi, ok := kept[BagInfoTxt]; !ok {
		problem("%s: missing", BagInfoTxt)
	} else {
		fields, errs := parseTagFile(bi)
		for _, e := range errs {
			problem("%s: %s", BagInfoTxt, e)
		}
		switch ox := fields["Payload-Oxum"]; {
		case len(ox) == 0:
			problem("%s: no Payload-Oxum", BagInfoTxt)
		case len(ox) > 1:
			problem("%s: Payload-Oxum given %d times", BagInfoTxt, len(ox))
		case ox[0] != rep.PayloadOxum:
			problem("%s: Payload-Oxum is %s, the payload is %s (bytes.files)", BagInfoTxt, ox[0], rep.PayloadOxum)
		}
	}

	// datapackage.json.
	if dp, ok := kept[DataPackageJSON]; !ok {
		problem("%s: missing", DataPackageJSON)
	} else {
		rep.Tables = checkDataPackage(dp, files, problem)
	}

	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

func first(fields map[string][]string, label string) string {
	if v := fields[label]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func manifestAlg(p string) (string, bool) {
	for _, prefix := range []string{"manifest-", "tagmanifest-"} {
		if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, ".txt") && !strings.Contains(p, "/") {
			return strings.TrimSuffix(strings.TrimPrefix(p, prefix), ".txt"), true
		}
	}
	return "", false
}

// parseTagFile reads "Label: value" lines, joining continuation lines (starting with a space or tab).
func parseTagFile(b []byte) (map[string][]string, []string) {
	out := map[string][]string{}
	var errs []string
	var label string
	for i, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if label == "" {
				errs = append(errs, fmt.Sprintf("line %d continues nothing", i+1))
				continue
			}
			v := out[label]
			v[len(v)-1] += " " + strings.TrimSpace(line)
			continue
		}
		l, v, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Sprintf("line %d is not \"Label: value\"", i+1))
			label = ""
			continue
		}
		label = strings.TrimSpace(l)
		out[label] = append(out[label], strings.TrimSpace(v))
	}
	return out, errs
}

type manifestEntry struct{ digest, path string }

// parseManifest reads "<hex digest> <path>" lines (one or more spaces or tabs between).
func parseManifest(b []byte, alg string) ([]manifestEntry, []string) {
	want := map[string]int{"sha256": 64, "sha512": 128}[alg]
	var out []manifestEntry
	var errs []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		d, p, ok := strings.Cut(line, " ")
		if !ok {
			d, p, ok = strings.Cut(line, "\t")
		}
		p = strings.TrimLeft(p, " \t")
		if !ok || p == "" {
			errs = append(errs, fmt.Sprintf("line %d is not \"<digest> <path>\"", i+1))
			continue
		}
		d = strings.ToLower(d)
		if _, err := hex.DecodeString(d); err != nil || len(d) != want {
			errs = append(errs, fmt.Sprintf("line %d: %q is not a %s digest", i+1, d, alg))
			continue
		}
		out = append(out, manifestEntry{digest: d, path: decodePath(p)})
	}
	return out, errs
}

// checkDataPackage checks every resource's path, bytes and hash against the files of the bag.
func checkDataPackage(b []byte, files map[string]seenFile, problem func(string, ...any)) []Table {
	var dp struct {
		Resources []struct {
			Name       string          `json:"name"`
			Path       json.RawMessage `json:"path"`
			Bytes      *int64          `json:"bytes"`
			Hash       string          `json:"hash"`
			PostgreSQL *pgSource       `json:"postgresql"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &dp); err != nil {
		problem("%s: not valid JSON: %v", DataPackageJSON, err)
		return nil
	}
	var tables []Table
	for i, r := range dp.Resources {
		label := fmt.Sprintf("resource %d", i)
		if r.Name != "" {
			label = "resource " + r.Name
		}
		var paths []string
		if err := json.Unmarshal(r.Path, &paths); err != nil {
			var one string
			if err := json.Unmarshal(r.Path, &one); err != nil || one == "" {
				problem("%s: %s has no path", DataPackageJSON, label)
				continue
			}
			paths = []string{one}
		}
		if len(paths) != 1 {
			// A multi-part resource's bytes and hash are those of the concatenation; custos never writes one.
			problem("%s: %s has %d paths, custos writes one", DataPackageJSON, label, len(paths))
			continue
		}
		rel := path.Join("data", paths[0])
		if strings.HasPrefix(paths[0], "/") || !strings.HasPrefix(rel, "data/") || strings.Contains(paths[0], "://") {
			problem("%s: %s path %q is not inside data/", DataPackageJSON, label, paths[0])
			continue
		}
		f, ok := files[rel]
		if !ok {
			problem("%s: %s path %s is missing from the bag", DataPackageJSON, label, paths[0])
			continue
		}
		if r.Bytes == nil {
			problem("%s: %s has no bytes", DataPackageJSON, label)
		} else if *r.Bytes != f.size {
			problem("%s: %s says %d bytes, %s has %d", DataPackageJSON, label, *r.Bytes, paths[0], f.size)
		}
		alg, digest, found := strings.Cut(r.Hash, ":")
		switch {
		case r.Hash == "":
			problem("%s: %s has no hash", DataPackageJSON, label)
		case !found || (alg != "sha256" && alg != "sha512"):
			problem("%s: %s hash %q is not sha256:… or sha512:…", DataPackageJSON, label, r.Hash)
		case alg == "sha256" && strings.ToLower(digest) != f.sha256, alg == "sha512" && strings.ToLower(digest) != f.sha512:
			problem("%s: %s hash does not match %s (listed %s, computed %s)", DataPackageJSON, label, paths[0], digest,
				map[string]string{"sha256": f.sha256, "sha512": f.sha512}[alg])
		}
		if r.PostgreSQL != nil {
			tables = append(tables, Table{Name: r.PostgreSQL.Name, Path: paths[0], Rows: r.PostgreSQL.Rows, Bytes: f.size, SHA256: f.sha256})
		}
	}
	return tables
}

type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > l.n {
		q = q[:l.n]
	}
	l.n -= int64(len(q))
	if _, err := l.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
