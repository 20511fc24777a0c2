// Package lonelypsdtest runs lonelypsd processes for tests, as
// net/http/httptest runs HTTP servers: it builds the binary once, starts
// nodes on free loopback ports, waits until they are ready, stops, kills
// and restarts them, and waits for what their clients see.
//
// It is for tests and test tools (the load generator). It depends only on
// the standard library and the client packages, never on the node's own
// packages, so that the tests of any package can import it.
package lonelypsdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout is how long a started node has to answer /readyz.
const ReadyTimeout = 20 * time.Second

// StopGrace is how long a node has to exit after SIGTERM before it is
// killed.
const StopGrace = 15 * time.Second

// ErrExited is returned by WaitReady when the process ends first.
var ErrExited = errors.New("lonelypsd exited during start-up")

// Main builds lonelypsd, stores its path in *bin, runs the tests and
// exits with their result. Call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "lonelypsd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Build compiles lonelypsd into dir and returns the binary's path. It is
// built without -race even when the tests run with it: the binary is the
// product under test, and tests measure its memory.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "lonelypsd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lonelypsd/lonelypsd/cmd/lonelypsd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build lonelypsd: %w\n%s", err, out)
	}
	return bin, nil
}

// PickAddr returns a TCP address on 127.0.0.1 nobody listens on right
// now.
func PickAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreeAddr is PickAddr for a test: a failure ends it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := PickAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreePort is the port of FreeAddr.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Command is bin run with args in this process's environment less the Go
// runtime's tuning (GOGC, GOMEMLIMIT): the node measured runs with its
// own defaults whatever its caller was tuned with.
func Command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// WaitReady polls base's /readyz through hc (nil: http.DefaultClient)
// until it answers 200. It gives up with ErrExited once exited is closed,
// and after ReadyTimeout or when ctx ends.
func WaitReady(ctx context.Context, hc *http.Client, base string, exited <-chan struct{}) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	// Polled: the process announces readiness only there.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("lonelypsd not ready within %s: %w", ReadyTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// Terminate sends p SIGTERM and waits up to StopGrace for exited to be
// closed; past it p is killed. It reports whether p stopped in time.
func Terminate(p *os.Process, exited <-chan struct{}) bool {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return true
	case <-time.After(StopGrace):
		_ = p.Kill()
		<-exited
		return false
	}
}
