package ws

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
)

// Compression follows the reference (see DESIGN.md):
//
//   - Compressor 1, zstd without a dictionary, is announced with
//     ENABLE_ZSTD_PRESET to every connection whose CONFIGURE asks for zstd
//     (unless the hub disables compression): level 3, messages of 16 KiB
//     and more.
//   - A preset dictionary (2..65535, from configuration) is announced the
//     same way when CONFIGURE names it as its initial dictionary, for
//     messages of 32 bytes and more; an id the node does not have closes
//     the connection, as the reference does.
//   - Dictionaries trained on the connection (65536 and up, train.go) are
//     announced with ENABLE_ZSTD_CUSTOM for messages of 32 bytes up to 16
//     KiB; at most two are in use, the older one withdrawn with
//     DISABLE_ZSTD_CUSTOM when a third arrives.
//
// An outgoing message uses the most recently announced compressor whose
// size window holds it, and goes uncompressed when compressing does not
// make it smaller (always allowed).
const (
	compressorNone  = 0
	compressorZstd  = 1
	firstCustomID   = 65536
	maxPresetID     = firstCustomID - 1
	unboundedSize   = 1<<64 - 1
	minCompressSize = 32 // the reference's compression_min_size
	// trainedMaxSize is where dictionaries stop paying: compressor 1 takes
	// over from here (the reference's compression_trained_max_size).
	trainedMaxSize = 16384
)

// compressor is one compressor a connection may use: announced to the
// peer with its size window, decoded when the peer uses it.
type compressor struct {
	id       uint64
	level    int    // announced
	min, max uint64 // the size window, max exclusive
	codec    *zstddict.Codec
	// shared compressors (1 and the presets) are the same on every
	// connection, so a message's compressed form is made once per node.
	shared bool
}

func (z *compressor) fits(n uint64) bool { return z.min <= n && n < z.max }

// PresetDict is a dictionary known out of band, for ENABLE_ZSTD_PRESET.
type PresetDict struct {
	// ID is the compressor identifier, 2..65535.
	ID uint64
	// Level is the compression level announced (and used by this node,
	// up to zstddict.EncoderLevel's cap).
	Level int
	// Dict is a zstd dictionary (`zstd --train`) or raw content.
	Dict []byte
}

// newCompressors builds compressor 1 and the presets.
func newCompressors(cfg *Config) (*compressor, map[uint64]*compressor, error) {
	plain, err := zstddict.NewCodec(nil, cfg.CompressionLevel, cfg.DecompressionMaxWindow)
	if err != nil {
		return nil, nil, fmt.Errorf("ws: %w", err)
	}
	one := &compressor{id: compressorZstd, level: cfg.CompressionLevel, min: trainedMaxSize, max: unboundedSize, codec: plain, shared: true}
	presets := make(map[uint64]*compressor, len(cfg.PresetDicts))
	for _, p := range cfg.PresetDicts {
		if p.ID < 2 || p.ID > maxPresetID {
			return nil, nil, fmt.Errorf("ws: preset dictionary id %d: must be 2..%d", p.ID, maxPresetID)
		}
		if _, dup := presets[p.ID]; dup {
			return nil, nil, fmt.Errorf("ws: preset dictionary id %d given twice", p.ID)
		}
		d, err := zstddict.Parse(p.Dict)
		if err != nil {
			return nil, nil, fmt.Errorf("ws: preset dictionary %d: %w", p.ID, err)
		}
		codec, err := zstddict.NewCodec(d, p.Level, cfg.DecompressionMaxWindow)
		if err != nil {
			return nil, nil, fmt.Errorf("ws: preset dictionary %d: %w", p.ID, err)
		}
		presets[p.ID] = &compressor{id: p.ID, level: p.Level, min: minCompressSize, max: unboundedSize, codec: codec, shared: true}
	}
	return one, presets, nil
}

// CheckPresets reports what is wrong with preset dictionaries (ids,
// duplicates, dictionaries that do not load), so a node can refuse its
// configuration before it opens anything.
func CheckPresets(presets []PresetDict) error {
	cfg := Config{PresetDicts: presets, CompressionLevel: DefaultCompressionLevel, DecompressionMaxWindow: DefaultDecompressionMaxWindow}
	_, _, err := newCompressors(&cfg)
	return err
}

// decompress decodes a message compressed with z into a new body that must
// be exactly want bytes long (zstddict.Codec.Decode: a bomb is stopped
// after want+1 bytes, the window limit bounds the decoder's memory).
func (h *Hub) decompress(z *compressor, src io.Reader, want uint64) (*body, error) {
	s, err := h.newSpool(want)
	if err != nil {
		return nil, err
	}
	if err := z.codec.Decode(s, src, want); err != nil {
		s.discard()
		return nil, fmt.Errorf("decompression with compressor %d failed: %w", z.id, err)
	}
	return s.finish(), nil
}

// zform is a body's compressed form with one shared compressor.
type zform struct {
	once sync.Once
	b    *body // nil when compression does not pay
	err  error
}

// compressedShared returns b compressed with a shared compressor, made once
// and kept with b, or nil when compressing does not make it smaller.
func (h *Hub) compressedShared(z *compressor, b *body) (*body, error) {
	b.zmu.Lock()
	if b.zs == nil {
		b.zs = make(map[uint64]*zform, 1)
	}
	f := b.zs[z.id]
	if f == nil {
		f = &zform{}
		b.zs[z.id] = f
	}
	b.zmu.Unlock()
	f.once.Do(func() {
		f.b, f.err = h.compress(z, b)
	})
	return f.b, f.err
}

func (h *Hub) compress(z *compressor, b *body) (*body, error) {
	if b.n <= trainedMaxSize {
		return compressSmall(z, b)
	}
	s, err := h.newSpool(b.n)
	if err != nil {
		return nil, err
	}
	w, err := z.codec.NewWriter(s)
	if err != nil {
		s.discard()
		return nil, err
	}
	if _, err := io.CopyBuffer(w, io.NewSectionReader(b, 0, int64(b.n)), make([]byte, 256<<10)); err != nil {
		_ = w.Close()
		s.discard()
		return nil, fmt.Errorf("compress: %w", err)
	}
	if err := w.Close(); err != nil {
		s.discard()
		return nil, fmt.Errorf("compress: %w", err)
	}
	if s.n >= b.n {
		s.discard()
		return nil, nil
	}
	return s.finish(), nil
}

// compressSmall compresses a short body in memory; the result is not
// charged to the hub's budget (it is smaller than the body, which is).
func compressSmall(z *compressor, b *body) (*body, error) {
	in, err := b.bytes()
	if err != nil {
		return nil, err
	}
	out, err := z.codec.EncodeAll(in, nil)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	if len(out) >= len(in) {
		return nil, nil
	}
	c := &body{data: out, n: uint64(len(out)), sum: sha512.Sum512(out)}
	c.refs.Store(1)
	return c, nil
}

// pick returns the compressor for an outgoing message of n bytes among
// those announced (oldest first): the most recent whose window holds n.
func pick(announced []*compressor, n uint64, maxCompress uint64) *compressor {
	if n > maxCompress {
		return nil
	}
	for _, z := range slices.Backward(announced) {
		if z.fits(n) {
			return z
		}
	}
	return nil
}

// bytes returns the content of a short body.
func (b *body) bytes() ([]byte, error) {
	if b.f == nil {
		return b.data[:b.n], nil
	}
	out := make([]byte, b.n)
	if _, err := b.ReadAt(out, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return out, nil
}
