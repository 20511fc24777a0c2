package main

import (
	"bufio"
	"crypto/sha512"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// cliProc is a client command (listen) running in the background.
type cliProc struct {
	cmd    *exec.Cmd
	out    lonelypsdtest.SyncBuffer
	errOut lonelypsdtest.SyncBuffer
	done   chan struct{}
}

// startListen runs `lonelypsd listen` with args and waits for its
// "listening on" line.
func startListen(t *testing.T, args ...string) *cliProc {
	t.Helper()
	p := &cliProc{cmd: exec.Command(binPath, append([]string{"listen"}, args...)...), done: make(chan struct{})}
	p.cmd.Stdout = &p.out
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		first := true
		for sc.Scan() {
			p.errOut.Write([]byte(sc.Text() + "\n"))
			if first && strings.HasPrefix(sc.Text(), "listening on") {
				lines <- sc.Text()
				first = false
			}
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	select {
	case <-lines:
	case <-p.done:
		t.Fatalf("listen exited: %s", p.errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("listen did not subscribe in 30s: %s", p.errOut.String())
	}
	return p
}

// stop interrupts it as Ctrl-C does and returns its peak RSS.
func (p *cliProc) stop(t *testing.T) int64 {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("listen did not stop on SIGINT: %s", p.errOut.String())
	}
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("listen exited with %v: %s", p.cmd.ProcessState, p.errOut.String())
	}
	return maxRSS(p.cmd.ProcessState)
}

// waitOutput waits until the listener's stdout holds want.
func (p *cliProc) waitOutput(t *testing.T, want string, d time.Duration) {
	t.Helper()
	lonelypsdtest.WaitFor(t, fmt.Sprintf("listen to print %q (printed %q)", want, p.out.String()), d, func() bool {
		return strings.Contains(p.out.String(), want)
	})
}

// maxRSS is a finished process's peak resident set size, in bytes.
func maxRSS(st *os.ProcessState) int64 {
	ru, ok := st.SysUsage().(*syscall.Rusage)
	if !ok {
		return -1
	}
	return ru.Maxrss << 10 // KiB on Linux
}

// TestNotifyStreamsStdinWithFlatMemory pipes a large message into
// `lonelypsd notify` (a pipe: it is spooled and hashed, then streamed) to
// an HTTP `listen --out` subscriber; both CLIs stay under 64 MiB of peak
// RSS, and the saved file is the message.
func TestNotifyStreamsStdinWithFlatMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	node := startNode(t, t.TempDir())
	outDir := t.TempDir()
	listen := startListen(t, "--addr", node.HTTP, "--topic", "big", "--out", outDir)

	notify := exec.Command(binPath, "notify", "--addr", node.HTTP, "--topic", "big", "--spool-dir", t.TempDir())
	stdin, err := notify.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut := &lonelypsdtest.SyncBuffer{}, &lonelypsdtest.SyncBuffer{}
	notify.Stdout, notify.Stderr = out, errOut
	if err := notify.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha512.New()
	if _, err := io.Copy(io.MultiWriter(stdin, h), lonelypsdtest.NewPattern(size)); err != nil {
		t.Fatalf("feeding notify: %v (%s)", err, errOut.String())
	}
	_ = stdin.Close()
	if err := notify.Wait(); err != nil {
		t.Fatalf("notify: %v\n%s", err, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != "delivered to 1 subscriber(s)" {
		t.Fatalf("notify printed %q", got)
	}
	sum := fmt.Sprintf("%x", h.Sum(nil))
	path := filepath.Join(outDir, "000001-big")
	listen.waitOutput(t, fmt.Sprintf("big\t%d bytes\tsha512:%s\t%s", size, sum, path), 30*time.Second)
	if st, err := os.Stat(path); err != nil || st.Size() != size {
		t.Fatalf("saved file: %v %v", st, err)
	}
	notifyPeak, listenPeak := maxRSS(notify.ProcessState), listen.stop(t)
	t.Logf("%d MiB: notify peak RSS %d MiB, listen peak RSS %d MiB", size>>20, notifyPeak>>20, listenPeak>>20)
	for name, peak := range map[string]int64{"notify": notifyPeak, "listen": listenPeak} {
		if peak <= 0 || peak > 64<<20 {
			t.Errorf("%s peak RSS %d MiB for a %d MiB message, want under 64 MiB", name, peak>>20, size>>20)
		}
	}
}

// deadAddrs returns n loopback addresses where nothing listens.
func deadAddrs(t *testing.T, n int) []string {
	var out []string
	for range n {
		out = append(out, lonelypsdtest.FreeAddr(t))
	}
	return out
}

// TestNotifyFailsOverAndReportsFailure: with dead addresses before the
// live one in --addr (tried in random order, so most runs meet a dead one
// first) notify delivers; with only dead ones it exits non-zero.
func TestNotifyFailsOverAndReportsFailure(t *testing.T) {
	node := startNode(t, t.TempDir())
	listen := startListen(t, "--addr", node.HTTP, "--topic", "t")
	file := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(file, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := deadAddrs(t, 3)
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"dead then live", []string{"--addr", strings.Join(append(dead, node.HTTP), ","), "--message", "failover"}, 0, "delivered to 1 subscriber(s)"},
		{"url form and file", []string{"--addr", dead[0] + "," + node.HTTP + "/", "--file", file}, 0, "delivered to 1 subscriber(s)"},
		{"only dead", []string{"--addr", strings.Join(dead, ","), "--message", "lost"}, 1, ""},
		{"bad address", []string{"--addr", "ws://" + dead[0], "--message", "x"}, 1, ""},
		{"message and file", []string{"--addr", node.HTTP, "--message", "x", "--file", file}, 2, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := cli(t, append([]string{"notify", "--topic", "t"}, tc.args...)...)
			if code != tc.wantCode || strings.TrimSpace(out) != tc.wantOut {
				t.Fatalf("exit %d, printed %q (%s); want %d, %q", code, out, errs, tc.wantCode, tc.wantOut)
			}
		})
	}
	listen.waitOutput(t, "t\t\"failover\"", 10*time.Second)
	listen.waitOutput(t, "t\t\"from a file\"", 10*time.Second)
	if strings.Contains(listen.out.String(), "lost") {
		t.Fatal("a failed notify was delivered")
	}
}

