// Command lonelypsbench measures a real lonelypsd process: it starts the
// binary on loopback, runs HTTP subscribers that confirm every RECEIVE,
// and reports notify throughput and latency for several fan-out shapes,
// subscribes per second through Raft, and the server's peak memory for a
// large message. `make bench` runs it; docs/benchmarks.md holds figures.
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

type options struct {
	server      string
	duration    time.Duration
	concurrency int
	msgSize     int
	subConc     []int
	subCount    int
	largeMiB    int
	only        string
	cluster     bool
	tableURLs   int
	ws          wsOptions
}

func main() {
	var o options
	var subConc string
	flag.StringVar(&o.server, "server", "bin/lonelypsd", "lonelypsd binary to measure")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each notify workload runs")
	flag.IntVar(&o.concurrency, "concurrency", 4, "notifies in flight")
	flag.IntVar(&o.msgSize, "size", 32, "message size in bytes")
	flag.StringVar(&subConc, "subscribe-concurrency", "8,64", "subscribes in flight, one run per value")
	flag.IntVar(&o.subCount, "subscribes", 5000, "subscribes per subscribe run")
	flag.IntVar(&o.largeMiB, "large-mib", 1024, "size of the large-message run in MiB (0 skips it)")
	flag.StringVar(&o.only, "only", "", "run only workloads whose name contains this")
	flag.BoolVar(&o.cluster, "cluster", false, "measure a three-node cluster instead of a single node")
	flag.IntVar(&o.tableURLs, "table-urls", 10000, "URLs of 120 rows each in the large-table run (--only table)")
	o.ws.register(flag.CommandLine)
	flag.Parse()
	for _, s := range strings.Split(subConc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bad --subscribe-concurrency %q\n", subConc)
			os.Exit(2)
		}
		o.subConc = append(o.subConc, n)
	}
	// The load generator hosts up to a thousand subscriber servers; its
	// garbage collector must not be what the figures measure.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "lonelypsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	fmt.Printf("lonelypsbench: %s, %d CPUs, GOMAXPROCS %d, %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("notify: %d-byte messages, concurrency %d, %s per workload\n\n", o.msgSize, o.concurrency, o.duration)
	if o.cluster {
		return runCluster(ctx, o)
	}
	if err := o.ws.prepare(); err != nil {
		return err
	}
	srv, err := startServer(ctx, o.server)
	if err != nil {
		return err
	}
	defer srv.stop()
	c := benchClient(srv.base)

	want := func(name string) bool { return o.only == "" || strings.Contains(name, o.only) }

	fmt.Printf("| workload | notifies/s | deliveries/s | p50 | p99 | server RSS peak |\n|---|---|---|---|---|---|\n")
	for _, w := range []struct {
		name           string
		topics, perTop int
	}{
		{"1 subscriber", 1, 1},
		{"10 subscribers, one topic", 1, 10},
		{"100 subscribers, one topic", 1, 100},
		{"1000 topics x 1 subscriber", 1000, 1},
	} {
		if !want(w.name) || ctx.Err() != nil {
			continue
		}
		r, err := notifyWorkload(ctx, c, srv, o, w.topics, w.perTop)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		fmt.Printf("| %s | %.0f | %.0f | %s | %s | %d MiB |\n", w.name, r.notifies, r.deliveries,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.peakRSS>>20)
	}

	fmt.Printf("\n| subscribe burst | subscribes/s | p50 | p99 |\n|---|---|---|---|\n")
	for _, n := range o.subConc {
		name := fmt.Sprintf("subscribe, %d in flight", n)
		if !want(name) || ctx.Err() != nil {
			continue
		}
		rate, p50, p99, err := subscribeWorkload(ctx, c, o.subCount, n)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("| %s | %.0f | %s | %s |\n", name, rate, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	}

	if o.largeMiB > 0 && want("large") && ctx.Err() == nil {
		fmt.Printf("\n| large message | subscribers | time | server RSS before | server RSS peak |\n|---|---|---|---|---|\n")
		d, before, peak, err := largeWorkload(ctx, c, srv, int64(o.largeMiB)<<20, 3)
		if err != nil {
			return fmt.Errorf("large message: %w", err)
		}
		fmt.Printf("| %d MiB | 3 | %s | %d MiB | %d MiB |\n", o.largeMiB, d.Round(time.Millisecond), before>>20, peak>>20)
	}
	if err := runWebsocket(ctx, o, srv, c, want); err != nil {
		return err
	}
	// The large table is run only when asked for: it leaves the node with
	// over a million rows.
	if o.only != "" && want("table") && ctx.Err() == nil {
		if err := tableWorkload(ctx, c, srv, o); err != nil {
			return fmt.Errorf("large table: %w", err)
		}
	}
	return nil
}

