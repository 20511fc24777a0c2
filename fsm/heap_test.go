package fsm

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rows per URL of the large-table shape: exact topics, literal-prefix
// globs and leading-wildcard globs, each distinct to its URL (the worst
// case for the index: no topic is shared).
const (
	shapeExact  = 100
	shapePrefix = 10
	shapeLeadig = 10
	shapeRows   = shapeExact + shapePrefix + shapeLeadig
)

// writeShape writes urls URLs of the large-table shape straight into a
// bbolt file at path, as the FSM stores rows, and returns the row count.
// With shared, every URL subscribes the same topics and patterns.
func writeShape(tb testing.TB, path string, urls int, shared bool) int {
	tb.Helper()
	db, err := openDB(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	const perTx = 200
	for first := 0; first < urls; first += perTx {
		err := db.Update(func(tx *bolt.Tx) error {
			exact, glob := tx.Bucket(bucketExact), tx.Bucket(bucketGlob)
			for u := first; u < min(first+perTx, urls); u++ {
				url := fmt.Sprintf("http://127.0.0.1:9/table/%06d", u)
				id := strconv.Itoa(u)
				if shared {
					id = "s"
				}
				rec := ""
				if u%2 == 0 {
					rec = url + "/missed"
				}
				for t := range shapeExact {
					if err := exact.Put(makeKey(url, "table/"+id+"/"+strconv.Itoa(t)), []byte(rec)); err != nil {
						return err
					}
				}
				for g := range shapePrefix {
					if err := glob.Put(makeKey(url, "p/"+id+"/"+strconv.Itoa(g)+"/*"), []byte(rec)); err != nil {
						return err
					}
				}
				for g := range shapeLeadig {
					if err := glob.Put(makeKey(url, "*/"+id+"/"+strconv.Itoa(g)+"/x"), []byte(rec)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return urls * shapeRows
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// indexHeap opens a table of urls URLs of the large-table shape and
// returns the heap the open FSM holds per row and how long Open took.
func indexHeap(tb testing.TB, urls int, shared bool) (perRow float64, open time.Duration) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "subscriptions.db")
	rows := writeShape(tb, path, urls, shared)
	before := liveHeap()
	start := time.Now()
	f, err := Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	open = time.Since(start)
	after := liveHeap()
	if e, g := f.Counts(); e+g != rows {
		tb.Fatalf("index holds %d rows, want %d", e+g, rows)
	}
	runtime.KeepAlive(f)
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return float64(int64(after)-int64(before)) / float64(rows), open
}

// TestIndexHeapPerRow keeps the index within 200 bytes of heap a row, so
// that 1.2 million rows fit a node of 400 MiB: with every topic and
// pattern its URL's own (one row a key, the large-table shape) and with
// every URL subscribing the same ones (one key for all URLs).
// LONELYPSD_HEAP_URLS sets the table size (URLs of 120 rows each) for a
// measurement at scale.
func TestIndexHeapPerRow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tables of 60,000 rows")
	}
	urls := 500
	if s := os.Getenv("LONELYPSD_HEAP_URLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("LONELYPSD_HEAP_URLS=%q: want a positive count", s)
		}
		urls = n
	}
	for _, tc := range []struct {
		name   string
		shared bool
	}{{"distinct topics", false}, {"shared topics", true}} {
		t.Run(tc.name, func(t *testing.T) {
			perRow, open := indexHeap(t, urls, tc.shared)
			rows := urls * shapeRows
			t.Logf("%d rows: %.0f bytes of heap a row, open (index rebuild) %s, %.0f rows/s",
				rows, perRow, open.Round(time.Millisecond), float64(rows)/open.Seconds())
			if perRow > 200 {
				t.Errorf("index holds %.0f bytes of heap a row, want at most 200", perRow)
			}
		})
	}
}

// BenchmarkApplySetSubscriptions applies batches of 64 set_subscriptions
// of new URLs, each of the large-table shape, to a table on disk (one
// fsync a batch, as Raft hands them over), and reports rows a second:
// the FSM's part of loading a table.
func BenchmarkApplySetSubscriptions(b *testing.B) {
	f, _ := openTest(b)
	a := &applier{t: b, f: f}
	const perBatch = 64
	u := 0
	for b.Loop() {
		cmds := make([]Command, perBatch)
		for i := range cmds {
			c := Command{Op: OpSetSubscriptions, URL: fmt.Sprintf("http://127.0.0.1:9/table/%06d", u)}
			id := strconv.Itoa(u)
			for t := range shapeExact {
				c.Exact = append(c.Exact, ExactEntry{Topic: fmt.Appendf(nil, "t/%s/%03d", id, t)})
			}
			for g := range shapeLeadig {
				c.Globs = append(c.Globs, GlobEntry{Glob: fmt.Sprintf("*/%s/%02d/x", id, g)})
			}
			for g := range shapePrefix {
				c.Globs = append(c.Globs, GlobEntry{Glob: fmt.Sprintf("p/%s/%02d/*", id, g)})
			}
			cmds[i] = c
			u++
		}
		for _, r := range a.apply(cmds...) {
			if r.Err != nil || r.Outcome != Applied {
				b.Fatalf("set_subscriptions: %+v", r)
			}
		}
	}
	b.ReportMetric(float64(u*shapeRows)/b.Elapsed().Seconds(), "rows/s")
}
