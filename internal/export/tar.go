package export

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	blockSize = 512
	// maxOctalSize is the largest size the ustar header's 11 octal digits hold (8 GiB - 1).
	maxOctalSize = 1<<33 - 1
	// chunkSize is how much of a streamed file is gathered before it is hashed and written: COPY hands over one
	// row at a time, and hashing and writing row by row would cost more than the copy itself.
	chunkSize = 1 << 20
)

// tarWriter writes a tar archive straight into an *os.File. Files whose size is known are written with a
// complete header; streamed files get a header with size 0, their content, and then the header's size and
// checksum are patched in place (pwrite), so nothing is spooled and memory does not depend on file sizes.
type tarWriter struct {
	f       *os.File
	off     int64
	modTime time.Time
	dirs    map[string]bool
	free    chan *chunk
	// afterChunk, when set (tests), runs after each chunk of a streamed file is written.
	afterChunk func(name string)
	// final, when set, is told the offset below which the archive will not change any more.
	final func(off int64)
}

func (w *tarWriter) finalized() {
	if w.final != nil {
		w.final(w.off)
	}
}

func newTarWriter(f *os.File, modTime time.Time) *tarWriter {
	return &tarWriter{f: f, modTime: modTime.UTC().Truncate(time.Second), dirs: map[string]bool{}}
}

func (w *tarWriter) write(p []byte) error {
	n, err := w.f.Write(p)
	w.off += int64(n)
	return err
}

// headerBlocks is the encoding of hdr by archive/tar: USTAR when every field fits, else PAX records (long or
// non-ASCII names) followed by the USTAR block. The last 512 bytes are always the USTAR block.
func headerBlocks(hdr *tar.Header) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	// tw is not closed: that would append the end-of-archive blocks.
	return b.Bytes(), nil
}

func (w *tarWriter) header(name string, typ byte, size int64) *tar.Header {
	mode := int64(0o644)
	if typ == tar.TypeDir {
		mode = 0o755
	}
	return &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: w.modTime, Format: tar.FormatUnknown}
}

// mkdirs writes directory entries for every parent of name not written yet, so that extracting tools that
// honour modes get usable directories.
func (w *tarWriter) mkdirs(name string) error {
	dir := path.Dir(name)
	if dir == "." || dir == "/" || w.dirs[dir] {
		return nil
	}
	if err := w.mkdirs(dir); err != nil {
		return err
	}
	w.dirs[dir] = true
	b, err := headerBlocks(w.header(dir+"/", tar.TypeDir, 0))
	if err != nil {
		return err
	}
	return w.write(b)
}

// pad ends an entry: zeros up to the next block. Everything before is final.
func (w *tarWriter) pad() error {
	if r := w.off % blockSize; r != 0 {
		if err := w.write(make([]byte, blockSize-r)); err != nil {
			return err
		}
	}
	w.finalized()
	return nil
}

// fileSum is what the bag needs to know of a payload or tag file.
type fileSum struct {
	Size   int64
	SHA256 string
	SHA512 string
}

// addBytes writes a file whose content is in memory.
func (w *tarWriter) addBytes(name string, data []byte) (fileSum, error) {
	if err := w.mkdirs(name); err != nil {
		return fileSum{}, err
	}
	b, err := headerBlocks(w.header(name, tar.TypeReg, int64(len(data))))
	if err != nil {
		return fileSum{}, err
	}
	if err := w.write(b); err != nil {
		return fileSum{}, err
	}
	if err := w.write(data); err != nil {
		return fileSum{}, err
	}
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	return fileSum{Size: int64(len(data)), SHA256: hex.EncodeToString(s256[:]), SHA512: hex.EncodeToString(s512[:])}, w.pad()
}

