package spool

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func read(t *testing.T, b *Body) []byte {
	t.Helper()
	out, err := io.ReadAll(io.NewSectionReader(b, 0, int64(b.Len())))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBodiesInMemoryAndOnDisk(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		held   int // bytes already in memory
		size   int
		inFile bool
	}{
		{"small in memory", Config{Threshold: 100, MaxBuffered: 1000}, 0, 50, false},
		{"over threshold", Config{Threshold: 100, MaxBuffered: 1000}, 0, 101, true},
		{"over budget", Config{Threshold: 1000, MaxBuffered: 1000}, 950, 60, true},
		{"budget exactly", Config{Threshold: 1000, MaxBuffered: 1000}, 940, 60, false},
		{"empty", Config{}, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Dir, tc.cfg.DiskReserve = t.TempDir(), -1
			s := New(tc.cfg, nil)
			if tc.held > 0 {
				hold, err := s.ReadBody(bytes.NewReader(make([]byte, tc.held)), uint64(tc.held), sha512.Sum512(make([]byte, tc.held)))
				if err != nil {
					t.Fatal(err)
				}
				defer hold.Release()
			}
			msg := bytes.Repeat([]byte("ab"), tc.size)[:tc.size]
			b, err := s.ReadBody(bytes.NewReader(msg), uint64(len(msg)), sha512.Sum512(msg))
			if err != nil {
				t.Fatal(err)
			}
			if _, mem := b.Bytes(); mem == tc.inFile {
				t.Errorf("in memory: %v, want %v", mem, !tc.inFile)
			}
			if got := read(t, b); !bytes.Equal(got, msg) {
				t.Errorf("read back %d bytes, want the %d written", len(got), len(msg))
			}
			if b.Sum() != sha512.Sum512(msg) || b.Len() != uint64(len(msg)) {
				t.Error("Sum or Len wrong")
			}
			if s.Buffered() > tc.cfg.MaxBuffered && tc.cfg.MaxBuffered > 0 {
				t.Errorf("buffered %d over the budget %d", s.Buffered(), tc.cfg.MaxBuffered)
			}
			b.Retain()
			b.Release()
			if got := read(t, b); !bytes.Equal(got, msg) {
				t.Error("body unreadable while a reference remains")
			}
			b.Release()
			if s.Buffered() != int64(tc.held) {
				t.Errorf("buffered %d after release, want %d", s.Buffered(), tc.held)
			}
		})
	}
}

func TestReadBodyErrors(t *testing.T) {
	msg := []byte("hello")
	s := New(Config{Dir: t.TempDir(), DiskReserve: -1}, nil)
	cases := []struct {
		name string
		in   []byte
		n    uint64
		sum  [64]byte
		want error
	}{
		{"short", msg[:3], 5, sha512.Sum512(msg), ErrLength},
		{"long", append(msg, '!'), 5, sha512.Sum512(msg), ErrLength},
		{"digest", msg, 5, sha512.Sum512([]byte("other")), ErrDigest},
	}
	for _, tc := range cases {
		if _, err := s.ReadBody(bytes.NewReader(tc.in), tc.n, tc.sum); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if s.Buffered() != 0 {
		t.Errorf("failed bodies left %d bytes charged", s.Buffered())
	}
}

// A body that would leave less than the reserve free is refused before a
// byte is written; a write failing for lack of space is ErrNoSpace too.
func TestDiskReserve(t *testing.T) {
	s := New(Config{Dir: t.TempDir(), Threshold: 10, DiskReserve: 1000}, nil)
	s.freeBytes = func(string) (int64, error) { return 1500, nil }
	if _, err := s.NewWriter(400); err != nil {
		t.Errorf("400 bytes with 1500 free and a 1000 reserve: %v", err)
	}
	_, err := s.NewWriter(501)
	if !errors.Is(err, ErrNoSpace) || !IsNoSpace(err) {
		t.Fatalf("501 bytes with 1500 free and a 1000 reserve: %v, want ErrNoSpace", err)
	}
	var u interface{ Unavailable() bool }
	if !errors.As(err, &u) || !u.Unavailable() {
		t.Error("ErrNoSpace does not report Unavailable")
	}
	if !IsNoSpace(&os.PathError{Op: "write", Err: syscall.ENOSPC}) || !IsNoSpace(syscall.EDQUOT) {
		t.Error("ENOSPC or EDQUOT not recognised")
	}
	if spaceErr(&os.PathError{Op: "write", Err: syscall.ENOSPC}) == nil || !errors.Is(spaceErr(syscall.ENOSPC), ErrNoSpace) {
		t.Error("ENOSPC not mapped to ErrNoSpace")
	}
}

// Concurrent bodies never hold more memory than the budget, however many.
func TestBudgetUnderConcurrency(t *testing.T) {
	const budget = 10 << 10
	s := New(Config{Dir: t.TempDir(), Threshold: 4 << 10, MaxBuffered: budget, DiskReserve: -1}, nil)
	msg := []byte(strings.Repeat("x", 3<<10))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bodies []*Body
	for range 20 {
		wg.Go(func() {
			b, err := s.ReadBody(bytes.NewReader(msg), uint64(len(msg)), sha512.Sum512(msg))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := s.Buffered(); got > budget {
		t.Errorf("%d bytes in memory, budget %d", got, budget)
	}
	for _, b := range bodies {
		if got := read(t, b); !bytes.Equal(got, msg) {
			t.Error("body content differs")
		}
		b.Release()
	}
	if s.Buffered() != 0 {
		t.Errorf("%d bytes charged after every release", s.Buffered())
	}
}
