package fsm

import (
	"bytes"
	"errors"
	"fmt"

	berrors "go.etcd.io/bbolt/errors"
)

func stageBucket(k Kind) []byte {
	if k == Glob {
		return bucketStageGlob
	}
	return bucketStageExact
}

// restoreBegin empties the staging buckets and makes id the restore in
// progress.
func (a *attempt) restoreBegin(id string) (Result, error) {
	for _, k := range []Kind{Exact, Glob} {
		if err := a.emptyBucket(stageBucket(k)); err != nil {
			return Result{}, err
		}
	}
	if err := a.tx.Bucket(bucketMeta).Put(keyRestore, []byte(id)); err != nil {
		return Result{}, err
	}
	return Result{Outcome: Applied}, nil
}

func (a *attempt) emptyBucket(name []byte) error {
	if err := a.tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return fmt.Errorf("empty bucket %s: %w", name, err)
	}
	if _, err := a.tx.CreateBucket(name); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// current reports whether id is the restore in progress; a stale one
// (another restore began since) gets Conflict.
func (a *attempt) current(id string) bool {
	return bytes.Equal(a.tx.Bucket(bucketMeta).Get(keyRestore), []byte(id))
}

func (a *attempt) restoreRows(id string, rows []RestoreRow) (Result, error) {
	if !a.current(id) {
		return Result{Outcome: Conflict}, nil
	}
	for _, r := range rows {
		if err := a.tx.Bucket(stageBucket(r.Kind)).Put(makeKey(r.URL, string(r.Key)), []byte(r.Recovery)); err != nil {
			return Result{}, err
		}
	}
	return Result{Outcome: Applied}, nil
}

// restoreCommit swaps the staged rows in, if they number count: a restore
// whose rows did not all arrive changes nothing.
func (a *attempt) restoreCommit(id string, count int) (Result, error) {
	if !a.current(id) {
		return Result{Outcome: Conflict}, nil
	}
	if a.countPrefix(bucketStageExact, nil)+a.countPrefix(bucketStageGlob, nil) != count {
		return Result{Outcome: Conflict}, nil
	}
	for _, k := range []Kind{Exact, Glob} {
		if err := a.emptyBucket(k.bucket()); err != nil {
			return Result{}, err
		}
		dst := a.tx.Bucket(k.bucket())
		err := a.tx.Bucket(stageBucket(k)).ForEach(func(key, v []byte) error {
			return dst.Put(key, v)
		})
		if err != nil {
			return Result{}, fmt.Errorf("copy staged %s rows: %w", k, err)
		}
		if err := a.emptyBucket(stageBucket(k)); err != nil {
			return Result{}, err
		}
	}
	if err := a.tx.Bucket(bucketMeta).Delete(keyRestore); err != nil {
		return Result{}, err
	}
	a.replaced = true
	a.rows = map[string]int{}
	return Result{Outcome: Applied}, nil
}

// countRows counts url's rows in bbolt, for a batch in which a restore
// replaced the table the index still shows.
func (a *attempt) countRows(url string) int {
	prefix := makeKey(url, "")
	return a.countPrefix(bucketExact, prefix) + a.countPrefix(bucketGlob, prefix)
}

// countPrefix counts a bucket's keys with prefix by a cursor walk:
// bucket statistics miss what this transaction wrote.
func (a *attempt) countPrefix(bucket, prefix []byte) int {
	n := 0
	c := a.tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}
