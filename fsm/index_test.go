package fsm

import (
	"cmp"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
)

// Small pools, so that random commands collide on every URL, topic and
// pattern, and recovery URLs are shared with URLs.
var (
	diffURLs     = []string{u1, u2, "http://127.0.0.1:3007/a", "http://127.0.0.1:3008/b"}
	diffRecovery = []string{"", rec, u2, "http://127.0.0.1:3009/r"}
	diffTopics   = []string{"a", "b", "a/b", "a/c", "b/a", "ab"}
	diffGlobs    = []string{"a*", "*", "*b", "a/?", "[ab]/*", "*/a"}
)

// randomCommand is a subscribe, unsubscribe or set_subscriptions of
// random rows from the pools.
func randomCommand(r *rand.Rand) Command {
	pick := func(pool []string) string { return pool[r.IntN(len(pool))] }
	url, recovery := pick(diffURLs), pick(diffRecovery)
	switch r.IntN(6) {
	case 0:
		return Command{Op: OpSubscribeExact, URL: url, Topic: []byte(pick(diffTopics)), Recovery: recovery}
	case 1:
		return Command{Op: OpSubscribeGlob, URL: url, Glob: pick(diffGlobs), Recovery: recovery}
	case 2:
		return Command{Op: OpUnsubscribeExact, URL: url, Topic: []byte(pick(diffTopics))}
	case 3:
		return Command{Op: OpUnsubscribeGlob, URL: url, Glob: pick(diffGlobs)}
	}
	c := Command{Op: OpSetSubscriptions, URL: url}
	for _, t := range slices.Sorted(slices.Values(diffTopics)) {
		if r.IntN(3) == 0 {
			c.Exact = append(c.Exact, ExactEntry{Topic: []byte(t), Recovery: pick(diffRecovery)})
		}
	}
	for _, g := range slices.Sorted(slices.Values(diffGlobs)) {
		if r.IntN(4) == 0 {
			c.Globs = append(c.Globs, GlobEntry{Glob: g, Recovery: pick(diffRecovery)})
		}
	}
	return c
}

