package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
)

// The large table's shape per URL: exact topics, literal-prefix globs and
// leading-wildcard globs, each distinct to its URL, none matching the
// topics notified.
const (
	tableExact   = 100
	tablePrefix  = 10
	tableLeading = 10
	tableInLoad  = 64 // set_subscriptions in flight while loading
)

// tableRows is one URL's rows of the large table, as set_subscriptions
// sends them (strictly ascending).
func tableRows(u int) (string, []wire.ExactEntry, []wire.GlobEntry) {
	url := fmt.Sprintf("http://127.0.0.1:9/table/%06d", u)
	id := fmt.Sprintf("%06d", u)
	exact := make([]wire.ExactEntry, tableExact)
	for t := range exact {
		exact[t] = wire.ExactEntry{Topic: fmt.Appendf(nil, "t/%s/%03d", id, t)}
	}
	var globs []wire.GlobEntry
	for g := range tableLeading {
		globs = append(globs, wire.GlobEntry{Glob: fmt.Sprintf("*/%s/%02d/x", id, g)})
	}
	for g := range tablePrefix {
		globs = append(globs, wire.GlobEntry{Glob: fmt.Sprintf("p/%s/%02d/*", id, g)})
	}
	return url, exact, globs
}

var rssFields = []string{"VmRSS:", "RssAnon:", "RssFile:"}

// tableResult is what the large-table scenario measures.
type tableResult struct {
	rows                  int
	load, loadCPU         time.Duration
	stop, ready, readyCPU time.Duration
	// resident memory, loaded and after the restart: total, anonymous
	// (the heap) and mapped files (the bbolt table)
	rssLoaded, rssRestarted []int64
	exactEmpty, exactLoaded float64
	globEmpty, globLoaded   float64
	leadEmpty, leadLoaded   float64
}

// tableWorkload measures notify throughput to one confirming subscriber
// on the empty table, loads urls URLs of the large table's shape through
// set_subscriptions, measures again, and restarts the node on the loaded
// table. Ratios loaded/empty come from the same run.
func tableWorkload(ctx context.Context, c *client.Client, srv *server, o options) error {
	pool, err := startSubscribers(1)
	if err != nil {
		return err
	}
	defer pool.close()
	sub := pool.urls[0]
	if err := c.SubscribeExact(ctx, sub, []byte("bench/exact"), ""); err != nil {
		return err
	}
	if err := c.SubscribeGlob(ctx, sub, "bench/glob/*", ""); err != nil {
		return err
	}
	if err := c.SubscribeGlob(ctx, sub, "*/lead", ""); err != nil {
		return err
	}
	var r tableResult
	shapes := []struct {
		topic         func(*rand.Rand) []byte
		empty, loaded *float64
	}{
		{func(*rand.Rand) []byte { return []byte("bench/exact") }, &r.exactEmpty, &r.exactLoaded},
		{func(g *rand.Rand) []byte { return []byte("bench/glob/" + strconv.Itoa(g.IntN(1000))) }, &r.globEmpty, &r.globLoaded},
		{func(g *rand.Rand) []byte { return []byte("bench/" + strconv.Itoa(g.IntN(1000)) + "/lead") }, &r.leadEmpty, &r.leadLoaded},
	}
	measure := func(loaded bool) error {
		for _, s := range shapes {
			rate, err := tableNotify(ctx, c, o, s.topic)
			if err != nil {
				return err
			}
			if loaded {
				*s.loaded = rate
			} else {
				*s.empty = rate
			}
		}
		return nil
	}
	// A first run warms connections and the server up, so that the
	// empty table is not measured cold.
	warm := o
	warm.duration = min(o.duration, time.Second)
	if _, err := tableNotify(ctx, c, warm, shapes[0].topic); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := measure(false); err != nil {
		return fmt.Errorf("empty table: %w", err)
	}
	start, cpu := time.Now(), srv.cpu()
	if r.rows, err = loadTable(ctx, c, o.tableURLs); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	r.load, r.loadCPU = time.Since(start), srv.cpu()-cpu
	r.rssLoaded = srv.status(rssFields...)
	if err := measure(true); err != nil {
		return fmt.Errorf("loaded table: %w", err)
	}
	// A failed restart still reports what was measured before it.
	r.stop, r.ready, r.readyCPU, err = srv.restart(ctx)
	r.rssRestarted = srv.status(rssFields...)
	printTable(r)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// tableNotify runs the notify loop on one topic shape for o.duration and
// returns notifies per second; every notify must reach the subscriber.
func tableNotify(ctx context.Context, c *client.Client, o options, topic func(*rand.Rand) []byte) (float64, error) {
	msg := make([]byte, o.msgSize)
	if _, err := c.Notify(ctx, topic(rand.New(rand.NewPCG(1, 1))), msg); err != nil {
		return 0, err
	}
	clients := make([]*client.Client, o.concurrency)
	for i := range clients {
		clients[i] = c
	}
	n, _, elapsed, err := notifyLoop(ctx, clients, o.duration, 1, topic, msg)
	if err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

// loadTable sends urls set_subscriptions, tableInLoad in flight, and
// returns the rows loaded.
func loadTable(ctx context.Context, c *client.Client, urls int) (int, error) {
	var next, rows atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, tableInLoad)
	for w := range tableInLoad {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				u := int(next.Add(1) - 1)
				if u >= urls || ctx.Err() != nil {
					return
				}
				url, exact, globs := tableRows(u)
				if err := c.SetSubscriptions(ctx, url, exact, globs); err != nil {
					errs[w] = fmt.Errorf("set_subscriptions of %s: %w", url, err)
					return
				}
				rows.Add(int64(len(exact) + len(globs)))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return int(rows.Load()), ctx.Err()
}

// restart stops the node, keeping its data folder, starts the same
// command again in its place and waits until it is ready. It returns how
// long the stop took, the time from the new start to ready and the CPU
// the start used. The node must come back on the same ports (its Raft
// address is in its configuration); should another process have taken
// one meanwhile, the start is tried again, a few times.
func (s *server) restart(ctx context.Context) (stop, ready, cpu time.Duration, err error) {
	dir := s.dir
	s.dir = ""
	start := time.Now()
	s.stop()
	stop = time.Since(start)
	for try := 1; ; try++ {
		start = time.Now()
		next, err := launch(s.bin, dir, s.base[len("http://"):], s.args...)
		if err != nil {
			s.dir = dir
			return stop, 0, 0, err
		}
		*s = *next
		err = s.waitReady(ctx)
		ready, cpu = time.Since(start), s.cpu()
		select {
		case <-s.done:
			if try < 5 && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "lonelypsbench: restart %d failed (%v); trying again\n", try, err)
				time.Sleep(time.Second)
				continue
			}
		default:
		}
		return stop, ready, cpu, err
	}
}

