package lonelypsdtest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/client"
)

// Proc is a lonelypsd process of a test. Its command line is fixed, so a
// restart brings it back on the same ports and data folder, where its
// clients expect it.
type Proc struct {
	HTTP    string // base URL
	DataDir string
	Args    []string
	// HTTPClient reaches the node; nil is http.DefaultClient (https tests
	// set one trusting their CA). Set it before Start.
	HTTPClient *http.Client

	t   testing.TB
	bin string
	cmd *exec.Cmd

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{} // closed once the process has ended
	err  error         // its exit, once done is closed
}

// NewProc returns the process bin args serving at base, not started yet;
// it is stopped when the test ends.
func NewProc(t testing.TB, bin, base, dataDir string, args []string) *Proc {
	p := &Proc{HTTP: base, DataDir: dataDir, Args: args, t: t, bin: bin, done: make(chan struct{})}
	close(p.done)
	t.Cleanup(p.Stop)
	return p
}

// StartProc is NewProc started.
func StartProc(t testing.TB, bin, base, dataDir string, args []string) *Proc {
	t.Helper()
	p := NewProc(t, bin, base, dataDir, args)
	p.Start()
	return p
}

// StartNode starts `lonelypsd serve --bootstrap` as node n1 on free ports
// with its data in dataDir and the extra flags, and waits until it is
// ready. A port picked free can be taken by another process before the
// node binds it: a node that exits during start-up because an address is
// in use is started again on other ports (it binds both before it writes
// any Raft state).
func StartNode(t testing.TB, bin, dataDir string, extra ...string) *Proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		httpAddr := FreeAddr(t)
		args := append([]string{"serve", "--node-id", "n1", "--bootstrap",
			"--http-addr", httpAddr, "--raft-addr", FreeAddr(t), "--data-dir", dataDir}, extra...)
		p := NewProc(t, bin, "http://"+httpAddr, dataDir, args)
		if err := p.Launch(); err != nil {
			t.Fatal(err)
		}
		err := WaitReady(context.Background(), p.HTTPClient, p.HTTP, p.done)
		if errors.Is(err, ErrExited) && attempt < 5 && strings.Contains(p.Logs(), "address already in use") {
			continue
		}
		if errors.Is(err, ErrExited) {
			t.Fatalf("%v: %v\n%s", err, p.err, p.Logs())
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, p.Logs())
		}
		return p
	}
}

// Start launches the process and waits until it is ready; a failure ends
// the test.
func (p *Proc) Start() {
	p.t.Helper()
	if err := p.Launch(); err != nil {
		p.t.Fatal(err)
	}
	p.WaitReady()
}

// WaitReady waits until the process answers /readyz; a failure ends the
// test with the process's log.
func (p *Proc) WaitReady() {
	p.t.Helper()
	err := WaitReady(context.Background(), p.HTTPClient, p.HTTP, p.done)
	if errors.Is(err, ErrExited) {
		p.t.Fatalf("%v: %v\n%s", err, p.err, p.Logs())
	}
	if err != nil {
		p.t.Fatalf("%v\n%s", err, p.Logs())
	}
}

// Alive reports whether the process runs.
func (p *Proc) Alive() bool { return !Ended(p.done) }

// Err is how the process ended (nil for a clean exit); call it only once
// Alive is false.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM and waits for the exit; a process that takes longer
// than StopGrace is killed and the test fails.
func (p *Proc) Stop() {
	if !p.Alive() {
		return
	}
	if !Terminate(p.cmd.Process, p.done) {
		p.t.Errorf("lonelypsd did not stop within %s of SIGTERM\n%s", StopGrace, p.Logs())
	}
}

// Kill ends the process at once (SIGKILL), as a crash does.
func (p *Proc) Kill() {
	if !p.Alive() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart stops the process, which must exit cleanly, and starts it again
// with the same command line.
func (p *Proc) Restart() {
	p.t.Helper()
	p.Stop()
	if p.err != nil {
		p.t.Fatalf("lonelypsd exited with %v\n%s", p.err, p.Logs())
	}
	p.Start()
}

// Signal sends sig to the process (SIGSTOP freezes it, SIGCONT thaws it).
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process id of the running process.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Addr is the host:port of the HTTP listener.
func (p *Proc) Addr() string {
	_, addr, _ := strings.Cut(p.HTTP, "://")
	return addr
}

// WebsocketURL is the node's websocket endpoint (ws:// or wss://).
func (p *Proc) WebsocketURL() string {
	return strings.Replace(p.HTTP, "http", "ws", 1) + "/v1/websocket"
}

// Arg returns the value given to flag on the command line ("" if none).
func (p *Proc) Arg(flag string) string {
	if i := slices.Index(p.Args, flag); i >= 0 && i+1 < len(p.Args) {
		return p.Args[i+1]
	}
	return ""
}

// RSS returns the resident set size and its peak (VmHWM), in bytes.
func (p *Proc) RSS() (rss, peak int64) {
	v := ProcStatus(p.Pid(), "VmRSS:", "VmHWM:")
	if v[0] == 0 {
		p.t.Fatalf("no resident set size for pid %d", p.Pid())
	}
	return v[0], v[1]
}

// ResetPeakRSS makes the peak RSS start again from the current one.
func (p *Proc) ResetPeakRSS() { ResetPeakRSS(p.Pid()) }

// Client is a client of the node that tries each request once: tests look
// at each answer, a 503 included.
func (p *Proc) Client() *client.Client {
	c := client.New(p.HTTP)
	c.Retry = client.Retry{}
	if p.HTTPClient != nil {
		c.HTTP = p.HTTPClient
	}
	return c
}
