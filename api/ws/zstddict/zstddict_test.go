package zstddict

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

const window = 8 << 20

// pyVectors are frames python-zstandard 0.20 (libzstd 1.5.4, the Python
// client's) wrote the way the protocol's peers write them; see
// testdata/gen.py.
type pyVectors struct {
	FullDict          string   `json:"full_dict"`
	RawDict           string   `json:"raw_dict"`
	Messages          []string `json:"messages"`
	FullFrames        []string `json:"full_frames"`
	FullFramesLevel10 []string `json:"full_frames_level10"`
	RawFrames         []string `json:"raw_frames"`
	StreamPlain       struct {
		Length uint64 `json:"length"`
		SHA512 string `json:"sha512"`
		Frame  string `json:"frame"`
	} `json:"stream_plain"`
}

func loadPy(t *testing.T) pyVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/python_zstd.json")
	if err != nil {
		t.Fatal(err)
	}
	var v pyVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustCodec(t testing.TB, d *Dict, level int) *Codec {
	t.Helper()
	c, err := NewCodec(d, level, window)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustParse(t testing.TB, b []byte) *Dict {
	t.Helper()
	d, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDecodesPythonFrames(t *testing.T) {
	v := loadPy(t)
	full, raw := mustParse(t, wiretest.Hex(t, v.FullDict)), mustParse(t, wiretest.Hex(t, v.RawDict))
	if full.Raw() || !raw.Raw() {
		t.Fatalf("dictionary kinds: full.Raw()=%t raw.Raw()=%t", full.Raw(), raw.Raw())
	}
	cases := []struct {
		name   string
		dict   *Dict
		frames []string
	}{
		{"trained dictionary, level 3", full, v.FullFrames},
		{"trained dictionary, level 10", full, v.FullFramesLevel10},
		{"raw-content dictionary", raw, v.RawFrames},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCodec(t, tc.dict, 3)
			for i, f := range tc.frames {
				frame := wiretest.Hex(t, f)
				if h, _ := parseHeader(frame); h.didLen != 0 {
					t.Fatalf("vector %d carries a dictionary id; the vectors are wrong", i)
				}
				want := wiretest.Hex(t, v.Messages[i])
				got, err := c.DecodeAll(frame, uint64(len(want)))
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d: got %q, want %q", i, got, want)
				}
			}
		})
	}
	t.Run("stream without content size, no dictionary", func(t *testing.T) {
		var out bytes.Buffer
		if err := mustCodec(t, nil, 3).Decode(&out, bytes.NewReader(wiretest.Hex(t, v.StreamPlain.Frame)), v.StreamPlain.Length); err != nil {
			t.Fatal(err)
		}
		if sum := sha512.Sum512(out.Bytes()); hex.EncodeToString(sum[:]) != v.StreamPlain.SHA512 {
			t.Fatal("decoded stream differs from what Python compressed")
		}
	})
	t.Run("without the dictionary the frames do not decode", func(t *testing.T) {
		// Proves the vectors use their dictionary, so the test above
		// exercises the header rewrite.
		failed := 0
		for i, f := range v.FullFrames {
			want := wiretest.Hex(t, v.Messages[i])
			got, err := mustCodec(t, nil, 3).DecodeAll(wiretest.Hex(t, f), uint64(len(want)))
			if err != nil || !bytes.Equal(got, want) {
				failed++
			}
		}
		if failed == 0 {
			t.Fatal("every frame decoded without its dictionary")
		}
	})
}

