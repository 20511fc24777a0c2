package ws

import (
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
)

const octetStream = "application/octet-stream"

// unsubscribeImmediate answers the body that makes the publisher delete
// the row it POSTed for: the status is informational, the body decides.
func unsubscribeImmediate(c echo.Context, status int) error {
	return c.Blob(status, octetStream, wire.AppendUnsubscribeImmediate(nil))
}

// receiveForWebsockets is POST /v1/receive_for_websockets: a publisher
// (this node or a peer) delivering a RECEIVE to one of this process's
// rows. It answers like a subscriber: UNSUBSCRIBE_IMMEDIATE for a row that
// is not (or no longer) this process's, CONFIRM_RECEIVE with the number of
// local connections the message was queued for otherwise.
func (h *Hub) receiveForWebsockets(c echo.Context) error {
	req := c.Request()
	digest, err := wire.ParseReprDigest(req.Header.Get("Repr-Digest"))
	if err != nil {
		h.log.Info("receive_for_websockets: bad Repr-Digest", "err", err)
		return unsubscribeImmediate(c, http.StatusBadRequest)
	}
	glob, ok := h.ownQuery(req.URL.Query())
	if !ok {
		// A row of another process of this node (or of another node at
		// this address): stale, the publisher drops it.
		h.log.Info("receive_for_websockets: row of another process", "query", req.URL.RawQuery)
		return unsubscribeImmediate(c, http.StatusBadRequest)
	}
	rh, err := wire.ReadReceiveHeader(req.Body)
	if err != nil {
		return c.NoContent(http.StatusBadRequest)
	}
	conns, relevant := h.targets(rh.Topic, glob)
	if !relevant {
		return unsubscribeImmediate(c, http.StatusBadRequest)
	}
	rowURL, _ := h.rowURLs(glob)
	// The publisher signed with the row's URL as stored, which this
	// process wrote; verifying with it (not with the Host the request
	// happened to carry) keeps proxies and address spellings out of it.
	switch r := h.auth.Verify(req.Context(), auth.Receive{
		Tracing: rh.Tracing, URL: rowURL, Topic: rh.Topic, Identifier: rh.Identifier, SHA512: digest,
	}, req.Header.Get("Authorization")); r {
	case auth.OK:
	case auth.Unavailable:
		return c.NoContent(http.StatusServiceUnavailable)
	default:
		return unsubscribeImmediate(c, r.HTTPStatus())
	}
	if req.ContentLength >= 0 {
		head := int64(2+len(rh.Tracing)+2+len(rh.Topic)+1+len(rh.Identifier)) + 8
		if rh.Length > 1<<62 || req.ContentLength != head+int64(rh.Length) {
			return c.NoContent(http.StatusBadRequest)
		}
	}
	b, err := h.readBody(req.Body, rh.Length, digest)
	if err != nil {
		if errors.Is(err, errLength) || errors.Is(err, errDigest) || errors.Is(err, io.ErrUnexpectedEOF) {
			return c.NoContent(http.StatusBadRequest)
		}
		h.log.Warn("receive_for_websockets: cannot hold message", "err", err)
		return c.NoContent(http.StatusServiceUnavailable)
	}
	return h.confirmReceive(c, rh.Identifier, queue(conns, rh.Topic, b), rowURL)
}

func (h *Hub) confirmReceive(c echo.Context, identifier []byte, count uint32, rowURL string) error {
	authz, err := h.auth.Authorize(auth.ConfirmReceive{Identifier: identifier, NumSubscribers: count, URL: rowURL})
	if err != nil {
		return err
	}
	out, err := wire.AppendConfirmReceive(nil, wire.ConfirmReceive{Authorization: authz, Identifier: identifier, NumSubscribers: count})
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, octetStream, out)
}

// missedForWebsockets is POST /v1/missed_for_websockets: a publisher that
// failed to deliver to one of this process's rows tells it that messages
// may have been lost; every local connection that takes messages from
// that row gets a MISSED.
func (h *Hub) missedForWebsockets(c echo.Context) error {
	req := c.Request()
	glob, ok := h.ownQuery(req.URL.Query())
	if !ok {
		return unsubscribeImmediate(c, http.StatusBadRequest)
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, 4<<16))
	if err != nil {
		return c.NoContent(http.StatusBadRequest)
	}
	m, err := wire.ParseMissed(raw)
	if err != nil {
		return c.NoContent(http.StatusBadRequest)
	}
	_, recovery := h.rowURLs(glob)
	if r := h.auth.Verify(req.Context(), auth.Missed{Tracing: m.Tracing, Recovery: recovery, Topic: m.Topic},
		req.Header.Get("Authorization")); r != auth.OK {
		return c.NoContent(r.HTTPStatus())
	}
	conns, _ := h.targets(m.Topic, glob)
	for _, cn := range conns {
		cn.enqueue(item{kind: itemMissed, topic: m.Topic})
	}
	authz, err := h.auth.Authorize(auth.ConfirmMissed{Topic: m.Topic, URL: recovery})
	if err != nil {
		return err
	}
	out, err := wire.AppendConfirmMissed(nil, wire.ConfirmMissed{Authorization: authz})
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, octetStream, out)
}
