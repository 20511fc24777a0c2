package ws

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compression, as far as this broadcaster goes (see DESIGN.md):
//
//   - Compressor 1, zstd without a dictionary, is announced with
//     ENABLE_ZSTD_PRESET to every connection whose CONFIGURE asks for zstd
//     (unless the hub disables compression). The reference announces it
//     the same way: level 3, for messages of 16 KiB and more.
//   - Preset dictionaries (2..65535) are not configured here, so a
//     CONFIGURE naming one as its initial dictionary is refused, as the
//     reference refuses an unknown id.
//   - Dictionaries trained per connection (65536 and up) are not
//     implemented: the protocol lets the broadcaster never announce any,
//     and the client only compresses with what was announced.
const (
	compressorNone = 0
	compressorZstd = 1
	// zstdMinSize is compressor 1's lower bound: smaller messages gain
	// little without a dictionary (the reference's
	// compression_trained_max_size).
	zstdMinSize = 16384
	zstdMaxSize = 1<<64 - 1
)

var errDecompress = errors.New("decompression failed")

// decoderPool keeps zstd decoders (each holds its window buffers) for
// reuse; they are created with the hub's window limit.
type decoderPool struct {
	window int
	pool   sync.Pool
}

func (p *decoderPool) get(r io.Reader) (*zstd.Decoder, error) {
	if d, ok := p.pool.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	// One goroutine per decoder: a websocket message is decoded by the
	// connection that received it, and connections are the parallelism.
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(uint64(p.window)), zstd.WithDecoderLowmem(true))
}

func (p *decoderPool) put(d *zstd.Decoder) {
	if err := d.Reset(nil); err != nil {
		d.Close()
		return
	}
	p.pool.Put(d)
}

// decompress decodes a compressor-1 stream into a new body that must be
// exactly want bytes long: the declared length is checked while decoding,
// so a frame that expands past it (a compression bomb) is stopped after
// want+1 bytes, and the window limit bounds the decoder's memory.
func (h *Hub) decompress(src io.Reader, want uint64) (*body, error) {
	d, err := h.decoders.get(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDecompress, err)
	}
	s, err := h.newSpool(want)
	if err != nil {
		d.Close()
		return nil, err
	}
	got, err := io.CopyBuffer(s, io.LimitReader(d, int64(want)+1), make([]byte, 64<<10))
	if err != nil {
		// A decoder that failed mid-frame is dropped, not pooled.
		d.Close()
		s.discard()
		return nil, fmt.Errorf("%w: %w", errDecompress, err)
	}
	h.decoders.put(d)
	if uint64(got) != want {
		s.discard()
		return nil, fmt.Errorf("%w: %d bytes decompressed, %d declared", errDecompress, got, want)
	}
	return s.finish(), nil
}

// compressed returns b's compressor-1 form, made once and shared, or nil
// when b is outside compressor 1's size window or compressing it does not
// make it smaller (then it is sent uncompressed, which is always allowed).
func (h *Hub) compressed(b *body) (*body, error) {
	if b.n < zstdMinSize || b.n > h.cfg.MaxCompressSize {
		return nil, nil
	}
	b.zOnce.Do(func() {
		b.z, b.zErr = h.compress(b)
	})
	return b.z, b.zErr
}

func (h *Hub) compress(b *body) (*body, error) {
	s, err := h.newSpool(b.n)
	if err != nil {
		return nil, err
	}
	// The frames carry no checksum and no dictionary id, as the
	// reference's; the Python client decodes them with stream_reader.
	enc, err := zstd.NewWriter(s, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(h.cfg.CompressionLevel)),
		zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(DefaultDecompressionMaxWindow))
	if err != nil {
		s.discard()
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	if _, err := io.CopyBuffer(enc, io.NewSectionReader(b, 0, int64(b.n)), make([]byte, 256<<10)); err != nil {
		_ = enc.Close()
		s.discard()
		return nil, fmt.Errorf("compress: %w", err)
	}
	if err := enc.Close(); err != nil {
		s.discard()
		return nil, fmt.Errorf("compress: %w", err)
	}
	if s.n >= b.n {
		s.discard()
		return nil, nil
	}
	return s.finish(), nil
}
