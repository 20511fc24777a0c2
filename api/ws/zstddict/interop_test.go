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

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// The live half of the Python interop (make test-interop; needs Debian's
// python3-zstandard, the library the Python client uses): dictionaries
// made here (trained, and raw content) are loaded and precomputed by
// libzstd as the Python client does, frames written here decode there, and
// frames written there with them decode here.
const interopScript = `
import json, sys, zstandard
d = json.load(open(sys.argv[1]))
msgs = [bytes.fromhex(m) for m in d["messages"]]
out = {}
for kind, c in d["codecs"].items():
    kw = dict(level=3, write_checksum=False, write_content_size=False, write_dict_id=False)
    dkw = dict(max_window_size=8 << 20)
    if c["dict"]:
        zd = zstandard.ZstdCompressionDict(bytes.fromhex(c["dict"]))
        zd.precompute_compress(level=3)
        kw["dict_data"] = dkw["dict_data"] = zd
    dec = zstandard.ZstdDecompressor(**dkw)
    for i, frame in enumerate(c["frames"]):
        if dec.stream_reader(bytes.fromhex(frame)).read() != msgs[i]:
            sys.exit("python decoded %s frame %d wrongly" % (kind, i))
    comp = zstandard.ZstdCompressor(**kw)
    out[kind] = [comp.compress(m).hex() for m in msgs]
json.dump(out, open(sys.argv[2], "w"))
`

func TestPythonInterop(t *testing.T) {
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import zstandard").CombinedOutput(); err != nil {
		t.Fatalf("this test needs python3-zstandard (apt-get install python3-zstandard): %v\n%s", err, out)
	}
	r := rand.New(rand.NewPCG(11, 12))
	msgs := jsonSamples(r, 50)
	msgs = append(msgs, bytes.Repeat([]byte("0123456789"), 400000)) // several blocks
	raw, err := Raw(jsonSamples(r, 100), 4096)
	if err != nil {
		t.Fatal(err)
	}
	codecs := map[string]*Codec{"plain": mustCodec(t, nil, 3), "trained": mustCodec(t, trained(t), 3), "raw": mustCodec(t, raw, 3)}
	type codecIn struct {
		Dict   string   `json:"dict"`
		Frames []string `json:"frames"`
	}
	in := struct {
		Messages []string           `json:"messages"`
		Codecs   map[string]codecIn `json:"codecs"`
	}{Codecs: map[string]codecIn{}}
	for _, m := range msgs {
		in.Messages = append(in.Messages, hex.EncodeToString(m))
	}
	for kind, c := range codecs {
		var ci codecIn
		if d := c.Dict(); d != nil {
			ci.Dict = hex.EncodeToString(d.Bytes())
		}
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
			ci.Frames = append(ci.Frames, hex.EncodeToString(f))
		}
		in.Codecs[kind] = ci
	}
	dir := t.TempDir()
	inPath, outPath, script := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json"), filepath.Join(dir, "interop.py")
	b, _ := json.Marshal(in)
	if err := os.WriteFile(inPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(interopScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(python, script, inPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	b, err = os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string][]string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for kind, c := range codecs {
		if len(back[kind]) != len(msgs) {
			t.Fatalf("%s: python returned %d frames", kind, len(back[kind]))
		}
		for i, f := range back[kind] {
			got, err := c.DecodeAll(wiretest.Hex(t, f), uint64(len(msgs[i])))
			if err != nil || !bytes.Equal(got, msgs[i]) {
				t.Fatalf("%s frame %d from python: %v", kind, i, err)
			}
		}
	}
}
