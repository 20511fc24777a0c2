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

// SecretSpec is one direction of a secrets file.
type SecretSpec struct {
	Type   string // "hmac", "token" or "none"
	Secret string
}

// Secrets is the content of a secrets file in the reference's format
// (version "2"), plus the cluster secret that only broadcasters hold.
type Secrets struct {
	ToBroadcaster SecretSpec
	ToSubscriber  SecretSpec
	// Cluster authenticates nodes to each other; never written to the
	// subscribers' file.
	Cluster string
}

type fileSpec struct {
	Type   string `json:"type"`
	Secret string `json:"secret"`
}

// LoadSecrets reads a secrets file. A missing direction means none;
// unknown keys are ignored, as the Python client does.
func LoadSecrets(path string) (Secrets, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Secrets{}, fmt.Errorf("secrets file: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return Secrets{}, fmt.Errorf("secrets file %s: not a JSON object: %w", path, err)
	}
	var version string
	if v, ok := doc["version"]; !ok || json.Unmarshal(v, &version) != nil || version != "2" {
		return Secrets{}, fmt.Errorf(`secrets file %s: "version" must be the string "2"`, path)
	}
	var s Secrets
	for key, dst := range map[string]*SecretSpec{"to-broadcaster": &s.ToBroadcaster, "to-subscriber": &s.ToSubscriber} {
		*dst = SecretSpec{Type: "none"}
		v, ok := doc[key]
		if !ok {
			continue
		}
		var fs fileSpec
		if err := json.Unmarshal(v, &fs); err != nil {
			return Secrets{}, fmt.Errorf("secrets file %s: %q must be an object with \"type\" and \"secret\": %w", path, key, err)
		}
		switch fs.Type {
		case "none":
		case "token":
			if fs.Secret == "" {
				return Secrets{}, fmt.Errorf("secrets file %s: %q: token secret is empty", path, key)
			}
		case "hmac":
			if _, err := DecodeHMACSecret(fs.Secret); err != nil {
				return Secrets{}, fmt.Errorf("secrets file %s: %q: %w", path, key, err)
			}
		default:
			return Secrets{}, fmt.Errorf("secrets file %s: %q: unknown type %q (want hmac, token or none)", path, key, fs.Type)
		}
		*dst = SecretSpec{Type: fs.Type, Secret: fs.Secret}
	}
	if v, ok := doc["cluster"]; ok {
		if err := json.Unmarshal(v, &s.Cluster); err != nil || s.Cluster == "" {
			return Secrets{}, fmt.Errorf("secrets file %s: \"cluster\" must be a non-empty string", path)
		}
	}
	return s, nil
}

// DecodeHMACSecret decodes a url-safe base64 secret (padding optional),
// which must give exactly 64 bytes.
func DecodeHMACSecret(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("hmac secret is not url-safe base64: %w", err)
	}
	if len(b) != 64 {
		return nil, fmt.Errorf("hmac secret decodes to %d bytes, want 64", len(b))
	}
	return b, nil
}

// Pair builds the schemes of both directions. Both HMAC directions share
// one replay store: codes are unique per secret and message anyway.
func (s Secrets) Pair(replay ReplayStore, opts ...HMACOption) (Pair, error) {
	var p Pair
	for _, d := range []struct {
		spec SecretSpec
		dst  *Scheme
		name string
	}{{s.ToBroadcaster, &p.ToBroadcaster, "to-broadcaster"}, {s.ToSubscriber, &p.ToSubscriber, "to-subscriber"}} {
		switch d.spec.Type {
		case "", "none":
			*d.dst = None()
		case "token":
			*d.dst = Token(d.spec.Secret)
		case "hmac":
			key, err := DecodeHMACSecret(d.spec.Secret)
			if err != nil {
				return Pair{}, fmt.Errorf("%s: %w", d.name, err)
			}
			sch, err := HMAC(key, replay, opts...)
			if err != nil {
				return Pair{}, fmt.Errorf("%s: %w", d.name, err)
			}
			*d.dst = sch
		default:
			return Pair{}, fmt.Errorf("%s: unknown type %q", d.name, d.spec.Type)
		}
	}
	return p, nil
}

// NewPair is Pair with an in-memory replay store.
func (s Secrets) NewPair(opts ...HMACOption) (Pair, error) {
	return s.Pair(NewMemoryReplayStore(time.Now), opts...)
}

// GenerateSecret returns 64 random bytes as unpadded url-safe base64
// (86 characters), like the reference's token_urlsafe(64).
func GenerateSecret() (string, error) {
	var b [64]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// WriteSecretsFile writes s in the reference's layout (indent 2, trailing
// newline, mode 0600), omitting directions whose type is none. It never
// overwrites: an existing file gives an error wrapping fs.ErrExist.
func WriteSecretsFile(path string, s Secrets, includeCluster bool) error {
	var buf bytes.Buffer
	buf.WriteString("{\n  \"version\": \"2\"")
	for _, d := range []struct {
		key  string
		spec SecretSpec
	}{{"to-broadcaster", s.ToBroadcaster}, {"to-subscriber", s.ToSubscriber}} {
		if d.spec.Type == "" || d.spec.Type == "none" {
			continue
		}
		if d.spec.Type == "hmac" {
			if _, err := DecodeHMACSecret(d.spec.Secret); err != nil {
				return fmt.Errorf("%s: %w", d.key, err)
			}
		}
		spec, err := json.Marshal(fileSpec{Type: d.spec.Type, Secret: d.spec.Secret})
		if err != nil {
			return err
		}
		fmt.Fprintf(&buf, ",\n  %q: %s", d.key, spec)
	}
	if includeCluster && s.Cluster != "" {
		c, err := json.Marshal(s.Cluster)
		if err != nil {
			return err
		}
		fmt.Fprintf(&buf, ",\n  \"cluster\": %s", c)
	}
	buf.WriteString("\n}\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write secrets file: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write secrets file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return errors.Join(fmt.Errorf("write secrets file %s: %w", path, err), os.Remove(path))
	}
	return nil
}