// TestListenWebsocketAcrossARestart: `listen --websocket` receives a
// message sent before the node restarts and one sent after, reconnecting
// by itself; non-text and long messages print as size and SHA-512.
func TestListenWebsocketAcrossARestart(t *testing.T) {
	node := startNode(t, t.TempDir())
	listen := startListen(t, "--websocket", "--addr", node.HTTP, "--topic", "t", "--glob", "g/*")
	c := node.Client()
	ctx := ctxT(t)
	if n, err := c.Notify(ctx, []byte("t"), []byte("before")); err != nil || n != 1 {
		t.Fatalf("notify before: %d %v", n, err)
	}
	listen.waitOutput(t, "t\t\"before\"", 10*time.Second)
	node.Restart()
	lonelypsdtest.WaitFor(t, "listen to reconnect: "+listen.errOut.String(), 30*time.Second, func() bool {
		return strings.Contains(listen.errOut.String(), "reconnected to")
	})
	if n, err := c.Notify(ctx, []byte("g/1"), []byte("after")); err != nil || n != 1 {
		t.Fatalf("notify after: %d %v", n, err)
	}
	listen.waitOutput(t, "g/1\t\"after\"", 10*time.Second)
	bin := []byte{0, 1, 2, 0xff}
	if n, err := c.Notify(ctx, []byte("t"), bin); err != nil || n != 1 {
		t.Fatalf("notify binary: %d %v", n, err)
	}
	listen.waitOutput(t, fmt.Sprintf("t\t4 bytes\tsha512:%x", sha512.Sum512(bin)), 10*time.Second)
	// Past --print-max a message arrives through a temporary file.
	big := make([]byte, 1<<20)
	if _, err := io.ReadFull(lonelypsdtest.NewPattern(int64(len(big))), big); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("t"), big); err != nil || n != 1 {
		t.Fatalf("notify 1 MiB: %d %v", n, err)
	}
	listen.waitOutput(t, fmt.Sprintf("t\t%d bytes\tsha512:%x", len(big), sha512.Sum512(big)), 10*time.Second)
	listen.stop(t)
}