// server is the lonelypsd process under measurement.
type server struct {
	cmd  *exec.Cmd
	base string
	dir  string
	done chan struct{}
	// bin and args start the same node again (restart).
	bin  string
	args []string
}

// startServer starts a single durable node on ports picked free. Another
// process can take such a port before the node binds it; a node that exits
// during start-up is started again on other ports (it binds both before it
// writes anything), three times at most.
func startServer(ctx context.Context, bin string) (*server, error) {
	for attempt := 1; ; attempt++ {
		s, err := startServerOnce(ctx, bin)
		if errors.Is(err, lonelypsdtest.ErrExited) && attempt < 3 {
			fmt.Fprintln(os.Stderr, "lonelypsbench: lonelypsd exited during start-up; starting it again on other ports")
			continue
		}
		return s, err
	}
}

func startServerOnce(ctx context.Context, bin string) (*server, error) {
	dir, err := os.MkdirTemp("", "lonelypsbench-")
	if err != nil {
		return nil, err
	}
	httpAddr, err := lonelypsdtest.PickAddr()
	if err != nil {
		return nil, err
	}
	raftAddr, err := lonelypsdtest.PickAddr()
	if err != nil {
		return nil, err
	}
	s, err := launch(bin, dir, httpAddr, "serve", "--node-id", "bench", "--bootstrap", "--http-addr", httpAddr,
		"--raft-addr", raftAddr, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// launch starts the binary; dir is removed when the server stops.
func launch(bin, dir, httpAddr string, args ...string) (*server, error) {
	cmd := lonelypsdtest.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (run `make build` first): %w", bin, err)
	}
	s := &server{cmd: cmd, base: "http://" + httpAddr, dir: dir, done: make(chan struct{}), bin: bin, args: args}
	go func() { _ = cmd.Wait(); close(s.done) }()
	return s, nil
}

func (s *server) waitReady(ctx context.Context) error {
	return lonelypsdtest.WaitReady(ctx, nil, s.base, s.done)
}

func (s *server) stop() {
	lonelypsdtest.Terminate(s.cmd.Process, s.done)
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// rss returns the server's resident set size and its peak.
func (s *server) rss() (rss, peak int64) {
	v := s.status("VmRSS:", "VmHWM:")
	return v[0], v[1]
}

// status returns fields of /proc/PID/status given in kB, in bytes (0 when
// absent).
func (s *server) status(names ...string) []int64 {
	return lonelypsdtest.ProcStatus(s.cmd.Process.Pid, names...)
}

func (s *server) resetPeak() { lonelypsdtest.ResetPeakRSS(s.cmd.Process.Pid) }

// subscriberPool runs n confirming subscribers, each on its own listener.
type subscriberPool struct {
	subs []*client.Subscriber
	urls []string
	srvs []*http.Server
}

func startSubscribers(n int) (*subscriberPool, error) {
	p := &subscriberPool{}
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.close()
			return nil, err
		}
		sub := client.NewSubscriber()
		sub.Discard, sub.KeepBodies = true, 0
		srv := &http.Server{Handler: sub, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		p.subs = append(p.subs, sub)
		p.srvs = append(p.srvs, srv)
		p.urls = append(p.urls, "http://"+l.Addr().String()+"/v1/receive")
	}
	return p, nil
}

func (p *subscriberPool) close() {
	for _, s := range p.srvs {
		_ = s.Close()
	}
}

func (p *subscriberPool) received() int64 {
	var n int64
	for _, s := range p.subs {
		n += s.Count()
	}
	return n
}

type notifyResult struct {
	notifies, deliveries float64
	p50, p99             time.Duration
	peakRSS              int64
}

func notifyWorkload(ctx context.Context, c *client.Client, srv *server, o options, topics, perTopic int) (notifyResult, error) {
	pool, err := startSubscribers(topics * perTopic)
	if err != nil {
		return notifyResult{}, err
	}
	defer pool.close()
	prefix := fmt.Sprintf("bench/%d/%d/", topics, perTopic)
	for ti := range topics {
		for si := range perTopic {
			url := pool.urls[ti*perTopic+si]
			if err := c.SubscribeExact(ctx, url, []byte(prefix+strconv.Itoa(ti)), ""); err != nil {
				return notifyResult{}, err
			}
		}
	}
	msg := make([]byte, o.msgSize)
	for i := range msg {
		msg[i] = byte(i)
	}
	// Warm the connection pools so the first second is not all dialing.
	for ti := range topics {
		if _, err := c.Notify(ctx, []byte(prefix+strconv.Itoa(ti)), msg); err != nil {
			return notifyResult{}, err
		}
	}
	srv.resetPeak()
	startDeliveries := pool.received()

	clients := make([]*client.Client, o.concurrency)
	for i := range clients {
		clients[i] = c
	}
	count, latencies, elapsed, err := notifyLoop(ctx, clients, o.duration, uint32(perTopic), func(r *rand.Rand) []byte {
		return []byte(prefix + strconv.Itoa(r.IntN(topics)))
	}, msg)
	if err != nil {
		return notifyResult{}, err
	}
	notifies := count
	_, peak := srv.rss()
	res := notifyResult{
		notifies:   float64(notifies) / elapsed.Seconds(),
		deliveries: float64(pool.received()-startDeliveries) / elapsed.Seconds(),
		peakRSS:    peak,
	}
	if len(latencies) > 0 {
		res.p50 = latencies[len(latencies)/2]
		res.p99 = latencies[len(latencies)*99/100]
	}
	// Leave the table as it was, so workloads do not slow each other.
	for ti := range topics {
		for si := range perTopic {
			_ = c.UnsubscribeExact(ctx, pool.urls[ti*perTopic+si], []byte(prefix+strconv.Itoa(ti)))
		}
	}
	return res, nil
}

// notifyLoop runs one notifier per client until d has passed and returns
// the notifies done, their latencies (sorted) and the time taken. Every
// notify must count want subscribers.
func notifyLoop(ctx context.Context, clients []*client.Client, d time.Duration, want uint32,
	topic func(*rand.Rand) []byte, msg []byte) (int64, []time.Duration, time.Duration, error) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	rands := make([]*rand.Rand, len(clients))
	for w := range rands {
		rands[w] = rand.New(rand.NewPCG(uint64(w), 7))
	}
	latencies, elapsed, err := timedOps(len(clients), func(w int) (bool, error) {
		if runCtx.Err() != nil {
			return false, nil
		}
		n, err := clients[w].Notify(runCtx, topic(rands[w]), msg)
		switch {
		case err != nil && runCtx.Err() != nil:
			// Cut off by the end of the run.
			return false, nil
		case err != nil:
			return false, err
		case n != want:
			return false, fmt.Errorf("notify counted %d subscribers, want %d", n, want)
		}
		return true, nil
	})
	if err == nil && len(latencies) == 0 {
		err = errors.New("no notify completed")
	}
	return int64(len(latencies)), latencies, elapsed, err
}

