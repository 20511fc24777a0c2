// Package zstddict compresses and decompresses websocket message bodies with
// zstd the way the protocol's peers do: frames without checksum and without
// a dictionary id, the dictionary being named by the protocol's compressor
// identifier instead of the frame.
//
// klauspost/compress picks a decoder dictionary by the id in the frame
// header and treats a frame without one as using none, so a frame from a
// peer gets the dictionary's id written into its header before decoding;
// frames going out have it removed again, which both the reference and
// libzstd decoders given the dictionary explicitly accept (a raw-content
// dictionary has id 0 there, and libzstd refuses a frame naming another).
package zstddict

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
)

const (
	frameMagic = 0xFD2FB528
	dictMagic  = 0xEC30A437
	// rawID names a raw-content dictionary inside this package; it never
	// leaves it (outgoing frames carry no id).
	rawID = 1
	// minRaw is libzstd's smallest raw-content dictionary.
	minRaw = 8
	// Window is the window of the frames written: 8 MiB, what zstd
	// requires every decoder to support, so any peer's limit accepts it.
	Window = 8 << 20
)

// ErrFrame is returned for input that is not a zstd frame.
var ErrFrame = errors.New("not a zstd frame")

// Dict is a dictionary as the protocol carries it: a full zstd dictionary
// (what `zstd --train` and the reference's trainer produce) or, like
// python-zstandard accepts, arbitrary raw content used as history.
type Dict struct {
	data []byte
	id   uint32
	raw  bool
	sum  [64]byte
}

// Parse reads a dictionary. A full dictionary is checked by loading it; any
// other content of at least 8 bytes is a raw-content dictionary.
func Parse(b []byte) (*Dict, error) {
	d := &Dict{data: bytes.Clone(b), sum: sha512.Sum512(b)}
	if len(b) >= 8 && binary.LittleEndian.Uint32(b) == dictMagic {
		d.id = binary.LittleEndian.Uint32(b[4:])
		// Loading it validates the entropy tables.
		if _, err := zstd.NewReader(nil, zstd.WithDecoderDicts(d.data), zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, fmt.Errorf("zstd dictionary: %w", err)
		}
		return d, nil
	}
	if len(b) < minRaw {
		return nil, fmt.Errorf("zstd dictionary: %d bytes, need at least %d", len(b), minRaw)
	}
	d.id, d.raw = rawID, true
	return d, nil
}

// Bytes returns the dictionary as sent in ENABLE_ZSTD_CUSTOM. Do not modify.
func (d *Dict) Bytes() []byte { return d.data }

// SHA512 is the hash sent with the dictionary.
func (d *Dict) SHA512() [64]byte { return d.sum }

// Raw tells a raw-content dictionary from a full one.
func (d *Dict) Raw() bool { return d.raw }

// Train builds a full dictionary of at most maxSize bytes from samples,
// tuned for compressing at level. The result is compatible with libzstd
// 1.5.5 and older (without the compatibility mode libzstd 1.5.4, the
// Python client's, fails to precompute it). Training runs the builder's
// heuristics over data peers sent; a panic in them is returned as an error
// rather than taking the node down.
func Train(samples [][]byte, maxSize, level int) (d *Dict, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("train zstd dictionary: %v", r)
		}
	}()
	b, err := dict.BuildZstdDict(samples, dict.Options{
		MaxDictSize:    maxSize,
		HashBytes:      6,
		ZstdDictID:     32768 + rand.Uint32N(1<<31-32768),
		ZstdDictCompat: true,
		ZstdLevel:      EncoderLevel(level),
	})
	if err != nil {
		return nil, fmt.Errorf("train zstd dictionary: %w", err)
	}
	return Parse(b)
}

// Raw returns a raw-content dictionary of the newest samples, at most
// maxSize bytes: the fallback when Train finds nothing to learn because
// the samples are all alike (then they are their own best history).
func Raw(samples [][]byte, maxSize int) (*Dict, error) {
	n, from := 0, len(samples)
	for from > 0 && n < maxSize {
		from--
		n += len(samples[from])
	}
	out := make([]byte, 0, n)
	for _, p := range samples[from:] {
		out = append(out, p...)
	}
	if len(out) > maxSize {
		out = out[len(out)-maxSize:]
	}
	if len(out) >= 4 && binary.LittleEndian.Uint32(out) == dictMagic {
		// Would be read as a full dictionary: start one byte later.
		out = out[1:]
	}
	return Parse(out)
}

