package client

import (
	"context"
	"crypto/sha512"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lonelypsd/lonelypsd/api/wire"
)

// fakeBroadcaster answers notifies as a broadcaster does (after checking
// length and SHA-512) unless status says otherwise; it counts requests.
type fakeBroadcaster struct {
	status int // 0: answer the notify
	hits   atomic.Int64
	srv    *httptest.Server
}

func newFake(t *testing.T, status int) *fakeBroadcaster {
	f := &fakeBroadcaster{status: status}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBroadcaster) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	head, err := wire.ReadNotifyHeader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := sha512.New()
	n, err := io.Copy(h, r.Body)
	if err != nil || uint64(n) != head.Length || [64]byte(h.Sum(nil)) != head.SHA512 {
		http.Error(w, "body does not match its header", http.StatusBadRequest)
		return
	}
	if f.status != 0 {
		http.Error(w, "told to refuse", f.status)
		return
	}
	b, err := wire.AppendResponseNotify(nil, "", nil, 1, head.Identifier)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestRetryMovesBetweenBroadcasters(t *testing.T) {
	fast := Retry{Rounds: 2, Backoff: time.Millisecond, Jitter: time.Millisecond}
	cases := []struct {
		name     string
		statuses []int // one fake per entry; -1 is a dead address
		retry    Retry
		body     func([]byte) io.Reader
		wantErr  int // 0: success; else the status of the refusal; -1 a connection error
		wantHits []int64
	}{
		{"503 then live", []int{503, 0}, fast, seekable, 0, nil},
		{"502 then live", []int{502, 0}, fast, seekable, 0, nil},
		{"504 then live", []int{504, 0}, fast, seekable, 0, nil},
		{"dead then live", []int{-1, 0}, fast, seekable, 0, nil},
		{"dead then live, pipe body", []int{-1, 0}, fast, pipe, 0, nil},
		{"all 503: every round tries each", []int{503, 503}, fast, seekable, 503, []int64{2, 2}},
		{"400 is final", []int{400}, fast, seekable, 400, []int64{1}},
		{"one round", []int{503}, Retry{}, seekable, 503, []int64{1}},
		{"no retry of ambiguous", []int{-1}, Retry{Rounds: 3, NoRetryAmbiguous: true}, seekable, -1, nil},
		{"pipe body sent once cannot be sent again", []int{503}, fast, pipe, 503, []int64{1}},
	}
	msg := []byte(strings.Repeat("hello ", 1000))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fakes []*fakeBroadcaster
			var bases []string
			for _, s := range tc.statuses {
				if s < 0 {
					bases = append(bases, deadAddr(t))
					continue
				}
				f := newFake(t, s)
				fakes = append(fakes, f)
				bases = append(bases, f.srv.URL)
			}
			c := New(bases...)
			c.Retry = tc.retry
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := c.NotifyStream(ctx, []byte("t"), tc.body(msg), uint64(len(msg)), sha512.Sum512(msg))
			var se *StatusError
			switch {
			case tc.wantErr == 0 && (err != nil || n != 1):
				t.Fatalf("notify: %d, %v", n, err)
			case tc.wantErr > 0 && (!errors.As(err, &se) || se.Code != tc.wantErr):
				t.Fatalf("notify: %v, want status %d", err, tc.wantErr)
			case tc.wantErr < 0 && (err == nil || errors.As(err, &se)):
				t.Fatalf("notify: %v, want a connection error", err)
			}
			for i, want := range tc.wantHits {
				if got := fakes[i].hits.Load(); got != want {
					t.Errorf("broadcaster %d got %d requests, want %d", i, got, want)
				}
			}
		})
	}
}

func seekable(b []byte) io.Reader { return strings.NewReader(string(b)) }

// pipe hides every interface but io.Reader, and reads in small pieces.
func pipe(b []byte) io.Reader { return iotest.HalfReader(strings.NewReader(string(b))) }

func TestRetryWaitsDoubleWithJitter(t *testing.T) {
	r := Retry{Backoff: time.Second, Jitter: time.Second}
	capped := Retry{Backoff: time.Second, Jitter: time.Second, MaxBackoff: 3 * time.Second}
	for round, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 100: time.Hour} {
		for range 20 {
			d := r.Wait(round)
			if d < base || d >= base+time.Second {
				t.Fatalf("round %d waited %s, want [%s, %s)", round, d, base, base+time.Second)
			}
			if d, want := capped.Wait(round), min(base, 3*time.Second); d < want || d >= want+time.Second {
				t.Fatalf("capped round %d waited %s, want [%s, %s)", round, d, want, want+time.Second)
			}
		}
	}
}

func TestNotifyReaderSpoolsAndRetries(t *testing.T) {
	bad, good := newFake(t, 503), newFake(t, 0)
	c := New(bad.srv.URL, good.srv.URL)
	c.Retry = Retry{Rounds: 3, Backoff: time.Millisecond}
	dir := t.TempDir()
	msg := strings.Repeat("0123456789", 100_000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := c.NotifyReader(ctx, []byte("t"), pipe([]byte(msg)), dir); err != nil || n != 1 {
		t.Fatalf("notify reader: %d, %v", n, err)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Fatalf("spool files left behind: %v %v", left, err)
	}
}

func TestBaseURL(t *testing.T) {
	cases := []struct {
		in, want string
		tls      bool
		bad      bool
	}{
		{in: "127.0.0.1:3003", want: "http://127.0.0.1:3003"},
		{in: "127.0.0.1:3003", tls: true, want: "https://127.0.0.1:3003"},
		{in: "http://localhost:3003/", want: "http://localhost:3003"},
		{in: "https://h:1/prefix/", want: "https://h:1/prefix"},
		{in: "ws://h:1", bad: true},
		{in: "http://h:1/?q=1", bad: true},
		{in: " ", bad: true},
	}
	for _, tc := range cases {
		got, err := BaseURL(tc.in, tc.tls)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("BaseURL(%q, %t) = %q, %v", tc.in, tc.tls, got, err)
		}
	}
	if got, err := BaseURLs("a:1, http://b:2,", false); err != nil || len(got) != 2 || got[1] != "http://b:2" {
		t.Errorf("BaseURLs: %v %v", got, err)
	}
	if _, err := BaseURLs(",", false); err == nil {
		t.Error("BaseURLs accepted an empty list")
	}
}
