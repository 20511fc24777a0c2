package ws

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// event is a small message of the kind dictionaries are for: JSON with
// the same keys every time.
func event(r *rand.Rand, i int) []byte {
	return fmt.Appendf(nil, `{"type":"cache_bust","seq":%d,"key":"tenant-%d/user-%d/profile","node":"cache-%d.eu-west.internal","reason":"%s"}`,
		i, r.IntN(40), r.IntN(100000), r.IntN(12), []string{"updated", "deleted", "expired"}[r.IntN(3)])
}

func trainedDict(t *testing.T, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	var samples [][]byte
	for i := range 2000 {
		samples = append(samples, event(r, i))
	}
	d, err := zstddict.Train(samples, 16384, 3)
	if err != nil {
		t.Fatal(err)
	}
	return d.Bytes()
}

// Both ends train, with watermarks small enough to go through the whole
// schedule: a low-watermark dictionary, a high-watermark one, then (the
// retrain interval being short) new ones, each withdrawing the oldest.
// Every message arrives intact and in order, compressed with the newest
// dictionary once it is announced; a connection that did not ask for
// training gets none.
func TestTrainedDictionaries(t *testing.T) {
	n := startTestNode(t, nodeOptions{hmac: true, ws: func(c *Config) {
		c.TrainingLowWatermark = 8 << 10
		c.TrainingHighWatermark = 48 << 10
		c.RetrainInterval = time.Millisecond
	}})
	// Up to 6,000 signed round trips: a few seconds alone, minutes under
	// -race on a busy two-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	notifier := n.dial(wsclient.Options{EnableZstd: true, CompressNotifies: true})
	sub := n.dial(wsclient.Options{EnableZstd: true})
	plain := n.dial(wsclient.Options{EnableZstd: true, NoTraining: true})
	for _, c := range []*wsclient.Conn{sub, plain} {
		if err := c.SubscribeExact(ctx, []byte("events")); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	seen := map[uint64]int{}       // compressor -> messages received with it by sub
	notifyWith := map[uint64]int{} // the notifier's preferred compressor when it sent
	var subWire, plainWire []int   // websocket bytes of each message
	// Dictionaries are built in the background, so how many messages it
	// takes to see the third one depends on the machine: at least 1,500,
	// until both connections have used it, at most 6,000.
	for i := 0; i < 1500 || (seen[65538] == 0 || notifyWith[65538] == 0) && i < 6000; i++ {
		msg := event(r, i)
		if ids := notifier.Compressors(); len(ids) > 0 {
			notifyWith[ids[0]]++
		}
		if got, err := notifier.Notify(ctx, []byte("events"), msg); err != nil || got != 2 {
			t.Fatalf("notify %d: %d, %v", i, got, err)
		}
		for _, c := range []*wsclient.Conn{sub, plain} {
			m := next(t, c, 5*time.Second)
			if !bytes.Equal(m.Data, msg) {
				t.Fatalf("message %d: got %q, want %q", i, m.Data, msg)
			}
			if c == plain && m.Compressor != 0 {
				t.Fatalf("message %d reached the non-training connection with compressor %d", i, m.Compressor)
			}
			if c == sub {
				seen[m.Compressor]++
			}
			if c == sub {
				subWire = append(subWire, m.MaxPart)
			} else {
				plainWire = append(plainWire, m.MaxPart)
			}
		}
	}
	t.Logf("subscriber received by compressor: %v; notifier preferred: %v", seen, notifyWith)
	if trained, skipped, failed := n.hub.TrainingStats(); trained < 6 || skipped != 0 || failed != 0 {
		t.Fatalf("dictionaries: %d trained, %d skipped, %d failed", trained, skipped, failed)
	}
	// The low-watermark dictionary, the high-watermark one, and at least
	// one retrained after them, each used.
	for _, id := range []uint64{65536, 65537, 65538} {
		if seen[id] == 0 {
			t.Fatalf("no message arrived compressed with dictionary %d: %v", id, seen)
		}
		if notifyWith[id] == 0 {
			t.Fatalf("the notifier never compressed with dictionary %d: %v", id, notifyWith)
		}
	}
	ids := sub.Compressors()
	customs := slices.DeleteFunc(slices.Clone(ids), func(id uint64) bool { return id < 65536 })
	if len(customs) != 2 || customs[0] >= customs[1] || !slices.Contains(ids, 1) {
		t.Fatalf("compressors in use at the end: %v, want compressor 1 and the two newest dictionaries", ids)
	}
	if got := plain.Compressors(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("non-training connection has compressors %v", got)
	}
	// Dictionaries pay, headers included: the last 500 messages.
	sum := func(sizes []int) (n int) {
		for _, x := range sizes[len(sizes)-500:] {
			n += x
		}
		return n
	}
	withDicts, without := sum(subWire), sum(plainWire)
	t.Logf("last 500 messages: %d websocket bytes with dictionaries, %d without", withDicts, without)
	if withDicts*10 > without*9 {
		t.Fatalf("dictionaries saved too little: %d bytes with them, %d without", withDicts, without)
	}
	for _, c := range []*wsclient.Conn{notifier, sub, plain} {
		_ = c.Close()
	}
	waitFor(t, "training samples released", func() bool { return n.hub.sampleMem.Load() == 0 })
}

// A preset dictionary named in CONFIGURE is announced with
// ENABLE_ZSTD_PRESET and used both ways, from 32 bytes up; a full
// dictionary and raw content alike. An id the node does not have ends the
// connection before it is confirmed.
func TestPresetDictionaries(t *testing.T) {
	full := trainedDict(t, 5)
	raw := bytes.Repeat([]byte(`{"type":"cache_bust","seq":,"key":"tenant-/user-/profile","node":"cache-.eu-west.internal","reason":""}`), 4)
	for _, tc := range []struct {
		name string
		dict []byte
	}{{"trained", full}, {"raw content", raw}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startTestNode(t, nodeOptions{ws: func(c *Config) {
				c.PresetDicts = []PresetDict{{ID: 300, Level: 5, Dict: tc.dict}, {ID: 2, Level: 3, Dict: trainedDict(t, 6)}}
			}})
			ctx := ctxT(t)
			opts := wsclient.Options{EnableZstd: true, NoTraining: true, CompressNotifies: true, InitialDict: 300,
				PresetDicts: map[uint64][]byte{300: tc.dict}}
			notifier, sub := n.dial(opts), n.dial(opts)
			if err := sub.SubscribeExact(ctx, []byte("p")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the preset announced", func() bool {
				return slices.Equal(sub.Compressors(), []uint64{300, 1}) && slices.Equal(notifier.Compressors(), []uint64{300, 1})
			})
			r := rand.New(rand.NewPCG(2, 2))
			big := bytes.Repeat(event(r, 0), 2000)
			for i, msg := range [][]byte{event(r, 1), event(r, 2), big, []byte("tiny")} {
				if got, err := notifier.Notify(ctx, []byte("p"), msg); err != nil || got != 1 {
					t.Fatalf("websocket notify %d: %d, %v", i, got, err)
				}
				if got, err := n.client().Notify(ctx, []byte("p"), msg); err != nil || got != 1 {
					t.Fatalf("HTTP notify %d: %d, %v", i, got, err)
				}
				for range 2 {
					m := next(t, sub, 5*time.Second)
					if !bytes.Equal(m.Data, msg) {
						t.Fatalf("message %d differs", i)
					}
					want := uint64(300)
					if len(msg) < minCompressSize {
						want = 0
					}
					if m.Compressor != want {
						t.Fatalf("message %d (%d bytes) arrived with compressor %d, want %d", i, len(msg), m.Compressor, want)
					}
				}
			}
			_, err := wsclient.Dial(ctx, n.wsURL, wsclient.Options{EnableZstd: true, InitialDict: 301})
			if err == nil || !strings.Contains(err.Error(), "unknown preset dictionary 301") {
				t.Fatalf("dial naming an unknown preset: %v", err)
			}
		})
	}
}