// EncoderLevel maps a zstd level to the encoder's. Levels above 6 stop at
// "better compression": the next step costs a hundred times the CPU per
// small message here for a few percent of size, so a level-10 dictionary
// (the reference's second one) is used at that level by this side; the
// peer compresses at whatever level was announced.
func EncoderLevel(level int) zstd.EncoderLevel {
	return min(zstd.EncoderLevelFromZstd(level), zstd.SpeedBetterCompression)
}

// Codec compresses and decompresses with one dictionary (or none) at one
// level. It is safe for concurrent use; encoders and decoders are pooled.
type Codec struct {
	dict   *Dict
	level  zstd.EncoderLevel
	window int
	encs   sync.Pool
	decs   sync.Pool
}

// NewCodec returns a codec for d (nil: no dictionary) compressing at level.
// maxWindow bounds the window of the frames it decodes (the reference's 8
// MiB), and so the memory a peer's frame can make it use.
func NewCodec(d *Dict, level, maxWindow int) (*Codec, error) {
	c := &Codec{dict: d, level: EncoderLevel(level), window: maxWindow}
	e, err := c.newEncoder()
	if err != nil {
		return nil, err
	}
	c.encs.Put(e)
	return c, nil
}

// Dict returns the codec's dictionary, nil for none.
func (c *Codec) Dict() *Dict { return c.dict }

func (c *Codec) newEncoder() (*zstd.Encoder, error) {
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(c.level), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(Window),
	}
	switch {
	case c.dict == nil:
	case c.dict.raw:
		opts = append(opts, zstd.WithEncoderDictRaw(c.dict.id, c.dict.data))
	default:
		opts = append(opts, zstd.WithEncoderDict(c.dict.data))
	}
	e, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return e, nil
}

func (c *Codec) newDecoder() (*zstd.Decoder, error) {
	opts := []zstd.DOption{
		// One goroutine per decoder: the connection decoding is the
		// unit of parallelism, and a synchronous decoder starts none.
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(c.window)),
	}
	switch {
	case c.dict == nil:
	case c.dict.raw:
		opts = append(opts, zstd.WithDecoderDictRaw(c.dict.id, c.dict.data))
	default:
		opts = append(opts, zstd.WithDecoderDicts(c.dict.data))
	}
	d, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return d, nil
}

func (c *Codec) getEncoder() (*zstd.Encoder, error) {
	if e, ok := c.encs.Get().(*zstd.Encoder); ok {
		return e, nil
	}
	return c.newEncoder()
}

// EncodeAll appends src's frame to dst.
func (c *Codec) EncodeAll(src, dst []byte) ([]byte, error) {
	e, err := c.getEncoder()
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = e.EncodeAll(src, dst)
	c.encs.Put(e)
	return stripDictID(dst, start), nil
}

// NewWriter returns a writer compressing into w; Close ends the frame
// (it does not close w).
func (c *Codec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	e, err := c.getEncoder()
	if err != nil {
		return nil, err
	}
	e.Reset(&stripWriter{w: w})
	return &writer{c: c, e: e}, nil
}

type writer struct {
	c *Codec
	e *zstd.Encoder
}

func (w *writer) Write(p []byte) (int, error) { return w.e.Write(p) }

func (w *writer) Close() error {
	if w.e == nil {
		return nil
	}
	err := w.e.Close()
	if err == nil {
		w.c.encs.Put(w.e)
	}
	w.e = nil
	return err
}