// timedOps runs workers goroutines, each calling op with its index until
// op reports no more work or fails, and returns the latencies of the
// calls that worked (sorted), the time taken and the first failure.
func timedOps(workers int, op func(w int) (worked bool, err error)) ([]time.Duration, time.Duration, error) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
	)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var local []time.Duration
			for {
				t0 := time.Now()
				worked, err := op(w)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				if !worked || err != nil {
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	return latencies, elapsed, firstErr
}

func subscribeWorkload(ctx context.Context, c *client.Client, total, inFlight int) (float64, time.Duration, time.Duration, error) {
	url := fmt.Sprintf("http://127.0.0.1:9/bench/%d", inFlight)
	var next atomic.Int64
	lat, elapsed, err := timedOps(inFlight, func(int) (bool, error) {
		i := next.Add(1) - 1
		if i >= int64(total) || ctx.Err() != nil {
			return false, nil
		}
		if err := c.SubscribeExact(ctx, url, []byte("sub/"+strconv.FormatInt(i, 10)), ""); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	if len(lat) == 0 {
		return 0, 0, 0, errors.New("no subscribes completed")
	}
	// Clean up in one request.
	_ = c.SetSubscriptions(ctx, url, nil, nil)
	return float64(len(lat)) / elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], nil
}

func largeWorkload(ctx context.Context, c *client.Client, srv *server, size int64, subscribers int) (time.Duration, int64, int64, error) {
	pool, err := startSubscribers(subscribers)
	if err != nil {
		return 0, 0, 0, err
	}
	defer pool.close()
	for _, u := range pool.urls {
		if err := c.SubscribeExact(ctx, u, []byte("large"), ""); err != nil {
			return 0, 0, 0, err
		}
	}
	h := sha512.New()
	if _, err := io.Copy(h, lonelypsdtest.NewPattern(size)); err != nil {
		return 0, 0, 0, err
	}
	var sum [64]byte
	h.Sum(sum[:0])
	before, _ := srv.rss()
	srv.resetPeak()
	start := time.Now()
	n, err := c.NotifyStream(ctx, []byte("large"), lonelypsdtest.NewPattern(size), uint64(size), sum)
	if err != nil {
		return 0, 0, 0, err
	}
	if int(n) != subscribers {
		return 0, 0, 0, fmt.Errorf("large notify counted %d, want %d", n, subscribers)
	}
	d := time.Since(start)
	_, peak := srv.rss()
	return d, before, peak, nil
}
