package boltreplay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestStoreSurvivesRestartAndExpires(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	if s.Unclean() {
		t.Fatal("a new file reported an unclean shutdown")
	}
	ctx := context.Background()
	for i := range 100 {
		var code [64]byte
		code[0] = byte(i)
		if replay, err := s.Seen(ctx, code, now.Add(3*time.Minute)); replay || err != nil {
			t.Fatalf("fresh code %d: %v %v", i, replay, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Unclean() {
		t.Fatal("a clean shutdown reported as unclean")
	}
	if replay, _ := s.Seen(ctx, [64]byte{5}, now.Add(3*time.Minute)); !replay {
		t.Fatal("a code seen before the restart was accepted again")
	}
	mu.Lock()
	now = now.Add(4 * time.Minute)
	mu.Unlock()
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d expired codes kept", n)
	}
	if replay, _ := s.Seen(ctx, [64]byte{5}, now.Add(3*time.Minute)); replay {
		t.Fatal("an expired code still refused")
	}
}

func TestStoreReportsUncleanShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	s, err := Open(path, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seen(context.Background(), [64]byte{1}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: close the file without the clean marker.
	close(s.stop)
	s.wg.Wait()
	_ = s.db.Sync()
	_ = s.db.Close()
	s2, err := Open(path, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Unclean() {
		t.Fatal("an unclean shutdown went unnoticed")
	}
}

// A damaged file (a power loss without fsync) does not keep the node
// down: it is set aside, a new store starts, and the start counts as
// unclean, so signatures dated before it are refused.
func TestStoreSetsADamagedFileAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	garbage := bytes.Repeat([]byte("not a bbolt file "), 2000)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Now)
	if err != nil {
		t.Fatalf("open over a damaged file: %v", err)
	}
	defer s.Close()
	if !s.Unclean() || s.SetAside() == "" {
		t.Fatalf("unclean %t, set aside at %q", s.Unclean(), s.SetAside())
	}
	if b, err := os.ReadFile(s.SetAside()); err != nil || !bytes.Equal(b, garbage) {
		t.Fatalf("the damaged file was not kept as it was: %v", err)
	}
	var code [64]byte
	code[0] = 7
	if replay, err := s.Seen(t.Context(), code, time.Now().Add(time.Minute)); err != nil || replay {
		t.Fatalf("new store: replay %t, %v", replay, err)
	}
	if replay, err := s.Seen(t.Context(), code, time.Now().Add(time.Minute)); err != nil || !replay {
		t.Fatalf("new store does not remember: replay %t, %v", replay, err)
	}
}

// A replay.db written by hand, as the store has always laid it out (code
// -> u64 expiry ms, u64 expiry ms · code -> nothing, state/clean), reads as
// it did: a remembered code is a replay until it expires, and pruning
// drops the expired codes and their index entries. A damaged index entry
// sorting first does not stop the pruning.
func TestStoreReadsAFileWrittenByHand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	u64 := func(tm time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(tm.UnixMilli())) }
	code := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64) }
	live, lapsed, old := code(1), code(2), code(3)
	expiries := map[string]time.Time{
		string(live):   now.Add(3 * time.Minute),
		string(lapsed): now.Add(-time.Minute),
		string(old):    now.Add(-2 * time.Minute),
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		codes, err1 := tx.CreateBucket([]byte("codes"))
		index, err2 := tx.CreateBucket([]byte("expiry"))
		state, err3 := tx.CreateBucket([]byte("state"))
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		for c, exp := range expiries {
			if err := errors.Join(codes.Put([]byte(c), u64(exp)), index.Put(append(u64(exp), c...), nil)); err != nil {
				return err
			}
		}
		return errors.Join(index.Put([]byte{0}, nil), state.Put([]byte("clean"), []byte("1")))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	if s.Unclean() {
		t.Fatal("a file closed cleanly reported unclean")
	}
	if n := s.Len(); n != 3 {
		t.Fatalf("Len = %d, want the 3 codes of the file", n)
	}
	for _, tc := range []struct {
		name   string
		code   []byte
		replay bool
	}{{"unexpired", live, true}, {"expired", lapsed, false}} {
		replay, err := s.Seen(t.Context(), [64]byte(tc.code), now.Add(time.Minute))
		if err != nil || replay != tc.replay {
			t.Errorf("%s code of the file: replay %t, %v; want %t", tc.name, replay, err, tc.replay)
		}
	}
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var codes, index []string
	err = db.View(func(tx *bolt.Tx) error {
		return errors.Join(
			tx.Bucket([]byte("codes")).ForEach(func(k, v []byte) error {
				codes = append(codes, fmt.Sprintf("%x=%x", k[:1], v))
				return nil
			}),
			tx.Bucket([]byte("expiry")).ForEach(func(k, _ []byte) error {
				index = append(index, fmt.Sprintf("%x", k))
				return nil
			}))
	})
	if err != nil {
		t.Fatal(err)
	}
	// The expired code seen again holds its new expiry; the third is gone.
	wantCodes := []string{
		fmt.Sprintf("01=%x", u64(now.Add(3*time.Minute))),
		fmt.Sprintf("02=%x", u64(now.Add(time.Minute))),
	}
	wantIndex := []string{
		fmt.Sprintf("%x%x", u64(now.Add(time.Minute)), lapsed),
		fmt.Sprintf("%x%x", u64(now.Add(3*time.Minute)), live),
	}
	if !slices.Equal(codes, wantCodes) || !slices.Equal(index, wantIndex) {
		t.Fatalf("after prune: codes %v index %v, want %v %v", codes, index, wantCodes, wantIndex)
	}
}
