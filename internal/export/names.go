package export

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxSlug bounds each slugged part of a file name, so that a table's file name stays far below the 255 bytes
// file systems allow whatever its schema and table are called (PostgreSQL names have up to 63 bytes, which
// escaped byte by byte could reach three times that).
const maxSlug = 48

// plainIdent reports whether s is what PostgreSQL would accept unquoted and leave as it is: a lower-case ASCII
// letter or underscore followed by lower-case letters, digits and underscores. Such a name is its own slug.
func plainIdent(s string) bool {
	if s == "" || len(s) > maxSlug || windowsReserved(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// windowsReserved is true for the device names Windows will not open as files (CON, NUL, COM1, …), with or
// without an extension: a bag must unpack anywhere.
func windowsReserved(s string) bool {
	switch strings.ToLower(s) {
	case "con", "prn", "aux", "nul":
		return true
	}
	l := strings.ToLower(s)
	if len(l) == 4 && (strings.HasPrefix(l, "com") || strings.HasPrefix(l, "lpt")) && l[3] >= '0' && l[3] <= '9' {
		return true
	}
	return false
}

// slug keeps ASCII letters (lower-cased), digits and underscores of s and turns every run of other bytes into
// one '-', trimmed at both ends and cut to maxSlug bytes; "_" when nothing is left.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
			fallthrough
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteByte(c)
		default:
			dash = true
		}
	}
	out := b.String()
	if len(out) > maxSlug {
		out = strings.TrimRight(out[:maxSlug], "-")
	}
	if out == "" || windowsReserved(out) {
		out = "_" + out
	}
	return out
}

// tableBase is the file name (without .csv) and the datapackage resource name of table schema.table.
//
// When both names are plain identifiers (see plainIdent) it is "<schema>.<table>", e.g. "public.orders".
// Otherwise it is "<slug(schema)>.<slug(table)>-<h>", where h is the first 12 hex digits of the SHA-256 of
// schema, a NUL byte and table: `clinic."Patiënt ""records"", 2024"` becomes
// "clinic.pati-nt-records-2024-<h>". The result uses only [a-z0-9_.-], so it is a valid file name on every
// common file system (case-insensitive ones included: two tables that differ only in case get different
// hashes), needs no escaping in a BagIt manifest, a URL or a shell, and is a valid Frictionless resource name.
// Plain names never contain '-', hashed names always end in "-<12 hex>", so the two kinds never collide; two
// hashed names collide only when their slugs and 48-bit hashes both agree, which WriteFile checks and refuses.
func tableBase(schema, table string) string {
	if plainIdent(schema) && plainIdent(table) {
		return schema + "." + table
	}
	return slug(schema) + "." + slug(table) + "-" + shortHash(schema+"\x00"+table)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// resourceName is the datapackage resource name of a payload file that is not a table (schema.sql, objects):
// its path with every byte outside [a-z0-9_.-/] replaced as slug does, plus a hash when that changed anything.
func resourceName(path string) string {
	ok := path != ""
	for i := 0; i < len(path) && ok; i++ {
		c := path[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '/'
	}
	if ok {
		return path
	}
	var b strings.Builder
	for _, part := range strings.Split(path, "/") {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(slug(part))
	}
	return b.String() + "-" + shortHash(path)
}