// addReader writes a file of known size from r, hashing it on the way.
func (w *tarWriter) addReader(name string, r io.Reader, size int64) (fileSum, error) {
	if err := w.mkdirs(name); err != nil {
		return fileSum{}, err
	}
	b, err := headerBlocks(w.header(name, tar.TypeReg, size))
	if err != nil {
		return fileSum{}, err
	}
	if err := w.write(b); err != nil {
		return fileSum{}, err
	}
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.CopyN(io.MultiWriter(h256, h512, writerFunc(func(p []byte) (int, error) { return len(p), w.write(p) })), r, size)
	if err != nil {
		return fileSum{}, err
	}
	return fileSum{Size: n, SHA256: hex.EncodeToString(h256.Sum(nil)), SHA512: hex.EncodeToString(h512.Sum(nil))}, w.pad()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// stream writes a file whose size is not known in advance: fill writes its content to the writer it is given.
// The content is gathered into chunks; each chunk is hashed with SHA-256 and with SHA-512 and written to the
// file by three goroutines side by side, while fill goes on filling the next chunk. At most pipelineDepth chunks
// exist, so memory stays bounded whatever the file's size.
func (w *tarWriter) stream(name string, fill func(io.Writer) error) (fileSum, error) {
	if err := w.mkdirs(name); err != nil {
		return fileSum{}, err
	}
	b, err := headerBlocks(w.header(name, tar.TypeReg, 0))
	if err != nil {
		return fileSum{}, err
	}
	hdrOff := w.off + int64(len(b)) - blockSize
	hdr := append([]byte(nil), b[len(b)-blockSize:]...)
	if err := w.write(b); err != nil {
		return fileSum{}, err
	}
	p := w.newPipe(name)
	fillErr := fill(p)
	n, h256, h512, pipeErr := p.close()
	if fillErr != nil {
		return fileSum{}, fillErr
	}
	if pipeErr != nil {
		return fileSum{}, pipeErr
	}
	if err := patchSize(hdr, n); err != nil {
		return fileSum{}, err
	}
	if _, err := w.f.WriteAt(hdr, hdrOff); err != nil {
		return fileSum{}, err
	}
	return fileSum{Size: n, SHA256: hex.EncodeToString(h256), SHA512: hex.EncodeToString(h512)}, w.pad()
}

// close writes the two zero blocks that end an archive.
func (w *tarWriter) close() error { return w.write(make([]byte, 2*blockSize)) }

// pipelineDepth is how many chunks a streamed file may have in flight.
const pipelineDepth = 4

type chunk struct {
	data []byte
	refs atomic.Int32
}

// pipe is the io.Writer a streamed file's content is written to.
type pipe struct {
	w    *tarWriter
	name string
	cur  *chunk
	n    int64
	// queues of the three consumers, in file order.
	q256, q512, qw chan *chunk
	wg             sync.WaitGroup
	h256, h512     hash.Hash
	err            atomic.Pointer[error] // the writer's first error
}

func (w *tarWriter) newPipe(name string) *pipe {
	if w.free == nil {
		w.free = make(chan *chunk, pipelineDepth)
		for i := 0; i < pipelineDepth; i++ {
			w.free <- &chunk{data: make([]byte, 0, chunkSize)}
		}
	}
	p := &pipe{w: w, name: name, h256: sha256.New(), h512: sha512.New(),
		q256: make(chan *chunk, pipelineDepth), q512: make(chan *chunk, pipelineDepth), qw: make(chan *chunk, pipelineDepth)}
	p.wg.Add(3)
	go p.hash(p.q256, p.h256)
	go p.hash(p.q512, p.h512)
	go p.write()
	return p
}

func (p *pipe) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		c.data = c.data[:0]
		p.w.free <- c
	}
}

func (p *pipe) hash(q chan *chunk, h hash.Hash) {
	defer p.wg.Done()
	for c := range q {
		h.Write(c.data)
		p.release(c)
	}
}

func (p *pipe) write() {
	defer p.wg.Done()
	for c := range p.qw {
		if p.err.Load() == nil {
			if err := p.w.write(c.data); err != nil {
				p.err.Store(&err)
			} else if p.w.afterChunk != nil {
				p.w.afterChunk(p.name)
			}
		}
		p.release(c)
	}
}

func (p *pipe) send() {
	c := p.cur
	p.cur = nil
	p.n += int64(len(c.data))
	c.refs.Store(3)
	p.q256 <- c
	p.q512 <- c
	p.qw <- c
}

func (p *pipe) Write(b []byte) (int, error) {
	if e := p.err.Load(); e != nil {
		return 0, *e
	}
	total := len(b)
	for len(b) > 0 {
		if p.cur == nil {
			p.cur = <-p.w.free
		}
		k := copy(p.cur.data[len(p.cur.data):cap(p.cur.data)], b)
		p.cur.data = p.cur.data[:len(p.cur.data)+k]
		b = b[k:]
		if len(p.cur.data) == cap(p.cur.data) {
			p.send()
		}
	}
	return total, nil
}

// close sends what is left, waits for the consumers and returns the size, the digests and the writer's error.
func (p *pipe) close() (int64, []byte, []byte, error) {
	if p.cur != nil {
		if len(p.cur.data) > 0 {
			p.send()
		} else {
			p.w.free <- p.cur
			p.cur = nil
		}
	}
	close(p.q256)
	close(p.q512)
	close(p.qw)
	p.wg.Wait()
	var err error
	if e := p.err.Load(); e != nil {
		err = *e
	}
	return p.n, p.h256.Sum(nil), p.h512.Sum(nil), err
}

