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
	// basePath is the prefix peers' APIs are mounted under.
	basePath string
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
		return "https://" + httpAddr + p.basePath
	}
	return "http://" + httpAddr + p.basePath
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

// stream sends a signed request with body and returns the answer's body
// for the caller to read (and close): operator answers (listings,
// backups) can be far larger than call would buffer. Non-2xx answers are
// *StatusError.
func (p *peerClient) stream(ctx context.Context, method, httpAddr, target, path string, body []byte) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL(httpAddr)+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	rc, _, err := p.streamReq(req, httpAddr, target, path, body)
	return rc, err
}

// streamReq signs req with body for target and sends it.
func (p *peerClient) streamReq(req *http.Request, httpAddr, target, path string, body []byte) (io.ReadCloser, http.Header, error) {
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	signPeer(req.Header, p.secret, req.Method, path, target, body, time.Now())
	resp, err := p.do(req, httpAddr, path)
	if err != nil {
		return nil, nil, err
	}
	return resp.Body, resp.Header, nil
}

// do sends req and checks the status of its answer.
func (p *peerClient) do(req *http.Request, httpAddr, path string) (*http.Response, error) {
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", req.Method, httpAddr, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	return resp, nil
}

// limitReader fails a read past n bytes instead of ending early, so an
// answer cut at the limit is an error, not a shorter answer.
func limitReader(r io.Reader, n int64) io.Reader { return &limited{r: r, left: n} }

type limited struct {
	r    io.Reader
	left int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, fmt.Errorf("answer larger than its limit")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
