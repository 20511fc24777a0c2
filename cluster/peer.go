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

// call sends in as JSON to path on the node at httpAddr and decodes the
// answer into out (when non-nil). Non-2xx answers are *StatusError.
func (p *peerClient) call(ctx context.Context, method, httpAddr, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL(httpAddr)+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h := signPeer(p.secret, method, path, body, time.Now()); h != "" {
		req.Header.Set(peerAuthHeader, h)
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
