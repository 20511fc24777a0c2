package broadcaster

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// runNode runs a whole node in this process, so the race detector sees
// the API, fan-out, Raft and table together under concurrent load.
func runNode(t *testing.T) string {
	t.Helper()
	return runNodeWith(t, func(*Config) {})
}

// runNodeWith runs a node whose configuration adjust changes first.
func runNodeWith(t *testing.T, adjust func(*Config)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg := Config{
		Cluster:  cluster.Config{NodeID: "n1", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "data"), Bootstrap: true},
		HTTPAddr: lonelypsdtest.FreeAddr(t), MissedSweepInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		Ready:  func(addr string) { ready <- addr },
	}
	adjust(&cfg)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("node not ready")
	}
	return ""
}

func TestConcurrentSubscribesAndNotifies(t *testing.T) {
	base := runNode(t)
	c := client.New(base)
	sub := client.NewSubscriber()
	srv := httptest.NewServer(sub)
	defer srv.Close()
	url := srv.URL + "/v1/receive"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				topic := []byte(fmt.Sprintf("w%d/%d", w, i))
				if err := c.SubscribeExact(ctx, url, topic, srv.URL+"/v1/recover"); err != nil {
					errs <- err
					return
				}
				if n, err := c.Notify(ctx, topic, []byte("m")); err != nil || n != 1 {
					errs <- fmt.Errorf("notify %s: %d, %v", topic, n, err)
					return
				}
				if i%5 == 0 {
					if err := c.SubscribeGlob(ctx, url, fmt.Sprintf("g%d/%d/*", w, i), ""); err != nil {
						errs <- err
						return
					}
					if _, err := c.CheckSubscriptions(ctx, url); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := sub.Count(); got != 160 {
		t.Fatalf("%d deliveries, want 160", got)
	}
	if err := c.SetSubscriptions(ctx, url, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("w0/0"), []byte("m")); err != nil || n != 0 {
		t.Fatalf("after set_subscriptions: %d, %v", n, err)
	}
}