func TestPresetConfigRefused(t *testing.T) {
	good := trainedDict(t, 7)
	for _, tc := range []struct {
		name    string
		presets []PresetDict
		want    string
	}{
		{"id 1 is compressor 1", []PresetDict{{ID: 1, Level: 3, Dict: good}}, "must be 2..65535"},
		{"id 65536 is a trained one", []PresetDict{{ID: 65536, Level: 3, Dict: good}}, "must be 2..65535"},
		{"twice", []PresetDict{{ID: 9, Level: 3, Dict: good}, {ID: 9, Level: 3, Dict: good}}, "given twice"},
		{"too short", []PresetDict{{ID: 9, Level: 3, Dict: []byte("abc")}}, "at least 8"},
		{"corrupt", []PresetDict{{ID: 9, Level: 3, Dict: append(bytes.Clone(good[:8]), make([]byte, 300)...)}}, "preset dictionary 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{NodeID: "n", AdvertiseHTTP: "127.0.0.1:1", PresetDicts: tc.presets}, nil, nil, nil, auth.NonePair(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// serverConn returns the node's only connection once CONFIGURE is done
// with it: what configure wrote is then ordered before what the test does
// with it (the bytes the test read off the socket are not, for the race
// detector, when the node wrote them with raw system calls).
func (n *testNode) serverConn() *conn {
	n.t.Helper()
	var c *conn
	waitFor(n.t, "the connection configured", func() bool {
		n.hub.mu.Lock()
		defer n.hub.mu.Unlock()
		for x := range n.hub.conns {
			c = x
		}
		return len(n.hub.conns) == 1 && c.configured.Load()
	})
	return c
}

// Withdrawal, on the wire: a third dictionary is announced after the
// oldest is withdrawn; a NOTIFY compressed with the withdrawn one (sent
// before the peer saw the withdrawal) is still decoded, one withdrawn
// earlier is refused and closes the connection.
func TestDictionaryWithdrawal(t *testing.T) {
	n := startTestNode(t, nodeOptions{hmac: true})
	r := n.dialRaw(true)
	if en, ok := r.read().(wsproto.EnableZstdPreset); !ok || en.Identifier != 1 {
		t.Fatalf("first message: %+v", en)
	}
	c := n.serverConn()
	bro := int64(2) // ENABLE_ZSTD_PRESET took 1
	dicts := map[uint64]*zstddict.Codec{}
	for i := range 4 {
		d, err := zstddict.Parse(trainedDict(t, uint64(10+i)))
		if err != nil {
			t.Fatal(err)
		}
		codec, err := zstddict.NewCodec(d, 3, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		id := uint64(65536 + i)
		dicts[id] = codec
		c.addCustom(&compressor{id: id, level: 3, min: minCompressSize, max: trainedMaxSize, codec: codec})
		if i >= 2 {
			dis, ok := r.read().(wsproto.DisableZstdCustom)
			if !ok || dis.Identifier != id-2 {
				t.Fatalf("expected DISABLE_ZSTD_CUSTOM %d, got %+v", id-2, dis)
			}
			if res := r.pair.Verify(t.Context(), auth.StatefulDisableZstdCustom{URL: auth.WebsocketURL(r.nonce, bro), CompressorID: uint32(id - 2)}, dis.Authorization); res != auth.OK {
				t.Fatalf("disable authorization: %s", res)
			}
			bro++
		}
		en, ok := r.read().(wsproto.EnableZstdCustom)
		if !ok || en.Identifier != id || en.MinSize != minCompressSize || en.MaxSize != trainedMaxSize || en.CompressionLevel != 3 {
			t.Fatalf("expected ENABLE_ZSTD_CUSTOM %d, got %+v", id, en)
		}
		if en.SHA512 != sha512.Sum512(en.Dictionary) || !bytes.Equal(en.Dictionary, d.Bytes()) {
			t.Fatal("dictionary or its hash differs")
		}
		if res := r.pair.Verify(t.Context(), auth.StatefulEnableZstdCustom{URL: auth.WebsocketURL(r.nonce, bro), CompressorID: uint32(id),
			Level: 3, MinSize: minCompressSize, MaxSize: trainedMaxSize, DictSHA512: en.SHA512}, en.Authorization); res != auth.OK {
			t.Fatalf("enable authorization: %s", res)
		}
		bro++
	}
	// 65536 and 65537 are withdrawn, 65537 last: still decodable.
	hsub, hurl := httpSubscriber(t, n.clientAuth())
	if err := n.client().SubscribeExact(t.Context(), hurl, []byte("w"), ""); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 3))
	notify := func(id uint64, ident byte) {
		msg := event(rnd, int(ident))
		z, err := dicts[id].EncodeAll(msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha512.Sum512(z)
		a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("w"), Identifier: []byte{ident}, SHA512: sum})
		r.send(wsproto.Notify{Authorization: a, Identifier: []byte{ident}, Topic: []byte("w"), Compressor: id,
			CompressedLength: uint64(len(z)), DecompressedLength: uint64(len(msg)), CompressedSHA512: sum, Payload: z})
		if id == 65536 {
			return
		}
		if cn, ok := r.read().(wsproto.ConfirmNotify); !ok || cn.Subscribers != 1 {
			t.Fatalf("confirm notify with %d: %+v", id, cn)
		}
		if got := hsub.Received(); !bytes.Equal(got[len(got)-1].Message, msg) {
			t.Fatalf("compressor %d: the subscriber got %q", id, got[len(got)-1].Message)
		}
	}
	notify(65539, 1)
	notify(65538, 2)
	notify(65537, 3)
	notify(65536, 4)
	r.expectClose(websocket.StatusProtocolError)
	if len(hsub.Received()) != 3 {
		t.Fatal("a message compressed with a withdrawn dictionary was delivered")
	}
}

func TestSpreadKeepsAnEvenSubset(t *testing.T) {
	mk := func(n, size int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = []byte(fmt.Sprintf("%0*d", size, i))
		}
		return out
	}
	for _, tc := range []struct {
		name            string
		n, size         int
		limit           int64
		wantN, wantStep int
	}{
		{"under the limit", 100, 10, 1000, 100, 1},
		{"exactly the limit", 100, 10, 1000, 100, 1},
		{"ten times the limit", 1000, 10, 1000, 100, 10},
		{"one sample over", 3, 100, 50, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mk(tc.n, tc.size)
			got := spread(s, int64(tc.n*tc.size), tc.limit)
			if len(got) != tc.wantN {
				t.Fatalf("%d samples kept, want %d", len(got), tc.wantN)
			}
			for i, g := range got {
				if !bytes.Equal(g, s[i*tc.wantStep]) {
					t.Fatalf("sample %d is %q, want %q", i, g, s[i*tc.wantStep])
				}
			}
		})
	}
}

