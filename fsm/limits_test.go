package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	code := bytes.Repeat([]byte{1}, AuthCodeSize)
	tests := []struct {
		name    string
		cmd     Command
		ok      bool
		rowLong bool
	}{
		{"subscribe", Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), ID: long(MaxRequestID), Recovery: long(MaxURL)}, true, false},
		{"id too long", Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), ID: long(MaxRequestID + 1)}, false, false},
		{"40,000-byte id", Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), ID: long(40000)}, false, false},
		{"url at limit", Command{Op: OpSubscribeExact, URL: long(MaxRowKey - 1), Topic: []byte("a")}, true, false},
		{"url too long", Command{Op: OpSubscribeExact, URL: long(MaxURL + 1), Topic: []byte("a")}, false, false},
		{"no url", Command{Op: OpSubscribeExact, Topic: []byte("a")}, false, false},
		{"recovery too long", Command{Op: OpSubscribeGlob, URL: u1, Glob: "a*", Recovery: long(MaxURL + 1)}, false, false},
		{"row at limit", Command{Op: OpSubscribeExact, URL: u1, Topic: []byte(long(MaxRowKey - len(u1)))}, true, false},
		{"row too long", Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte(long(MaxRowKey - len(u1) + 1))}, false, true},
		{"glob row too long", Command{Op: OpSubscribeGlob, URL: u1, Glob: long(MaxRowKey)}, false, true},
		{"glob not UTF-8", Command{Op: OpSubscribeGlob, URL: u1, Glob: "a\xff*"}, false, false},
		{"auth code", Command{Op: OpSubscribeExact, URL: u1, AuthCode: &AuthCode{Code: code, ExpiresMs: 5}}, true, false},
		{"auth code short", Command{Op: OpSubscribeExact, URL: u1, AuthCode: &AuthCode{Code: code[1:], ExpiresMs: 5}}, false, false},
		{"auth code negative expiry", Command{Op: OpSubscribeExact, URL: u1, AuthCode: &AuthCode{Code: code, ExpiresMs: -1}}, false, false},
		{"negative cap", Command{Op: OpSubscribeExact, URL: u1, MaxPerURL: -1}, false, false},
		{"set ascending", Command{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte("a")}, {Topic: []byte("b")}}, Globs: []GlobEntry{{Glob: "a"}, {Glob: "b"}}}, true, false},
		{"set empty", Command{Op: OpSetSubscriptions, URL: u1}, true, false},
		{"set duplicate topic", Command{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte("a")}, {Topic: []byte("a")}}}, false, false},
		{"set descending globs", Command{Op: OpSetSubscriptions, URL: u1, Globs: []GlobEntry{{Glob: "b"}, {Glob: "a"}}}, false, false},
		{"set row too long", Command{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte(long(MaxRowKey))}}}, false, true},
		{"set recovery too long", Command{Op: OpSetSubscriptions, URL: u1, Globs: []GlobEntry{{Glob: "a", Recovery: long(MaxURL + 1)}}}, false, false},
		{"node", Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", HTTP: long(MaxNodeField), Raft: "r"}}, true, false},
		{"node without id", Command{Op: OpSetNode, Node: &NodeInfo{HTTP: "h"}}, false, false},
		{"remove without node", Command{Op: OpRemoveNode}, false, false},
		{"node field too long", Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: long(MaxNodeField + 1)}}, false, false},
		{"node id too long", Command{Op: OpRemoveNode, Node: &NodeInfo{ID: long(MaxNodeField + 1)}}, false, false},
		{"op zero", Command{URL: u1}, false, false},
		{"op unknown", Command{Op: OpRemoveNode + 1, URL: u1}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v does not wrap ErrInvalidCommand", err)
			}
			if errors.Is(err, ErrRowTooLong) != tc.rowLong {
				t.Fatalf("error %v: wraps ErrRowTooLong = %v, want %v", err, !tc.rowLong, tc.rowLong)
			}
			data, encErr := tc.cmd.Encode()
			if encErr != nil {
				t.Fatal(encErr)
			}
			if _, derr := DecodeCommand(data); (derr == nil) != tc.ok && tc.name != "glob not UTF-8" {
				// JSON turns invalid UTF-8 into U+FFFD, so that case decodes.
				t.Fatalf("DecodeCommand: %v, want ok=%v", derr, tc.ok)
			}
		})
	}
}

