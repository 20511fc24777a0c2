package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// A backup file is the subscription table alone: no members, request ids
// or HMAC codes, which belong to the cluster that wrote them. Layout (all
// integers big-endian, lengths as uvarints):
//
//	magic "LONELYPSD-BACKUP" · u16 version · u64 applied index · i64 unix ms
//	rows: u8 kind (1 exact, 2 glob) · len url · url · len key · key · len recovery · recovery
//	u8 0 · u64 row count · SHA-256 of every byte before it
//
// Rows come in table order (kind, then URL, then key).
const (
	backupMagic   = "LONELYPSD-BACKUP"
	backupVersion = 1
)

// ErrBadBackup is wrapped by every refusal of a backup file: not one, a
// version this build cannot read, truncated or altered.
var ErrBadBackup = errors.New("not a usable lonelypsd backup")

// BackupInfo describes a backup file.
type BackupInfo struct {
	Version uint16
	// Applied is the Raft index the table reflected when it was written.
	Applied uint64
	Written time.Time
	Exact   int
	Globs   int
}

// WriteBackup writes the table, as one read transaction sees it, to w.
func (f *FSM) WriteBackup(w io.Writer) (BackupInfo, error) {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		return BackupInfo{}, ErrClosed
	}
	info := BackupInfo{Version: backupVersion, Written: time.Now()}
	bw := newBackupWriter(w)
	err := f.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyApplied); len(v) == 8 {
			info.Applied = binary.BigEndian.Uint64(v)
		}
		bw.header(info)
		return eachRowIn(tx, func(kind Kind, url, key, recovery []byte) error {
			bw.row(kind, url, key, recovery)
			if kind == Exact {
				info.Exact++
			} else {
				info.Globs++
			}
			return bw.err
		})
	})
	if err == nil {
		err = bw.finish(uint64(info.Exact + info.Globs))
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("write backup: %w", err)
	}
	return info, nil
}

type backupWriter struct {
	w   *bufio.Writer
	sum hash.Hash
	err error
	buf []byte
}

func newBackupWriter(w io.Writer) *backupWriter {
	sum := sha256.New()
	return &backupWriter{w: bufio.NewWriterSize(io.MultiWriter(w, sum), 64<<10), sum: sum}
}

func (b *backupWriter) write(p []byte) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
}

func (b *backupWriter) header(info BackupInfo) {
	p := append([]byte(backupMagic), 0, 0)
	binary.BigEndian.PutUint16(p[len(backupMagic):], info.Version)
	p = binary.BigEndian.AppendUint64(p, info.Applied)
	p = binary.BigEndian.AppendUint64(p, uint64(info.Written.UnixMilli()))
	b.write(p)
}

func (b *backupWriter) row(kind Kind, url, key, recovery []byte) {
	p := append(b.buf[:0], byte(kind))
	for _, s := range [][]byte{url, key, recovery} {
		p = binary.AppendUvarint(p, uint64(len(s)))
		p = append(p, s...)
	}
	b.buf = p
	b.write(p)
}

func (b *backupWriter) finish(rows uint64) error {
	b.write(binary.BigEndian.AppendUint64([]byte{0}, rows))
	if b.err == nil {
		b.err = b.w.Flush()
	}
	if b.err != nil {
		return b.err
	}
	// The digest covers what was flushed; write it past the hash.
	_, err := b.w.Write(b.sum.Sum(nil))
	if err == nil {
		err = b.w.Flush()
	}
	return err
}

