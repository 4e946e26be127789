package pgdump

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// TrailerPrefix begins the line the dump helper appends to a successful dump: an SQL comment holding the dump's
// Stats as JSON. psql reads it as a comment, so the dump restores as before; a restore drill reads it back from
// the end of the restored stream as the figures recorded at backup time. It is the last line of the stream, after
// pg_dump's own "dump complete" and \unrestrict lines, which is why only the last line counts as a trailer: a
// line with the same prefix inside a function body or a comment of the tenant's is never the last one.
const TrailerPrefix = "-- custos-stats: "

// Trailer returns the trailer line for s, newline included.
func Trailer(s Stats) ([]byte, error) {
	if s.Tables == nil {
		s.Tables = []TableStats{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(TrailerPrefix), b...), '\n'), nil
}

// ParseTrailer returns the Stats of a trailer line (with or without its newline); ok is false when the line is
// not a trailer at all, and err is set when it is one that cannot be read.
func ParseTrailer(line []byte) (s Stats, ok bool, err error) {
	rest, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\n")), []byte(TrailerPrefix))
	if !ok {
		return Stats{}, false, nil
	}
	if err := json.Unmarshal(rest, &s); err != nil {
		return Stats{}, true, fmt.Errorf("reading the figures at the end of the dump: %w", err)
	}
	if _, err := AlgorithmOf(s); err != nil {
		return Stats{}, true, fmt.Errorf("reading the figures at the end of the dump: %w", err)
	}
	return s, true, nil
}

// LastLine is an io.Writer that keeps the last line written to it, so that the trailer can be read from the end
// of a stream without holding the stream. A line longer than Max bytes is not kept (Line then returns nil for it).
type LastLine struct {
	// Max is the longest line kept; 0 means 64 MiB (the figures of some 400,000 tables).
	Max int

	cur, last         []byte
	curOver, lastOver bool
}

// Write never fails.
func (l *LastLine) Write(p []byte) (int, error) {
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		l.add(p)
		return len(p), nil
	}
	if j := bytes.LastIndexByte(p[:i], '\n'); j >= 0 {
		l.cur, l.curOver = l.cur[:0], false
		l.add(p[j+1 : i])
	} else {
		l.add(p[:i])
	}
	l.last, l.cur = l.cur, l.last[:0]
	l.lastOver, l.curOver = l.curOver, false
	l.add(p[i+1:])
	return len(p), nil
}

func (l *LastLine) add(b []byte) {
	if l.curOver || len(b) == 0 {
		return
	}
	limit := l.Max
	if limit <= 0 {
		limit = 64 << 20
	}
	if len(l.cur)+len(b) > limit {
		l.cur, l.curOver = l.cur[:0], true
		return
	}
	l.cur = append(l.cur, b...)
}

// Line returns the last line written, without its newline: the unfinished line when the stream did not end with a
// newline, else the last complete one; nil when that line was longer than Max.
func (l *LastLine) Line() []byte {
	if len(l.cur) > 0 || l.curOver {
		if l.curOver {
			return nil
		}
		return l.cur
	}
	if l.lastOver {
		return nil
	}
	return l.last
}
