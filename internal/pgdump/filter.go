package pgdump

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"
)

// TableStats is what the dump held for one table.
type TableStats struct {
	// Table is the qualified name exactly as in the COPY statement, e.g. public.accounts or public."Odd ""name""".
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	// Checksum is the Algorithm's name, a colon and the hex digits of the table's sum: "xxh3sum:" and 32 digits, or
	// (snapshots of custos before 0.1) "sha256sum:" and 64. It does not depend on row order (see the package
	// documentation).
	Checksum string `json:"checksum"`
}

// Stats is what a dump held: its tables sorted by name, and the total number of bytes of the stream.
type Stats struct {
	Tables []TableStats `json:"tables"`
	Bytes  int64        `json:"bytes"`
}

// Algorithm names how rows are hashed; it is the prefix of every TableStats.Checksum it made.
type Algorithm string

const (
	// XXH3 hashes each row with XXH3-128 and sums the two 64-bit halves lane-wise: the default since the
	// per-row SHA-256 was the largest cost of a snapshot (see docs/benchmarks.md). The checksum detects a restore
	// that does not give back the rows that were dumped; it is not meant to resist someone crafting rows, and does
	// not need to: the dump it describes is stored in a restic repository whose every blob is authenticated
	// (Poly1305-AES), and the tables.json that holds the checksums is in the same repository.
	XXH3 Algorithm = "xxh3sum"
	// SHA256 hashes each row with SHA-256 and sums the four 64-bit words lane-wise. Snapshots recorded before
	// XXH3 became the default carry it; a drill of such a snapshot hashes the restore the same way.
	SHA256 Algorithm = "sha256sum"
)

// ParseAlgorithm returns the Algorithm of that name, or an error naming the known ones.
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(name); a {
	case XXH3, SHA256:
		return a, nil
	}
	return "", fmt.Errorf("unknown checksum algorithm %q (want %s or %s)", name, XXH3, SHA256)
}

// AlgorithmOf returns the algorithm the stats were made with: the prefix of their checksums; XXH3 when there
// are no tables, or an error when the prefix is unknown or the tables disagree.
func AlgorithmOf(s Stats) (Algorithm, error) {
	alg := XXH3
	for i, t := range s.Tables {
		name, _, ok := strings.Cut(t.Checksum, ":")
		a := Algorithm(name)
		if !ok || (a != XXH3 && a != SHA256) {
			return "", fmt.Errorf("table %s: checksum %q: unknown algorithm (want %s: or %s:)", t.Table, t.Checksum, XXH3, SHA256)
		}
		if i > 0 && a != alg {
			return "", fmt.Errorf("table %s: checksum made with %s, other tables with %s", t.Table, a, alg)
		}
		alg = a
	}
	return alg, nil
}

// Table returns the stats of the table with the given qualified name (as in the COPY statement).
func (s Stats) Table(name string) (TableStats, bool) {
	for _, t := range s.Tables {
		if t.Table == name {
			return t, true
		}
	}
	return TableStats{}, false
}

