// Package client is a Go client of the lonelypss stateless protocol: a
// Client that subscribes and notifies against a broadcaster, and a
// Subscriber, an http.Handler that receives RECEIVE and MISSED requests
// and confirms them. The project's own end-to-end tests and load
// generator use it; Go programs may too.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

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

// Client talks to one broadcaster.
type Client struct {
	// Base is the broadcaster's base URL, e.g. http://127.0.0.1:3003.
	Base string
	HTTP *http.Client
	// Auth signs requests (to-broadcaster) and verifies the broadcaster's
	// confirmations (to-subscriber).
	Auth auth.Pair
}

// New returns a client with auth none.
func New(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: http.DefaultClient,
		Auth: auth.Pair{ToBroadcaster: auth.None(), ToSubscriber: auth.None()}}
}

func (c *Client) post(ctx context.Context, path string, m auth.Message, body io.Reader, length int64) (*http.Response, error) {
	authz, err := c.Auth.Authorize(m)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", path, err)
	}
	return resp, nil
}

func (c *Client) postSmall(ctx context.Context, path string, m auth.Message, body []byte) ([]byte, error) {
	resp, err := c.post(ctx, path, m, bytes.NewReader(body), int64(len(body)))
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

// Notify publishes message to topic and returns how many subscribers
// confirmed it.
func (c *Client) Notify(ctx context.Context, topic, message []byte) (uint32, error) {
	return c.NotifyStream(ctx, topic, bytes.NewReader(message), uint64(len(message)), sha512.Sum512(message))
}

// NotifyStream publishes a message read from r, of the given length and
// SHA-512, without holding it in memory.
func (c *Client) NotifyStream(ctx context.Context, topic []byte, r io.Reader, length uint64, sum [64]byte) (uint32, error) {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, err
	}
	head, err := wire.AppendNotifyHeader(nil, wire.Notify{Topic: topic, SHA512: sum, Identifier: id[:], Length: length})
	if err != nil {
		return 0, err
	}
	resp, err := c.post(ctx, "/v1/notify", auth.Notify{Topic: topic, Identifier: id[:], SHA512: sum},
		io.MultiReader(bytes.NewReader(head), r), int64(len(head))+int64(length))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read notify response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	r2, err := wire.ParseResponseNotify(b)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(r2.Identifier, id[:]) {
		return 0, fmt.Errorf("notify response echoes identifier %x, sent %x", r2.Identifier, id)
	}
	if res := c.Auth.Verify(ctx, auth.ConfirmNotify{
		Tracing: r2.Tracing, Identifier: r2.Identifier, Subscribers: r2.Count, Topic: topic, SHA512: sum,
	}, r2.Authorization); res != auth.OK {
		return 0, fmt.Errorf("notify response: authorization %s", res)
	}
	return r2.Count, nil
}