// bboltRows reads every row from bbolt, the source of truth.
func bboltRows(t *testing.T, f *FSM) []Subscription {
	t.Helper()
	var rows []Subscription
	err := f.db.View(func(tx *bolt.Tx) error {
		for _, kind := range []Kind{Exact, Glob} {
			err := tx.Bucket(kind.bucket()).ForEach(func(k, v []byte) error {
				url, key, err := splitKeyBytes(k)
				rows = append(rows, Subscription{Kind: kind, URL: string(url), Key: string(key), Recovery: string(v)})
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func compareSubs(a, b Subscription) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.URL, b.URL), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Recovery, b.Recovery))
}

// bruteMatch is Match by a scan of every row.
func bruteMatch(t *testing.T, rows []Subscription, topic string) []Subscription {
	t.Helper()
	var out []Subscription
	for _, r := range rows {
		if r.Kind == Exact && r.Key == topic {
			out = append(out, r)
			continue
		}
		if r.Kind == Glob {
			p, err := globmatch.Compile(r.Key)
			if err != nil {
				t.Fatal(err)
			}
			if p.Match([]byte(topic)) {
				out = append(out, r)
			}
		}
	}
	return out
}

// checkAgainstBbolt compares everything the index answers with a scan of
// bbolt, and the string table's counts with the rows.
func checkAgainstBbolt(t *testing.T, f *FSM) {
	t.Helper()
	rows := bboltRows(t, f)
	slices.SortFunc(rows, compareSubs)
	if got := f.All(); !reflect.DeepEqual(got, rows) && len(got)+len(rows) > 0 {
		t.Fatalf("All() = %v\nbbolt holds %v", got, rows)
	}
	for _, topic := range append(slices.Clone(diffTopics), "x", "a/bb") {
		got := f.Match([]byte(topic))
		kinds := slices.IsSortedFunc(got, func(a, b Subscription) int { return cmp.Compare(a.Kind, b.Kind) })
		slices.SortFunc(got, compareSubs)
		if want := bruteMatch(t, rows, topic); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
			t.Fatalf("Match(%q) = %v\nbrute force %v", topic, got, want)
		}
		if !kinds {
			t.Fatalf("Match(%q) does not give exact rows before glob rows", topic)
		}
	}
	for _, r := range rows {
		if got, ok := f.Lookup(r.Kind, r.URL, r.Key); !ok || got != r.Recovery {
			t.Fatalf("Lookup(%v) = %q, %v; want %q", r, got, ok, r.Recovery)
		}
	}
	if _, ok := f.Lookup(Exact, "http://127.0.0.1:1/never", "a"); ok {
		t.Fatal("Lookup found a URL no row names")
	}
	checkIndexAgrees(t, f, rows)
	checkStrTable(t, f.idx.strs, rows)
	checkMulti(t, f.idx)
}

// checkMulti requires every set of two or more rows to be named by one
// key, sorted, and every free place to be empty.
func checkMulti(t *testing.T, x *index) {
	t.Helper()
	named := map[uint32]int{}
	for _, kind := range []Kind{Exact, Glob} {
		for key, s := range x.of(kind) {
			if !s.isMulti() {
				continue
			}
			named[s.place()]++
			set := x.multi[s.place()]
			if len(set) < 2 || !slices.IsSortedFunc(set, func(a, b pair) int { return cmp.Compare(a.url, b.url) }) {
				t.Fatalf("%v %q: set %v", kind, key, set)
			}
		}
	}
	for _, place := range x.freeMulti {
		if x.multi[place] != nil || named[place] != 0 {
			t.Fatalf("free place %d holds %v, named %d times", place, x.multi[place], named[place])
		}
	}
	for place, n := range named {
		if n != 1 {
			t.Fatalf("place %d named by %d keys", place, n)
		}
	}
	if len(named)+len(x.freeMulti) != len(x.multi) {
		t.Fatalf("%d places named, %d free, %d in all", len(named), len(x.freeMulti), len(x.multi))
	}
}

// checkStrTable requires the string table to hold exactly the URLs the
// rows name, with their counts, and every freed id to be free.
func checkStrTable(t *testing.T, st *strTable, rows []Subscription) {
	t.Helper()
	refs, perURL := map[string]uint32{}, map[string]uint32{}
	for _, r := range rows {
		refs[r.URL]++
		perURL[r.URL]++
		if r.Recovery != "" {
			refs[r.Recovery]++
		}
	}
	if len(st.ids) != len(refs) {
		t.Fatalf("string table holds %d strings, rows name %d", len(st.ids), len(refs))
	}
	for s, n := range refs {
		id, ok := st.ids[s]
		if !ok || st.strs[id] != s || st.refs[id] != n || st.rows[id] != perURL[s] {
			t.Fatalf("string %q: id %d (%v), counts %d/%d; rows say %d/%d", s, id, ok, st.refs[id], st.rows[id], n, perURL[s])
		}
	}
	for _, id := range st.free {
		if st.strs[id] != "" || st.refs[id] != 0 || st.rows[id] != 0 {
			t.Fatalf("freed id %d still holds %q", id, st.strs[id])
		}
	}
	if used := len(st.strs) - 1 - len(st.free); used != len(st.ids) {
		t.Fatalf("%d ids in use, %d strings", used, len(st.ids))
	}
}

// TestIndexMatchesBbolt applies random batches of subscribes,
// unsubscribes and set_subscriptions, restarting the FSM and restoring it
// from its own snapshot now and then, and after every step requires the
// index to answer exactly what a scan of bbolt answers.
func TestIndexMatchesBbolt(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run("", func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			f, path := openTest(t)
			a := &applier{t: t, f: f}
			for step := range 120 {
				switch r.IntN(20) {
				case 0:
					f = reopen(t, f, path)
				case 1:
					restoreOwnSnapshot(t, f)
				}
				a.f = f
				cmds := make([]Command, 1+r.IntN(12))
				for i := range cmds {
					cmds[i] = randomCommand(r)
				}
				for i, res := range a.apply(cmds...) {
					if res.Err != nil {
						t.Fatalf("step %d: %+v: %v", step, cmds[i], res.Err)
					}
				}
				checkAgainstBbolt(t, f)
			}
		})
	}
}

func restoreOwnSnapshot(t *testing.T, f *FSM) {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := f.Restore(io.NopCloser(&s)); err != nil {
		t.Fatal(err)
	}
}

// perURL is every URL's row count.
func (x *index) perURL() map[string]int {
	out := map[string]int{}
	for id, n := range x.strs.rows {
		if n > 0 {
			out[x.strs.strs[id]] = int(n)
		}
	}
	return out
}
