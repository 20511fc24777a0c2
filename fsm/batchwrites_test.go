package fsm

import (
	"reflect"
	"testing"
)

// setOf is a set_subscriptions of url with exact topics and globs, each
// list ascending, recovery rec on every row.
func setOf(url, rec string, topics []string, globs []string) Command {
	c := Command{Op: OpSetSubscriptions, URL: url}
	for _, t := range topics {
		c.Exact = append(c.Exact, ExactEntry{Topic: []byte(t), Recovery: rec})
	}
	for _, g := range globs {
		c.Globs = append(c.Globs, GlobEntry{Glob: g, Recovery: rec})
	}
	return c
}

// TestRowWritesInBatchOrder: a batch writes the rows of its
// set_subscriptions in key order at its end, so every read of a URL's
// rows later in the same batch must still see them. Each log is applied
// one entry per batch and in batches of other sizes: the outcomes, the
// index and the table on disk (reopened, the index rebuilt from bbolt)
// must be the same.
func TestRowWritesInBatchOrder(t *testing.T) {
	ua, ub, uc := "http://127.0.0.1:9/a", "http://127.0.0.1:9/b", "http://127.0.0.1:9/c"
	unsub := func(url, topic string) Command {
		return Command{Op: OpUnsubscribeExact, URL: url, Topic: []byte(topic)}
	}
	subTo := func(url, topic string) Command {
		return Command{Op: OpSubscribeExact, URL: url, Topic: []byte(topic)}
	}
	capped := func(c Command, n int) Command { c.MaxPerURL = n; return c }
	tests := []struct {
		name string
		log  []Command
	}{
		{"URLs out of key order", []Command{
			setOf(uc, "", []string{"c1", "c2"}, []string{"c/*"}),
			setOf(ua, rec, []string{"a1", "a2", "a3"}, nil),
			setOf(ub, "", []string{"b1"}, []string{"*/b"}),
		}},
		{"a URL set twice", []Command{
			setOf(ub, "", []string{"x", "y"}, []string{"g/*"}),
			setOf(ua, "", []string{"a"}, nil),
			setOf(ub, rec, []string{"y", "z"}, nil),
		}},
		{"subscribe and unsubscribe rows just set", []Command{
			setOf(ub, "", []string{"x", "y"}, nil),
			subTo(ub, "x"),
			unsub(ub, "y"),
			subTo(ub, "w"),
			unsub(ub, "y"),
			setOf(ua, "", []string{"p"}, nil),
		}},
		{"a cap counts rows just set", []Command{
			setOf(ub, "", []string{"x", "y"}, nil),
			capped(subTo(ub, "z"), 2),
			capped(setOf(ub, "", []string{"x", "y", "z"}, nil), 2),
			capped(subTo(ua, "z"), 2),
		}},
	}
	type state struct {
		results []Result
		rows    []Subscription
	}
	run := func(t *testing.T, log []Command, size int) (state, state) {
		f, path := openTest(t)
		a := &applier{t: t, f: f}
		var s state
		for i := 0; i < len(log); i += size {
			s.results = append(s.results, a.apply(log[i:min(i+size, len(log))]...)...)
		}
		s.rows = f.All()
		checkAgainstBbolt(t, f)
		g := reopen(t, f, path)
		defer g.Close()
		return s, state{s.results, g.All()}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _ := run(t, tt.log, 1)
			for _, size := range []int{len(tt.log), 2, 3} {
				got, reopened := run(t, tt.log, size)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("batches of %d: %+v, want %+v", size, got, want)
				}
				if !reflect.DeepEqual(reopened.rows, want.rows) {
					t.Errorf("batches of %d, reopened: rows %+v, want %+v", size, reopened.rows, want.rows)
				}
			}
			if len(want.rows) == 0 {
				t.Fatal("the log left no rows: the test proves nothing")
			}
		})
	}
}
