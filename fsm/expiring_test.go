package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lonelypsd/lonelypsd/fsm/expiring"
	"github.com/lonelypsd/lonelypsd/fsm/expiring/expiringtest"
)

// A subscription table written before the request ids and HMAC codes went
// through package expiring reads as it did: its entries are recognised,
// and dropped once expired. The file is written by hand, as the code of
// that time wrote it.
func TestRequestIDsAndCodesWrittenByHandAreRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subs.db")
	at := time.Unix(1700000000, 0)
	atMs, expMs := at.UnixMilli(), at.Add(3*time.Minute).UnixMilli()
	code := bytes.Repeat([]byte{7}, AuthCodeSize)
	expiringtest.WriteFile(t, path, []expiringtest.Entry{
		// request id -> u64 log time · outcome; u64 log time · id -> nothing
		{Bucket: bucketRequests, Key: []byte("req-old"), Value: append(expiringtest.Stamp(atMs), byte(Conflict))},
		{Bucket: bucketReqTimes, Key: append(expiringtest.Stamp(atMs), "req-old"...)},
		// code -> u64 expiry; u64 expiry · code -> nothing
		{Bucket: bucketCodes, Key: code, Value: expiringtest.Stamp(expMs)},
		{Bucket: bucketCodeExp, Key: append(expiringtest.Stamp(expMs), code...)},
	}...)
	f := openAt(t, path)
	a := &applier{t: t, f: f}
	apply := func(c Command, when time.Time) Result { return a.applyAt(when, c)[0] }
	retry := sub("a")
	retry.ID = "req-old"
	if r := apply(retry, at.Add(time.Second)); r.Outcome != Conflict {
		t.Fatalf("retry of a request id in the file: %+v, want its recorded outcome (conflict)", r)
	}
	replay := sub("b")
	replay.AuthCode = &AuthCode{Code: code, ExpiresMs: expMs}
	if r := apply(replay, at.Add(2*time.Second)); r.Outcome != Replayed {
		t.Fatalf("a code in the file used again: %+v, want replayed", r)
	}
	for _, topic := range []string{"a", "b"} {
		if _, ok := f.Lookup(Exact, u1, topic); ok {
			t.Fatalf("row %q applied although its command was refused", topic)
		}
	}
	// Past the retention and the expiry, both are dropped from the file.
	if r := apply(sub("c"), at.Add(RequestRetention+time.Minute)); r.Outcome != Applied {
		t.Fatalf("later command: %+v", r)
	}
	err := f.db.View(func(tx *bolt.Tx) error {
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