// An entry bbolt could not store (a 40,000-byte key) is refused with an
// error, the node goes on, and it restarts past it: once applied, the
// entry is not applied again, and when Raft replays it, it is refused
// again rather than panicking.
func TestOversizedIDEntrySurvivesRestart(t *testing.T) {
	f, path := openTest(t)
	a := &applier{t: t, f: f}
	bad := sub("a")
	bad.ID = strings.Repeat("i", 40000)
	res := a.apply(sub("before"), bad, sub("after"))
	if res[0].Outcome != Applied || res[2].Outcome != Applied {
		t.Fatalf("neighbours of the bad entry: %+v", res)
	}
	if !errors.Is(res[1].Err, ErrInvalidCommand) {
		t.Fatalf("40,000-byte id: %+v, want ErrInvalidCommand", res[1])
	}
	g := reopen(t, f, path)
	if g.AppliedIndex() != 3 {
		t.Fatalf("applied index after restart = %d, want 3", g.AppliedIndex())
	}
	// Raft replays the log after its last snapshot, the bad entry too.
	b := &applier{t: t, f: g}
	b.apply(sub("before"), bad, sub("after"))
	// A replica that has not applied it yet refuses it the same way.
	b.index = 0
	h, _ := openTest(t)
	if r := (&applier{t: t, f: h, index: 1}).apply(bad)[0]; !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("fresh replica: %+v", r)
	}
	b.index = 3
	if r := b.apply(sub("later"))[0]; r.Outcome != Applied {
		t.Fatalf("entry after restart: %+v", r)
	}
	want := []Subscription{{Exact, u1, "after", rec}, {Exact, u1, "before", rec}, {Exact, u1, "later", rec}}
	if got := g.All(); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
}

func TestPerURLCap(t *testing.T) {
	capped := func(c Command, n int) Command { c.MaxPerURL = n; return c }
	glob := func(url, g string) Command { return Command{Op: OpSubscribeGlob, URL: url, Glob: g} }
	unsub := Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a")}
	set := func(n int, topics ...string) Command {
		c := Command{Op: OpSetSubscriptions, URL: u1, MaxPerURL: n}
		for _, tp := range topics {
			c.Exact = append(c.Exact, ExactEntry{Topic: []byte(tp)})
		}
		return c
	}
	tests := []struct {
		name string
		cmds []Command
		want []Outcome
		rows int // rows of u1 afterwards
	}{
		{"exact and glob count together", []Command{capped(sub("a"), 2), capped(glob(u1, "x*"), 2), capped(sub("b"), 2)}, []Outcome{Applied, Applied, TooMany}, 2},
		{"other URLs do not count", []Command{capped(glob(u2, "x*"), 1), capped(sub("a"), 1), capped(glob(u2, "y*"), 1)}, []Outcome{Applied, Applied, TooMany}, 1},
		{"no cap", []Command{sub("a"), sub("b"), sub("c")}, []Outcome{Applied, Applied, Applied}, 3},
		{"conflict before cap", []Command{capped(sub("a"), 1), capped(sub("a"), 1)}, []Outcome{Applied, Conflict}, 1},
		{"unsubscribe frees a row", []Command{capped(sub("a"), 1), capped(sub("b"), 1), unsub, capped(sub("b"), 1)}, []Outcome{Applied, TooMany, Applied, Applied}, 1},
		{"set over cap changes nothing", []Command{sub("a"), set(2, "b", "c", "d")}, []Outcome{Applied, TooMany}, 1},
		{"set within cap", []Command{sub("a"), sub("b"), set(2, "c", "d"), capped(sub("e"), 2)}, []Outcome{Applied, Applied, Applied, TooMany}, 2},
		{"set counts with subscribes", []Command{set(3, "a", "b"), capped(glob(u1, "g"), 3), capped(glob(u1, "h"), 3)}, []Outcome{Applied, Applied, TooMany}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One batch (the count within a batch), one entry per batch
			// (the count from the index), and after a restart.
			f, path := openTest(t)
			if got := outcomes((&applier{t: t, f: f}).apply(tc.cmds...)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("one batch: %v, want %v", got, tc.want)
			}
			g, _ := openTest(t)
			b := &applier{t: t, f: g}
			var got []Outcome
			for _, c := range tc.cmds {
				got = append(got, outcomes(b.apply(c))...)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("one entry per batch: %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(f.All(), g.All()) {
				t.Fatalf("tables differ:\n%v\n%v", f.All(), g.All())
			}
			exact, globs, err := f.List(u1)
			if err != nil {
				t.Fatal(err)
			}
			if len(exact)+len(globs) != tc.rows {
				t.Fatalf("%s holds %d rows, want %d", u1, len(exact)+len(globs), tc.rows)
			}
			h := reopen(t, f, path)
			if h.idx.strs.rowsOf(u1) != tc.rows {
				t.Fatalf("count after restart %d, want %d", h.idx.strs.rowsOf(u1), tc.rows)
			}
		})
	}
}

