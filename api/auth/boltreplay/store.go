// Package boltreplay is the node's replay store of HMAC codes in a bbolt
// file. It lives apart from api/auth so that clients, which sign and verify
// but keep no replay store on disk, do not depend on bbolt.
package boltreplay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/fsm/expiring"
)

// Store is an auth.ReplayStore in a bbolt file, so a node still
// refuses replays of codes it accepted before a restart.
//
// Writes are not fsynced one by one (that would cost a disk flush per
// notify); the file is synced every second and on Close. After a killed
// process the last second of codes may be lost; after a power loss or an
// OS crash the file itself may be damaged (bbolt without sync), and then it
// is set aside and a new one started. Either way Unclean reports it, and
// the node then refuses signatures dated before its start
// (WithNotBefore), which closes the gap.
type Store struct {
	db      *bolt.DB
	clock   func() time.Time
	unclean bool
	aside   string // where a damaged file was moved, if one was
	stop    chan struct{}
	wg      sync.WaitGroup
}

var _ auth.ReplayStore = (*Store)(nil)

var (
	bucketCodes  = []byte("codes")  // code -> u64 expiry (unix ms)
	bucketExpiry = []byte("expiry") // u64 expiry || code -> nil
	bucketState  = []byte("state")
	keyClean     = []byte("clean")
	// replayCodes is the codes with their expiry index: an expiring set
	// with empty values.
	replayCodes = expiring.Buckets{Keys: bucketCodes, Index: bucketExpiry}
)

// Open opens (or creates) the store at path. A file that
// cannot be opened (damaged) is renamed beside it and a new store started,
// reported as unclean; a file locked by another process is an error.
func Open(path string, clock func() time.Time) (*Store, error) {
	s, err := open(path, clock)
	if err == nil || errors.Is(err, berrors.ErrTimeout) {
		return s, err
	}
	if _, serr := os.Stat(path); serr != nil {
		return nil, err // nothing to set aside: the error is elsewhere
	}
	aside := fmt.Sprintf("%s.damaged-%d", path, clock().Unix())
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("%w (and it could not be set aside: %w)", err, rerr)
	}
	if s, err = open(path, clock); err != nil {
		return nil, err
	}
	s.unclean, s.aside = true, aside
	return s, nil
}

// SetAside returns where a damaged store file was moved at open ("" if
// none was).
func (s *Store) SetAside() string { return s.aside }

func open(path string, clock func() time.Time) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("open replay store %s: %w", path, err)
	}
	s := &Store{db: db, clock: clock, stop: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCodes, bucketExpiry, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		st := tx.Bucket(bucketState)
		// A file that was just created has no codes to lose.
		fresh := tx.Bucket(bucketCodes).Stats().KeyN == 0 && st.Get(keyClean) == nil
		s.unclean = !fresh && string(st.Get(keyClean)) != "1"
		return st.Put(keyClean, []byte("0"))
	})
	if err == nil {
		err = db.Sync()
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise replay store %s: %w", path, err)
	}
	s.wg.Add(1)
	go s.maintain()
	return s, nil
}

// Unclean reports that the previous process did not close the store.
func (s *Store) Unclean() bool { return s.unclean }

// Seen implements auth.ReplayStore.
func (s *Store) Seen(_ context.Context, code [64]byte, expires time.Time) (replay bool, err error) {
	nowMs := s.clock().UnixMilli()
	err = s.db.Update(func(tx *bolt.Tx) error {
		codes, err := replayCodes.In(tx)
		if err != nil {
			return err
		}
		if exp, _, ok := codes.Get(code[:]); ok && exp >= nowMs {
			replay = true
			return nil
		}
		return codes.Put(code[:], expires.UnixMilli(), nil)
	})
	if err != nil {
		return false, fmt.Errorf("replay store: %w", err)
	}
	return replay, nil
}

// Len is the number of codes remembered (expired ones included until the
// next sweep).
func (s *Store) Len() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCodes).Stats().KeyN
		return nil
	})
	return n
}

// Prune drops expired codes.
func (s *Store) Prune() error {
	nowMs := s.clock().UnixMilli()
	err := s.db.Update(func(tx *bolt.Tx) error {
		codes, err := replayCodes.In(tx)
		if err != nil {
			return err
		}
		return codes.DropBefore(nowMs)
	})
	if err != nil {
		return fmt.Errorf("prune replay store: %w", err)
	}
	return nil
}

func (s *Store) maintain() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Prune()
			_ = s.db.Sync()
		}
	}
}

// Close syncs, marks the shutdown clean and closes the file.
func (s *Store) Close() error {
	close(s.stop)
	s.wg.Wait()
	err := s.Prune()
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketState).Put(keyClean, []byte("1")) })
	}
	if err == nil {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close replay store: %w", err)
	}
	return nil
}
