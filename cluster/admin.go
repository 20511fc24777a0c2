package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// The operator endpoints: every one is signed with the cluster secret, as
// peers' requests are, so `lonelypsd subs` and `lonelypsd snapshot` need
// the secret a node was started with.
const (
	pathHealth        = "/cluster/health"
	pathAdminList     = "/cluster/admin/subscriptions"
	pathAdminRemove   = "/cluster/admin/remove"
	pathAdminBackup   = "/cluster/admin/backup"
	pathAdminRestore  = "/cluster/admin/restore"
	peerHealthTimeout = 10 * time.Second
	// maxHealthAnswer bounds a peer's health answer (a few hundred bytes
	// per URL it delivers to).
	maxHealthAnswer = 512 << 20
)

// Row is one subscription as the operator commands show it, with the
// cluster's view of its URL's delivery health.
type Row struct {
	URL      string        `json:"url"`
	Kind     string        `json:"kind"`
	Key      string        `json:"key"`
	Recovery string        `json:"recovery"`
	Health   health.Record `json:"health"`
}

// ListFilter selects rows: every field set must match. Topic and Glob
// select an exact topic or a glob pattern (either, when both are set).
type ListFilter struct {
	URL       string  `json:"url,omitempty"`
	Topic     *string `json:"topic,omitempty"`
	Glob      *string `json:"glob,omitempty"`
	Unhealthy bool    `json:"unhealthy,omitempty"`
}

func (f ListFilter) keeps(s fsm.Subscription) bool {
	if f.URL != "" && s.URL != f.URL {
		return false
	}
	if f.Topic == nil && f.Glob == nil {
		return true
	}
	if s.Kind == fsm.Exact {
		return f.Topic != nil && *f.Topic == s.Key
	}
	return f.Glob != nil && *f.Glob == s.Key
}

type healthRequest struct {
	// URLs asked about; nil asks for every URL the node knows.
	URLs []string `json:"urls"`
}

func (n *Node) serveHealth(w http.ResponseWriter, _ *http.Request, req healthRequest) {
	writeJSON(w, http.StatusOK, n.cfg.Health.Get(req.URLs))
}

// clusterHealth merges the health every member keeps of urls (nil: of
// every URL). It returns what it could gather and an error naming the
// members that did not answer: a caller acting on the merge (pruning)
// must not act on an incomplete one.
func (n *Node) clusterHealth(ctx context.Context, urls []string) (map[string]health.Record, error) {
	views := []map[string]health.Record{n.cfg.Health.Get(urls)}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	nodes := n.fsm.Nodes()
	for _, s := range n.otherServers() {
		info, ok := nodes[string(s.ID)]
		if !ok || info.HTTP == "" {
			errs = append(errs, fmt.Errorf("member %s: no known API address", s.ID))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, peerHealthTimeout)
			defer cancel()
			view, err := n.peerHealth(cctx, info, urls)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("member %s: %w", info.ID, err))
				return
			}
			views = append(views, view)
		}()
	}
	wg.Wait()
	merged := map[string]health.Record{}
	byURL := map[string][]health.Record{}
	for _, v := range views {
		for u, r := range v {
			byURL[u] = append(byURL[u], r)
		}
	}
	for u, rs := range byURL {
		merged[u] = health.Merge(rs...)
	}
	return merged, errors.Join(errs...)
}

func (n *Node) peerHealth(ctx context.Context, info fsm.NodeInfo, urls []string) (map[string]health.Record, error) {
	body, err := json.Marshal(healthRequest{URLs: urls})
	if err != nil {
		return nil, err
	}
	rc, err := n.peers.stream(ctx, http.MethodPost, info.HTTP, info.ID, pathHealth, body)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := map[string]health.Record{}
	if err := json.NewDecoder(limitReader(rc, maxHealthAnswer)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode health answer: %w", err)
	}
	return out, nil
}

