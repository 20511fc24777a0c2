package wsclient

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// body collects one received message's bytes as its parts arrive: in
// memory, or, past the connection's SpoolAbove, in an unlinked temporary
// file, hashed as it grows, so a message of any size costs no memory.
type body struct {
	buf  bytes.Buffer
	file *os.File
	h    hash.Hash
	n    uint64
}

func newBody(length uint64, o Options) (*body, error) {
	b := &body{h: sha512.New()}
	if o.SpoolAbove <= 0 || length <= uint64(o.SpoolAbove) {
		return b, nil
	}
	f, err := tempFile(o.SpoolDir)
	if err != nil {
		return nil, err
	}
	b.file = f
	return b, nil
}

// tempFile is a new temporary file, unlinked where the system allows it
// so nothing is left behind even if the program dies.
func tempFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "wsclient-message-*")
	if err != nil {
		return nil, fmt.Errorf("spool received message: %w", err)
	}
	_ = os.Remove(f.Name()) // fails where open files cannot be removed; the OS's temp cleaning then applies
	return f, nil
}

func (b *body) write(p []byte) error {
	b.h.Write(p)
	b.n += uint64(len(p))
	if b.file == nil {
		b.buf.Write(p)
		return nil
	}
	if _, err := b.file.Write(p); err != nil {
		return fmt.Errorf("spool received message: %w", err)
	}
	return nil
}

// finish checks the digest and decompresses with z (nil: none): to
// memory, or to a file at its start when the message is longer than
// SpoolAbove (a small compressed body may hold a long message).
func (b *body) finish(want [64]byte, z *comp, decompressed uint64, o Options) ([]byte, *os.File, error) {
	defer b.discard()
	if [64]byte(b.h.Sum(nil)) != want {
		return nil, nil, errors.New("receive: hash mismatch")
	}
	var src io.Reader = &b.buf
	if b.file != nil {
		if _, err := b.file.Seek(0, io.SeekStart); err != nil {
			return nil, nil, fmt.Errorf("spool received message: %w", err)
		}
		if z == nil {
			f := b.file
			b.file = nil // handed over, not discarded
			return nil, f, nil
		}
		src = b.file
	}
	if z == nil {
		return b.buf.Bytes(), nil, nil
	}
	if o.SpoolAbove <= 0 || decompressed <= uint64(o.SpoolAbove) {
		var mem bytes.Buffer
		if err := z.codec.Decode(&mem, src, decompressed); err != nil {
			return nil, nil, fmt.Errorf("receive: compressor %d: %w", z.id, err)
		}
		return mem.Bytes(), nil, nil
	}
	out, err := tempFile(o.SpoolDir)
	if err != nil {
		return nil, nil, err
	}
	if err := z.codec.Decode(out, src, decompressed); err != nil {
		_ = out.Close()
		return nil, nil, fmt.Errorf("receive: compressor %d: %w", z.id, err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		_ = out.Close()
		return nil, nil, fmt.Errorf("spool received message: %w", err)
	}
	return nil, out, nil
}

// discard releases the file of an unfinished or replaced body.
func (b *body) discard() {
	if b.file != nil {
		_ = b.file.Close()
		b.file = nil
	}
}
