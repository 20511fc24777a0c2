package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// diskFullDir names, to the re-executed test binary, the tmpfs it runs on.
const diskFullDir = "LONELYPSD_FSM_TEST_TMPFS"

// TestDiskFullStallsAndResumes runs the table on a small tmpfs of its
// own (a mount namespace, so nothing outside sees the mount), fills the
// tmpfs, and applies a batch: it must neither panic nor be lost; it waits,
// WriteErr reports the failure and reads go on; once space returns it is
// applied, with no restart.
func TestDiskFullStallsAndResumes(t *testing.T) {
	if dir := os.Getenv(diskFullDir); dir != "" {
		diskFullScenario(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary in a mount namespace")
	}
	args := []string{"-Urm"}
	if os.Geteuid() == 0 {
		args = []string{"-m"}
	}
	if out, err := exec.Command("unshare", append(args, "true")...).CombinedOutput(); err != nil {
		t.Skipf("cannot make a mount namespace to hold a small tmpfs (unshare %s true: %v: %s); needs util-linux unshare and root or user namespaces", strings.Join(args, " "), err, out)
	}
	mnt := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := `mount -t tmpfs -o size=8m lonelypsd-test "$1" && exec "$2" -test.run '^TestDiskFullStallsAndResumes$' -test.v -test.count=1`
	cmd := exec.CommandContext(ctx, "unshare", append(args, "sh", "-c", script, "sh", mnt, os.Args[0])...)
	cmd.Env = append(os.Environ(), diskFullDir+"="+mnt)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestDiskFullStallsAndResumes")) {
		t.Fatalf("scenario in the mount namespace failed: %v\n%s", err, out)
	}
}

func diskFullScenario(t *testing.T, dir string) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil || fs.Type != 0x01021994 {
		t.Fatalf("%s is not the test's tmpfs (statfs type %#x, %v)", dir, fs.Type, err)
	}
	f, err := Open(filepath.Join(dir, "subs.db"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.retryMin, f.retryMax = 5*time.Millisecond, 50*time.Millisecond
	a := &applier{t: t, f: f}
	if r := a.apply(sub("before"))[0]; r.Outcome != Applied {
		t.Fatalf("before the disk fills: %+v", r)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	// About 1 MiB of rows: more than the free pages a small table keeps.
	var cmds []Command
	for i := range 200 {
		c := sub(fmt.Sprintf("t%d", i))
		c.Recovery = strings.Repeat("r", 5000)
		cmds = append(cmds, c)
	}
	done := make(chan []Result, 1)
	go func() { done <- a.apply(cmds...) }()
	waitFor(t, "WriteErr to report the full disk", func() bool { return f.WriteErr() != nil })
	if err := f.WriteErr(); !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrWriteFailing) {
		t.Errorf("WriteErr() = %v, want ENOSPC", err)
	}
	select {
	case res := <-done:
		t.Fatalf("batch returned while the disk is full: %+v", res[0])
	default:
	}
	if got := f.Match([]byte("before")); len(got) != 1 {
		t.Errorf("reads stopped while the disk is full: %+v", got)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var res []Result
	waitFor(t, "the batch to apply once space returns", func() bool {
		select {
		case res = <-done:
			return true
		default:
			return false
		}
	})
	for i, r := range res {
		if r.Outcome != Applied || r.Err != nil {
			t.Fatalf("entry %d after space returned: %+v", i, r)
		}
	}
	if err := f.WriteErr(); err != nil {
		t.Errorf("WriteErr() = %v after recovery", err)
	}
	if got := f.AppliedIndex(); got != 201 {
		t.Errorf("applied index %d, want 201", got)
	}
	if n, _ := f.Counts(); n != 201 {
		t.Errorf("%d rows, want 201", n)
	}
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	chunk := make([]byte, 64<<10)
	for i := 0; ; i++ {
		if i > 1<<14 {
			t.Fatal("the tmpfs does not fill up")
		}
		if _, err := w.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	lonelypsdtest.WaitFor(t, what, 20*time.Second, cond)
}
