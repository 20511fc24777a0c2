package fsm

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// openTest opens a table in a new file, closed when the test ends.
func openTest(tb testing.TB) (*FSM, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "subs.db")
	return openAt(tb, path), path
}

// openAt opens the table in the file at path, closed when the test ends.
func openAt(tb testing.TB, path string) *FSM {
	tb.Helper()
	f, err := Open(path, discardLogger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// reopen closes f, as a stopping node does, and opens its file again.
func reopen(tb testing.TB, f *FSM, path string) *FSM {
	tb.Helper()
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return openAt(tb, path)
}

type applier struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func (a *applier) apply(cmds ...Command) []Result {
	a.t.Helper()
	return a.applyAt(time.Time{}, cmds...)
}

// applyAt applies cmds as one batch of entries appended to the log at
// when: the log time by which request ids and HMAC codes expire.
func (a *applier) applyAt(when time.Time, cmds ...Command) []Result {
	a.t.Helper()
	logs := make([]*raft.Log, len(cmds))
	for i, c := range cmds {
		data, err := c.Encode()
		if err != nil {
			a.t.Fatal(err)
		}
		a.index++
		logs[i] = &raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: when}
	}
	out := a.f.ApplyBatch(logs)
	res := make([]Result, len(out))
	for i, o := range out {
		res[i] = o.(Result)
	}
	return res
}

const (
	u1  = "http://127.0.0.1:3002/v1/receive"
	u2  = "http://127.0.0.1:3005/v1/receive"
	rec = "http://127.0.0.1:3002/v1/recover"
)

func sub(topic string) Command {
	return Command{Op: OpSubscribeExact, URL: u1, Topic: []byte(topic), Recovery: rec}
}

// subsTo returns n subscribes of u1, to the topics prefix0 ... prefix<n-1>.
func subsTo(prefix string, n int) []Command {
	cmds := make([]Command, n)
	for i := range cmds {
		cmds[i] = sub(prefix + strconv.Itoa(i))
	}
	return cmds
}

func TestSubscribeUnsubscribeOutcomes(t *testing.T) {
	tests := []struct {
		name string
		cmds []Command
		want []Outcome
	}{
		{"subscribe then duplicate conflicts", []Command{sub("a"), sub("a")}, []Outcome{Applied, Conflict}},
		{"unsubscribe absent conflicts", []Command{{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a")}}, []Outcome{Conflict}},
		{"subscribe unsubscribe subscribe", []Command{sub("a"), {Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a")}, sub("a")}, []Outcome{Applied, Applied, Applied}},
		{"same topic two urls", []Command{sub("a"), {Op: OpSubscribeExact, URL: u2, Topic: []byte("a")}}, []Outcome{Applied, Applied}},
		{"glob twice conflicts", []Command{{Op: OpSubscribeGlob, URL: u1, Glob: "a/*"}, {Op: OpSubscribeGlob, URL: u1, Glob: "a/*", Recovery: rec}}, []Outcome{Applied, Conflict}},
		{"unsubscribe glob", []Command{{Op: OpSubscribeGlob, URL: u1, Glob: "a/*"}, {Op: OpUnsubscribeGlob, URL: u1, Glob: "a/*"}, {Op: OpUnsubscribeGlob, URL: u1, Glob: "a/*"}}, []Outcome{Applied, Applied, Conflict}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := openTest(t)
			a := &applier{t: t, f: f}
			// Once as one batch, once entry by entry: the outcomes of a
			// batch must equal those of sequential application.
			got := a.apply(tc.cmds...)
			for i, r := range got {
				if r.Outcome != tc.want[i] || r.Err != nil {
					t.Fatalf("batched: entry %d: got %+v, want %v", i, r, tc.want[i])
				}
			}
			g, _ := openTest(t)
			b := &applier{t: t, f: g}
			for i, c := range tc.cmds {
				if r := b.apply(c)[0]; r.Outcome != tc.want[i] {
					t.Fatalf("sequential: entry %d: got %+v, want %v", i, r, tc.want[i])
				}
			}
			if !reflect.DeepEqual(f.All(), g.All()) {
				t.Fatalf("batched and sequential tables differ:\n%v\n%v", f.All(), g.All())
			}
		})
	}
}

func TestConflictKeepsExistingRecovery(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	a.apply(sub("a"), Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), Recovery: "http://other/"})
	if r, ok := f.Lookup(Exact, u1, "a"); !ok || r != rec {
		t.Fatalf("recovery = %q, %v; want %q", r, ok, rec)
	}
}

func TestMatchExactThenGlob(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	a.apply(
		sub("foo/bar"),
		Command{Op: OpSubscribeGlob, URL: u1, Glob: "foo/*"},
		Command{Op: OpSubscribeGlob, URL: u2, Glob: "*bar"},
		Command{Op: OpSubscribeGlob, URL: u2, Glob: "nope/*"},
		Command{Op: OpSubscribeExact, URL: u2, Topic: []byte("\xff\xfe")},
		Command{Op: OpSubscribeGlob, URL: u2, Glob: "*"},
	)
	got := f.Match([]byte("foo/bar"))
	if len(got) != 4 || got[0].Kind != Exact {
		t.Fatalf("match = %+v, want exact first then 3 globs", got)
	}
	var globs []string
	for _, s := range got[1:] {
		globs = append(globs, s.URL+" "+s.Key)
	}
	sort.Strings(globs)
	want := []string{u1 + " foo/*", u2 + " *", u2 + " *bar"}
	if !reflect.DeepEqual(globs, want) {
		t.Fatalf("globs = %v, want %v", globs, want)
	}
	// A topic that is not UTF-8 reaches exact subscriptions only.
	if got := f.Match([]byte("\xff\xfe")); len(got) != 1 || got[0].Kind != Exact {
		t.Fatalf("invalid UTF-8 topic matched %+v", got)
	}
}

func TestSetSubscriptionsReconciles(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	a.apply(
		sub("a"), sub("b"), sub("c"),
		Command{Op: OpSubscribeGlob, URL: u1, Glob: "x*"},
		Command{Op: OpSubscribeExact, URL: u2, Topic: []byte("b")},
	)
	res := a.apply(Command{
		Op: OpSetSubscriptions, URL: u1,
		Exact: []ExactEntry{{Topic: []byte("b"), Recovery: "http://new/"}, {Topic: []byte("d")}},
		Globs: []GlobEntry{{Glob: "y*", Recovery: rec}},
	})
	if res[0].Outcome != Applied {
		t.Fatalf("set_subscriptions: %+v", res[0])
	}
	exact, globs, err := f.List(u1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Subscription{{Exact, u1, "b", "http://new/"}, {Exact, u1, "d", ""}}
	if !reflect.DeepEqual(exact, want) {
		t.Fatalf("exact = %+v, want %+v", exact, want)
	}
	if want := []Subscription{{Glob, u1, "y*", rec}}; !reflect.DeepEqual(globs, want) {
		t.Fatalf("globs = %+v, want %+v", globs, want)
	}
	// The other URL is untouched, and the index agrees with bbolt.
	if _, ok := f.Lookup(Exact, u2, "b"); !ok {
		t.Fatal("other URL's subscription removed")
	}
	if got := f.Match([]byte("xa")); len(got) != 0 {
		t.Fatalf("removed glob still matches: %+v", got)
	}
	if got := f.Match([]byte("ya")); len(got) != 1 {
		t.Fatalf("new glob does not match: %+v", got)
	}
	// Empty lists remove everything of the URL (what a client sends on
	// shutdown).
	a.apply(Command{Op: OpSetSubscriptions, URL: u1})
	if exact, globs, _ := f.List(u1); len(exact)+len(globs) != 0 {
		t.Fatalf("left after empty set: %v %v", exact, globs)
	}
}

func TestListOrdersByKeyBytes(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	// A URL that is a prefix of another must not see its rows.
	a.apply(sub("b"), sub("a/b"), sub("a"), Command{Op: OpSubscribeExact, URL: u1 + "x", Topic: []byte("0")})
	exact, _, err := f.List(u1)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range exact {
		keys = append(keys, e.Key)
	}
	if want := []string{"a", "a/b", "b"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
}

func TestRestartNeitherLosesNorReapplies(t *testing.T) {
	f, path := openTest(t)
	a := &applier{t: t, f: f}
	cmds := subsTo("t", 50)
	a.apply(cmds...)
	before := f.All()
	g := reopen(t, f, path)
	if g.AppliedIndex() != 50 {
		t.Fatalf("applied index after restart = %d, want 50", g.AppliedIndex())
	}
	if !reflect.DeepEqual(g.All(), before) {
		t.Fatal("table differs after restart")
	}
	// Raft replays entries after its last snapshot: they must be skipped,
	// not turned into conflicts, and a new entry must still apply.
	b := &applier{t: t, f: g, index: 40}
	res := b.apply(cmds[40:]...)
	for i, r := range res {
		if r.Outcome != Applied {
			t.Fatalf("replayed entry %d: %+v", 41+i, r)
		}
	}
	if res := b.apply(sub("new")); res[0].Outcome != Applied {
		t.Fatalf("new entry after replay: %+v", res[0])
	}
	if n, _ := g.Counts(); n != 51 {
		t.Fatalf("count = %d, want 51", n)
	}
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestore(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	a.apply(sub("a"), sub("b"), Command{Op: OpSubscribeGlob, URL: u2, Glob: "a*", Recovery: rec})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot was taken are not in it.
	a.apply(sub("c"))
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	g, _ := openTest(t)
	gb := &applier{t: t, f: g}
	gb.apply(sub("stale"))
	if err := g.Restore(io.NopCloser(&s)); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 3 {
		t.Fatalf("applied after restore = %d, want 3", g.AppliedIndex())
	}
	want := []Subscription{{Exact, u1, "a", rec}, {Exact, u1, "b", rec}, {Glob, u2, "a*", rec}}
	if got := g.All(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored = %+v, want %+v", got, want)
	}
	if got := g.Match([]byte("abc")); len(got) != 1 {
		t.Fatalf("restored index match = %+v", got)
	}
}

func TestUndecodableEntryChangesNothing(t *testing.T) {
	f, _ := openTest(t)
	out := f.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: []byte("not json")},
		{Index: 2, Type: raft.LogCommand, Data: []byte(`{"op":99}`)},
		{Index: 3, Type: raft.LogConfiguration},
	})
	for i, o := range out[:2] {
		if r := o.(Result); r.Err == nil {
			t.Fatalf("entry %d accepted", i+1)
		}
	}
	if f.AppliedIndex() != 3 {
		t.Fatalf("applied = %d, want 3", f.AppliedIndex())
	}
	if len(f.All()) != 0 {
		t.Fatal("table changed")
	}
}

func BenchmarkMatchExact1000Topics(b *testing.B) {
	f, _ := openTest(b)
	a := &applier{t: b, f: f}
	a.apply(subsTo("topic-", 1000)...)
	topic := []byte("topic-500")
	b.ResetTimer()
	for b.Loop() {
		if len(f.Match(topic)) != 1 {
			b.Fatal("no match")
		}
	}
}

func TestRequestIDAppliesAtMostOnce(t *testing.T) {
	f, _ := openTest(t)
	a := &applier{t: t, f: f}
	at := time.Unix(1700000000, 0)
	apply := func(c Command, when time.Time) Result { return a.applyAt(when, c)[0] }
	c := sub("a")
	c.ID = "req-1"
	if r := apply(c, at); r.Outcome != Applied {
		t.Fatalf("first: %+v", r)
	}
	// The same request retried (a new log entry, after a leader change)
	// reports its first outcome instead of a 409.
	if r := apply(c, at.Add(time.Second)); r.Outcome != Applied {
		t.Fatalf("retry: %+v, want the first outcome (applied)", r)
	}
	// Even when a later write undid it in between, the retry changes
	// nothing.
	apply(Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a"), ID: "req-2"}, at.Add(2*time.Second))
	apply(c, at.Add(3*time.Second))
	if _, ok := f.Lookup(Exact, u1, "a"); ok {
		t.Fatal("a retried request was applied a second time")
	}
	// After the retention, the id is forgotten (and the table bounded).
	apply(Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("z"), ID: "req-3"}, at.Add(RequestRetention+time.Minute))
	if r := apply(c, at.Add(RequestRetention+2*time.Minute)); r.Outcome != Applied {
		t.Fatalf("after retention: %+v", r)
	}
	if _, ok := f.Lookup(Exact, u1, "a"); !ok {
		t.Fatal("a request id past its retention still blocked the command")
	}
}

func TestNodesAreReplicatedState(t *testing.T) {
	f, path := openTest(t)
	a := &applier{t: t, f: f}
	a.apply(
		Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", HTTP: "h1:1", Raft: "r1:1"}},
		Command{Op: OpSetNode, Node: &NodeInfo{ID: "n2", HTTP: "h2:1", Raft: "r2:1"}},
		Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", HTTP: "h1:2", Raft: "r1:1"}},
	)
	if res := a.apply(Command{Op: OpRemoveNode, Node: &NodeInfo{ID: "n2"}}, Command{Op: OpRemoveNode, Node: &NodeInfo{ID: "n2"}}); res[0].Outcome != Applied || res[1].Outcome != Conflict {
		t.Fatalf("remove: %+v", res)
	}
	want := map[string]NodeInfo{"n1": {ID: "n1", HTTP: "h1:2", Raft: "r1:1"}}
	if got := f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("nodes %+v", got)
	}
	g := reopen(t, f, path)
	if got := g.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("nodes after reopen %+v", got)
	}
}

func TestReplayedAuthCodeIsRefused(t *testing.T) {
	f, _ := openTest(t)
	at := time.Unix(1700000000, 0)
	code := &AuthCode{Code: bytes.Repeat([]byte{7}, 64), ExpiresMs: at.Add(3 * time.Minute).UnixMilli()}
	a := &applier{t: t, f: f}
	apply := func(c Command, when time.Time) Result { return a.applyAt(when, c)[0] }
	first := sub("a")
	first.AuthCode = code
	if r := apply(first, at); r.Outcome != Applied {
		t.Fatalf("first use: %+v", r)
	}
	// The same signed request again (another request id: a replay, not a
	// retry), even for another change, is refused and changes nothing.
	again := Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a"), AuthCode: code}
	if r := apply(again, at.Add(time.Minute)); r.Outcome != Replayed {
		t.Fatalf("replay: %+v", r)
	}
	if _, ok := f.Lookup(Exact, u1, "a"); !ok {
		t.Fatal("a replayed command changed the table")
	}
	// Once expired (by log time) the code is forgotten.
	if r := apply(again, at.Add(4*time.Minute)); r.Outcome != Applied {
		t.Fatalf("after expiry: %+v", r)
	}
}

// Every replica must reach the same table from the same log, however it
// happens to batch the entries (batches are each node's own timing, not
// part of the log). The log below has request ids and auth codes expiring
// in the middle of it, and AppendedAt going back (a new leader whose
// clock is behind).
func TestBatchingDoesNotChangeTheOutcome(t *testing.T) {
	at := time.Unix(1700000000, 0)
	code := func(c string, exp time.Time) *AuthCode {
		return &AuthCode{Code: []byte(fmt.Sprintf("%-64s", c)), ExpiresMs: exp.UnixMilli()}
	}
	withID := func(c Command, id string) Command { c.ID = id; return c }
	withCode := func(c Command, a *AuthCode) Command { c.AuthCode = a; return c }
	type entry struct {
		cmd  Command
		when time.Time
	}
	log := []entry{
		{withID(sub("a"), "req-1"), at},
		{Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a"), ID: "req-2"}, at.Add(time.Second)},
		{sub("filler"), at.Add(11 * time.Minute)},
		// Past the retention of req-1: applied again.
		{withID(sub("a"), "req-1"), at.Add(12 * time.Minute)},
		{withCode(sub("b"), code("c1", at.Add(13*time.Minute+2*time.Minute))), at.Add(13 * time.Minute)},
		{Command{Op: OpUnsubscribeExact, URL: u1, Topic: []byte("b")}, at.Add(14 * time.Minute)},
		// A leader whose clock is 3 minutes behind replays c1: still
		// within its expiry by the log clock, so refused.
		{withCode(sub("b"), code("c1", at.Add(15*time.Minute))), at.Add(11*time.Minute + 30*time.Second)},
		{sub("filler2"), at.Add(16 * time.Minute)},
		// c1 has expired by the log clock: a code seen again now is fresh.
		{withCode(sub("c"), code("c1", at.Add(18*time.Minute))), at.Add(16*time.Minute + time.Second)},
		{Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", HTTP: "h:1", Raft: "r:1"}}, at.Add(17 * time.Minute)},
	}
	type outcome struct {
		results []Outcome
		rows    []Subscription
		nodes   map[string]NodeInfo
	}
	run := func(sizes []int) outcome {
		f, _ := openTest(t)
		var o outcome
		idx := uint64(1)
		for i := 0; i < len(log); {
			n := min(sizes[len(o.results)%len(sizes)], len(log)-i)
			batch := make([]*raft.Log, n)
			for j := range batch {
				data, err := log[i+j].cmd.Encode()
				if err != nil {
					t.Fatal(err)
				}
				batch[j] = &raft.Log{Index: idx, Type: raft.LogCommand, Data: data, AppendedAt: log[i+j].when}
				idx++
			}
			for _, r := range f.ApplyBatch(batch) {
				o.results = append(o.results, r.(Result).Outcome)
			}
			i += n
		}
		o.rows, o.nodes = f.All(), f.Nodes()
		return o
	}
	want := run([]int{1})
	wantResults := []Outcome{Applied, Applied, Applied, Applied, Applied, Applied, Replayed, Applied, Applied, Applied}
	if !reflect.DeepEqual(want.results, wantResults) {
		t.Fatalf("one entry per batch: outcomes %v, want %v", want.results, wantResults)
	}
	for _, sizes := range [][]int{{len(log)}, {2}, {3}, {4, 1}, {1, 5}} {
		got := run(sizes)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("batches of %v:\n got %+v\nwant %+v", sizes, got, want)
		}
	}
}
