package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// peerClient calls other nodes' /cluster endpoints over their HTTP API
// port, signed with the cluster secret.
type peerClient struct {
	http   *http.Client
	secret []byte
	tls    bool // peers serve https
}

// StatusError is a peer's refusal.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("peer answered %d: %s", e.Code, strings.TrimSpace(e.Body))
}

func (p *peerClient) baseURL(httpAddr string) string {
	if strings.Contains(httpAddr, "://") {
		return strings.TrimRight(httpAddr, "/")
	}
	if p.tls {
		return "https://" + httpAddr
	}
	return "http://" + httpAddr
}

// call sends in as JSON to path on the node target at httpAddr, signed
// for that node, and decodes the answer into out (when non-nil). Non-2xx
// answers are *StatusError.
func (p *peerClient) call(ctx context.Context, method, httpAddr, target, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
	}
	return p.send(ctx, method, httpAddr, target, path, body, out)
}

// send is call with the body already encoded. An empty target sends the
// request unsigned (only GET /cluster/status takes that).
func (p *peerClient) send(ctx context.Context, method, httpAddr, target, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL(httpAddr)+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if target != "" && len(p.secret) > 0 {
		signPeer(req.Header, p.secret, method, path, target, body, time.Now())
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, httpAddr, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read %s answer from %s: %w", path, httpAddr, err)
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s answer from %s: %w", path, httpAddr, err)
		}
	}
	return nil
}

// nodeID asks the node at httpAddr for its id (the unsigned status), which
// a caller must know to sign a request for it.
func (p *peerClient) nodeID(ctx context.Context, httpAddr string) (string, error) {
	var st Status
	if err := p.send(ctx, http.MethodGet, httpAddr, "", "/cluster/status", nil, &st); err != nil {
		return "", err
	}
	if st.ID == "" {
		return "", fmt.Errorf("%s/cluster/status names no node id", httpAddr)
	}
	return st.ID, nil
}

// callAt is call for a node known only by its address: it learns the
// node's id first.
func (p *peerClient) callAt(ctx context.Context, method, httpAddr, path string, in, out any) error {
	id, err := p.nodeID(ctx, httpAddr)
	if err != nil {
		return err
	}
	return p.call(ctx, method, httpAddr, id, path, in, out)
}
