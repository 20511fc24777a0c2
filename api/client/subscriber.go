package client

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"hash"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
)

// Received is one RECEIVE a Subscriber accepted.
type Received struct {
	// URL is the request URL as the subscriber saw it (what it signs).
	URL        string
	Topic      []byte
	Tracing    []byte
	Identifier []byte
	Length     uint64
	SHA512     [64]byte
	// Message holds the body when Length is at most the subscriber's
	// KeepBodies and there is no Stream; longer bodies are only hashed.
	Message []byte
	Header  http.Header
}

// Reply tells a Subscriber how to answer a RECEIVE.
type Reply int

const (
	// Confirm answers CONFIRM_RECEIVE with one subscriber.
	Confirm Reply = iota
	// Unsubscribe answers UNSUBSCRIBE_IMMEDIATE (with status 400, as the
	// Python client does).
	Unsubscribe
	// Fail answers 500 with a body that is no confirmation.
	Fail
)

// Subscriber is an http.Handler serving /v1/receive and /v1/recover the way
// the Python client does: it checks Repr-Digest, the authorization and the
// body's length and hash, and confirms. Safe for concurrent use.
type Subscriber struct {
	Auth auth.Pair
	// KeepBodies: messages up to this many bytes are kept in Received.
	KeepBodies uint64
	// Stream, if set, gets each authorised RECEIVE as it arrives, with its
	// body as a reader, instead of the body being kept: messages of any
	// size then cost no memory. The reader ends with io.EOF only when the
	// message was whole and matched its SHA-512, else with
	// ErrDigestMismatch or ErrShortMessage (and the subscriber then
	// refuses it whatever Stream answers): act on the message only after
	// io.EOF. What Stream leaves unread is read and checked after it
	// returns. Its reply is used unless Decide is set too.
	Stream func(Received, io.Reader) Reply
	// Decide, if set, chooses the reply to each valid RECEIVE.
	Decide func(Received) Reply
	// OnMissed, if set, is told the topic of each accepted MISSED notice.
	OnMissed func(topic []byte)
	// Discard keeps no Received records or missed topics, only the count:
	// for long-running subscribers and load tests.
	Discard bool

	count atomic.Int64

	mu       sync.Mutex
	received []Received
	missed   [][]byte
	notify   chan struct{}
}

// NewSubscriber returns a subscriber with auth none that keeps bodies up
// to 1 MiB.
func NewSubscriber() *Subscriber {
	return &Subscriber{Auth: auth.Pair{ToBroadcaster: auth.None(), ToSubscriber: auth.None()}, KeepBodies: 1 << 20}
}

// Received returns the RECEIVEs accepted so far.
func (s *Subscriber) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Count returns how many RECEIVEs were confirmed.
func (s *Subscriber) Count() int64 { return s.count.Load() }

// Missed returns the topics of the MISSED notices accepted so far.
func (s *Subscriber) Missed() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.missed...)
}

// Changed returns a channel closed at the next accepted RECEIVE or MISSED,
// so tests wait for events instead of sleeping.
func (s *Subscriber) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notify == nil {
		s.notify = make(chan struct{})
	}
	return s.notify
}

func (s *Subscriber) changed() {
	if s.notify != nil {
		close(s.notify)
		s.notify = nil
	}
}

func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

func (s *Subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/receive":
		s.receive(w, r)
	case "/v1/recover":
		s.recover(w, r)
	default:
		http.NotFound(w, r)
	}
}

func unsubscribeImmediate(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(status)
	_, _ = w.Write(wire.AppendUnsubscribeImmediate(nil))
}

