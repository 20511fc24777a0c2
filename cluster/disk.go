package cluster

import (
	"strings"
	"sync"
	"time"

	"github.com/lonelypsd/lonelypsd/api/spool"
)

// diskCheckEvery is how long a free-space reading is trusted: statfs is
// cheap, but not per write.
const diskCheckEvery = time.Second

// diskGuard tells whether the data volume is too full for new writes.
type diskGuard struct {
	dir     string
	reserve int64

	mu      sync.Mutex
	checked time.Time
	low     bool
}

// full reports whether the volume has less than half the reserve free.
// The other half is left to the Raft log and the table for entries
// already accepted, membership changes and snapshots; a volume whose
// free space cannot be read counts as not full.
func (g *diskGuard) full(now time.Time) bool {
	if g == nil || g.reserve <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.checked) < diskCheckEvery && !g.checked.IsZero() {
		return g.low
	}
	g.checked = now
	free, err := spool.FreeBytes(g.dir)
	g.low = err == nil && free < g.reserve/2
	return g.low
}

// isNoSpace reports whether err comes from a full volume.
func isNoSpace(err error) bool {
	// Some stores flatten the errno into text.
	return err != nil && (spool.IsNoSpace(err) || strings.Contains(err.Error(), "no space left on device"))
}
