// Package expiring keeps keys that each carry a time (a stamp, unix ms) in
// a pair of bbolt buckets, so that the keys stamped before a cutoff are
// found in time order without a scan of every key:
//
//	keys:  key               -> u64 stamp · value
//	index: u64 stamp · key   -> nothing
//
// Stamps are big-endian, so for stamps of 0 and later (all the stores
// write) the index's byte order is time order. The
// package depends on bbolt alone, so any store with this layout can use it:
// the subscription table's request ids and HMAC codes, the replay store of
// HMAC codes, and (its index alone) the MISSED store's due times.
package expiring

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// StampLen is the size of the big-endian stamp that starts every value in
// the keys bucket and every index key.
const StampLen = 8

// MaxKey is the longest key: an index key holds the stamp too, and bbolt
// refuses keys over bolt.MaxKeySize.
const MaxKey = bolt.MaxKeySize - StampLen

// ErrKey is returned for a key that is empty or longer than MaxKey.
var ErrKey = fmt.Errorf("expiring: key must be 1 to %d bytes", MaxKey)

// validKey is the one rule on key lengths, for keys written and for the
// key part of index keys read.
func validKey(key []byte) bool { return len(key) > 0 && len(key) <= MaxKey }

// IndexKey returns the index key of key stamped at stamp: u64 big-endian
// stamp · key.
func IndexKey(stamp int64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, StampLen+len(key)), uint64(stamp))
	return append(k, key...)
}

// SplitIndexKey returns the stamp and key of an index key, and false for a
// key that IndexKey cannot have made from a valid key (too short to hold a
// stamp and a non-empty key, or too long): a damaged file, which readers
// skip rather than trust.
func SplitIndexKey(k []byte) (stamp int64, key []byte, ok bool) {
	if len(k) < StampLen || !validKey(k[StampLen:]) {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k)), k[StampLen:], true
}

// Buckets names the two buckets of one set. The names are part of a
// store's file format.
type Buckets struct {
	Keys, Index []byte
}

// In returns the set inside tx; both buckets must exist (the store
// creates them when it opens its file).
func (b Buckets) In(tx *bolt.Tx) (Set, error) {
	s := Set{keys: tx.Bucket(b.Keys), index: tx.Bucket(b.Index)}
	if s.keys == nil || s.index == nil {
		return Set{}, fmt.Errorf("expiring: bucket %q or %q missing", b.Keys, b.Index)
	}
	return s, nil
}

// Set is a set of stamped keys inside one transaction; it is valid only
// while that transaction is open.
type Set struct {
	keys, index *bolt.Bucket
}

// Get returns the stamp and value of key; ok is false for a key absent or
// holding a value too short for a stamp. The value is bbolt's memory:
// valid only during the transaction.
func (s Set) Get(key []byte) (stamp int64, value []byte, ok bool) {
	v := s.keys.Get(key)
	if len(v) < StampLen {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(v)), v[StampLen:], true
}

// Put records key with stamp and value (which may be empty), replacing an
// earlier record of key. The earlier record's index entry stays until
// DropBefore passes its stamp, and then it drops only the index entry.
func (s Set) Put(key []byte, stamp int64, value []byte) error {
	if !validKey(key) {
		return ErrKey
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, StampLen+len(value)), uint64(stamp))
	if err := s.keys.Put(key, append(v, value...)); err != nil {
		return fmt.Errorf("expiring: record a %d-byte key: %w", len(key), err)
	}
	if err := s.index.Put(IndexKey(stamp, key), nil); err != nil {
		return fmt.Errorf("expiring: index a %d-byte key: %w", len(key), err)
	}
	return nil
}

// DropBefore forgets the keys whose record is stamped before cutoff, and
// their index entries. Index entries SplitIndexKey refuses go too: left in
// place, one that sorts first would stop every later walk.
func (s Set) DropBefore(cutoff int64) error {
	c := s.index.Cursor()
	// After a delete the cursor's position is unreliable in bbolt, so
	// every step starts again from the first entry.
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if stamp, key, ok := SplitIndexKey(k); ok {
			if stamp >= cutoff {
				return nil
			}
			// The key may have been recorded again since, with a later
			// stamp: only a record with this stamp goes.
			if at, _, ok := s.Get(key); ok && at == stamp {
				if err := s.keys.Delete(key); err != nil {
					return fmt.Errorf("expiring: forget a %d-byte key: %w", len(key), err)
				}
			}
		}
		if err := c.Delete(); err != nil {
			return fmt.Errorf("expiring: drop an index entry: %w", err)
		}
	}
	return nil
}