// ReadBackup reads a backup file, calling fn (when non-nil) for every row
// in order, and checks its digest at the end: a caller must not act on
// the rows before ReadBackup returned nil (read the file twice, or stage
// the rows). Every row is held to the limits of a Raft command, so a row
// ReadBackup accepts can be restored.
func ReadBackup(r io.Reader, fn func(Subscription) error) (BackupInfo, error) {
	d := &digestReader{r: bufio.NewReaderSize(r, 64<<10), sum: sha256.New()}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBackup, fmt.Sprintf(format, args...))
	}
	head := make([]byte, len(backupMagic)+2+8+8)
	if _, err := io.ReadFull(d, head); err != nil || string(head[:len(backupMagic)]) != backupMagic {
		return BackupInfo{}, bad("the file does not start with %q", backupMagic)
	}
	p := head[len(backupMagic):]
	info := BackupInfo{
		Version: binary.BigEndian.Uint16(p),
		Applied: binary.BigEndian.Uint64(p[2:]),
		Written: time.UnixMilli(int64(binary.BigEndian.Uint64(p[10:]))),
	}
	if info.Version != backupVersion {
		return info, bad("version %d; this build reads version %d", info.Version, backupVersion)
	}
	var rows uint64
	for {
		kind, err := d.ReadByte()
		if err != nil {
			return info, bad("truncated after %d rows", rows)
		}
		if kind == 0 {
			break
		}
		s, err := readRow(d, Kind(kind))
		if err != nil {
			return info, bad("row %d: %v", rows+1, err)
		}
		rows++
		if s.Kind == Exact {
			info.Exact++
		} else {
			info.Globs++
		}
		if fn != nil {
			if err := fn(s); err != nil {
				return info, err
			}
		}
	}
	var count [8]byte
	if _, err := io.ReadFull(d, count[:]); err != nil {
		return info, bad("truncated in its trailer")
	}
	if n := binary.BigEndian.Uint64(count[:]); n != rows {
		return info, bad("its trailer counts %d rows, the file holds %d", n, rows)
	}
	want := d.sum.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(d.r, got); err != nil {
		return info, bad("truncated in its digest")
	}
	if !bytes.Equal(got, want) {
		return info, bad("its SHA-256 does not match its contents (altered or damaged)")
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return info, bad("bytes follow its digest")
	}
	return info, nil
}

// digestReader hashes what is consumed through it.
type digestReader struct {
	r   *bufio.Reader
	sum hash.Hash
	one [1]byte
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.sum.Write(p[:n])
	return n, err
}

func (d *digestReader) ReadByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err == nil {
		d.one[0] = c
		d.sum.Write(d.one[:])
	}
	return c, err
}

// readRow reads one row after its kind byte, held to Validate's limits.
func readRow(d *digestReader, kind Kind) (Subscription, error) {
	if kind != Exact && kind != Glob {
		return Subscription{}, fmt.Errorf("unknown kind %d", kind)
	}
	var f [3]string
	for i, limit := range []int{MaxURL, MaxRowKey, MaxURL} {
		n, err := binary.ReadUvarint(d)
		if err != nil {
			return Subscription{}, fmt.Errorf("truncated: %w", err)
		}
		if n > uint64(limit) {
			return Subscription{}, fmt.Errorf("field of %d bytes exceeds %d", n, limit)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(d, b); err != nil {
			return Subscription{}, fmt.Errorf("truncated: %w", err)
		}
		f[i] = string(b)
	}
	s := Subscription{Kind: kind, URL: f[0], Key: f[1], Recovery: f[2]}
	if err := checkRow(s.URL, len(s.Key)); err != nil {
		return Subscription{}, err
	}
	if kind == Glob && !utf8.ValidString(s.Key) {
		return Subscription{}, errors.New("glob is not valid UTF-8")
	}
	return s, nil
}

// EachRow calls fn for every row of the table in table order (kind, URL,
// key), as one read transaction sees it; an error from fn stops the walk
// and is returned. For operators' listings, not the request path.
func (f *FSM) EachRow(fn func(Subscription) error) error {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.View(func(tx *bolt.Tx) error {
		return eachRowIn(tx, func(kind Kind, url, key, recovery []byte) error {
			return fn(Subscription{Kind: kind, URL: string(url), Key: string(key), Recovery: string(recovery)})
		})
	})
}
