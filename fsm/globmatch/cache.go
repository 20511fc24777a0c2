package globmatch

import (
	"hash/maphash"
	"sync/atomic"
)

// The result cache keeps, per Index, the patterns matching the topics
// whose match was expensive: those that tested at least cacheMinTests
// patterns (many patterns without a literal, or many under one key). A
// cheap match is not cached, so it allocates nothing. The cache is direct
// mapped, cacheSlots entries of at most cacheMaxResults patterns, which
// bounds its memory; a slot is replaced whole with an atomic store, so
// concurrent matches share it without a lock. Every change to the Index
// drops the cache, and a Clone starts without one.
const (
	cacheSlots      = 1024
	cacheMinTests   = 32
	cacheMaxResults = 256
)

type resultCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	topic string
	found []string
}

// newCache installs an empty cache in x, or returns the one another
// match installed first.
func (x *Index) newCache() *resultCache {
	c := &resultCache{seed: maphash.MakeSeed()}
	if x.cache.CompareAndSwap(nil, c) {
		return c
	}
	return x.cache.Load()
}

func (c *resultCache) slot(topic []byte) *atomic.Pointer[cacheEntry] {
	return &c.slots[maphash.Bytes(c.seed, topic)%cacheSlots]
}

// get returns the patterns cached for topic.
func (c *resultCache) get(topic []byte) ([]string, bool) {
	e := c.slot(topic).Load()
	if e == nil || e.topic != string(topic) {
		return nil, false
	}
	return e.found, true
}

// put caches found as the patterns matching topic, which it copies.
func (c *resultCache) put(topic []byte, found []string) {
	c.slot(topic).Store(&cacheEntry{topic: string(topic), found: found})
}
