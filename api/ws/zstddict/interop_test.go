//go:build interop

package zstddict

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The live half of the Python interop (make test-interop; needs Debian's
// python3-zstandard, the library the Python client uses): a dictionary
// trained here is loaded, precomputed and used by libzstd in both
// directions, and frames written here decode there.
const interopScript = `
import json, sys, zstandard
d = json.load(open(sys.argv[1]))
out = {"plain": [], "dict": []}
zd = zstandard.ZstdCompressionDict(bytes.fromhex(d["dict"]))
zd.precompute_compress(level=3)
for kind, zdict in (("plain", None), ("dict", zd)):
    dec = zstandard.ZstdDecompressor(dict_data=zdict, max_window_size=8 << 20) if zdict else zstandard.ZstdDecompressor(max_window_size=8 << 20)
    for frame, msg in zip(d[kind + "_frames"], d["messages"]):
        got = dec.stream_reader(bytes.fromhex(frame)).read()
        if got != bytes.fromhex(msg):
            sys.exit("python decoded a %s frame wrongly" % kind)
    kw = dict(level=3, write_checksum=False, write_content_size=False, write_dict_id=False)
    if zdict:
        kw["dict_data"] = zdict
    comp = zstandard.ZstdCompressor(**kw)
    out[kind] = [comp.compress(bytes.fromhex(m)).hex() for m in d["messages"]]
json.dump(out, open(sys.argv[2], "w"))
`

func TestPythonInterop(t *testing.T) {
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import zstandard").CombinedOutput(); err != nil {
		t.Fatalf("this test needs python3-zstandard (apt-get install python3-zstandard): %v\n%s", err, out)
	}
	d := trained(t)
	r := rand.New(rand.NewPCG(11, 12))
	msgs := jsonSamples(r, 50)
	msgs = append(msgs, bytes.Repeat([]byte("0123456789"), 400000)) // several blocks, streamed
	plain, withDict := mustCodec(t, nil, 3), mustCodec(t, d, 3)
	in := map[string]any{"dict": hex.EncodeToString(d.Bytes())}
	for kind, c := range map[string]*Codec{"plain": plain, "dict": withDict} {
		var frames, messages []string
		for i, m := range msgs {
			var f []byte
			if i%2 == 0 {
				f, _ = c.EncodeAll(m, nil)
			} else {
				var b bytes.Buffer
				w, err := c.NewWriter(&b)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(m); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				f = b.Bytes()
			}
			frames, messages = append(frames, hex.EncodeToString(f)), append(messages, hex.EncodeToString(m))
		}
		in[kind+"_frames"], in["messages"] = frames, messages
	}
	dir := t.TempDir()
	inPath, outPath, script := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json"), filepath.Join(dir, "interop.py")
	raw, _ := json.Marshal(in)
	if err := os.WriteFile(inPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(interopScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(python, script, inPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string][]string
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	for kind, c := range map[string]*Codec{"plain": plain, "dict": withDict} {
		if len(back[kind]) != len(msgs) {
			t.Fatalf("%s: python returned %d frames", kind, len(back[kind]))
		}
		for i, f := range back[kind] {
			got, err := c.DecodeAll(unhex(t, f), uint64(len(msgs[i])))
			if err != nil || !bytes.Equal(got, msgs[i]) {
				t.Fatalf("%s frame %d from python: %v", kind, i, err)
			}
		}
	}
}
