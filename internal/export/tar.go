package export

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
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
	buf     []byte
	// afterChunk, when set (tests), runs after each chunk of a streamed file is written.
	afterChunk func(name string)
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

func (w *tarWriter) pad() error {
	if r := w.off % blockSize; r != 0 {
		return w.write(make([]byte, blockSize-r))
	}
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
	return fileSum{Size: int64(len(data)), SHA256: fmt.Sprintf("%x", s256), SHA512: fmt.Sprintf("%x", s512)}, w.pad()
}

// stream writes a file whose size is not known in advance: fill writes its content to the writer it is given.
// The content is hashed (SHA-256 and SHA-512) on its way to the file.
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
	if w.buf == nil {
		w.buf = make([]byte, 0, chunkSize)
	}
	sw := &streamWriter{w: w, name: name, buf: w.buf[:0], h256: sha256.New(), h512: sha512.New()}
	if err := fill(sw); err != nil {
		return fileSum{}, err
	}
	if err := sw.flush(); err != nil {
		return fileSum{}, err
	}
	if err := patchSize(hdr, sw.n); err != nil {
		return fileSum{}, err
	}
	if _, err := w.f.WriteAt(hdr, hdrOff); err != nil {
		return fileSum{}, err
	}
	sum := fileSum{Size: sw.n, SHA256: fmt.Sprintf("%x", sw.h256.Sum(nil)), SHA512: fmt.Sprintf("%x", sw.h512.Sum(nil))}
	return sum, w.pad()
}

// close writes the two zero blocks that end an archive.
func (w *tarWriter) close() error { return w.write(make([]byte, 2*blockSize)) }

type streamWriter struct {
	w          *tarWriter
	name       string
	buf        []byte
	n          int64
	h256, h512 hash.Hash
}

func (s *streamWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return total - len(p), err
			}
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
	return total, nil
}

func (s *streamWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	s.h256.Write(s.buf)
	s.h512.Write(s.buf)
	if err := s.w.write(s.buf); err != nil {
		return err
	}
	s.n += int64(len(s.buf))
	s.buf = s.buf[:0]
	if s.w.afterChunk != nil {
		s.w.afterChunk(s.name)
	}
	return nil
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
