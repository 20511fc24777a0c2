package expiring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var testBuckets = Buckets{Keys: []byte("keys"), Index: []byte("index")}

// openTestDB returns a bbolt file in a temporary folder holding the two
// buckets of testBuckets.
func openTestDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "expiring.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{testBuckets.Keys, testBuckets.Index} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// update runs fn on the set in one write transaction.
func update(t *testing.T, db *bolt.DB, fn func(Set) error) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		s, err := testBuckets.In(tx)
		if err != nil {
			return err
		}
		return fn(s)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// contents returns every key of the keys bucket with its stamp, and every
// index key, as they are on disk.
func contents(t *testing.T, db *bolt.DB) (keys map[string]int64, index []string) {
	t.Helper()
	keys = map[string]int64{}
	err := db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(testBuckets.Keys).ForEach(func(k, v []byte) error {
			keys[string(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(testBuckets.Index).ForEach(func(k, _ []byte) error {
			index = append(index, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, index
}

func ik(stamp int64, key string) string { return string(IndexKey(stamp, []byte(key))) }

type rec struct {
	key   string
	stamp int64
	value string
}

func TestSetPutGetDropBefore(t *testing.T) {
	cases := []struct {
		name   string
		puts   []rec
		raw    []string // index keys written as they are, not by Put
		cutoff int64
		keys   map[string]int64
		index  []string
	}{
		{
			name:   "keys stamped before the cutoff go, the rest stay",
			puts:   []rec{{"a", 10, "x"}, {"b", 20, ""}, {"c", 30, "y"}},
			cutoff: 20,
			keys:   map[string]int64{"b": 20, "c": 30},
			index:  []string{ik(20, "b"), ik(30, "c")},
		},
		{
			name:   "a key recorded again keeps its newer record",
			puts:   []rec{{"a", 10, "old"}, {"b", 20, ""}, {"a", 30, "new"}, {"c", 40, ""}},
			cutoff: 25,
			keys:   map[string]int64{"a": 30, "c": 40},
			index:  []string{ik(30, "a"), ik(40, "c")},
		},
		{
			name:   "a key recorded again with an earlier stamp goes at that stamp",
			puts:   []rec{{"a", 30, ""}, {"a", 10, ""}},
			cutoff: 20,
			keys:   map[string]int64{},
			index:  []string{ik(30, "a")},
		},
		{
			name:   "a cutoff before every stamp drops nothing",
			puts:   []rec{{"a", 10, ""}, {"b", 20, ""}},
			cutoff: 10,
			keys:   map[string]int64{"a": 10, "b": 20},
			index:  []string{ik(10, "a"), ik(20, "b")},
		},
		{
			name:   "malformed index keys are dropped and do not stop the walk",
			puts:   []rec{{"a", 10, ""}, {"b", 40, ""}},
			raw:    []string{"\x00", "\x00\x00\x00\x00\x00\x00\x00\x05", "\x00\x00\x00"},
			cutoff: 20,
			keys:   map[string]int64{"b": 40},
			index:  []string{ik(40, "b")},
		},
		{
			name:   "an index entry without a record goes quietly",
			raw:    []string{ik(5, "ghost")},
			puts:   []rec{{"a", 30, ""}},
			cutoff: 20,
			keys:   map[string]int64{"a": 30},
			index:  []string{ik(30, "a")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openTestDB(t)
			update(t, db, func(s Set) error {
				for _, k := range tc.raw {
					if err := s.index.Put([]byte(k), nil); err != nil {
						return err
					}
				}
				for _, p := range tc.puts {
					if err := s.Put([]byte(p.key), p.stamp, []byte(p.value)); err != nil {
						return err
					}
				}
				return nil
			})
			// What Put wrote reads back, value included.
			last := map[string]rec{}
			for _, p := range tc.puts {
				last[p.key] = p
			}
			update(t, db, func(s Set) error {
				for k, p := range last {
					stamp, v, ok := s.Get([]byte(k))
					if !ok || stamp != p.stamp || string(v) != p.value {
						t.Errorf("Get(%q) = %d %q %t, want %d %q", k, stamp, v, ok, p.stamp, p.value)
					}
				}
				return s.DropBefore(tc.cutoff)
			})
			keys, index := contents(t, db)
			if !maps.Equal(keys, tc.keys) {
				t.Errorf("keys after DropBefore(%d) = %v, want %v", tc.cutoff, keys, tc.keys)
			}
			if !slices.Equal(index, tc.index) {
				t.Errorf("index after DropBefore(%d) = %q, want %q", tc.cutoff, index, tc.index)
			}
		})
	}
}

func TestSetPutRefusesKeysOutOfBounds(t *testing.T) {
	cases := []struct {
		name string
		key  []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"one byte", []byte{0}, true},
		{"the longest", bytes.Repeat([]byte{1}, MaxKey), true},
		{"one byte too long", bytes.Repeat([]byte{1}, MaxKey+1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openTestDB(t)
			update(t, db, func(s Set) error {
				err := s.Put(tc.key, 7, []byte("v"))
				if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrKey)) {
					t.Errorf("Put of a %d-byte key: %v", len(tc.key), err)
				}
				_, _, found := s.Get(tc.key)
				if found != tc.ok && len(tc.key) > 0 {
					t.Errorf("Get after Put of a %d-byte key: found %t", len(tc.key), found)
				}
				return nil
			})
		})
	}
}

func TestSplitIndexKey(t *testing.T) {
	cases := []struct {
		name  string
		k     []byte
		stamp int64
		key   string
		ok    bool
	}{
		{"empty", nil, 0, "", false},
		{"too short for a stamp", []byte{0, 0, 0, 1}, 0, "", false},
		{"exactly a stamp, no key", []byte{0, 0, 0, 0, 0, 0, 0, 9}, 0, "", false},
		{"stamp and one byte", append([]byte{0, 0, 0, 0, 0, 0, 0, 9}, 'k'), 9, "k", true},
		{"as IndexKey makes it", IndexKey(1700000000000, []byte("code")), 1700000000000, "code", true},
		{"a negative stamp comes back", IndexKey(-5, []byte("k")), -5, "k", true},
		{"longer than bbolt keys", make([]byte, StampLen+MaxKey+1), 0, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stamp, key, ok := SplitIndexKey(tc.k)
			if ok != tc.ok || stamp != tc.stamp || string(key) != tc.key {
				t.Errorf("SplitIndexKey(%x) = %d %q %t, want %d %q %t", tc.k, stamp, key, ok, tc.stamp, tc.key, tc.ok)
			}
		})
	}
}

func TestIndexKeyLayout(t *testing.T) {
	// The layout is part of files on disk: u64 big-endian stamp, then the key.
	want := []byte{0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 'a', 'b'}
	if got := IndexKey(1700000000000, []byte("ab")); !bytes.Equal(got, want) {
		t.Fatalf("IndexKey = %x, want %x", got, want)
	}
}

func TestBucketsInNeedsBothBuckets(t *testing.T) {
	db := openTestDB(t)
	err := db.View(func(tx *bolt.Tx) error {
		_, err := Buckets{Keys: testBuckets.Keys, Index: []byte("absent")}.In(tx)
		return err
	})
	if err == nil {
		t.Fatal("a missing index bucket went unnoticed")
	}
}