// Decode decompresses the frame read from src into dst. The result must be
// exactly want bytes: decoding stops after want+1, so a frame that expands
// past its declared length (a compression bomb) costs no more than that,
// and the window limit bounds the decoder's memory.
func (c *Codec) Decode(dst io.Writer, src io.Reader, want uint64) error {
	if c.dict != nil {
		var err error
		if src, err = withDictID(src, c.dict.id); err != nil {
			return err
		}
	}
	d, ok := c.decs.Get().(*zstd.Decoder)
	if !ok {
		var err error
		if d, err = c.newDecoder(); err != nil {
			return err
		}
	}
	if err := d.Reset(src); err != nil {
		d.Close()
		return fmt.Errorf("zstd: %w", err)
	}
	// io.Copy sizes its buffer to the limit: small for small messages.
	got, err := io.Copy(dst, io.LimitReader(d, int64(want)+1))
	if err != nil {
		// A decoder that failed mid-frame is dropped, not pooled.
		d.Close()
		return fmt.Errorf("zstd: %w", err)
	}
	if err := d.Reset(nil); err != nil {
		d.Close()
	} else {
		c.decs.Put(d)
	}
	switch {
	case uint64(got) > want:
		return fmt.Errorf("zstd: decompresses past the declared %d bytes", want)
	case uint64(got) < want:
		return fmt.Errorf("zstd: %d bytes decompressed, %d declared", got, want)
	}
	return nil
}

// DecodeAll decompresses a frame held in memory; see Decode.
func (c *Codec) DecodeAll(src []byte, want uint64) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(int(min(want, 1<<20)))
	if err := c.Decode(&out, bytes.NewReader(src), want); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// header describes the start of a frame up to its dictionary id field.
type header struct {
	fhd    byte
	wdLen  int // 0 or 1: the window descriptor
	didLen int // 0, 1, 2 or 4
}

// parseHeader reads the fixed part of a frame header from b (at least 5
// bytes); ok is false when b does not start a zstd frame.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < 5 || binary.LittleEndian.Uint32(b) != frameMagic {
		return header{}, false
	}
	h.fhd = b[4]
	if h.fhd&0x20 == 0 { // not single segment: a window descriptor follows
		h.wdLen = 1
	}
	h.didLen = [4]int{0, 1, 2, 4}[h.fhd&3]
	return h, true
}

// stripDictID removes the dictionary id from the frame starting at
// b[start:], in place.
func stripDictID(b []byte, start int) []byte {
	h, ok := parseHeader(b[start:])
	if !ok || h.didLen == 0 {
		return b
	}
	b[start+4] &^= 3
	at := start + 5 + h.wdLen
	return append(b[:at], b[at+h.didLen:]...)
}

// stripWriter removes the dictionary id from the header of the frame
// written through it.
type stripWriter struct {
	w    io.Writer
	head []byte
	done bool
}

func (s *stripWriter) Write(p []byte) (int, error) {
	n := len(p)
	for !s.done {
		if need := s.need(); len(s.head) < need {
			if len(p) == 0 {
				return n, nil
			}
			k := min(need-len(s.head), len(p))
			s.head = append(s.head, p[:k]...)
			p = p[k:]
			continue
		}
		s.done = true
		if _, err := s.w.Write(stripDictID(s.head, 0)); err != nil {
			return 0, err
		}
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// need is how many bytes of the header it takes to find the id field.
func (s *stripWriter) need() int {
	if len(s.head) < 5 {
		return 5
	}
	h, ok := parseHeader(s.head)
	if !ok {
		return len(s.head) // not a frame: passed through untouched
	}
	return 5 + h.wdLen + h.didLen
}

// withDictID returns src with the first frame's header rewritten to name
// dictionary id, whatever id it had (none, as peers send them, or another:
// the protocol's compressor identifier is what says which dictionary).
func withDictID(src io.Reader, id uint32) (io.Reader, error) {
	head := make([]byte, 5, 14)
	if _, err := io.ReadFull(src, head); err != nil {
		return nil, fmt.Errorf("zstd frame header: %w", err)
	}
	h, ok := parseHeader(head)
	if !ok {
		return nil, ErrFrame
	}
	rest := make([]byte, h.wdLen+h.didLen)
	if _, err := io.ReadFull(src, rest); err != nil {
		return nil, fmt.Errorf("zstd frame header: %w", err)
	}
	head[4] |= 3
	head = append(head, rest[:h.wdLen]...)
	head = binary.LittleEndian.AppendUint32(head, id)
	return io.MultiReader(bytes.NewReader(head), src), nil
}
