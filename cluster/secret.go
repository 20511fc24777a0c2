package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GeneratedSecretFile is the file in the data folder where a lone node
// keeps the cluster secret it generated for itself (mode 0600).
const GeneratedSecretFile = "cluster-secret"

// ErrNoClusterSecret: a node that forms a cluster with others needs the
// secret they share; generating one would leave it unable to talk to them.
var ErrNoClusterSecret = errors.New(`cluster: --join and --bootstrap-expect need a cluster secret: ` +
	`put it under the "cluster" key of the secrets file (lonelypsd setup writes one) or pass --cluster-secret-file`)

// resolveSecret makes sure the node has a cluster secret: the configured
// one, or for a node on its own the one it generated earlier, or a new one.
func (c *Config) resolveSecret() error {
	if c.Secret != "" {
		return nil
	}
	if len(c.Join) > 0 || c.BootstrapExpect > 0 {
		return ErrNoClusterSecret
	}
	s, err := GeneratedSecret(c.DataDir)
	if err != nil {
		return err
	}
	if s == "" {
		if s, err = writeGeneratedSecret(c.DataDir); err != nil {
			return err
		}
		c.Logger.Info("generated a cluster secret for this node", "path", filepath.Join(c.DataDir, GeneratedSecretFile))
	}
	c.Secret = s
	return nil
}

// GeneratedSecret returns the cluster secret a node generated in dataDir,
// or "" when there is none (operator commands sign with it).
func GeneratedSecret(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, GeneratedSecretFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeGeneratedSecret writes 64 random bytes as url-safe base64, through
// a temporary file renamed into place, so a crash never leaves a partial
// secret behind.
func writeGeneratedSecret(dataDir string) (string, error) {
	var b [64]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate cluster secret: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data folder: %w", err)
	}
	f, err := os.CreateTemp(dataDir, GeneratedSecretFile+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("write cluster secret: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(secret + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dataDir, GeneratedSecretFile))
	}
	if err != nil {
		return "", fmt.Errorf("write cluster secret: %w", err)
	}
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return secret, nil
}
