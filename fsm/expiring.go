package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// expiring is a set of keys that each carry a time stamp (ms), kept in two
// bbolt buckets: keys maps key -> u64 stamp · value, and byStamp holds
// u64 stamp · key -> nothing, so the entries stamped before a cutoff are
// found in stamp order without a scan of keys. It depends on nothing but
// bbolt, so it can serve any pair of buckets laid out this way.
type expiring struct {
	keys, byStamp []byte
}

// stampLen is the size of the big-endian stamp that prefixes values and
// the byStamp keys.
const stampLen = 8

// maxExpiringKey is the longest key: byStamp keys carry the stamp too.
const maxExpiringKey = bolt.MaxKeySize - stampLen

var errExpiringKey = fmt.Errorf("fsm: expiring key must be 1 to %d bytes", maxExpiringKey)

// expiringTx is an expiring set inside one transaction.
type expiringTx struct {
	keys, byStamp *bolt.Bucket
}

func (e expiring) in(tx *bolt.Tx) (expiringTx, error) {
	s := expiringTx{keys: tx.Bucket(e.keys), byStamp: tx.Bucket(e.byStamp)}
	if s.keys == nil || s.byStamp == nil {
		return expiringTx{}, fmt.Errorf("fsm: bucket %q or %q missing", e.keys, e.byStamp)
	}
	return s, nil
}

// get returns the stamp and value of key.
func (s expiringTx) get(key []byte) (stamp int64, value []byte, ok bool) {
	v := s.keys.Get(key)
	if len(v) < stampLen {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(v)), v[stampLen:], true
}

// put records key with stamp and value, replacing an earlier record. The
// earlier record's byStamp entry stays until its cutoff, when dropBefore
// sees that it is no longer the key's record.
func (s expiringTx) put(key []byte, stamp int64, value []byte) error {
	if len(key) == 0 || len(key) > maxExpiringKey {
		return errExpiringKey
	}
	k := binary.BigEndian.AppendUint64(make([]byte, 0, stampLen+len(key)), uint64(stamp))
	v := binary.BigEndian.AppendUint64(make([]byte, 0, stampLen+len(value)), uint64(stamp))
	if err := s.keys.Put(key, append(v, value...)); err != nil {
		return fmt.Errorf("record %x: %w", key, err)
	}
	if err := s.byStamp.Put(append(k, key...), nil); err != nil {
		return fmt.Errorf("record %x: %w", key, err)
	}
	return nil
}

// dropBefore forgets the keys whose record is stamped before cutoff.
func (s expiringTx) dropBefore(cutoff int64) error {
	c := s.byStamp.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if len(k) > stampLen {
			stamp := binary.BigEndian.Uint64(k)
			if int64(stamp) >= cutoff {
				return nil
			}
			// The key may have been recorded again since, with a later
			// stamp: only a record with this stamp goes.
			key := k[stampLen:]
			if v := s.keys.Get(key); len(v) >= stampLen && binary.BigEndian.Uint64(v) == stamp {
				if err := s.keys.Delete(key); err != nil {
					return fmt.Errorf("forget %x: %w", key, err)
				}
			}
		}
		// A key too short to hold a stamp and a key cannot have been
		// written by put; it goes too, or it would stop the walk forever.
		if err := c.Delete(); err != nil {
			return fmt.Errorf("forget %x: %w", k, err)
		}
	}
	return nil
}

// isContentError reports whether err is bbolt refusing a key or value for
// its size or emptiness: a verdict on the data written, not on the disk.
func isContentError(err error) bool {
	return errors.Is(err, bolt.ErrKeyTooLarge) || errors.Is(err, bolt.ErrValueTooLarge) ||
		errors.Is(err, bolt.ErrKeyRequired) || errors.Is(err, errExpiringKey)
}
