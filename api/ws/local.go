package ws

import (
	"bytes"
	"io"
	"strings"

	msgspool "github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// DeliverLocal is fanout.Local: a delivery to one of this process's rows,
// made in process rather than as a POST to this node's own
// receive_for_websockets. It answers as that endpoint would, without the
// request, the signature and its check, or a copy of the body: the
// message's own body is queued when it is a spooled one.
func (h *Hub) DeliverLocal(m fanout.Message, s fsm.Subscription) (fanout.LocalResult, bool) {
	glob, ok := h.ownRow(s.URL)
	if !ok {
		return fanout.LocalResult{}, false
	}
	conns, relevant := h.targets(m.Topic, glob)
	if !relevant {
		return fanout.LocalResult{Unsubscribe: true}, true
	}
	b, err := h.shareBody(m)
	if err != nil {
		return fanout.LocalResult{Err: err}, true
	}
	// The queues keep the topic until the message is written; the
	// notifier's copy is not this package's to hold.
	return fanout.LocalResult{Subscribers: queue(conns, bytes.Clone(m.Topic), b)}, true
}

// ownRow tells whether raw is the receive URL of one of this process's
// rows, exactly as rowURLs writes it, and which glob row it names ("" for
// the exact rows).
func (h *Hub) ownRow(raw string) (glob string, ok bool) {
	rest, ok := strings.CutPrefix(raw, h.receiveURL)
	if !ok || rest == "" {
		return "", ok
	}
	glob, ok = strings.CutPrefix(rest, "&"+paramGlob+"=")
	return glob, ok && glob != ""
}

// shareBody returns m's body with a reference for the caller: the body
// itself when it is spooled (no copy), or else a spooled copy checked
// against m.SHA512.
func (h *Hub) shareBody(m fanout.Message) (*body, error) {
	switch src := m.Body.(type) {
	case *body:
		src.retainN(1)
		return src, nil
	case *msgspool.Body:
		src.Retain()
		return newBody(src), nil
	}
	return h.readBody(io.NewSectionReader(m.Body, 0, int64(m.Length)), m.Length, m.SHA512)
}

// queue puts b on each of conns and returns how many took it. The
// caller's reference to b is released.
func queue(conns []*conn, topic []byte, b *body) uint32 {
	count := uint32(0)
	b.retainN(len(conns))
	for _, cn := range conns {
		if cn.enqueue(item{kind: itemReceive, topic: topic, body: b}) {
			count++
		}
	}
	b.release()
	return count
}