// Samples stay in memory within the node's budget and go to a file past
// it; either way all of them come back, in order, and the budget is
// returned.
func TestSamplesSpillPastTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		memLimit int64
		n, size  int
		inFile   bool
	}{
		{"within both limits", 1 << 20, 100, 100, false},
		{"past the node's budget", 5000, 100, 100, true},
		{"past one connection's share", 1 << 30, 3000, 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mem atomic.Int64
			s := samples{dir: t.TempDir(), mem: &mem, memLimit: tc.memLimit}
			var want [][]byte
			for i := range tc.n {
				p := []byte(fmt.Sprintf("%0*d", tc.size, i))
				want = append(want, p)
				if err := s.add(p); err != nil {
					t.Fatal(err)
				}
			}
			if (s.f != nil) != tc.inFile {
				t.Fatalf("in a file: %t, want %t", s.f != nil, tc.inFile)
			}
			if mem.Load() > tc.memLimit || mem.Load() != int64(len(s.buf)) {
				t.Fatalf("%d bytes charged, %d held, budget %d", mem.Load(), len(s.buf), tc.memLimit)
			}
			got, err := s.all()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) || s.bytes != int64(tc.n*tc.size) {
				t.Fatalf("%d samples (%d bytes) back, want %d", len(got), s.bytes, len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("sample %d: %q", i, got[i])
				}
			}
			s.reset()
			if mem.Load() != 0 || s.f != nil || s.bytes != 0 {
				t.Fatalf("after reset: %d bytes charged", mem.Load())
			}
		})
	}
}

