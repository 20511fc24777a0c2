package auth

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	vecSecretB = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
	vecSecretS = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-fw"
)

func TestWriteSecretsFileLayout(t *testing.T) {
	dir := t.TempDir()
	// What Python's json.dumps(..., indent=2) + "\n" writes for the same
	// content (generated with CPython 3.11).
	const want = `{
  "version": "2",
  "to-broadcaster": {
    "type": "hmac",
    "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
  },
  "to-subscriber": {
    "type": "token",
    "secret": "tok"
  }
}
`
	for _, tc := range []struct {
		name           string
		s              Secrets
		includeCluster bool
		want           string
	}{
		{"reference", Secrets{ToBroadcaster: SecretSpec{"hmac", vecSecretB}, ToSubscriber: SecretSpec{"token", "tok"}, Cluster: "c"}, false, want},
		{"with cluster", Secrets{ToBroadcaster: SecretSpec{"hmac", vecSecretB}, ToSubscriber: SecretSpec{"token", "tok"}, Cluster: "c"}, true,
			strings.TrimSuffix(want, "\n}\n") + ",\n  \"cluster\": \"c\"\n}\n"},
		{"none omitted", Secrets{ToBroadcaster: SecretSpec{Type: "none"}, ToSubscriber: SecretSpec{"token", "tok"}}, true,
			"{\n  \"version\": \"2\",\n  \"to-subscriber\": {\n    \"type\": \"token\",\n    \"secret\": \"tok\"\n  }\n}\n"},
		{"all none", Secrets{}, false, "{\n  \"version\": \"2\"\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := WriteSecretsFile(p, tc.s, tc.includeCluster); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestPyJSONString(t *testing.T) {
	// Reference output of CPython json.dumps for the same string.
	in := "a\"b\\c\n\t\x00\x1f\x7f\u00e9\u20ac\U0001F600<>&/\b\f\r\u2028"
	want := `"a\"b\\c\n\t\u0000\u001f\u007f\u00e9\u20ac\ud83d\ude00<>&/\b\f\r\u2028"`
	if got := pyJSONString(in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestSecretsFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	hm, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(hm) != 86 || strings.ContainsAny(hm, "+/=") {
		t.Fatalf("secret %q is not 86 unpadded url-safe characters", hm)
	}
	if other, _ := GenerateSecret(); other == hm {
		t.Fatal("two secrets alike")
	}
	in := Secrets{ToBroadcaster: SecretSpec{"hmac", hm}, ToSubscriber: SecretSpec{"token", "tok é\"\\"}, Cluster: "c"}
	b := filepath.Join(dir, "broadcaster-secrets.json")
	s := filepath.Join(dir, "subscriber-secrets.json")
	if err := WriteSecretsFile(b, in, true); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretsFile(s, in, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b, s} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", p, st.Mode())
		}
	}
	before, _ := os.ReadFile(s)
	if err := WriteSecretsFile(s, Secrets{}, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	if after, _ := os.ReadFile(s); string(after) != string(before) {
		t.Fatal("refused overwrite still changed the file")
	}
	got, err := LoadSecrets(b)
	if err != nil || got != in {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	got, err = LoadSecrets(s)
	want := in
	want.Cluster = ""
	if err != nil || got != want {
		t.Fatalf("subscriber file %+v, %v", got, err)
	}
	if raw, _ := os.ReadFile(s); strings.Contains(string(raw), "cluster") {
		t.Fatalf("cluster secret in the subscriber file:\n%s", raw)
	}
}

func TestWriteSecretsFileRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		s    Secrets
	}{
		{"short hmac", Secrets{ToBroadcaster: SecretSpec{"hmac", "AAAA"}}},
		{"empty token", Secrets{ToSubscriber: SecretSpec{"token", ""}}},
		{"unknown type", Secrets{ToSubscriber: SecretSpec{"rsa", "x"}}},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		if err := WriteSecretsFile(p, tc.s, false); err == nil {
			t.Errorf("%s: written", tc.name)
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: file left behind", tc.name)
		}
	}
}

func TestLoadSecretsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, field, want string }{
		{"not json", "{", "", "not a JSON object"},
		{"json array", "[]", "", "not a JSON object"},
		{"no version", `{}`, "version", `missing; want the string "2"`},
		{"version number", `{"version": 2}`, "version", `is 2; want the string "2"`},
		{"version 1", `{"version": "1"}`, "version", `is "1"; want the string "2"`},
		{"direction not object", `{"version":"2","to-subscriber":"hmac"}`, "to-subscriber", "must be an object"},
		{"direction null", `{"version":"2","to-subscriber":null}`, "to-subscriber", "must be an object"},
		{"missing type", `{"version":"2","to-broadcaster":{"secret":"x"}}`, "to-broadcaster", `missing "type"`},
		{"unknown type", `{"version":"2","to-broadcaster":{"type":"rsa","secret":"x"}}`, "to-broadcaster", `unknown type "rsa"`},
		{"type case", `{"version":"2","to-broadcaster":{"type":"HMAC","secret":"x"}}`, "to-broadcaster", `unknown type "HMAC"`},
		{"missing secret", `{"version":"2","to-subscriber":{"type":"hmac"}}`, "to-subscriber", `missing "secret"`},
		{"secret not string", `{"version":"2","to-subscriber":{"type":"token","secret":5}}`, "to-subscriber", "must be an object"},
		{"short hmac", `{"version":"2","to-subscriber":{"type":"hmac","secret":"AAAA"}}`, "to-subscriber", "decodes to 3 bytes, want 64"},
		{"long hmac", `{"version":"2","to-subscriber":{"type":"hmac","secret":"` + vecSecretS + `AAAA"}}`, "to-subscriber", "decodes to 67 bytes, want 64"},
		{"bad base64", `{"version":"2","to-subscriber":{"type":"hmac","secret":"***"}}`, "to-subscriber", "not url-safe base64"},
		{"empty token", `{"version":"2","to-subscriber":{"type":"token","secret":""}}`, "to-subscriber", "token secret is empty"},
		{"empty cluster", `{"version":"2","cluster":""}`, "cluster", "non-empty string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadSecrets(p)
			if !errors.Is(err, ErrInvalidSecrets) {
				t.Fatalf("error %v does not wrap ErrInvalidSecrets", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, p) || (tc.field != "" && !strings.Contains(msg, `"`+tc.field+`"`)) {
				t.Fatalf("error %q, want one naming %s, field %q and %q", msg, p, tc.field, tc.want)
			}
		})
	}
	_, err := LoadSecrets(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalidSecrets) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestLoadSecretsLenient(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          Secrets
	}{
		// Missing directions mean none; unknown keys (gencluster's
		// "incoming") are ignored.
		{"minimal", `{"version":"2","incoming":{"type":"token","secret":"x"}}`, Secrets{ToBroadcaster: SecretSpec{Type: "none"}, ToSubscriber: SecretSpec{Type: "none"}}},
		{"explicit none without secret", `{"version":"2","to-broadcaster":{"type":"none"}}`, Secrets{ToBroadcaster: SecretSpec{Type: "none"}, ToSubscriber: SecretSpec{Type: "none"}}},
		{"padded hmac", `{"version":"2","to-subscriber":{"type":"hmac","secret":"` + vecSecretS + `=="}}`, Secrets{ToBroadcaster: SecretSpec{Type: "none"}, ToSubscriber: SecretSpec{"hmac", vecSecretS + "=="}}},
		{"lonelypst compact dump", `{"version": "2", "to-broadcaster": {"type": "hmac", "secret": "` + vecSecretB + `"}, "to-subscriber": {"type": "token", "secret": "t"}}`,
			Secrets{ToBroadcaster: SecretSpec{"hmac", vecSecretB}, ToSubscriber: SecretSpec{"token", "t"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			_ = os.WriteFile(p, []byte(tc.content), 0o600)
			got, err := LoadSecrets(p)
			if err != nil || got != tc.want {
				t.Fatalf("%+v %v", got, err)
			}
			if _, err := got.NewPair(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A file with the vector secrets drives a Pair that reproduces the
// vectors, and token/none directions behave as such.
func TestSecretsPair(t *testing.T) {
	ctx := context.Background()
	clock := fixedClock(vectorNow)
	s := Secrets{ToBroadcaster: SecretSpec{"hmac", vecSecretB}, ToSubscriber: SecretSpec{"hmac", vecSecretS}}
	p, err := s.Pair(NewMemoryReplayStore(clock), WithClock(clock), WithNonce(func() string { return "AbCdEf" }))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vectors() {
		if h, err := p.Authorize(v.msg); err != nil || h != v.header {
			t.Fatalf("%s: %q %v", v.name, h, err)
		}
		if r := p.Verify(ctx, v.msg, v.header); r != OK {
			t.Fatalf("%s: %s", v.name, r)
		}
	}

	p, err = Secrets{ToBroadcaster: SecretSpec{"token", "t"}}.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := p.Authorize(Notify{}); h != "Bearer t" {
		t.Fatalf("token direction: %q", h)
	}
	if r := p.Verify(ctx, Receive{}, ""); r != OK {
		t.Fatalf("zero-value direction is not none: %s", r)
	}

	for _, bad := range []Secrets{
		{ToBroadcaster: SecretSpec{"hmac", "AAAA"}},
		{ToSubscriber: SecretSpec{"rsa", "x"}},
		{ToSubscriber: SecretSpec{"token", ""}},
	} {
		if _, err := bad.Pair(NewMemoryReplayStore(time.Now)); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := (Secrets{ToBroadcaster: SecretSpec{"hmac", "AAAA"}}).Pair(nil); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("bad hmac secret: %v", err)
	}
}
