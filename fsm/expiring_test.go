package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lonelypsd/lonelypsd/fsm/expiring"
)

// A subscription table written before the request ids and HMAC codes went
// through package expiring reads as it did: its entries are recognised,
// and dropped once expired. The file is written by hand, as the code of
// that time wrote it.
func TestRequestIDsAndCodesWrittenByHandAreRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subs.db")
	at := time.Unix(1700000000, 0)
	code := bytes.Repeat([]byte{7}, AuthCodeSize)
	u64 := func(ms int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ms)) }
	cat := func(a, b []byte) []byte { return append(bytes.Clone(a), b...) }
	raw := []struct{ bucket, key, value []byte }{
		// request id -> u64 log time · outcome; u64 log time · id -> nothing
		{bucketRequests, []byte("req-old"), cat(u64(at.UnixMilli()), []byte{byte(Conflict)})},
		{bucketReqTimes, cat(u64(at.UnixMilli()), []byte("req-old")), nil},
		// code -> u64 expiry; u64 expiry · code -> nothing
		{bucketCodes, code, u64(at.Add(3 * time.Minute).UnixMilli())},
		{bucketCodeExp, cat(u64(at.Add(3*time.Minute).UnixMilli()), code), nil},
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, r := range raw {
			b, err := tx.CreateBucketIfNotExists(r.bucket)
			if err != nil {
				return err
			}
			if err := b.Put(r.key, r.value); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	apply := func(index uint64, c Command, when time.Time) Result {
		t.Helper()
		data, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: data, AppendedAt: when}})[0].(Result)
	}
	retry := sub("a")
	retry.ID = "req-old"
	if r := apply(1, retry, at.Add(time.Second)); r.Outcome != Conflict {
		t.Fatalf("retry of a request id in the file: %+v, want its recorded outcome (conflict)", r)
	}
	replay := sub("b")
	replay.AuthCode = &AuthCode{Code: code, ExpiresMs: at.Add(3 * time.Minute).UnixMilli()}
	if r := apply(2, replay, at.Add(2*time.Second)); r.Outcome != Replayed {
		t.Fatalf("a code in the file used again: %+v, want replayed", r)
	}
	for _, topic := range []string{"a", "b"} {
		if _, ok := f.Lookup(Exact, u1, topic); ok {
			t.Fatalf("row %q applied although its command was refused", topic)
		}
	}
	// Past the retention and the expiry, both are dropped from the file.
	if r := apply(3, sub("c"), at.Add(RequestRetention+time.Minute)); r.Outcome != Applied {
		t.Fatalf("later command: %+v", r)
	}
	err = f.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRequests, bucketReqTimes, bucketCodes, bucketCodeExp} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				return fmt.Errorf("bucket %s holds %d keys past expiry", b, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An entry whose key the expiring sets refuse is refused alone, like one
// bbolt refuses, instead of failing the batch on every replica.
func TestIsContentError(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("record request id: %w", expiring.ErrKey), true},
		{berrors.ErrKeyTooLarge, true},
		{berrors.ErrValueTooLarge, true},
		{berrors.ErrKeyRequired, true},
		{io.ErrUnexpectedEOF, false},
		{errors.New("disk full"), false},
	}
	for _, tc := range cases {
		if got := isContentError(tc.err); got != tc.want {
			t.Errorf("isContentError(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