// trainingSubscriber starts a node that trains dictionaries at the two
// watermarks and subscribes a connection with zstd to topic.
func trainingSubscriber(t *testing.T, low, high int64, topic string) (*testNode, *wsclient.Conn) {
	t.Helper()
	n := startTestNode(t, nodeOptions{ws: func(c *Config) {
		c.TrainingLowWatermark, c.TrainingHighWatermark = low, high
	}})
	sub := n.dial(wsclient.Options{EnableZstd: true})
	if err := sub.SubscribeExact(ctxT(t), []byte(topic)); err != nil {
		t.Fatal(err)
	}
	return n, sub
}

// Random samples are not worth a dictionary: the connection is told
// nothing and keeps compressor 1 only; JSON samples get one.
func TestNoDictionaryForIncompressibleSamples(t *testing.T) {
	n, sub := trainingSubscriber(t, 16<<10, 64<<10, "r")
	ctx := ctxT(t)
	for i := range 100 {
		msg := randomBytes(t, 1024)
		if got, err := n.client().Notify(ctx, []byte("r"), msg); err != nil || got != 1 {
			t.Fatalf("notify %d: %d, %v", i, got, err)
		}
		if m := next(t, sub, 5*time.Second); !bytes.Equal(m.Data, msg) || m.Compressor != 0 {
			t.Fatalf("message %d: compressor %d", i, m.Compressor)
		}
	}
	if r := n.hub.compressibility([][]byte{randomBytes(t, 50000)}); r <= incompressible {
		t.Fatalf("random bytes compress to %.3f", r)
	}
	if r := n.hub.compressibility(bytes.Fields(bytes.Repeat([]byte(`{"key":"value"} `), 5000))); r > 0.5 {
		t.Fatalf("repetitive JSON compresses to %.3f only", r)
	}
	// Both watermarks were passed (100 KiB of samples): two dictionaries
	// considered, neither built.
	waitFor(t, "both dictionaries considered", func() bool {
		_, skipped, _ := n.hub.TrainingStats()
		return skipped == 2
	})
	if trained, _, failed := n.hub.TrainingStats(); trained != 0 || failed != 0 {
		t.Fatalf("%d trained, %d failed from random samples", trained, failed)
	}
	if ids := sub.Compressors(); !slices.Equal(ids, []uint64{1}) {
		t.Fatalf("compressors %v after random samples", ids)
	}
}