func jsonSamples(r *rand.Rand, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"event":"jwt_revoked","subject":"user-%d","jti":"%016x","issuer":"https://auth.example.internal","at":%d}`,
			r.IntN(50000), r.Uint64(), 1700000000+r.IntN(1e6))
	}
	return out
}

func trained(t testing.TB) *Dict {
	t.Helper()
	d, err := Train(jsonSamples(rand.New(rand.NewPCG(1, 2)), 1500), 16384, 3)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRoundTrip(t *testing.T) {
	v := loadPy(t)
	r := rand.New(rand.NewPCG(3, 4))
	big := bytes.Repeat(jsonSamples(r, 1)[0], 30000) // ~3.5 MiB, several blocks
	dicts := []struct {
		name string
		dict *Dict
	}{
		{"none", nil},
		{"python-trained", mustParse(t, wiretest.Hex(t, v.FullDict))},
		{"raw content", mustParse(t, wiretest.Hex(t, v.RawDict))},
		{"trained here", trained(t)},
	}
	inputs := [][]byte{{}, []byte("x"), jsonSamples(r, 1)[0], bytes.Repeat([]byte("abc"), 7000), big}
	for _, d := range dicts {
		for _, level := range []int{-5, 1, 3, 10, 19} {
			c := mustCodec(t, d.dict, level)
			for _, in := range inputs {
				name := fmt.Sprintf("%s/level%d/%d", d.name, level, len(in))
				frame, err := c.EncodeAll(in, []byte("prefix"))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.HasPrefix(frame, []byte("prefix")) {
					t.Fatalf("%s: EncodeAll lost dst", name)
				}
				frame = frame[len("prefix"):]
				var streamed bytes.Buffer
				w, err := c.NewWriter(&streamed)
				if err != nil {
					t.Fatal(err)
				}
				for off := 0; off < len(in); off += 70000 {
					if _, err := w.Write(in[off:min(off+70000, len(in))]); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				for kind, f := range map[string][]byte{"EncodeAll": frame, "NewWriter": streamed.Bytes()} {
					h, ok := parseHeader(f)
					if !ok {
						t.Fatalf("%s %s: not a frame", name, kind)
					}
					if h.didLen != 0 || h.fhd&4 != 0 {
						t.Fatalf("%s %s: frame header %08b carries a dictionary id or a checksum", name, kind, h.fhd)
					}
					got, err := c.DecodeAll(f, uint64(len(in)))
					if err != nil || !bytes.Equal(got, in) {
						t.Fatalf("%s %s: round trip failed: %v", name, kind, err)
					}
				}
			}
		}
	}
}

func TestDictionaryPays(t *testing.T) {
	d := trained(t)
	msgs := jsonSamples(rand.New(rand.NewPCG(9, 9)), 200) // not the training samples
	with, without := mustCodec(t, d, 3), mustCodec(t, nil, 3)
	var in, a, b int
	for _, m := range msgs {
		x, _ := with.EncodeAll(m, nil)
		y, _ := without.EncodeAll(m, nil)
		in, a, b = in+len(m), a+len(x), b+len(y)
	}
	t.Logf("%d bytes: %d with the trained dictionary, %d without", in, a, b)
	if a*2 > b {
		t.Fatalf("trained dictionary saves too little: %d bytes with it, %d without", a, b)
	}
}

func TestDecodeRefuses(t *testing.T) {
	plain := mustCodec(t, nil, 3)
	zeros, err := plain.EncodeAll(make([]byte, 64<<20), nil)
	if err != nil {
		t.Fatal(err)
	}
	small, _ := plain.EncodeAll([]byte("hello, world"), nil)
	// A frame whose window is larger than the 8 MiB limit.
	wide, err := zstd.NewWriter(nil, zstd.WithWindowSize(32<<20), zstd.WithEncoderCRC(false), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	noise := make([]byte, 20<<20)
	for i := range noise {
		noise[i] = byte(r.Uint32() >> 28) // compressible, with long-distance matches
	}
	copy(noise[16<<20:], noise[:1<<20])
	wideFrame := wide.EncodeAll(noise, nil)
	full := trained(t)
	dictFrame, _ := mustCodec(t, full, 3).EncodeAll(jsonSamples(r, 1)[0], nil)

	cases := []struct {
		name  string
		codec *Codec
		frame []byte
		want  uint64
		err   string
	}{
		{"bomb: 64 MiB declared as 1 KiB", plain, zeros, 1024, "past the declared"},
		{"declared longer than the content", plain, small, 13, "12 bytes decompressed"},
		{"declared shorter than the content", plain, small, 11, "past the declared"},
		{"window over the limit", plain, wideFrame, uint64(len(noise)), "window"},
		{"not a frame", plain, []byte("definitely not zstd"), 19, "zstd"},
		{"not a frame, with a dictionary", mustCodec(t, full, 3), []byte("definitely not zstd"), 19, "not a zstd frame"},
		{"truncated header, with a dictionary", mustCodec(t, full, 3), dictFrame[:3], 10, "header"},
		{"truncated frame", plain, zeros[:len(zeros)/2], 64 << 20, "zstd"},
		{"dictionary frame decoded without it", plain, dictFrame, 100, "zstd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.codec.DecodeAll(tc.frame, tc.want)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.err)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.err)
			}
		})
	}
	// The decoder that failed is not reused in a broken state.
	if got, err := plain.DecodeAll(small, 12); err != nil || string(got) != "hello, world" {
		t.Fatalf("after the failures: %q, %v", got, err)
	}
}

func TestHeaderRewrite(t *testing.T) {
	// Hand-made headers for every dictionary-id width, with and without a
	// window descriptor.
	cases := []struct {
		name   string
		header []byte
	}{
		{"no id, window descriptor", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58}},
		{"no id, single segment", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05}},
		{"1-byte id", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x58, 0x07}},
		{"2-byte id, single segment", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x22, 0x07, 0x01, 0x05}},
		{"4-byte id", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x03, 0x58, 1, 2, 3, 4}},
	}
	body := []byte("rest of the frame")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frame := append(bytes.Clone(tc.header), body...)
			h, _ := parseHeader(frame)
			r, err := withDictID(bytes.NewReader(frame), 0xA1B2C3D4)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := got.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
			want := append([]byte{}, frame[:4]...)
			want = append(want, frame[4]|3)
			want = append(want, frame[5:5+h.wdLen]...)
			want = binary.LittleEndian.AppendUint32(want, 0xA1B2C3D4)
			want = append(want, frame[5+h.wdLen+h.didLen:]...)
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("with id:\n got %x\nwant %x", got.Bytes(), want)
			}
			stripped := stripDictID(bytes.Clone(got.Bytes()), 0)
			noID := append(append(append(append([]byte{}, frame[:4]...), frame[4]&^3), frame[5:5+h.wdLen]...), frame[5+h.wdLen+h.didLen:]...)
			if !bytes.Equal(stripped, noID) {
				t.Fatalf("stripped:\n got %x\nwant %x", stripped, noID)
			}
			// The streaming stripper, fed one byte at a time.
			var sw bytes.Buffer
			s := &stripWriter{w: &sw}
			for _, b := range got.Bytes() {
				if _, err := s.Write([]byte{b}); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(sw.Bytes(), noID) {
				t.Fatalf("stripWriter:\n got %x\nwant %x", sw.Bytes(), noID)
			}
		})
	}
}

func TestParse(t *testing.T) {
	good := trained(t).Bytes()
	corrupt := bytes.Clone(good)
	for i := 8; i < 200; i++ {
		corrupt[i] = 0xff
	}
	zeroID := bytes.Clone(good)
	binary.LittleEndian.PutUint32(zeroID[4:], 0)
	cases := []struct {
		name string
		in   []byte
		ok   bool
		raw  bool
	}{
		{"trained", good, true, false},
		{"raw content", []byte("some history to match against"), true, true},
		{"too short for raw content", []byte("short"), false, false},
		{"empty", nil, false, false},
		{"corrupt entropy tables", corrupt, false, false},
		{"full dictionary with id 0", zeroID, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("Parse: %v, want ok=%t", err, tc.ok)
			}
			if err != nil {
				return
			}
			if d.Raw() != tc.raw || d.SHA512() != sha512.Sum512(tc.in) || !bytes.Equal(d.Bytes(), tc.in) {
				t.Fatalf("Parse: raw=%t sha/bytes mismatch", d.Raw())
			}
		})
	}
}

func TestTrainOnAwkwardSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	random := make([][]byte, 300)
	for i := range random {
		random[i] = make([]byte, 32+r.IntN(400))
		for j := range random[i] {
			random[i][j] = byte(r.Uint32())
		}
	}
	cases := []struct {
		name    string
		samples [][]byte
	}{
		{"identical", bytes.Fields(bytes.Repeat([]byte("same-message-every-time "), 2000))},
		{"random bytes", random},
		{"one sample", [][]byte{bytes.Repeat([]byte("x"), 100)}},
		{"none", nil},
		{"zeros", [][]byte{make([]byte, 1024), make([]byte, 1024), make([]byte, 1024)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Train(tc.samples, 16384, 3)
			if err != nil {
				return // refusing is fine; crashing is not
			}
			c := mustCodec(t, d, 3)
			for _, s := range tc.samples[:min(len(tc.samples), 5)] {
				f, err := c.EncodeAll(s, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := c.DecodeAll(f, uint64(len(s))); err != nil || !bytes.Equal(got, s) {
					t.Fatalf("round trip: %v", err)
				}
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	c := mustCodec(f, nil, 3)
	d := trained(f)
	cd := mustCodec(f, d, 3)
	for _, s := range []string{"", "hello", strings.Repeat("ab", 5000)} {
		fr, _ := c.EncodeAll([]byte(s), nil)
		f.Add(fr, uint32(len(s)), false)
		fr, _ = cd.EncodeAll([]byte(s), nil)
		f.Add(fr, uint32(len(s)), true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, want uint32, dict bool) {
		codec := c
		if dict {
			codec = cd
		}
		out, err := codec.DecodeAll(frame, uint64(want%(1<<20)))
		if err == nil && uint64(len(out)) != uint64(want%(1<<20)) {
			t.Fatalf("decoded %d bytes, declared %d", len(out), want%(1<<20))
		}
	})
}

func TestRawFromSamples(t *testing.T) {
	full := trained(t).Bytes()
	for _, tc := range []struct {
		name    string
		samples [][]byte
		max     int
		want    []byte
	}{
		{"newest samples, cut to the size", [][]byte{[]byte("aaaaaaaa"), []byte("bbbbbbbb"), []byte("cccccccc")}, 12, []byte("bbbbcccccccc")},
		{"all of them when they fit", [][]byte{[]byte("aaaaaaaa"), []byte("bbbbbbbb")}, 100, []byte("aaaaaaaabbbbbbbb")},
		{"not mistaken for a full dictionary", [][]byte{full[:20]}, 100, full[1:20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Raw(tc.samples, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Raw() || !bytes.Equal(d.Bytes(), tc.want) {
				t.Fatalf("got %q (raw %t), want %q", d.Bytes(), d.Raw(), tc.want)
			}
		})
	}
	if _, err := Raw([][]byte{[]byte("abc")}, 100); err == nil {
		t.Fatal("a 3-byte raw dictionary was accepted")
	}
	// Samples all alike (the builder refuses those): the raw dictionary
	// shrinks them to almost nothing.
	zeros := [][]byte{make([]byte, 1024), make([]byte, 1024), make([]byte, 1024)}
	d, err := Raw(zeros, 16384)
	if err != nil {
		t.Fatal(err)
	}
	f, err := mustCodec(t, d, 3).EncodeAll(zeros[0], nil)
	if err != nil || len(f) > 32 {
		t.Fatalf("1024 zeros with a raw dictionary of zeros: %d bytes, %v", len(f), err)
	}
}
