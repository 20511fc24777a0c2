package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func dictEvent(i int) []byte {
	return fmt.Appendf(nil, `{"type":"jwt_revoked","seq":%d,"subject":"user-%d","issuer":"https://auth.internal","reason":"%s"}`,
		i, i*7919%100000, []string{"logout", "password_changed", "admin"}[i%3])
}

// writeDict makes a dictionary the way a user would: samples in a file,
// one per line, through `lonelypsd train-dict`. It returns the file and
// what it holds.
func writeDict(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	var samples bytes.Buffer
	for i := range 3000 {
		samples.Write(dictEvent(i))
		samples.WriteByte('\n')
	}
	in, path := filepath.Join(dir, "samples.jsonl"), filepath.Join(dir, "events.zdict")
	if err := os.WriteFile(in, samples.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := cli(t, "train-dict", "--lines", "--out", path, in); code != 0 || !strings.Contains(out, "from 3000 samples") {
		t.Fatalf("train-dict: exit %d\n%s%s", code, out, errs)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zstddict.Parse(b); err != nil || len(b) < 256 {
		t.Fatalf("train-dict wrote %d bytes that do not parse as a dictionary: %v", len(b), err)
	}
	return path, b
}

func TestTrainDictRefusals(t *testing.T) {
	dir := t.TempDir()
	existing, before := writeDict(t, dir)
	samples := filepath.Join(dir, "samples.jsonl")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"existing output", []string{"--lines", "--out", existing, samples}, "file exists"},
		{"missing samples", []string{"--out", filepath.Join(dir, "x.zdict"), filepath.Join(dir, "nope")}, "no such file"},
		{"no samples given", []string{"--out", filepath.Join(dir, "x.zdict")}, "Usage"},
		{"size out of range", []string{"--size", "10", "--out", filepath.Join(dir, "x.zdict"), samples}, "--size must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := cli(t, append([]string{"train-dict"}, tc.args...)...)
			if code == 0 || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, output:\n%s%s\nwant it to fail saying %q", code, out, errs, tc.want)
			}
		})
	}
	if after, _ := os.ReadFile(existing); !bytes.Equal(after, before) {
		t.Fatal("the existing dictionary was overwritten")
	}
}

// The binary's dictionary flags: a preset from a file is used for a
// websocket naming it; training at the configured watermarks gives a
// websocket that asks for it a dictionary.
func TestWebsocketDictionariesFromFlags(t *testing.T) {
	dir := t.TempDir()
	path, preset := writeDict(t, dir)
	p := startNode(t, filepath.Join(dir, "data"), "--ws-preset-dict", "7:3:"+path,
		"--ws-training-low-watermark", "4096", "--ws-training-high-watermark", "1000000")
	ctx := ctxT(t)
	withPreset := dialWS(t, p, wsclient.Options{EnableZstd: true, NoTraining: true, InitialDict: 7, PresetDicts: map[uint64][]byte{7: preset}})
	training := dialWS(t, p, wsclient.Options{EnableZstd: true})
	for _, c := range []*wsclient.Conn{withPreset, training} {
		if err := c.SubscribeExact(ctx, []byte("revoked")); err != nil {
			t.Fatal(err)
		}
	}
	// The training connection's dictionary is built in the background
	// after 4 KiB: send (a bounded number) until a message arrives with it.
	var lastTrained uint64
	for i := 0; i < 200 || lastTrained == 0 && i < 3000; i++ {
		msg := dictEvent(100000 + i)
		if got, err := p.Client().Notify(ctx, []byte("revoked"), msg); err != nil || got != 2 {
			t.Fatalf("notify %d: %d, %v", i, got, err)
		}
		if m := lonelypsdtest.NextMessage(t, withPreset, 5*time.Second); !bytes.Equal(m.Data, msg) || m.Compressor != 7 {
			t.Fatalf("preset connection, message %d: compressor %d, equal %t", i, m.Compressor, bytes.Equal(m.Data, msg))
		}
		m := lonelypsdtest.NextMessage(t, training, 5*time.Second)
		if !bytes.Equal(m.Data, msg) {
			t.Fatalf("training connection, message %d differs", i)
		}
		lastTrained = m.Compressor
	}
	if lastTrained != 65536 || !slices.Contains(training.Compressors(), 65536) {
		t.Fatalf("training connection: last message with compressor %d, compressors %v", lastTrained, training.Compressors())
	}
}

func TestBadPresetDictionaryStopsStartUp(t *testing.T) {
	dir := t.TempDir()
	good, _ := writeDict(t, dir)
	corrupt := filepath.Join(dir, "corrupt.zdict")
	b, _ := os.ReadFile(good)
	if err := os.WriteFile(corrupt, append(b[:8:8], make([]byte, 400)...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, flag, want string
	}{
		{"reserved id", "1:3:" + good, "the id must be 2..65535"},
		{"no level", "7:" + good, "want ID:LEVEL:FILE"},
		{"missing file", "7:3:" + filepath.Join(dir, "nope.zdict"), "no such file"},
		{"corrupt dictionary", "7:3:" + corrupt, "preset dictionary 7"},
		{"same id twice", "7:3:" + good + ",7:3:" + good, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := refusedStart(t, "dev", "--ws-preset-dict", tc.flag)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output does not say what is wrong (want %q):\n%s", tc.want, out)
			}
		})
	}
}
