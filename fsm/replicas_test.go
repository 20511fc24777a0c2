package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// logReader turns fuzz bytes into a log; past the end it reads zeros.
type logReader struct{ b []byte }

func (r *logReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *logReader) u16() int { return int(r.byte())<<8 | int(r.byte()) }

func (r *logReader) take(n int) []byte {
	n = min(n, len(r.b))
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// fuzzSizes are field lengths around every limit, and past bbolt's.
var fuzzSizes = []int{0, 1, 7, MaxRequestID, MaxRequestID + 1, MaxNodeField + 1, MaxRowKey - 1, MaxRowKey + 1, MaxURL, MaxURL + 1, 40000}

// text returns a short value from a small pool (so entries collide on
// URLs, topics and ids) or one of fuzzSizes bytes long.
func (r *logReader) text(pool ...string) string {
	b := r.byte()
	if int(b)%8 < 6 {
		return pool[int(b)%len(pool)]
	}
	return strings.Repeat(string(rune('a'+b%26)), fuzzSizes[int(b)%len(fuzzSizes)])
}

func (r *logReader) command() Command {
	c := Command{Op: Op(r.byte() % 10)} // 0, 8 and 9 are unknown ops
	c.URL = r.text(u1, u2, "", "http://127.0.0.1:1/x")
	c.Topic = []byte(r.text("a", "b", "a/b", "\xff"))
	c.Glob = r.text("a*", "*", "[a-", "a/?")
	c.Recovery = r.text("", rec)
	c.ID = r.text("", "", "r1", "r2")
	c.MaxPerURL = int(r.byte()%5) - 1
	switch r.byte() % 4 {
	case 1:
		c.AuthCode = &AuthCode{Code: bytes.Repeat([]byte{r.byte() % 3}, AuthCodeSize), ExpiresMs: int64(r.byte()) * 20_000}
	case 2:
		c.AuthCode = &AuthCode{Code: []byte(r.text("short")), ExpiresMs: 1}
	}
	if b := r.byte(); b%3 != 0 {
		c.Node = &NodeInfo{ID: r.text("n1", "n2", ""), HTTP: r.text("h:1"), Raft: r.text("r:1")}
	}
	for range r.byte() % 4 {
		c.Exact = append(c.Exact, ExactEntry{Topic: []byte(r.text("a", "b", "c")), Recovery: r.text("", rec)})
	}
	for range r.byte() % 3 {
		c.Globs = append(c.Globs, GlobEntry{Glob: r.text("a*", "b*", "*"), Recovery: r.text("", rec)})
	}
	return c
}

type fuzzEntry struct {
	data []byte
	when time.Time
}

// fuzzLog reads a log: entries of random bytes or of commands with random
// and oversized fields, AppendedAt moving back and forth.
func fuzzLog(t testing.TB, data []byte) []fuzzEntry {
	r := &logReader{b: data}
	at := time.Unix(1700000000, 0)
	n := 1 + int(r.byte()%48)
	var log []fuzzEntry
	for range n {
		kind := r.byte()
		at = at.Add(time.Duration(int8(r.byte())) * 20 * time.Second)
		var payload []byte
		if kind%4 == 0 {
			payload = bytes.Clone(r.take(r.u16()))
		} else {
			var err error
			if payload, err = json.Marshal(r.command()); err != nil {
				t.Fatal(err)
			}
		}
		log = append(log, fuzzEntry{payload, at})
	}
	return log
}

// rawSeed encodes entries as fuzzLog reads them back verbatim.
func rawSeed(entries ...[]byte) []byte {
	out := []byte{byte(len(entries) - 1)}
	for _, e := range entries {
		out = append(out, 0, 3, byte(len(e)>>8), byte(len(e)))
		out = append(out, e...)
	}
	return out
}

func mustJSON(t testing.TB, c Command) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replicaState is everything that must agree between replicas.
type replicaState struct {
	Outcomes []string
	Rows     []Subscription
	Nodes    map[string]NodeInfo
	Applied  uint64
	Buckets  []string
}

// runReplica applies log to a fresh table in batches of the given sizes
// (cycled) and returns its state.
func runReplica(t testing.TB, dir string, log []fuzzEntry, sizes []int) replicaState {
	f, err := Open(filepath.Join(dir, "subs.db"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Durability is not under test here, and fsyncs would make each run
	// of the fuzz target take seconds.
	f.db.NoSync = true
	var st replicaState
	for i, b := 0, 0; i < len(log); b++ {
		n := min(sizes[b%len(sizes)], len(log)-i)
		batch := make([]*raft.Log, n)
		for j := range batch {
			batch[j] = &raft.Log{Index: uint64(i + j + 1), Type: raft.LogCommand, Data: log[i+j].data, AppendedAt: log[i+j].when}
		}
		for _, o := range f.ApplyBatch(batch) {
			r := o.(Result)
			st.Outcomes = append(st.Outcomes, fmt.Sprintf("%d/%v", r.Outcome, r.Err != nil))
		}
		i += n
	}
	st.Rows, st.Nodes, st.Applied = f.All(), f.Nodes(), f.AppliedIndex()
	checkIndexAgrees(t, f, st.Rows)
	if err := f.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				st.Buckets = append(st.Buckets, fmt.Sprintf("%s %x %x", name, k, v))
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkIndexAgrees checks the in-memory counts and glob tree against the
// rows.
func checkIndexAgrees(t testing.TB, f *FSM, rows []Subscription) {
	t.Helper()
	perURL := map[string]int{}
	var nExact, nGlob int
	for _, r := range rows {
		perURL[r.URL]++
		if r.Kind == Glob {
			nGlob++
			if !f.trie.Load().Has(r.Key) {
				t.Errorf("glob %q not in the tree", r.Key)
			}
		} else {
			nExact++
		}
	}
	if !reflect.DeepEqual(perURL, f.idx.perURL()) && len(perURL)+len(f.idx.perURL()) > 0 {
		t.Errorf("per-URL counts %v, rows say %v", f.idx.perURL(), perURL)
	}
	if e, g := f.Counts(); e != nExact || g != nGlob {
		t.Errorf("Counts() = %d, %d; rows say %d, %d", e, g, nExact, nGlob)
	}
	if f.trie.Load().Len() != len(f.idx.globs) {
		t.Errorf("tree holds %d patterns, index %d", f.trie.Load().Len(), len(f.idx.globs))
	}
}

// FuzzApplyReplicas feeds one log to three replicas, each batching it
// differently, and requires identical tables and outcomes: no entry,
// however malformed or oversized, may panic a replica or make replicas
// diverge.
func FuzzApplyReplicas(f *testing.F) {
	code := bytes.Repeat([]byte{9}, AuthCodeSize)
	seeds := [][]Command{
		{{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), ID: strings.Repeat("i", 40000)}, sub("b")},
		{sub("a"), {Op: OpSubscribeGlob, URL: u1, Glob: "a*", MaxPerURL: 2}, {Op: OpSubscribeExact, URL: u1, Topic: []byte("c"), MaxPerURL: 2}, {Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a")}},
		{{Op: OpSubscribeExact, URL: strings.Repeat("u", 40000), Topic: []byte("a")}, {Op: OpSetNode, Node: &NodeInfo{ID: strings.Repeat("n", 40000)}}},
		{{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte("b")}, {Topic: []byte("a")}}}, {Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte("a")}, {Topic: []byte("b")}}, MaxPerURL: 1}},
		{{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), AuthCode: &AuthCode{Code: code, ExpiresMs: 1700000060000}}, {Op: OpUnsubscribeExact, URL: u1, Topic: []byte("a"), AuthCode: &AuthCode{Code: code, ExpiresMs: 1700000060000}}},
		{{Op: 42, URL: u1}, {Op: OpRemoveNode}, {Op: OpSubscribeGlob, URL: u1, Glob: strings.Repeat("*", MaxRowKey)}},
	}
	for _, cmds := range seeds {
		var entries [][]byte
		for _, c := range cmds {
			entries = append(entries, mustJSON(f, c))
		}
		f.Add(rawSeed(entries...))
	}
	f.Add([]byte("\x05not json at all"))
	f.Add([]byte{47, 1, 200, 7, 7, 7, 7, 6, 7, 7, 1, 3, 3, 2, 2, 1, 5, 6, 7, 200, 9, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		log := fuzzLog(t, data)
		want := runReplica(t, t.TempDir(), log, []int{len(log)})
		split := []int{1 + int(len(data)%3), 1 + int(len(data)%5)}
		for _, sizes := range [][]int{{1}, split} {
			got := runReplica(t, t.TempDir(), log, sizes)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("batches of %v diverge from one batch:\n got %+v\nwant %+v", sizes, got, want)
			}
		}
		if want.Applied != uint64(len(log)) {
			t.Fatalf("applied index %d after %d entries", want.Applied, len(log))
		}
	})
}

func TestFuzzSeedHasOversizedID(t *testing.T) {
	seed := rawSeed(mustJSON(t, Command{Op: OpSubscribeExact, URL: u1, Topic: []byte("a"), ID: strings.Repeat("i", 40000)}))
	log := fuzzLog(t, seed)
	var c Command
	if len(log) != 1 || json.Unmarshal(log[0].data, &c) != nil || len(c.ID) != 40000 {
		t.Fatalf("the seed does not reach the log as a 40,000-byte id")
	}
}
