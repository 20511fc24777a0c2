package auth

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// MemoryReplayStore remembers codes in memory until they expire. Expired
// codes are dropped as new ones arrive, so its size is bounded by the rate
// of accepted signatures times their retention (3 minutes by default).
// A restart forgets it; see docs for what that allows.
type MemoryReplayStore struct {
	clock func() time.Time
	mu    sync.Mutex
	codes map[[64]byte]time.Time
	exp   expiryHeap
}

// NewMemoryReplayStore returns an empty store; clock is usually time.Now.
func NewMemoryReplayStore(clock func() time.Time) *MemoryReplayStore {
	return &MemoryReplayStore{clock: clock, codes: make(map[[64]byte]time.Time)}
}

// Seen implements ReplayStore.
func (s *MemoryReplayStore) Seen(_ context.Context, code [64]byte, expires time.Time) (bool, error) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if _, ok := s.codes[code]; ok {
		return true, nil
	}
	s.codes[code] = expires
	heap.Push(&s.exp, expiry{code: code, at: expires})
	return false, nil
}

// Len is the number of codes remembered.
func (s *MemoryReplayStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(s.clock())
	return len(s.codes)
}

func (s *MemoryReplayStore) expire(now time.Time) {
	for len(s.exp) > 0 && s.exp[0].at.Before(now) {
		e := heap.Pop(&s.exp).(expiry)
		delete(s.codes, e.code)
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