func (s *Subscriber) receive(w http.ResponseWriter, r *http.Request) {
	digest, err := wire.ParseReprDigest(r.Header.Get("Repr-Digest"))
	if err != nil {
		unsubscribeImmediate(w, http.StatusBadRequest)
		return
	}
	head, err := wire.ReadReceiveHeader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	url := requestURL(r)
	if res := s.Auth.Verify(r.Context(), auth.Receive{
		Tracing: head.Tracing, URL: url, Topic: head.Topic, Identifier: head.Identifier, SHA512: digest,
	}, r.Header.Get("Authorization")); res != auth.OK {
		if res == auth.Unavailable {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		unsubscribeImmediate(w, http.StatusForbidden)
		return
	}
	rec := Received{URL: url, Topic: head.Topic, Tracing: head.Tracing, Identifier: head.Identifier,
		Length: head.Length, SHA512: digest}
	if !s.Discard {
		rec.Header = r.Header.Clone()
	}
	reply, status := s.consume(&rec, r.Body)
	if status != 0 {
		unsubscribeImmediate(w, status)
		return
	}
	s.answer(w, rec, reply)
}

// consume reads the message (to Stream, or hashed and kept up to
// KeepBodies) and checks its length and digest; status is the refusal
// when they are wrong.
func (s *Subscriber) consume(rec *Received, body io.Reader) (reply Reply, status int) {
	msg := &verifyingReader{r: io.LimitReader(body, int64(rec.Length)), h: sha512.New(), left: rec.Length, want: rec.SHA512}
	var keep bytes.Buffer
	reply = Confirm
	switch {
	case s.Stream != nil:
		reply = s.Stream(*rec, msg)
	case rec.Length <= s.KeepBodies:
		_, _ = io.Copy(&keep, msg)
	}
	if _, err := io.Copy(io.Discard, msg); err != nil {
		if errors.Is(err, ErrDigestMismatch) {
			return reply, http.StatusForbidden
		}
		return reply, http.StatusBadRequest
	}
	var extra [1]byte
	if k, _ := body.Read(extra[:]); k > 0 {
		return reply, http.StatusBadRequest
	}
	if s.Stream == nil && rec.Length <= s.KeepBodies {
		rec.Message = keep.Bytes()
	}
	if s.Decide != nil {
		reply = s.Decide(*rec)
	}
	return reply, 0
}

// answer replies to a valid RECEIVE as reply says.
func (s *Subscriber) answer(w http.ResponseWriter, rec Received, reply Reply) {
	switch reply {
	case Unsubscribe:
		unsubscribeImmediate(w, http.StatusBadRequest)
		return
	case Fail:
		http.Error(w, "refusing on purpose", http.StatusInternalServerError)
		return
	}
	authz, err := s.Auth.Authorize(auth.ConfirmReceive{Identifier: rec.Identifier, NumSubscribers: 1, URL: rec.URL})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body, err := wire.AppendConfirmReceive(nil, wire.ConfirmReceive{Authorization: authz, Identifier: rec.Identifier, NumSubscribers: 1})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.count.Add(1)
	if !s.Discard {
		s.mu.Lock()
		s.received = append(s.received, rec)
		s.changed()
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}

// ErrDigestMismatch ends a message read through Subscriber.Stream whose
// bytes do not match the SHA-512 the broadcaster announced (in place of
// io.EOF); ErrShortMessage one that ended before its announced length.
var (
	ErrDigestMismatch = errors.New("message does not match its SHA-512")
	ErrShortMessage   = errors.New("message shorter than its announced length")
)

// verifyingReader yields a message of a known length and reports at its
// end whether it matched the announced digest, so a caller that reads to
// io.EOF knows it got the message intact.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	left uint64
	want [64]byte
	done error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.done != nil {
		return 0, v.done
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= uint64(n)
	if err == io.EOF || (err == nil && v.left == 0) {
		v.done = io.EOF
		var sum [64]byte
		switch {
		case v.left > 0:
			v.done = ErrShortMessage
		case [64]byte(v.h.Sum(sum[:0])) != v.want:
			v.done = ErrDigestMismatch
		}
		if n > 0 {
			return n, nil
		}
		return 0, v.done
	}
	return n, err
}

func (s *Subscriber) recover(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<17))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m, err := wire.ParseMissed(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	url := requestURL(r)
	if res := s.Auth.Verify(r.Context(), auth.Missed{Tracing: m.Tracing, Recovery: url, Topic: m.Topic},
		r.Header.Get("Authorization")); res != auth.OK {
		w.WriteHeader(res.HTTPStatus())
		return
	}
	authz, err := s.Auth.Authorize(auth.ConfirmMissed{Topic: m.Topic, URL: url})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body, err := wire.AppendConfirmMissed(nil, wire.ConfirmMissed{Authorization: authz})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s.OnMissed != nil {
		s.OnMissed(m.Topic)
	}
	if !s.Discard {
		s.mu.Lock()
		s.missed = append(s.missed, m.Topic)
		s.changed()
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}