// serveList streams the rows the filter selects as a JSON array, with
// the cluster's merged health of each URL.
func (n *Node) serveList(w http.ResponseWriter, r *http.Request, f ListFilter) {
	ctx := r.Context()
	n.barrierForAdmin(ctx)
	var urls []string
	if f.URL != "" {
		urls = []string{f.URL}
	}
	merged, err := n.clusterHealth(ctx, urls)
	if err != nil {
		// A listing is still useful without a member's view; say so.
		w.Header().Set("Lonelypsd-Health-Incomplete", truncate(err.Error(), 512))
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	first := true
	_ = bw.WriteByte('[')
	err = n.fsm.EachRow(func(s fsm.Subscription) error {
		h := merged[s.URL]
		if !f.keeps(s) || (f.Unhealthy && !h.Failing()) {
			return ctx.Err()
		}
		if !first {
			_ = bw.WriteByte(',')
		}
		first = false
		return enc.Encode(Row{URL: s.URL, Kind: s.Kind.String(), Key: s.Key, Recovery: s.Recovery, Health: h})
	})
	if err != nil {
		// The array is left unterminated: the client sees a broken
		// listing, not a short one.
		n.log.Warn("subscription listing cut short", "err", err)
		_ = bw.Flush()
		return
	}
	_ = bw.WriteByte(']')
	_ = bw.Flush()
}

// barrierForAdmin brings the local replica up to the cluster's commit
// index, so an operator's read shows every acknowledged change; without a
// leader the replica is used as it is.
func (n *Node) barrierForAdmin(ctx context.Context) {
	if err := n.ReadBarrier(ctx); err != nil {
		n.log.Info("operator read uses the local replica as it is", "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// RemoveRequest names rows to remove: one exact topic, one glob, or
// (neither set) every row of URL.
type RemoveRequest struct {
	URL   string  `json:"url"`
	Topic *string `json:"topic,omitempty"`
	Glob  *string `json:"glob,omitempty"`
}

// ErrNoSuchSubscription: a removal named a row the table does not hold.
var ErrNoSuchSubscription = errors.New("no such subscription")

// RemoveSubscriptions removes rows through Raft and returns how many it
// removed.
func (n *Node) RemoveSubscriptions(ctx context.Context, req RemoveRequest) (int, error) {
	if req.URL == "" {
		return 0, fmt.Errorf("%w: no url", ErrInvalidCommand)
	}
	if req.Topic != nil && req.Glob != nil {
		return 0, fmt.Errorf("%w: a topic or a glob, not both", ErrInvalidCommand)
	}
	var cmd fsm.Command
	rows := 1
	switch {
	case req.Topic != nil:
		cmd = fsm.Subscription{Kind: fsm.Exact, URL: req.URL, Key: *req.Topic}.Unsubscribe()
	case req.Glob != nil:
		cmd = fsm.Subscription{Kind: fsm.Glob, URL: req.URL, Key: *req.Glob}.Unsubscribe()
	default:
		exact, globs, err := n.fsm.List(req.URL)
		if err != nil {
			return 0, err
		}
		if rows = len(exact) + len(globs); rows == 0 {
			return 0, nil
		}
		cmd = fsm.Command{Op: fsm.OpSetSubscriptions, URL: req.URL}
	}
	res, err := n.Apply(ctx, cmd)
	if err != nil {
		return 0, err
	}
	if res.Err != nil {
		return 0, res.Err
	}
	if res.Outcome == fsm.Conflict {
		return 0, ErrNoSuchSubscription
	}
	return rows, nil
}

func (n *Node) serveRemoveSubscriptions(w http.ResponseWriter, r *http.Request, req RemoveRequest) {
	removed, err := n.RemoveSubscriptions(r.Context(), req)
	if errors.Is(err, ErrNoSuchSubscription) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	n.cfg.Health.Forget(req.URL)
	writeJSON(w, http.StatusOK, map[string]int{"removed": removed})
}
