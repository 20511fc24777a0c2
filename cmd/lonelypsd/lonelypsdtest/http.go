package lonelypsdtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Get fetches url and returns the status and the answer's body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	return Request(t, http.MethodGet, url, "", nil)
}

// Post sends body to url with the Authorization header authz (none when
// empty) and returns the status and the answer's body.
func Post(t testing.TB, url, authz string, body []byte) (int, string) {
	t.Helper()
	return Request(t, http.MethodPost, url, authz, body)
}

// Request sends body to url with method and the Authorization header
// authz (none when empty) and returns the status and the answer's body.
func Request(t testing.TB, method, url, authz string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Serve serves h on a free loopback port until the test ends and returns
// its base URL, http://127.0.0.1:PORT.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// SendLarge posts to path at addr a JSON request with the headers h and a
// body of size zero bytes over a raw connection, reading the answer while
// it writes. It returns the status and how many body bytes it could write
// before the server closed the connection: a server that refuses without
// reading lets through only what the sockets buffer.
func SendLarge(t testing.TB, addr, path string, h http.Header, size int64) (int, int64) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, addr, size)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := make([]byte, 64<<10)
		for written.Load() < size {
			n, err := conn.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer (after %d body bytes): %v", written.Load(), err)
	}
	resp.Body.Close()
	// The server closes the connection; the writer stops on the error.
	<-done
	return resp.StatusCode, written.Load()
}