// Samples all alike (the same kilobyte of zeros) defeat the dictionary
// builder; the connection gets them as a raw-content dictionary instead,
// and the next such message travels in a few bytes.
func TestAlikeSamplesGetRawDictionary(t *testing.T) {
	n, sub := trainingSubscriber(t, 16<<10, 1<<20, "z")
	ctx := ctxT(t)
	zeros := make([]byte, 1024)
	// The dictionary is built in the background once 16 KiB have passed:
	// keep sending (a bounded number) until a message arrives with it.
	var last wsclient.Message
	for i := 0; i < 2000 && last.Compressor == 0; i++ {
		if got, err := n.client().Notify(ctx, []byte("z"), zeros); err != nil || got != 1 {
			t.Fatalf("notify %d: %d, %v", i, got, err)
		}
		last = next(t, sub, 5*time.Second)
		if !bytes.Equal(last.Data, zeros) {
			t.Fatalf("message %d differs", i)
		}
	}
	if last.Compressor != 65536 || last.MaxPart > 400 {
		t.Fatalf("last message: compressor %d, %d bytes on the wire", last.Compressor, last.MaxPart)
	}
	if trained, skipped, failed := n.hub.TrainingStats(); trained != 1 || skipped != 0 || failed != 0 {
		t.Fatalf("dictionaries: %d trained, %d skipped, %d failed", trained, skipped, failed)
	}
}