// cpu is the CPU time the server has used (user and system); 0 when
// /proc cannot tell.
func (s *server) cpu() time.Duration {
	ticks, err := s.cpuTicks()
	if err != nil {
		return 0
	}
	return time.Duration(ticks) * clockTick
}

func mib(v []int64) string {
	return fmt.Sprintf("%d MiB (%d, %d)", v[0]>>20, v[1]>>20, v[2]>>20)
}

func printTable(r tableResult) {
	ratio := func(loaded, empty float64) string {
		if empty == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", loaded/empty)
	}
	fmt.Printf("\n| large table | value |\n|---|---|\n")
	fmt.Printf("| rows loaded through set_subscriptions (%d in flight) | %d |\n", tableInLoad, r.rows)
	fmt.Printf("| load rate | %.0f rows/s (%s) |\n", float64(r.rows)/r.load.Seconds(), r.load.Round(time.Millisecond))
	fmt.Printf("| server CPU while loading | %s (%.1f µs a row) |\n", r.loadCPU.Round(time.Millisecond), float64(r.loadCPU.Microseconds())/float64(max(r.rows, 1)))
	fmt.Printf("| server RSS, loaded (anonymous, files) | %s |\n", mib(r.rssLoaded))
	fmt.Printf("| stop (SIGTERM to exit) | %s |\n", r.stop.Round(time.Millisecond))
	fmt.Printf("| start to ready on the loaded table | %s (%s of CPU) |\n", r.ready.Round(time.Millisecond), r.readyCPU.Round(time.Millisecond))
	fmt.Printf("| server RSS after restart (anonymous, files) | %s |\n", mib(r.rssRestarted))
	fmt.Printf("\n| notifies/s to 1 subscriber | empty | loaded | loaded / empty |\n|---|---|---|---|\n")
	fmt.Printf("| exact topic | %.0f | %.0f | %s |\n", r.exactEmpty, r.exactLoaded, ratio(r.exactLoaded, r.exactEmpty))
	fmt.Printf("| glob `bench/glob/*` | %.0f | %.0f | %s |\n", r.globEmpty, r.globLoaded, ratio(r.globLoaded, r.globEmpty))
	fmt.Printf("| glob `*/lead` | %.0f | %.0f | %s |\n", r.leadEmpty, r.leadLoaded, ratio(r.leadLoaded, r.leadEmpty))
}
