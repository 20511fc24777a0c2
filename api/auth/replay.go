package auth

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// MemoryReplayStore remembers codes in memory until they expire; it is
// safe for concurrent use. Expired codes are dropped as new ones arrive
// (a min-heap by expiry, swept on every call), so its size is bounded by
// the rate of accepted signatures times their retention (3 minutes by
// default), and only valid signatures get in. A restart forgets it: a
// code accepted just before a restart could be replayed once within its
// skew window, as with the reference's ":memory:" store.
type MemoryReplayStore struct {
	clock func() time.Time

	mu    sync.Mutex
	codes map[[64]byte]struct{}
	exp   expiryHeap
	peak  int // largest len(codes) since the map was last rebuilt
}

// NewMemoryReplayStore returns an empty store; clock is usually time.Now
// (nil means time.Now).
func NewMemoryReplayStore(clock func() time.Time) *MemoryReplayStore {
	if clock == nil {
		clock = time.Now
	}
	return &MemoryReplayStore{clock: clock, codes: make(map[[64]byte]struct{})}
}

// Seen implements ReplayStore. It never fails.
func (s *MemoryReplayStore) Seen(_ context.Context, code [64]byte, expires time.Time) (bool, error) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if _, ok := s.codes[code]; ok {
		return true, nil
	}
	s.codes[code] = struct{}{}
	heap.Push(&s.exp, expiry{code: code, at: expires})
	s.peak = max(s.peak, len(s.codes))
	return false, nil
}

// Len is the number of codes remembered (after dropping expired ones).
func (s *MemoryReplayStore) Len() int {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	return len(s.codes)
}

// expire drops codes whose expiry is before now (one expiring exactly now
// is kept, like the reference's "expires_at < now" cleanup).
func (s *MemoryReplayStore) expire(now time.Time) {
	for len(s.exp) > 0 && s.exp[0].at.Before(now) {
		e := heap.Pop(&s.exp).(expiry)
		delete(s.codes, e.code)
	}
	// Go maps never give back their buckets, so after a burst rebuild the
	// map (and the heap's backing array) once it is mostly empty, keeping
	// memory proportional to the current load rather than the peak.
	if s.peak >= 1024 && len(s.codes) < s.peak/4 {
		codes := make(map[[64]byte]struct{}, len(s.codes))
		for c := range s.codes {
			codes[c] = struct{}{}
		}
		s.codes = codes
		s.exp = append(expiryHeap(nil), s.exp...)
		s.peak = len(codes)
	}
}

type expiry struct {
	code [64]byte
	at   time.Time
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
