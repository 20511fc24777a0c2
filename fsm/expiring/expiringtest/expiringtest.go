// Package expiringtest writes bbolt files byte for byte, for tests that
// pin a store's file format: a file as an earlier version of the code
// wrote it, or with damaged entries, written without the code under test.
package expiringtest

import (
	"encoding/binary"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Entry is one key of a bucket and its value, as they are on disk.
type Entry struct {
	Bucket, Key, Value []byte
}

// Stamp returns ms as the stores write stamps (u64 big-endian) in a new
// slice, so a key can be appended to it.
func Stamp(ms int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ms)) }

// WriteFile writes a new bbolt file at path holding entries, in order,
// each bucket created where it is first named; the test fails at once on
// any error.
func WriteFile(tb testing.TB, path string, entries ...Entry) {
	tb.Helper()
	if err := writeFile(path, entries); err != nil {
		tb.Fatal(err)
	}
}

func writeFile(path string, entries []Entry) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return fmt.Errorf("expiringtest: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range entries {
			b, err := tx.CreateBucketIfNotExists(e.Bucket)
			if err != nil {
				return fmt.Errorf("bucket %q: %w", e.Bucket, err)
			}
			if err := b.Put(e.Key, e.Value); err != nil {
				return fmt.Errorf("bucket %q, key %x: %w", e.Bucket, e.Key, err)
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("expiringtest: write %s: %w", path, err)
	}
	return nil
}
