package broadcaster

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/auth/boltreplay"
	clusterpkg "github.com/lonelypsd/lonelypsd/cluster"
)

// openAuth builds the node's authorization schemes from its secrets file
// and returns the cluster secret. HMAC replay protection of this node
// (notify, and the replies it verifies) lives in <data>/replay.db, so a
// restart does not reopen the window for codes it accepted before; codes
// of subscription changes are checked in the Raft log instead.
func openAuth(cfg Config, log *slog.Logger) (auth.Pair, string, func(), error) {
	nop := func() {}
	var cluster string
	if cfg.ClusterSecretFile != "" {
		var err error
		if cluster, err = auth.LoadClusterSecret(cfg.ClusterSecretFile); err != nil {
			return auth.Pair{}, "", nop, err
		}
	}
	if cfg.SecretsFile == "" {
		return auth.NonePair(), cluster, nop, needsClusterSecret(cfg, cluster)
	}
	secrets, err := auth.LoadSecrets(cfg.SecretsFile)
	if err != nil {
		return auth.Pair{}, "", nop, err
	}
	if cluster == "" {
		cluster = secrets.Cluster
	}
	if err := needsClusterSecret(cfg, cluster); err != nil {
		return auth.Pair{}, "", nop, err
	}
	store, err := boltreplay.Open(filepath.Join(cfg.Cluster.DataDir, "replay.db"), time.Now)
	if err != nil {
		return auth.Pair{}, "", nop, err
	}
	opts := []auth.HMACOption{}
	if cfg.HMACSkew > 0 {
		opts = append(opts, auth.WithSkew(cfg.HMACSkew))
	}
	if p := store.SetAside(); p != "" {
		log.Warn("the replay store could not be opened (damaged by a crash?): moved aside, starting a new one", "moved_to", p)
	}
	if store.Unclean() {
		log.Warn("the previous run did not stop cleanly: refusing HMAC signatures dated before now, whose replay could go unnoticed")
		opts = append(opts, auth.WithNotBefore(time.Now()))
	}
	pair, err := secrets.Pair(store, opts...)
	if err != nil {
		_ = store.Close()
		return auth.Pair{}, "", nop, fmt.Errorf("secrets %s: %w", cfg.SecretsFile, err)
	}
	return pair, cluster, func() {
		if err := store.Close(); err != nil {
			log.Error("closing replay store", "err", err)
		}
	}, nil
}

// needsClusterSecret refuses, before anything is opened, a node that forms
// a cluster with others without the secret they share (a lone node
// generates its own: cluster.Open).
func needsClusterSecret(cfg Config, secret string) error {
	if secret == "" && (len(cfg.Cluster.Join) > 0 || cfg.Cluster.BootstrapExpect > 0) {
		return clusterpkg.ErrNoClusterSecret
	}
	return nil
}
