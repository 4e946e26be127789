// Package pgdump computes per-table row counts and checksums from a plain-format pg_dump stream while passing the
// stream through unchanged, so a backup records, in the same pass, what a later restore drill must find again.
//
// # Filter
//
// [Filter] copies a dump from a reader to a writer and, on the side, reads the data blocks of the dump
// (COPY <table> (<columns>) FROM stdin; ... \.). Every line of a block is one row (COPY's text format escapes
// newlines inside values as \n). A row's hash is the XXH3-128 (or, for snapshots of older versions, the SHA-256)
// of its line without the newline; a table's checksum is the lane-wise sum (mod 2^64) of the 64-bit words of its
// rows' hashes (see [Algorithm]). The sum does not depend
// on row order, which pg_dump does not guarantee, and unlike an XOR two equal rows do not cancel out. Two dumps of
// the same rows therefore give the same [Stats], however the rows are stored, and [Compare] names the tables whose
// rows differ.
//
// The filter sits in the path of the whole dump: it reads and writes in 1 MiB chunks, finds lines with the
// runtime's vectorised byte search, and hashes rows in a small pool of goroutines while the next chunk is being
// copied, so the copy is not stalled by hashing. Rows longer than a chunk (bytea, large text) are hashed
// incrementally and never held in memory whole.
//
// Limits: the filter recognises data blocks by their COPY line, as pg_dump writes them in plain format; a dump made
// with --inserts has no COPY blocks and yields no tables. A function body containing a line that is itself a
// complete "COPY x FROM stdin;" statement would be taken for a data block; pg_dump's own output never contains one
// outside a data block unless a user wrote it into a function.
//
// # The dump helper, and why this package has an init function
//
// custos backs a database up with restic backup --stdin-from-command -- <command>: restic runs the command and
// stores its standard output; when the command exits non-zero, restic records no snapshot. To count and checksum
// the rows in the same pass, the command must be pg_dump piped through [Filter], and the pipe must fail when
// pg_dump fails (a shell pipeline would hide pg_dump's exit status, and the filter must run as a process
// that restic starts, not inside the manager).
//
// [Command] therefore returns the argv of the running executable itself followed by the pg_dump argv, and the
// caller sets [StatsFileEnv] in restic's environment (restic passes its environment on to the command). When a
// process starts with that variable set, this package's init function takes the process over before main (or a
// test binary's test runner) starts: it runs os.Args[1:] as a child (the variable unset, standard input empty,
// standard error passed through), pipes the child's standard output through [Filter] to its own standard output,
// and only when the child exited 0 and the filter succeeded appends the [Trailer] line (the [Stats] as an SQL
// comment, so the figures travel inside the dump) and writes the [Stats] as JSON to the file the variable names
// (a temporary file renamed into place), and exits with os.Exit: 0 on success, otherwise the child's exit code
// or 1, leaving no stats file behind. Because both the manager and the test binaries import this package, any of
// them can be re-executed as the pipe filter without shipping a second binary; this is the pattern of moby's
// reexec package. A process without the variable set is not affected by the init function.
package pgdump
