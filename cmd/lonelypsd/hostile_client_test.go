package main

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// openFDs is the descriptors the node holds.
func openFDs(t *testing.T, p *lonelypsdtest.Proc) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// hugeClaimBody is a set_subscriptions body of size bytes claiming as many
// exact entries as fit, all zeros after the header.
func hugeClaimBody(t *testing.T, size int) []byte {
	t.Helper()
	head, err := wire.AppendSetSubscriptions(nil, wire.SetSubscriptions{URL: "http://127.0.0.1:1/x"})
	if err != nil {
		t.Fatal(err)
	}
	head = head[:len(head)-8]
	body := make([]byte, size)
	n := copy(body, head)
	binary.BigEndian.PutUint32(body[n:], uint32((size-n-8)/4))
	return body
}

// Unauthenticated set_subscriptions bodies of 16 MiB, claiming four million
// entries each, against an HMAC node: all refused, and the node's memory
// stays flat because it authenticates before reading the lists.
func TestUnauthenticatedSetSubscriptionsFlood(t *testing.T) {
	file, _ := setupSecrets(t, "hmac", "hmac")
	node := startNode(t, t.TempDir(), "--secrets", file)
	body := hugeClaimBody(t, 16<<20)
	base, _ := node.RSS()
	node.ResetPeakRSS()
	const clients, rounds = 4, 3
	var wg sync.WaitGroup
	statuses := make(chan string, clients*rounds)
	for range clients {
		wg.Go(func() {
			for range rounds {
				resp, err := http.Post(node.HTTP+"/v1/set_subscriptions", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					// The node answers after the header and closes: the
					// client may see the closed connection first.
					statuses <- "connection closed: " + err.Error()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses <- resp.Status
			}
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if !strings.HasPrefix(s, "401") && !strings.HasPrefix(s, "connection closed") {
			t.Errorf("unauthenticated set_subscriptions answered %s, want 401", s)
		}
	}
	// A dead node would close every connection too.
	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("node not healthy after the flood: %d", code)
	}
	rss, peak := node.RSS()
	t.Logf("unauthenticated 16 MiB set_subscriptions, %d clients x %d: RSS %d MiB before, peak %d MiB, %d MiB after",
		clients, rounds, base>>20, peak>>20, rss>>20)
	if peak > 100<<20 {
		t.Errorf("peak RSS %d MiB, want under 100 MiB", peak>>20)
	}
}

// slowSubscriber answers each RECEIVE only after hold: the node keeps
// every message until then.
type slowSubscriber struct {
	*client.Subscriber
	until time.Time
}

func (s *slowSubscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Until(s.until)) // the subscriber's own slowness, not synchronisation
	s.Subscriber.ServeHTTP(w, r)
}

// Sixty concurrent 9 MiB notifies held by a slow subscriber cost the node
// its memory budget and disk, not 540 MiB of memory; all are delivered.
func TestConcurrentNotifiesWithinBudget(t *testing.T) {
	const budget = 64 << 20
	node, ctx, c := startNodeClient(t, t.TempDir(), "--max-buffered-bytes", fmt.Sprint(budget))
	sub := &slowSubscriber{Subscriber: client.NewSubscriber()}
	sub.Discard = true
	if err := c.SubscribeExact(ctx, lonelypsdtest.Serve(t, sub)+"/v1/receive", []byte("big"), ""); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 9<<20/16)
	base, _ := node.RSS()
	node.ResetPeakRSS()
	const notifies = 60
	sub.until = time.Now().Add(4 * time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range notifies {
		wg.Go(func() {
			n, err := c.Notify(ctx, []byte("big"), msg)
			if err != nil || n != 1 {
				t.Errorf("notify %d: %d subscribers, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	rss, peak := node.RSS()
	t.Logf("%d concurrent 9 MiB notifies to a subscriber answering after 4 s: RSS %d MiB before, peak %d MiB, %d MiB after; took %v (budget %d MiB)",
		notifies, base>>20, peak>>20, rss>>20, time.Since(start).Round(time.Millisecond), budget>>20)
	if got := sub.Count(); got != notifies {
		t.Errorf("subscriber received %d messages, want %d", got, notifies)
	}
	// Go's collector lets the heap grow to about twice what is live
	// before it collects: bodies released make room only then.
	if limit := base + 2*budget + 32<<20; peak > limit {
		t.Errorf("peak RSS %d MiB, want under %d MiB (baseline + twice the budget + 32 MiB)", peak>>20, limit>>20)
	}
}

// Connections that send their headers and then one body byte every two
// seconds are cut within about the rate window (10 s), and their
// descriptors are returned.
func TestTricklingClientsCut(t *testing.T) {
	node := startNode(t, t.TempDir())
	http.DefaultClient.CloseIdleConnections()
	baseFDs := openFDs(t, node)
	const conns = 200
	head, err := wire.AppendNotifyHeader(nil, wire.Notify{Topic: []byte("t"), Length: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cuts := make(chan time.Duration, conns)
	var wg sync.WaitGroup
	for range conns {
		c, err := net.Dial("tcp", node.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "POST /v1/notify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(head)+1<<20); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_ = c.SetReadDeadline(time.Now().Add(25 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			cuts <- time.Since(start)
		}()
		wg.Go(func() {
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-closed:
					return
				case <-tick.C:
					_, _ = c.Write([]byte{0})
				}
			}
		})
	}
	peakFDs := openFDs(t, node)
	wg.Wait()
	close(cuts)
	var times []time.Duration
	for d := range cuts {
		times = append(times, d)
	}
	slices.Sort(times)
	t.Logf("%d trickling connections (1 byte / 2 s): node held %d descriptors (%d before); cut after %v (first) .. %v (median) .. %v (last)",
		conns, peakFDs, baseFDs, times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	if last := times[len(times)-1]; last > 20*time.Second {
		t.Errorf("last trickling connection cut after %v, want within 20 s", last)
	}
	lonelypsdtest.WaitFor(t, "descriptors back to the baseline", 5*time.Second, func() bool { return openFDs(t, node) <= baseFDs+5 })
}

// Past --max-connections, new connections get a 503 at once.
func TestMaxConnectionsRefused(t *testing.T) {
	const limit, dial = 50, 60
	node := startNode(t, t.TempDir(), "--max-connections", fmt.Sprint(limit))
	// The readiness probe's connection would count against the cap.
	http.DefaultClient.CloseIdleConnections()
	base := openFDs(t, node)
	var refused, held int
	var open []net.Conn
	for range dial {
		c, err := net.Dial("tcp", node.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	// Read all at once: a held connection answers nothing (it waits for a
	// request), a refused one gets its 503 at once.
	answers := make(chan string, dial)
	for _, c := range open {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			answers <- line
		}()
	}
	for range dial {
		switch line := <-answers; {
		case strings.HasPrefix(line, "HTTP/1.1 503"):
			refused++
		case line == "":
			held++
		default:
			t.Errorf("unexpected answer %q", line)
		}
	}
	t.Logf("--max-connections %d, %d idle connections: %d held, %d refused with 503 (node had %d descriptors before)", limit, dial, held, refused, base)
	if refused < dial-limit || held > limit {
		t.Errorf("%d held and %d refused, want at most %d held and at least %d refused\n%s", held, refused, limit, dial-limit, node.Logs())
	}
	for _, c := range open {
		c.Close()
	}
	lonelypsdtest.WaitFor(t, "a request served once the connections closed", 10*time.Second, func() bool {
		resp, err := http.Get(node.HTTP + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// --max-message-size refuses a longer notify with 413 before its body is
// read.
func TestMaxMessageSize(t *testing.T) {
	node := startNode(t, t.TempDir(), "--max-message-size", "1000")
	cases := []struct {
		size int
		want int
	}{{1000, http.StatusOK}, {1001, http.StatusRequestEntityTooLarge}, {1 << 20, http.StatusRequestEntityTooLarge}}
	for _, tc := range cases {
		msg := bytes.Repeat([]byte{'m'}, tc.size)
		body := notifyBody(t, []byte("t"), msg, sha512.Sum512(msg), uint64(len(msg)))
		if code, text := lonelypsdtest.Post(t, node.HTTP+"/v1/notify", "", body); code != tc.want {
			t.Errorf("notify of %d bytes: %d %q, want %d", tc.size, code, text, tc.want)
		}
	}
}

// TestBadInputIsRefusedAndNodeStaysUp: truncated, inconsistent, oversized
// and misrouted requests get a 4xx and deliver nothing, and the node goes
// on serving and says why it refused.
func TestBadInputIsRefusedAndNodeStaysUp(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir())
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello")
	sum := sha512.Sum512(msg)
	good := notifyBody(t, []byte("t"), msg, sum, uint64(len(msg)))
	sub, err := wire.AppendSubscribeExact(nil, wire.SubscribeExact{URL: s.Receive, Topic: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := []byte{0, 4, 'h', 0xff, 0xfe, 'x', 0, 1, 'x', 0, 0, 0, 0}
	glob := func(url, g string) []byte {
		var b []byte
		b = binary.BigEndian.AppendUint16(b, uint16(len(url)))
		b = append(b, url...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(g)))
		b = append(b, g...)
		return append(b, 0, 0, 0, 0)
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		want   int
	}{
		{"notify truncated header", "POST", "/v1/notify", good[:10], 400},
		{"notify empty body", "POST", "/v1/notify", nil, 400},
		{"notify message shorter than declared", "POST", "/v1/notify", good[:len(good)-2], 400},
		{"notify message longer than declared", "POST", "/v1/notify", append(append([]byte(nil), good...), 'x'), 400},
		{"notify wrong sha512", "POST", "/v1/notify", notifyBody(t, []byte("t"), msg, sha512.Sum512([]byte("other")), uint64(len(msg))), 400},
		{"notify length overruns body", "POST", "/v1/notify", notifyBody(t, []byte("t"), msg, sum, 1<<40), 400},
		{"notify topic length overruns body", "POST", "/v1/notify", []byte{0xff, 0xff, 'a'}, 400},
		{"subscribe truncated", "POST", "/v1/subscribe/exact", sub[:len(sub)-3], 400},
		{"subscribe invalid utf-8 url", "POST", "/v1/subscribe/exact", badUTF8, 400},
		{"subscribe url not http", "POST", "/v1/subscribe/exact", glob("ftp://x/y", "a"), 400},
		{"subscribe glob invalid utf-8", "POST", "/v1/subscribe/glob", glob(s.Receive, "a\xff*"), 400},
		{"subscribe relative url", "POST", "/v1/subscribe/glob", glob("/v1/receive", "a*"), 400},
		{"subscribe oversized body", "POST", "/v1/subscribe/exact", make([]byte, 1<<20), 413},
		{"subscribe url and topic beyond what the table can key", "POST", "/v1/subscribe/exact", glob(s.Receive, strings.Repeat("t", 40000)), 400},
		{"subscribe glob beyond what the table can key", "POST", "/v1/subscribe/glob", glob(s.Receive, strings.Repeat("g", 40000)+"*"), 400},
		{"check truncated", "POST", "/v1/check_subscriptions", []byte{0, 5, 1}, 400},
		{"set wrong etag format", "POST", "/v1/set_subscriptions", append([]byte{0, 0, 0, 1, 'h', 1}, make([]byte, 72)...), 400},
		{"unknown path", "POST", "/v1/nope", nil, 404},
		{"trailing slash", "POST", "/v1/notify/", good, 404},
		{"wrong method", "GET", "/v1/notify", nil, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := lonelypsdtest.Request(t, tc.method, node.HTTP+tc.path, "", tc.body); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	if got := len(s.Received()); got != 0 {
		t.Fatalf("refused notifies delivered %d messages", got)
	}
	// Still up, and the store intact.
	if n, err := c.Notify(ctx, []byte("t"), msg); err != nil || n != 1 {
		t.Fatalf("good notify after bad input: %d, %v", n, err)
	}
	if !strings.Contains(node.Logs(), "disagrees with Content-Length") {
		t.Errorf("no readable reason logged for the length mismatch:\n%s", node.Logs())
	}
}
