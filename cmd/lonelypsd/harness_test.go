package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
)

// binPath is the lonelypsd binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lonelypsd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "lonelypsd")
	// Built without -race even when the tests run with it: the binary is
	// the product under test, and the 1 GiB test measures its memory.
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build lonelypsd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running lonelypsd process.
type proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	HTTP    string // base URL
	DataDir string
	args    []string
	// httpc reaches the node (https tests set one trusting their CA).
	httpc *http.Client

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// startNode starts `lonelypsd serve --bootstrap` on fresh ports with the
// given extra flags, and waits until it is ready.
func startNode(t testing.TB, dataDir string, extra ...string) *proc {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"serve", "--node-id", "n1", "--bootstrap",
		"--http-addr", httpAddr, "--raft-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--data-dir", dataDir, "--missed-sweep-interval", "100ms"}, extra...)
	return startProc(t, dataDir, "http://"+httpAddr, args)
}

func startProc(t testing.TB, dataDir, base string, args []string) *proc {
	t.Helper()
	p := &proc{t: t, HTTP: base, DataDir: dataDir, args: args, done: make(chan struct{})}
	p.start()
	t.Cleanup(func() { p.Stop() })
	return p
}

func (p *proc) start() {
	p.t.Helper()
	if err := p.launch(); err != nil {
		p.t.Fatal(err)
	}
	p.waitReady()
}

// launch starts the process without waiting for it to serve.
func (p *proc) launch() error {
	p.cmd = exec.Command(binPath, p.args...)
	p.cmd.Env = os.Environ()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return err
	}
	p.cmd.Stdout = os.Stdout
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	go p.collect(stderr)
	return nil
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("lonelypsd exited during start-up: %v\n%s", p.err, p.Logs())
		default:
		}
		hc := p.httpc
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Get(p.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("lonelypsd not ready in 20s\n%s", p.Logs())
}

// collect keeps the process's stderr and notes its exit.
func (p *proc) collect(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.logs.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

// Logs returns what the process wrote to stderr.
func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("lonelypsd did not stop within 15s of SIGTERM\n%s", p.Logs())
	}
}

// Restart stops the process and starts it again with the same flags.
func (p *proc) Restart() {
	p.t.Helper()
	p.Stop()
	if p.err != nil {
		p.t.Fatalf("lonelypsd exited with %v\n%s", p.err, p.Logs())
	}
	p.start()
}

// RSS returns the resident set size and its peak (VmHWM), in bytes.
func (p *proc) RSS() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// resetPeakRSS makes VmHWM start again from the current RSS.
func (p *proc) resetPeakRSS() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

func (p *proc) Client() *client.Client {
	c := client.New(p.HTTP)
	c.Retry = client.Retry{} // tests look at each answer, a 503 included
	if p.httpc != nil {
		c.HTTP = p.httpc
	}
	return c
}

// subscriberServer runs a client.Subscriber on a real loopback listener.
type subscriberServer struct {
	*client.Subscriber
	srv     *http.Server
	Receive string
	Recover string
}

func startSubscriber(t testing.TB, sub *client.Subscriber) *subscriberServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	s := &subscriberServer{Subscriber: sub, srv: &http.Server{Handler: sub, ReadHeaderTimeout: 5 * time.Second},
		Receive: base + "/v1/receive", Recover: base + "/v1/recover"}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes. Used only
// for effects with no event to wait on (a removal through Raft).
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEvent waits for the subscriber's next event or fails after d.
func waitEvent(t testing.TB, s *client.Subscriber, what string, d time.Duration, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := s.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
