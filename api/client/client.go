// Package client is a Go client of the lonelypss stateless (HTTP)
// protocol: a Client that subscribes and notifies against one or more
// broadcasters, retrying as the Python client does, and a Subscriber, an
// http.Handler that receives RECEIVE and MISSED requests, checks them and
// confirms them. Messages of any size stream through both without being
// held in memory (NotifyStream, NotifyFile, NotifyReader,
// Subscriber.Stream). docs/client.md describes both and the retry rules.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
)

// StatusError is a refusal by the broadcaster.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("broadcaster answered %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// ErrConflict is a 409: the subscription already existed (subscribe) or
// did not exist (unsubscribe).
var ErrConflict = errors.New("conflict")

// Client talks to one or more broadcasters of one cluster (or several
// lone broadcasters sharing a table). Each request goes to the
// broadcasters by the Retry rules (retry.go). Safe for concurrent use once
// configured.
type Client struct {
	// Base is the broadcaster's base URL, e.g. http://127.0.0.1:3003,
	// used when Broadcasters is empty.
	Base string
	// Broadcasters are the base URLs requests may go to; any of them
	// accepts every request.
	Broadcasters []string
	// HTTP sends the requests; set it for TLS roots, timeouts or proxies.
	HTTP *http.Client
	// Auth signs requests (to-broadcaster) and verifies the broadcaster's
	// confirmations (to-subscriber).
	Auth  auth.Pair
	Retry Retry
}

// New returns a client of the given broadcasters (base URLs, e.g.
// http://127.0.0.1:3003) with auth none, http.DefaultClient and
// DefaultRetry.
func New(bases ...string) *Client {
	c := &Client{HTTP: http.DefaultClient, Auth: auth.NonePair(), Retry: DefaultRetry}
	for _, b := range bases {
		c.Broadcasters = append(c.Broadcasters, strings.TrimRight(b, "/"))
	}
	if len(c.Broadcasters) > 0 {
		c.Base = c.Broadcasters[0]
	}
	return c
}

// post signs m and sends it to the broadcasters by the retry rules; body
// gives the request body of each attempt.
func (c *Client) post(ctx context.Context, path string, m auth.Message, body bodySource) (*http.Response, error) {
	return c.send(ctx, func(ctx context.Context, base string) (*http.Response, error) {
		authz, err := c.Auth.Authorize(m)
		if err != nil {
			return nil, errFinal{err}
		}
		r, length, err := body()
		if err != nil {
			return nil, errFinal{err}
		}
		g := &gate{r: r}
		// The transport may still read a body after Do returns (an early
		// answer); the gate stops that before the next attempt rewinds it.
		defer g.close()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, g)
		if err != nil {
			return nil, errFinal{err}
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/octet-stream")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		hc := c.HTTP
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("post %s%s: %w", base, path, err)
		}
		return resp, nil
	})
}

func (c *Client) postSmall(ctx context.Context, path string, m auth.Message, body []byte) ([]byte, error) {
	resp, err := c.post(ctx, path, m, bytesBody(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s response: %w", path, err)
	}
	if resp.StatusCode == http.StatusConflict {
		return nil, ErrConflict
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	return b, nil
}

// SubscribeExact subscribes url to topic. recovery may be empty.
func (c *Client) SubscribeExact(ctx context.Context, url string, topic []byte, recovery string) error {
	body, err := wire.AppendSubscribeExact(nil, wire.SubscribeExact{URL: url, Topic: topic, Recovery: recovery})
	if err != nil {
		return err
	}
	_, err = c.postSmall(ctx, "/v1/subscribe/exact", auth.SubscribeExact{URL: url, Recovery: recovery, Topic: topic}, body)
	return err
}

// SubscribeGlob subscribes url to every topic matching glob.
func (c *Client) SubscribeGlob(ctx context.Context, url, glob, recovery string) error {
	body, err := wire.AppendSubscribeGlob(nil, wire.SubscribeGlob{URL: url, Glob: glob, Recovery: recovery})
	if err != nil {
		return err
	}
	_, err = c.postSmall(ctx, "/v1/subscribe/glob", auth.SubscribeGlob{URL: url, Recovery: recovery, Glob: glob}, body)
	return err
}

// UnsubscribeExact removes an exact subscription.
func (c *Client) UnsubscribeExact(ctx context.Context, url string, topic []byte) error {
	body, err := wire.AppendUnsubscribeExact(nil, wire.SubscribeExact{URL: url, Topic: topic})
	if err != nil {
		return err
	}
	_, err = c.postSmall(ctx, "/v1/unsubscribe/exact", auth.SubscribeExact{URL: url, Topic: topic}, body)
	return err
}

// UnsubscribeGlob removes a glob subscription.
func (c *Client) UnsubscribeGlob(ctx context.Context, url, glob string) error {
	body, err := wire.AppendUnsubscribeGlob(nil, wire.SubscribeGlob{URL: url, Glob: glob})
	if err != nil {
		return err
	}
	_, err = c.postSmall(ctx, "/v1/unsubscribe/glob", auth.SubscribeGlob{URL: url, Glob: glob}, body)
	return err
}

// CheckSubscriptions returns the strong etag of url's subscriptions.
func (c *Client) CheckSubscriptions(ctx context.Context, url string) ([64]byte, error) {
	body, err := wire.AppendCheckSubscriptions(nil, wire.CheckSubscriptions{URL: url})
	if err != nil {
		return [64]byte{}, err
	}
	b, err := c.postSmall(ctx, "/v1/check_subscriptions", auth.CheckSubscriptions{URL: url}, body)
	if err != nil {
		return [64]byte{}, err
	}
	r, err := wire.ParseResponseCheckSubscriptions(b)
	if err != nil {
		return [64]byte{}, err
	}
	if res := c.Auth.Verify(ctx, auth.CheckSubscriptionsResponse{Tracing: r.Tracing, Etag: r.Etag}, r.Authorization); res != auth.OK {
		return [64]byte{}, fmt.Errorf("check_subscriptions response: authorization %s", res)
	}
	return r.Etag, nil
}

// SetSubscriptions replaces url's subscriptions; the lists must be
// strictly ascending.
func (c *Client) SetSubscriptions(ctx context.Context, url string, exact []wire.ExactEntry, globs []wire.GlobEntry) error {
	etag := wire.Etag(url, exact, globs)
	body, err := wire.AppendSetSubscriptions(nil, wire.SetSubscriptions{URL: url, Etag: etag, Exact: exact, Globs: globs})
	if err != nil {
		return err
	}
	_, err = c.postSmall(ctx, "/v1/set_subscriptions", auth.SetSubscriptions{URL: url, Etag: etag}, body)
	return err
}

// gate is a request body that stops reading once closed.
type gate struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
}

func (g *gate) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("request body read after its attempt ended")
	}
	return g.r.Read(p)
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
