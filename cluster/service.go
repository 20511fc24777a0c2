package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// Member is one server of the Raft configuration, as /cluster/status
// reports it.
type Member struct {
	ID    string `json:"id"`
	HTTP  string `json:"http"`
	Raft  string `json:"raft"`
	Voter bool   `json:"voter"`
}

// Status is the answer of GET /cluster/status.
type Status struct {
	ID           string   `json:"id"`
	State        string   `json:"state"`
	LeaderID     string   `json:"leader_id"`
	LeaderHTTP   string   `json:"leader_http"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	LastIndex    uint64   `json:"last_index"`
	Members      []Member `json:"members"`
}

// Status describes this node and the cluster as it sees them.
func (n *Node) Status() Status {
	leaderID, _ := n.Leader()
	nodes := n.fsm.Nodes()
	st := Status{
		ID: n.cfg.NodeID, State: n.State(), LeaderID: leaderID, LeaderHTTP: nodes[leaderID].HTTP,
		AppliedIndex: n.raft.AppliedIndex(), CommitIndex: n.raft.CommitIndex(), LastIndex: n.raft.LastIndex(),
		Members: []Member{},
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Members = append(st.Members, Member{
				ID: string(s.ID), Raft: string(s.Address), HTTP: nodes[string(s.ID)].HTTP, Voter: s.Suffrage == raft.Voter,
			})
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

// maxPeerBody bounds /cluster request bodies: a forwarded
// set_subscriptions is the largest.
const maxPeerBody = 64 << 20

// Handler serves the /cluster endpoints: the status (open) and the
// internal ones peers use (signed with the cluster secret).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status())
	})
	mux.HandleFunc("POST /cluster/apply", n.peerOnly(n.serveApply))
	mux.HandleFunc("POST /cluster/read_index", n.peerOnly(n.serveReadIndex))
	mux.HandleFunc("POST /cluster/join", n.peerOnly(n.serveJoin))
	mux.HandleFunc("POST /cluster/boot", n.peerOnly(n.serveBoot))
	mux.HandleFunc("POST /cluster/remove", n.peerOnly(n.serveRemove))
	mux.HandleFunc("POST /cluster/subscriptions", n.peerOnly(n.serveSubscriptions))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) ||
		errors.Is(err, ErrShutdown) || errors.Is(err, errForward) {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// peerOnly checks the cluster signature (its form and time before reading
// the body, the MAC after) before h runs.
func (n *Node) peerOnly(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		refuse := func(err error) {
			n.log.Warn("refused an unsigned cluster request", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": err.Error()})
		}
		ts, mac, err := peerStamp(n.peers.secret, r.Header.Get(peerAuthHeader), time.Now())
		if err != nil {
			refuse(err)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPeerBody+1))
		if err != nil || len(body) > maxPeerBody {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unreadable or oversized body"})
			return
		}
		if err := checkPeerMAC(n.peers.secret, ts, mac, r.Method, r.URL.Path, body); err != nil {
			refuse(err)
			return
		}
		h(w, r, body)
	}
}

func (n *Node) serveApply(w http.ResponseWriter, r *http.Request, body []byte) {
	cmd, err := fsm.DecodeCommand(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if n.raft.State() != raft.Leader {
		writeErr(w, ErrNotLeader)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, index, err := n.applyLocal(ctx, cmd)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResult{Outcome: res.Outcome, Index: index})
}

// forwardToLeader sends a membership request on to the leader; the
// asking node may have contacted any member.
func (n *Node) forwardToLeader(w http.ResponseWriter, r *http.Request, path string, in any) {
	_, addr, err := n.leaderHTTP()
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := n.peers.call(r.Context(), http.MethodPost, addr, path, in, nil); err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			http.Error(w, se.Body, se.Code)
			return
		}
		writeErr(w, errors.Join(errForward, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request, body []byte) {
	var info fsm.NodeInfo
	if err := json.Unmarshal(body, &info); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if n.raft.State() != raft.Leader {
		n.forwardToLeader(w, r, "/cluster/join", info)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := n.addMember(ctx, info); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (n *Node) serveBoot(w http.ResponseWriter, _ *http.Request, body []byte) {
	var info fsm.NodeInfo
	if err := json.Unmarshal(body, &info); err != nil || info.ID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "boot request without a node"})
		return
	}
	writeJSON(w, http.StatusOK, n.noteCandidate(info))
}

type removeRequest struct {
	ID string `json:"id"`
}

func (n *Node) serveRemove(w http.ResponseWriter, r *http.Request, body []byte) {
	var req removeRequest
	if err := json.Unmarshal(body, &req); err != nil || req.ID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "remove request without an id"})
		return
	}
	if n.raft.State() != raft.Leader {
		n.forwardToLeader(w, r, "/cluster/remove", req)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := n.removeMember(ctx, req.ID); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

// Client is what operator commands use to talk to a node.
type Client struct{ peers *peerClient }

// NewClient returns a client signing with secret (may be empty).
func NewClient(secret string) *Client {
	return &Client{peers: &peerClient{http: &http.Client{Timeout: 15 * time.Second}, secret: []byte(secret)}}
}

// Status fetches a node's status.
func (c *Client) Status(ctx context.Context, httpAddr string) (Status, error) {
	var st Status
	err := c.peers.call(ctx, http.MethodGet, httpAddr, "/cluster/status", nil, &st)
	return st, err
}

// Remove asks the cluster (through any node) to remove a member. It
// retries while the cluster has no leader (503), until ctx ends.
func (c *Client) Remove(ctx context.Context, httpAddr, id string) error {
	for {
		err := c.peers.call(ctx, http.MethodPost, httpAddr, "/cluster/remove", removeRequest{ID: id}, nil)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Subscriptions lists, from one node's replica, the subscriptions of url
// (signed with the cluster secret: subscriber URLs are not public).
func (c *Client) Subscriptions(ctx context.Context, httpAddr, url string) ([]fsm.Subscription, error) {
	var out []fsm.Subscription
	err := c.peers.call(ctx, http.MethodPost, httpAddr, "/cluster/subscriptions", subscriptionsRequest{URL: url}, &out)
	return out, err
}

type subscriptionsRequest struct {
	URL string `json:"url"`
}

func (n *Node) serveSubscriptions(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req subscriptionsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	exact, globs, err := n.fsm.List(req.URL)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, append(append([]fsm.Subscription{}, exact...), globs...))
}