// patchSize writes size into a USTAR header block and recomputes its checksum. Sizes below 8 GiB are written as
// 11 octal digits (plain POSIX ustar); larger ones in the base-256 encoding of GNU tar and star, which GNU tar,
// bsdtar/libarchive, Python's tarfile, Go's archive/tar and 7-Zip all read. Either encoding fills the same 12
// bytes, so the header keeps its place.
func patchSize(hdr []byte, size int64) error {
	if len(hdr) != blockSize {
		return errors.New("tar header block must be 512 bytes")
	}
	if size < 0 {
		return errors.New("negative size")
	}
	field := hdr[124:136]
	if size <= maxOctalSize {
		s := strconv.FormatInt(size, 8)
		for i := range field {
			field[i] = '0'
		}
		copy(field[11-len(s):11], s)
		field[11] = 0
	} else {
		for i := range field {
			field[i] = 0
		}
		v := uint64(size)
		for i := len(field) - 1; i >= 1; i-- {
			field[i] = byte(v)
			v >>= 8
		}
		field[0] = 0x80
	}
	chk := hdr[148:156]
	for i := range chk {
		chk[i] = ' '
	}
	var sum int64
	for _, c := range hdr {
		sum += int64(c)
	}
	s := strconv.FormatInt(sum, 8)
	for i := 0; i < 6; i++ {
		chk[i] = '0'
	}
	copy(chk[6-len(s):6], s)
	chk[6] = 0
	chk[7] = ' '
	return nil
}

// tarHasher computes the SHA-256 of the archive while it is being written. A streamed entry's header is only
// final once its content is written, so the archive cannot be hashed on the way out; instead a goroutine reads
// back (pread, from the page cache) and hashes everything below a mark that the writer moves past each finished
// entry. Finished entries are hashed while later ones are still streaming; what is left at the end is hashed
// while the file is being synced.
type tarHasher struct {
	f        *os.File
	mu       sync.Mutex
	cond     *sync.Cond
	mark     int64
	final    bool
	stopped  bool
	h        hash.Hash
	n        int64
	err      error
	finished chan struct{}
}

func startTarHasher(f *os.File) *tarHasher {
	t := &tarHasher{f: f, h: sha256.New(), finished: make(chan struct{})}
	t.cond = sync.NewCond(&t.mu)
	go t.run()
	return t
}

// advance says that every byte below off is final.
func (t *tarHasher) advance(off int64) {
	t.mu.Lock()
	if off > t.mark {
		t.mark = off
		t.cond.Signal()
	}
	t.mu.Unlock()
}

func (t *tarHasher) run() {
	defer close(t.finished)
	// One goroutine reads, this one hashes: reading from the page cache and SHA-256 take about as long as each
	// other, so the tail of the archive that is left when the last entry is written is hashed in half the time.
	type piece struct {
		buf []byte
		err error
	}
	free := make(chan []byte, 3)
	for i := 0; i < cap(free); i++ {
		free <- make([]byte, chunkSize)
	}
	full := make(chan piece, cap(free))
	go func() {
		defer close(full)
		var off int64
		for {
			t.mu.Lock()
			for off >= t.mark && !t.final && !t.stopped {
				t.cond.Wait()
			}
			mark, stopped := t.mark, t.stopped
			t.mu.Unlock()
			if stopped || off >= mark {
				return
			}
			for off < mark {
				buf := <-free
				k := int(min(int64(len(buf)), mark-off))
				r, err := t.f.ReadAt(buf[:k], off)
				off += int64(r)
				full <- piece{buf: buf[:r], err: err}
				if err != nil {
					return
				}
			}
		}
	}()
	for p := range full {
		t.h.Write(p.buf)
		t.n += int64(len(p.buf))
		free <- p.buf[:cap(p.buf)]
		if p.err != nil && t.err == nil {
			t.err = p.err
		}
	}
}

// finish hashes up to size (the archive's final length) and returns the hex digest.
func (t *tarHasher) finish(size int64) (string, error) {
	t.advance(size)
	t.mu.Lock()
	t.final = true
	t.cond.Broadcast()
	t.mu.Unlock()
	<-t.finished
	if t.err != nil {
		return "", t.err
	}
	if t.n != size {
		return "", errors.New("archive hash stopped early")
	}
	return hex.EncodeToString(t.h.Sum(nil)), nil
}

// stop ends the goroutine without a result (the export failed).
func (t *tarHasher) stop() {
	t.mu.Lock()
	t.stopped = true
	t.cond.Broadcast()
	t.mu.Unlock()
	<-t.finished
}
