package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Scheme types of a secrets file.
const (
	TypeHMAC  = "hmac"
	TypeToken = "token"
	TypeNone  = "none"
)

// SecretSpec is one direction of a secrets file.
type SecretSpec struct {
	Type   string // "hmac", "token" or "none" ("" is read as none)
	Secret string // hmac: url-safe base64 of 64 bytes; token: sent verbatim
}

// Secrets is the content of a secrets file in the reference's format
// (version "2"), plus the cluster secret that only broadcasters hold.
type Secrets struct {
	ToBroadcaster SecretSpec
	ToSubscriber  SecretSpec
	// Cluster authenticates nodes to each other: the optional extra key
	// "cluster", which Python readers ignore. Never written to the
	// subscribers' file.
	Cluster string
}

// ErrInvalidSecrets is wrapped by every LoadSecrets error about the
// file's content (as opposed to reading it), so a caller can tell a typo
// from a missing file.
var ErrInvalidSecrets = errors.New("invalid secrets file")

// secretsError names the file and the field at fault.
type secretsError struct {
	path, field string
	err         error
}

func (e *secretsError) Error() string {
	if e.field == "" {
		return fmt.Sprintf("auth: secrets file %s: %v", e.path, e.err)
	}
	return fmt.Sprintf("auth: secrets file %s: %q: %v", e.path, e.field, e.err)
}

func (e *secretsError) Unwrap() []error { return []error{ErrInvalidSecrets, e.err} }

// LoadSecrets reads a secrets file as lonelypsc does: "version" must be
// the string "2"; a missing direction means none; unknown keys are
// ignored. It is stricter than the Python reader where that reader would
// crash later or fail at the first request: a direction must be an object
// with a known "type", an hmac secret must decode to 64 bytes, a token
// must not be empty.
func LoadSecrets(path string) (Secrets, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Secrets{}, fmt.Errorf("auth: read secrets file: %w", err)
	}
	bad := func(field string, err error) (Secrets, error) {
		return Secrets{}, &secretsError{path: path, field: field, err: err}
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return bad("", fmt.Errorf("not a JSON object: %w", err))
	}
	var version string
	if v, ok := doc["version"]; !ok {
		return bad("version", errors.New(`missing; want the string "2"`))
	} else if json.Unmarshal(v, &version) != nil || version != "2" {
		return bad("version", fmt.Errorf(`is %s; want the string "2"`, v))
	}
	var s Secrets
	for _, d := range []struct {
		key string
		dst *SecretSpec
	}{{"to-broadcaster", &s.ToBroadcaster}, {"to-subscriber", &s.ToSubscriber}} {
		*d.dst = SecretSpec{Type: TypeNone}
		v, ok := doc[d.key]
		if !ok {
			continue
		}
		var fs struct {
			Type   *string `json:"type"`
			Secret *string `json:"secret"`
		}
		if err := json.Unmarshal(v, &fs); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return bad(d.key, errors.New(`must be an object with "type" and "secret" strings`))
		}
		if fs.Type == nil {
			return bad(d.key, errors.New(`missing "type" (hmac, token or none)`))
		}
		spec := SecretSpec{Type: *fs.Type}
		if fs.Secret != nil {
			spec.Secret = *fs.Secret
		}
		switch spec.Type {
		case TypeNone:
			spec.Secret = "" // never used; the Python reader does not read it
		case TypeToken, TypeHMAC:
			if fs.Secret == nil {
				return bad(d.key, fmt.Errorf(`missing "secret" for type %s`, spec.Type))
			}
			if err := spec.validate(); err != nil {
				return bad(d.key, err)
			}
		default:
			return bad(d.key, fmt.Errorf("unknown type %q (want hmac, token or none)", spec.Type))
		}
		*d.dst = spec
	}
	if v, ok := doc["cluster"]; ok {
		if err := json.Unmarshal(v, &s.Cluster); err != nil || s.Cluster == "" {
			return bad("cluster", errors.New("must be a non-empty string"))
		}
	}
	return s, nil
}

// validate checks the secret of a hmac or token spec.
func (sp SecretSpec) validate() error {
	switch sp.Type {
	case TypeToken:
		if sp.Secret == "" {
			return errors.New("token secret is empty")
		}
	case TypeHMAC:
		_, err := DecodeHMACSecret(sp.Secret)
		return err
	case "", TypeNone:
	default:
		return fmt.Errorf("unknown type %q (want hmac, token or none)", sp.Type)
	}
	return nil
}

