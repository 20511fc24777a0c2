package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
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
	ID string `json:"id"`
	// Version is the node's build (lonelypsd version).
	Version      string   `json:"version,omitempty"`
	State        string   `json:"state"`
	LeaderID     string   `json:"leader_id"`
	LeaderHTTP   string   `json:"leader_http"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	LastIndex    uint64   `json:"last_index"`
	Members      []Member `json:"members"`
	// Subscriptions counts the rows of this node's replica.
	Subscriptions Counts `json:"subscriptions"`
}

// Counts is the size of a replica's table.
type Counts struct {
	Exact int `json:"exact"`
	Glob  int `json:"glob"`
}

// Status describes this node and the cluster as it sees them.
func (n *Node) Status() Status {
	leaderID, _ := n.Leader()
	nodes := n.fsm.Nodes()
	st := Status{
		ID: n.cfg.NodeID, Version: n.cfg.Version, State: n.State(), LeaderID: leaderID, LeaderHTTP: nodes[leaderID].HTTP,
		AppliedIndex: n.raft.AppliedIndex(), CommitIndex: n.raft.CommitIndex(), LastIndex: n.raft.LastIndex(),
		Members: []Member{},
	}
	st.Subscriptions.Exact, st.Subscriptions.Glob = n.fsm.Counts()
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

// Body limits of the peer endpoints, checked against the signed length
// before any of the body is read. apply carries a whole command (a
// forwarded set_subscriptions is the largest); the others carry a node's
// addresses, an id or a URL.
const (
	maxApplyBody = maxEntrySize
	maxPeerBody  = 64 << 10
)

// Handler serves the /cluster endpoints: the status (open) and the
// internal ones peers use (signed with the cluster secret).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status())
	})
	mux.HandleFunc("POST /cluster/apply", n.peerOnly(maxApplyBody, n.serveApply))
	mux.HandleFunc("POST /cluster/read_index", n.peerOnly(maxPeerBody, n.serveReadIndex))
	mux.HandleFunc("POST /cluster/join", n.peerOnly(maxPeerBody, decoded(n.serveJoin)))
	mux.HandleFunc("POST /cluster/boot", n.peerOnly(maxPeerBody, decoded(n.serveBoot)))
	mux.HandleFunc("POST /cluster/remove", n.peerOnly(maxPeerBody, decoded(n.serveRemove)))
	mux.HandleFunc("POST /cluster/subscriptions", n.peerOnly(maxPeerBody, decoded(n.serveSubscriptions)))
	mux.HandleFunc("POST "+pathHealth, n.peerOnly(maxApplyBody, decoded(n.serveHealth)))
	mux.HandleFunc("POST "+pathAdminList, n.peerOnly(maxPeerBody, decoded(n.serveList)))
	mux.HandleFunc("POST "+pathAdminRemove, n.peerOnly(maxPeerBody, decoded(n.serveRemoveSubscriptions)))
	mux.HandleFunc("POST "+pathAdminBackup, n.peerOnly(maxPeerBody, n.serveBackup))
	mux.HandleFunc("POST "+pathAdminRestore, n.serveRestore)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers status with msg as {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decoded adapts h, the handler of a JSON request, to peerOnly: a body
// that does not decode is refused (400).
func decoded[In any](h func(http.ResponseWriter, *http.Request, In)) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in In
		if err := json.Unmarshal(body, &in); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		h(w, r, in)
	}
}

// writeErr answers err: 507 for a full disk (a forwarding follower turns
// it back into ErrDiskFull), 503 for other refusals worth a retry, 400 for
// an invalid command, else 500.
func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var u interface{ Unavailable() bool }
	switch {
	case errors.Is(err, ErrDiskFull):
		status = http.StatusInsufficientStorage
	case errors.As(err, &u) && u.Unavailable():
		status = http.StatusServiceUnavailable
	case errors.Is(err, ErrInvalidCommand):
		status = http.StatusBadRequest
	}
	writeError(w, status, err.Error())
}

// peerOnly checks the cluster signature before h runs: the headers, MAC,
// target, time and nonce before any of the body is read, then exactly the
// signed length (at most limit) and its digest. A refused request's body
// is never read; the HTTP server closes the connection instead of
// draining a large one.
func (n *Node) peerOnly(limit int64, h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		stamp, ok := n.checkPeer(w, r, limit)
		if !ok {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, stamp.length+1))
		if err != nil || int64(len(body)) != stamp.length {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusBadRequest, "body unreadable or not of the signed length")
			return
		}
		if sha256.Sum256(body) != stamp.digest {
			n.refusePeer(w, r, fmt.Errorf("%w: body does not match its signed digest", errPeerAuth))
			return
		}
		h(w, r, body)
	}
}

// checkPeer checks a signed request's headers, MAC, target, time, nonce
// and declared length (at most limit); it answers a refusal itself.
func (n *Node) checkPeer(w http.ResponseWriter, r *http.Request, limit int64) (peerStamp, bool) {
	stamp, err := n.verify.check(r.Header, r.Method, r.URL.Path, time.Now())
	if err != nil {
		n.refusePeer(w, r, err)
		return stamp, false
	}
	if stamp.length > limit {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes declared, at most %d accepted", stamp.length, limit))
		return stamp, false
	}
	if r.ContentLength >= 0 && r.ContentLength != stamp.length {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body of %d bytes signed, %d sent", stamp.length, r.ContentLength))
		return stamp, false
	}
	return stamp, true
}

func (n *Node) refusePeer(w http.ResponseWriter, r *http.Request, err error) {
	n.log.Warn("refused a cluster request", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusForbidden, err.Error())
}

func (n *Node) serveApply(w http.ResponseWriter, r *http.Request, body []byte) {
	cmd, err := fsm.DecodeCommand(body)
	if err == nil {
		err = validateCommand(cmd)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
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
	id, addr, err := n.leaderHTTP()
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := n.peers.call(r.Context(), http.MethodPost, addr, id, path, in, nil); err != nil {
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

func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request, info fsm.NodeInfo) {
	n.changeMembers(w, r, "/cluster/join", info, func(ctx context.Context) error { return n.addMember(ctx, info) })
}

// changeMembers makes a membership change at the leader: here if this node
// leads, else by forwarding the request (path, in) to it.
func (n *Node) changeMembers(w http.ResponseWriter, r *http.Request, path string, in any, change func(context.Context) error) {
	if n.raft.State() != raft.Leader {
		n.forwardToLeader(w, r, path, in)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := change(ctx); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (n *Node) serveBoot(w http.ResponseWriter, _ *http.Request, info fsm.NodeInfo) {
	if info.ID == "" {
		writeError(w, http.StatusBadRequest, "boot request without a node")
		return
	}
	writeJSON(w, http.StatusOK, n.noteCandidate(info))
}

type removeRequest struct {
	ID string `json:"id"`
}

func (n *Node) serveRemove(w http.ResponseWriter, r *http.Request, req removeRequest) {
	if req.ID == "" {
		writeError(w, http.StatusBadRequest, "remove request without an id")
		return
	}
	n.changeMembers(w, r, "/cluster/remove", req, func(ctx context.Context) error { return n.removeMember(ctx, req.ID) })
}

type subscriptionsRequest struct {
	URL string `json:"url"`
}

func (n *Node) serveSubscriptions(w http.ResponseWriter, _ *http.Request, req subscriptionsRequest) {
	exact, globs, err := n.fsm.List(req.URL)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, append(append([]fsm.Subscription{}, exact...), globs...))
}