func outcomes(rs []Result) []Outcome {
	out := make([]Outcome, len(rs))
	for i, r := range rs {
		out[i] = r.Outcome
		if r.Err != nil {
			out[i] = 0
		}
	}
	return out
}

// A match that is testing globs holds nothing Apply needs: with a match
// stopped in the middle of its glob walk, a batch of writes applies and a
// second match completes.
func TestSlowMatchDoesNotBlockApply(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	var cmds []Command
	for i := range 500 {
		cmds = append(cmds, Command{Op: OpSubscribeGlob, URL: u1, Glob: fmt.Sprintf("*%d", i)})
	}
	a.apply(cmds...)
	want := f.Match([]byte("topic-7"))
	if len(want) != 1 {
		t.Fatalf("match before: %+v", want)
	}

	inMatch, release := make(chan struct{}), make(chan struct{})
	var stopped atomic.Bool
	f.matchHook = func() {
		if stopped.CompareAndSwap(false, true) {
			close(inMatch)
			<-release
		}
	}
	matched := make(chan []Subscription, 1)
	go func() { matched <- f.Match([]byte("topic-7")) }()
	<-inMatch

	applied := make(chan []Result, 1)
	go func() {
		applied <- a.apply(sub("topic-7"), Command{Op: OpSubscribeGlob, URL: u2, Glob: "topic-*"}, Command{Op: OpUnsubscribeGlob, URL: u1, Glob: "*7"})
	}()
	deadline := time.After(10 * time.Second)
	select {
	case res := <-applied:
		if !reflect.DeepEqual(outcomes(res), []Outcome{Applied, Applied, Applied}) {
			t.Errorf("apply during a match: %+v", res)
		}
	case <-deadline:
		close(release)
		t.Fatal("apply did not complete while a match was in progress")
	}
	if got := f.Match([]byte("topic-7")); len(got) != 2 {
		t.Errorf("second match: %+v, want the exact row and topic-*", got)
	}
	close(release)
	select {
	case got := <-matched:
		// The stopped match walked the tree published before the batch;
		// its pattern was removed meanwhile, so it may report it or not,
		// but nothing else.
		if len(got) > 1 || (len(got) == 1 && !reflect.DeepEqual(got, want)) {
			t.Errorf("stopped match returned %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stopped match did not return")
	}
}

// A batch whose write fails is retried, reads go on, WriteErr reports
// the failure, and Close ends the retries. (TestDiskFull fills a real
// disk; this test fails the write by taking away a bucket the batch needs,
// which works without a mount namespace.)
func TestCloseStopsRetrying(t *testing.T) {
	f, _ := openTest(t)
	f.retryMin, f.retryMax = time.Millisecond, 5*time.Millisecond
	a := &applier{t: t, f: f}
	a.apply(sub("a"))
	if err := f.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRequests) }); err != nil {
		t.Fatal(err)
	}
	done := make(chan []Result, 1)
	go func() { done <- a.apply(sub("b")) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for f.WriteErr() == nil {
		select {
		case <-ctx.Done():
			t.Fatal("WriteErr stayed nil while writes fail")
		case <-time.After(time.Millisecond):
		}
	}
	if !errors.Is(f.WriteErr(), ErrWriteFailing) {
		t.Fatalf("WriteErr() = %v", f.WriteErr())
	}
	if got := f.Match([]byte("a")); len(got) != 1 {
		t.Fatalf("reads stopped while writes fail: %+v", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if !errors.Is(res[0].Err, ErrClosed) {
			t.Fatalf("batch cut short by Close: %+v", res)
		}
	case <-ctx.Done():
		t.Fatal("Close did not stop the retries")
	}
}