// DecodeHMACSecret decodes a secrets-file hmac secret: url-safe base64,
// padding optional, which must give exactly 64 bytes. Like the reference's
// urlsafe_b64decode it also takes the standard alphabet's '+' and '/'.
func DecodeHMACSecret(s string) ([]byte, error) {
	norm := strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(s, "="))
	b, err := base64.RawURLEncoding.DecodeString(norm)
	if err != nil {
		return nil, fmt.Errorf("%w: not url-safe base64: %w", ErrBadSecret, err)
	}
	if len(b) != 64 {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want 64", ErrBadSecret, len(b))
	}
	return b, nil
}

// Pair builds the schemes of both directions. Both HMAC directions share
// replay: codes are unique per secret and message anyway, and the
// reference shares its store the same way.
func (s Secrets) Pair(replay ReplayStore, opts ...HMACOption) (Pair, error) {
	var p Pair
	for _, d := range []struct {
		spec SecretSpec
		dst  *Scheme
		name string
	}{{s.ToBroadcaster, &p.ToBroadcaster, "to-broadcaster"}, {s.ToSubscriber, &p.ToSubscriber, "to-subscriber"}} {
		if err := d.spec.validate(); err != nil {
			return Pair{}, fmt.Errorf("auth: %s: %w", d.name, err)
		}
		switch d.spec.Type {
		case "", TypeNone:
			*d.dst = None()
		case TypeToken:
			*d.dst = Token(d.spec.Secret)
		case TypeHMAC:
			key, err := DecodeHMACSecret(d.spec.Secret)
			if err != nil {
				return Pair{}, fmt.Errorf("auth: %s: %w", d.name, err)
			}
			sch, err := HMAC(key, replay, opts...)
			if err != nil {
				return Pair{}, fmt.Errorf("auth: %s: %w", d.name, err)
			}
			*d.dst = sch
		}
	}
	return p, nil
}

// NewPair is Pair with a fresh in-memory replay store.
func (s Secrets) NewPair(opts ...HMACOption) (Pair, error) {
	return s.Pair(NewMemoryReplayStore(time.Now), opts...)
}

// GenerateSecret returns 64 random bytes as unpadded url-safe base64
// (86 characters), like the reference's token_urlsafe(64). It serves for
// hmac and token secrets alike.
func GenerateSecret() (string, error) {
	var b [64]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// WriteSecretsFile writes s byte for byte as the reference's --setup
// does (json.dumps with indent=2, ASCII-only, then a newline), omitting
// directions whose type is none, then "cluster" if includeCluster and
// s.Cluster is set. The file gets mode 0600 and is never overwritten: an
// existing file gives an error wrapping fs.ErrExist (O_EXCL, so two
// concurrent setups cannot both win).
func WriteSecretsFile(path string, s Secrets, includeCluster bool) error {
	var buf bytes.Buffer
	buf.WriteString("{\n  \"version\": \"2\"")
	for _, d := range []struct {
		key  string
		spec SecretSpec
	}{{"to-broadcaster", s.ToBroadcaster}, {"to-subscriber", s.ToSubscriber}} {
		if err := d.spec.validate(); err != nil {
			return fmt.Errorf("auth: write secrets file %s: %q: %w", path, d.key, err)
		}
		if d.spec.Type == "" || d.spec.Type == TypeNone {
			continue
		}
		fmt.Fprintf(&buf, ",\n  %s: {\n    \"type\": %s,\n    \"secret\": %s\n  }",
			pyJSONString(d.key), pyJSONString(d.spec.Type), pyJSONString(d.spec.Secret))
	}
	if includeCluster && s.Cluster != "" {
		fmt.Fprintf(&buf, ",\n  \"cluster\": %s", pyJSONString(s.Cluster))
	}
	buf.WriteString("\n}\n")

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("auth: write secrets file: %w", err)
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Leave no half-written secrets behind; a retry would otherwise
		// be refused by O_EXCL.
		return errors.Join(fmt.Errorf("auth: write secrets file %s: %w", path, err), os.Remove(path))
	}
	return nil
}

// pyJSONString quotes s as Python's json.dumps does by default
// (ensure_ascii): printable ASCII verbatim, the usual short escapes, and
// \uXXXX (surrogate pairs above the BMP) for everything else. Go's
// encoder differs (it keeps UTF-8 and escapes <, >, &), which would make
// the file differ from the reference's for unusual tokens.
func pyJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s { // invalid UTF-8 reads as U+FFFD, as Python would refuse it anyway
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= 0x20 && r <= 0x7e:
				b.WriteRune(r)
			case r > 0xffff:
				r -= 0x10000
				fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			default:
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// LoadClusterSecret reads a file holding only the cluster secret (the
// --cluster-secret-file of the node and of its operator commands).
func LoadClusterSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("cluster secret file %s is empty", path)
	}
	return secret, nil
}
