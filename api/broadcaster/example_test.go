package broadcaster_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lonelypsd/lonelypsd/api/broadcaster"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cluster"
)

// A program that serves its own routes and a broadcaster under /pubsub
// on one port: subscribers and notifiers use http://HOST:PORT/pubsub as
// the broadcaster's URL.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "embedded-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	raft, err := net.Listen("tcp", "127.0.0.1:0") // a free port for Raft
	if err != nil {
		log.Fatal(err)
	}
	raftAddr := raft.Addr().String()
	_ = raft.Close()

	b, err := broadcaster.Open(ctx, broadcaster.Config{
		Cluster: cluster.Config{
			NodeID: "app-1", RaftAddr: raftAddr, DataDir: filepath.Join(dir, "data"),
			Bootstrap: true, // a single node; Join and BootstrapExpect form clusters
		},
		HTTPAddr: ln.Addr().String(), // the address of the server it is mounted in
		BasePath: "/pubsub",
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello\n") })
	mux.Handle("/pubsub/", http.StripPrefix("/pubsub", b.Handler()))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()

	// Wait until the node has a leader.
	base := "http://" + ln.Addr().String()
	for {
		if resp, err := http.Get(base + "/pubsub/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, err := client.New(base+"/pubsub").Notify(ctx, []byte("cache-bust"), []byte("users/42"))
	fmt.Println("subscribers reached:", n, err)

	// Stop the server first, then the broadcaster.
	_ = srv.Shutdown(ctx)
	fmt.Println("closed:", b.Close(ctx))
	// Output:
	// subscribers reached: 0 <nil>
	// closed: <nil>
}