// Compare returns the differences between the stats recorded at backup time and those of the restored database,
// one human-readable line each, ordered by table name; none when they hold the same rows.
func Compare(recorded, restored Stats) []string {
	rec := make(map[string]TableStats, len(recorded.Tables))
	for _, t := range recorded.Tables {
		rec[t.Table] = t
	}
	res := make(map[string]TableStats, len(restored.Tables))
	for _, t := range restored.Tables {
		res[t.Table] = t
	}
	names := make([]string, 0, len(rec)+len(res))
	for n := range rec {
		names = append(names, n)
	}
	for n := range res {
		if _, ok := rec[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var diffs []string
	for _, n := range names {
		a, inRec := rec[n]
		b, inRes := res[n]
		switch {
		case !inRes:
			diffs = append(diffs, fmt.Sprintf("%s: missing from the restored database (%s recorded)", n, rows(a.Rows)))
		case !inRec:
			diffs = append(diffs, fmt.Sprintf("%s: in the restored database (%s) but not recorded", n, rows(b.Rows)))
		case a.Rows != b.Rows:
			diffs = append(diffs, fmt.Sprintf("%s: %s recorded, %d restored", n, rows(a.Rows), b.Rows))
		case a.Checksum != b.Checksum:
			diffs = append(diffs, fmt.Sprintf("%s: same number of rows (%d) but different contents: checksum %s recorded, %s restored",
				n, a.Rows, a.Checksum, b.Checksum))
		}
	}
	return diffs
}

func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// Filter copies r to w unchanged while computing Stats from the COPY ... FROM stdin; data blocks of a plain pg_dump.
// It returns an error when reading or writing fails, or when the stream ends inside a data block (a truncated
// dump); the Stats returned with an error are incomplete.
func Filter(r io.Reader, w io.Writer) (Stats, error) {
	return FilterWith(r, w, XXH3)
}

// FilterWith is Filter hashing rows with the given algorithm, e.g. the one a recorded snapshot was made with.
func FilterWith(r io.Reader, w io.Writer, alg Algorithm) (Stats, error) {
	if alg != XXH3 && alg != SHA256 {
		return Stats{}, fmt.Errorf("unknown checksum algorithm %q", alg)
	}
	// With XXH3 one hashing goroutine keeps up with the parser (BenchmarkFilter on 2 cores: 4.0 GB/s with one,
	// 4.1 GB/s with two), and the other core is left to pg_dump and restic; SHA-256 needs one per core.
	hashers := 1
	if alg == SHA256 {
		hashers = runtime.GOMAXPROCS(0)
	}
	return filter(r, w, config{hashers: hashers, chunk: 1 << 20, job: 256 << 10, alg: alg})
}

// config sizes the filter; tests shrink the chunks to put line ends at every possible place.
type config struct {
	hashers int // goroutines hashing rows, at most maxHashers
	chunk   int // bytes read and written at a time
	job     int // rows are handed to the hashers in pieces of about this size
	alg     Algorithm
}

const (
	numChunks  = 8 // chunks in flight: being read, written, parsed or hashed
	maxHashers = 8
)

// chunk is one buffer of the stream. refs counts its users (the copier, the parser, the hashers' jobs); the last
// one returns it to the free list.
type chunk struct {
	buf  []byte
	data []byte
	refs atomic.Int32
	free chan *chunk
}

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		c.free <- c
	}
}

// job is a run of complete rows, each ending in '\n', of one table.
type job struct {
	c     *chunk
	rows  []byte
	table int
}

// acc accumulates the rows of one table.
type acc struct {
	rows int64
	sum  [4]uint64
}

func (a *acc) add(h *[sha256.Size]byte) {
	a.rows++
	a.sum[0] += binary.BigEndian.Uint64(h[0:8])
	a.sum[1] += binary.BigEndian.Uint64(h[8:16])
	a.sum[2] += binary.BigEndian.Uint64(h[16:24])
	a.sum[3] += binary.BigEndian.Uint64(h[24:32])
}

func (a *acc) add128(h xxh3.Uint128) {
	a.rows++
	a.sum[0] += h.Hi
	a.sum[1] += h.Lo
}

func (a *acc) merge(b *acc) {
	a.rows += b.rows
	for i := range a.sum {
		a.sum[i] += b.sum[i]
	}
}

