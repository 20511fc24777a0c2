package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// Client is what operator commands use to talk to a node.
type Client struct{ peers *peerClient }

// NewClient returns a client signing with secret; with an empty one its
// requests go unsigned, which only the status endpoint accepts.
func NewClient(secret string) *Client {
	return &Client{peers: &peerClient{http: &http.Client{Timeout: 15 * time.Second}, secret: []byte(secret)}}
}

// NewClientHTTP returns a client signing with secret that sends its
// requests through hc (its TLS settings, proxies); hc's Timeout should
// be zero for backups and restores, which take as long as the table is
// large: bound them with the context instead.
func NewClientHTTP(secret string, hc *http.Client) *Client {
	return &Client{peers: &peerClient{http: hc, secret: []byte(secret)}}
}

// Status fetches a node's status.
func (c *Client) Status(ctx context.Context, httpAddr string) (Status, error) {
	var st Status
	err := c.peers.send(ctx, http.MethodGet, httpAddr, "", "/cluster/status", nil, &st)
	return st, err
}

// Remove asks the cluster (through any node) to remove a member. It
// retries while the cluster has no leader (503), until ctx ends.
func (c *Client) Remove(ctx context.Context, httpAddr, id string) error {
	for {
		err := c.peers.callAt(ctx, http.MethodPost, httpAddr, "/cluster/remove", removeRequest{ID: id}, nil)
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
	err := c.peers.callAt(ctx, http.MethodPost, httpAddr, "/cluster/subscriptions", subscriptionsRequest{URL: url}, &out)
	return out, err
}

// ListSubscriptions calls fn for every row f selects, with the cluster's
// merged health of its URL, as the node at httpAddr sees them. incomplete
// names the members whose health is missing from the merge ("" when none).
func (c *Client) ListSubscriptions(ctx context.Context, httpAddr string, f ListFilter, fn func(Row) error) (incomplete string, err error) {
	rc, hdr, err := c.streamAt(ctx, httpAddr, pathAdminList, f)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReader(rc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return "", fmt.Errorf("listing from %s is not a JSON array: %v", httpAddr, err)
	}
	for dec.More() {
		var r Row
		if err := dec.Decode(&r); err != nil {
			return "", fmt.Errorf("listing from %s cut short: %w", httpAddr, err)
		}
		if err := fn(r); err != nil {
			return "", err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return "", fmt.Errorf("listing from %s cut short: %v", httpAddr, err)
	}
	return hdr.Get("Lonelypsd-Health-Incomplete"), nil
}

// RemoveSubscriptions removes rows through the node at httpAddr and
// returns how many; ErrNoSuchSubscription when a named row is absent.
func (c *Client) RemoveSubscriptions(ctx context.Context, httpAddr string, req RemoveRequest) (int, error) {
	var out struct {
		Removed int `json:"removed"`
	}
	err := c.peers.callAt(ctx, http.MethodPost, httpAddr, pathAdminRemove, req, &out)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return 0, ErrNoSuchSubscription
	}
	return out.Removed, err
}

// Backup writes the node's table to w as a backup file and checks what
// it wrote.
func (c *Client) Backup(ctx context.Context, httpAddr string, w io.Writer) (fsm.BackupInfo, error) {
	rc, _, err := c.streamAt(ctx, httpAddr, pathAdminBackup, nil)
	if err != nil {
		return fsm.BackupInfo{}, err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	var info fsm.BackupInfo
	var rerr error
	go func() {
		defer close(done)
		info, rerr = fsm.ReadBackup(pr, nil)
		_, _ = io.Copy(io.Discard, pr)
	}()
	_, err = io.Copy(io.MultiWriter(w, pw), rc)
	pw.CloseWithError(err)
	<-done
	if err != nil {
		return info, fmt.Errorf("download backup from %s: %w", httpAddr, err)
	}
	return info, rerr
}

// Restore uploads the backup file at path to the node at httpAddr, which
// replaces the cluster's table with it. The file is checked here first.
func (c *Client) Restore(ctx context.Context, httpAddr, path string) (fsm.BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return fsm.BackupInfo{}, err
	}
	defer f.Close()
	sum := sha256.New()
	info, err := fsm.ReadBackup(io.TeeReader(f, sum), nil)
	if err != nil {
		return info, err
	}
	length, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return info, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, err
	}
	id, err := c.peers.nodeID(ctx, httpAddr)
	if err != nil {
		return info, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.peers.baseURL(httpAddr)+pathAdminRestore, io.LimitReader(f, length))
	if err != nil {
		return info, err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	setPeerHeaders(req.Header, c.peers.secret, peerStamp{
		method: http.MethodPost, path: pathAdminRestore, target: id, ms: time.Now().UnixMilli(), nonce: newNonce(),
		length: length, digest: [32]byte(sum.Sum(nil)),
	})
	resp, err := c.peers.do(req, httpAddr, pathAdminRestore)
	if err != nil {
		return info, err
	}
	return info, resp.Body.Close()
}

// streamAt sends a signed request with in as JSON to the node at
// httpAddr and returns its answer's body and headers.
func (c *Client) streamAt(ctx context.Context, httpAddr, path string, in any) (io.ReadCloser, http.Header, error) {
	id, err := c.peers.nodeID(ctx, httpAddr)
	if err != nil {
		return nil, nil, err
	}
	body := []byte("{}")
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return nil, nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.peers.baseURL(httpAddr)+path, nil)
	if err != nil {
		return nil, nil, err
	}
	return c.peers.streamReq(req, httpAddr, id, path, body)
}