func (a *acc) checksum(alg Algorithm) string {
	var b [32]byte
	for i, v := range a.sum {
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
	n := len(b)
	if alg == XXH3 {
		n = 16
	}
	return string(alg) + ":" + hex.EncodeToString(b[:n])
}

// accs is one goroutine's accumulators, indexed by table number.
type accs []acc

func (s *accs) at(table int) *acc {
	for table >= len(*s) {
		*s = append(*s, acc{})
	}
	return &(*s)[table]
}

// hashRows hashes a run of complete rows into a.
func hashRows(alg Algorithm, a *acc, rows []byte) {
	if alg == XXH3 {
		for len(rows) > 0 {
			i := bytes.IndexByte(rows, '\n')
			a.add128(xxh3.Hash128(rows[:i]))
			rows = rows[i+1:]
		}
		return
	}
	for len(rows) > 0 {
		i := bytes.IndexByte(rows, '\n')
		h := sha256.Sum256(rows[:i])
		a.add(&h)
		rows = rows[i+1:]
	}
}

// rowHash hashes a row that spans chunks, incrementally.
type rowHash interface {
	io.Writer
	Reset()
	addTo(a *acc)
}

type sha256Row struct{ hash.Hash }

func (h sha256Row) addTo(a *acc) {
	var s [sha256.Size]byte
	h.Sum(s[:0])
	a.add(&s)
}

type xxh3Row struct{ *xxh3.Hasher }

func (h xxh3Row) addTo(a *acc) { a.add128(h.Sum128()) }

func newRowHash(alg Algorithm) rowHash {
	if alg == XXH3 {
		return xxh3Row{xxh3.New()}
	}
	return sha256Row{sha256.New()}
}

func filter(r io.Reader, w io.Writer, cfg config) (Stats, error) {
	if cfg.alg == "" {
		cfg.alg = XXH3
	}
	hashers := min(max(cfg.hashers, 1), maxHashers)
	free := make(chan *chunk, numChunks)
	for range numChunks {
		free <- &chunk{buf: make([]byte, max(cfg.chunk, 1)), free: free}
	}
	toParse := make(chan *chunk, numChunks)
	jobs := make(chan job, 4*numChunks)

	var wg sync.WaitGroup
	hasherAccs := make([]accs, hashers)
	for i := range hashers {
		wg.Go(func() {
			a := &hasherAccs[i]
			for j := range jobs {
				hashRows(cfg.alg, a.at(j.table), j.rows)
				j.c.release()
			}
		})
	}
	p := &parser{jobs: jobs, jobSize: max(cfg.job, 1), tables: map[string]int{}, row: newRowHash(cfg.alg)}
	parsed := make(chan error, 1)
	go func() {
		for c := range toParse {
			p.feed(c)
			c.release()
		}
		err := p.finish()
		close(jobs)
		wg.Wait()
		parsed <- err
	}()

	var n int64
	var err error
	for {
		c := <-free
		m, rerr := io.ReadFull(r, c.buf)
		if m > 0 {
			n += int64(m)
			c.data = c.buf[:m]
			c.refs.Store(2)
			toParse <- c
			wn, werr := w.Write(c.data)
			if werr == nil && wn != m {
				werr = io.ErrShortWrite
			}
			c.release()
			if werr != nil {
				err = werr
				break
			}
		} else {
			free <- c
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(toParse)
	perr := <-parsed

	total := p.own
	for i := range hasherAccs {
		for t := range hasherAccs[i] {
			total.at(t).merge(&hasherAccs[i][t])
		}
	}
	st := Stats{Bytes: n, Tables: make([]TableStats, len(p.names))}
	for t, name := range p.names {
		a := total.at(t)
		st.Tables[t] = TableStats{Table: name, Rows: a.rows, Checksum: a.checksum(cfg.alg)}
	}
	sort.Slice(st.Tables, func(i, j int) bool { return st.Tables[i].Table < st.Tables[j].Table })
	if err == nil {
		err = perr
	}
	return st, err
}

// parser splits the stream into lines, follows the COPY blocks and hands runs of complete rows to the hashers. A
// line split across chunks is handled by the parser itself: a row is hashed incrementally, a SQL line is kept only
// while it may be a COPY statement.
type parser struct {
	jobs    chan<- job
	jobSize int
	tables  map[string]int
	names   []string
	own     accs // rows the parser hashed itself

	inData bool
	table  int

	// A line begun in an earlier chunk.
	partial bool
	sqlLine []byte // in SQL: the line so far, while it may be a COPY statement
	sqlSkip bool   // in SQL: the line is not a COPY statement
	row     rowHash
	rowLen  int
	rowHead [2]byte
}

var endOfData = []byte("\n\\.\n")

func (p *parser) feed(c *chunk) {
	b := c.data
	for len(b) > 0 {
		if p.partial {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				p.continueLine(b)
				return
			}
			p.continueLine(b[:i])
			p.endLine()
			b = b[i+1:]
			continue
		}
		if !p.inData {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				p.startLine(b)
				return
			}
			p.sqlLineDone(b[:i])
			b = b[i+1:]
			continue
		}
		if len(b) >= 3 && b[0] == '\\' && b[1] == '.' && b[2] == '\n' {
			p.inData = false
			b = b[3:]
			continue
		}
		// Rows cannot contain a raw newline, so "\n\\.\n" is the end of the block.
		end := bytes.Index(b, endOfData)
		var run []byte
		if end >= 0 {
			run = b[:end+1]
		} else {
			run = b[:bytes.LastIndexByte(b, '\n')+1]
		}
		p.dispatch(c, run)
		b = b[len(run):]
		if end < 0 {
			if len(b) > 0 {
				p.startLine(b)
			}
			return
		}
	}
}

// dispatch hands a run of complete rows to the hashers in pieces of about p.jobSize bytes.
func (p *parser) dispatch(c *chunk, run []byte) {
	for len(run) > 0 {
		n := len(run)
		if n > p.jobSize {
			i := bytes.LastIndexByte(run[:p.jobSize], '\n')
			if i < 0 {
				i = p.jobSize + bytes.IndexByte(run[p.jobSize:], '\n')
			}
			n = i + 1
		}
		c.refs.Add(1)
		p.jobs <- job{c: c, rows: run[:n], table: p.table}
		run = run[n:]
	}
}

func (p *parser) startLine(b []byte) {
	p.partial = true
	if p.inData {
		p.row.Reset()
		p.rowLen = 0
	} else {
		p.sqlLine = p.sqlLine[:0]
		p.sqlSkip = false
	}
	p.continueLine(b)
}

var copyPrefix = []byte("COPY ")

func (p *parser) continueLine(b []byte) {
	if p.inData {
		for i := 0; i < len(b) && p.rowLen+i < len(p.rowHead); i++ {
			p.rowHead[p.rowLen+i] = b[i]
		}
		p.rowLen += len(b)
		p.row.Write(b)
		return
	}
	if p.sqlSkip {
		return
	}
	p.sqlLine = append(p.sqlLine, b...)
	if n := min(len(p.sqlLine), len(copyPrefix)); !bytes.Equal(p.sqlLine[:n], copyPrefix[:n]) {
		p.sqlSkip = true
		p.sqlLine = p.sqlLine[:0]
	}
}

func (p *parser) endLine() {
	p.partial = false
	if !p.inData {
		if !p.sqlSkip {
			p.sqlLineDone(p.sqlLine)
		}
		return
	}
	if p.rowLen == 2 && p.rowHead == [2]byte{'\\', '.'} {
		p.inData = false
		return
	}
	p.row.addTo(p.own.at(p.table))
}

func (p *parser) sqlLineDone(line []byte) {
	name, ok := parseCopy(line)
	if !ok {
		return
	}
	t, ok := p.tables[name]
	if !ok {
		t = len(p.names)
		p.tables[name] = t
		p.names = append(p.names, name)
	}
	p.inData = true
	p.table = t
}

func (p *parser) finish() error {
	if p.partial {
		p.endLine()
	}
	if p.inData {
		return fmt.Errorf("dump ended inside the data of %s (no \\. line): truncated", p.names[p.table])
	}
	return nil
}

// parseCopy returns the qualified table name of a line `COPY <table> [(<columns>)] FROM stdin;`, as written
// (quoted identifiers keep their quotes). The column list is skipped with its quoted identifiers, which may hold
// spaces, parentheses and doubled quotes.
func parseCopy(line []byte) (string, bool) {
	if !bytes.HasPrefix(line, copyPrefix) || !bytes.HasSuffix(line, []byte(" FROM stdin;")) {
		return "", false
	}
	rest := line[len(copyPrefix) : len(line)-len(" FROM stdin;")]
	i, ok := scanQualifiedName(rest)
	if !ok {
		return "", false
	}
	name := rest[:i]
	tail := rest[i:]
	// pg_dump writes "COPY t (a, b) FROM stdin;", or "COPY t  FROM stdin;" for a table without columns.
	switch {
	case len(tail) == 0 || string(tail) == " ":
	case bytes.HasPrefix(tail, []byte(" (")):
		j, ok := scanColumns(tail[1:])
		if !ok || j != len(tail)-1 {
			return "", false
		}
	default:
		return "", false
	}
	return string(name), true
}

// scanQualifiedName returns the length of the dot-separated identifiers at the start of b.
func scanQualifiedName(b []byte) (int, bool) {
	i := 0
	for {
		j, ok := scanIdent(b[i:])
		if !ok {
			return 0, false
		}
		i += j
		if i < len(b) && b[i] == '.' {
			i++
			continue
		}
		return i, true
	}
}

// scanIdent returns the length of the identifier at the start of b: "quoted ""like"" this" or unquoted.
func scanIdent(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	if b[0] == '"' {
		for i := 1; i < len(b); i++ {
			if b[i] != '"' {
				continue
			}
			if i+1 < len(b) && b[i+1] == '"' {
				i++
				continue
			}
			return i + 1, true
		}
		return 0, false
	}
	i := 0
	for i < len(b) && b[i] != '.' && b[i] != ' ' && b[i] != '"' && b[i] != '(' && b[i] != ')' && b[i] != ',' {
		i++
	}
	return i, i > 0
}

// scanColumns returns the length of the parenthesised, comma-separated identifier list at the start of b.
func scanColumns(b []byte) (int, bool) {
	if len(b) == 0 || b[0] != '(' {
		return 0, false
	}
	i := 1
	for {
		j, ok := scanIdent(b[i:])
		if !ok {
			return 0, false
		}
		i += j
		switch {
		case bytes.HasPrefix(b[i:], []byte(", ")):
			i += 2
		case i < len(b) && b[i] == ')':
			return i + 1, true
		default:
			return 0, false
		}
	}
}
