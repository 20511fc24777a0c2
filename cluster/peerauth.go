package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A signed peer request carries three headers:
//
//	X-Lonelypsd-Cluster:        <unix milliseconds>:<nonce>:<base64 MAC>
//	X-Lonelypsd-Cluster-Target: <id of the node it is meant for>
//	X-Lonelypsd-Cluster-Body:   <body length>:<hex SHA-256 of the body>
//
// The MAC (HMAC-SHA256 with the cluster secret) covers the method, the
// path, the time, the nonce, the target and the body's length and digest,
// so a receiver can check it before reading a byte of the body; it then
// reads exactly the declared length and compares the digest.
//
// A receiver accepts a request once: it must name this node, be dated
// within peerAuthSkew of the receiver's clock and not before the receiver's
// process started, and carry a nonce not seen before. Nonces are remembered
// for the skew window; a restart forgets them, which is why requests dated
// before the start are refused.
const (
	peerAuthHeader   = "X-Lonelypsd-Cluster"
	peerTargetHeader = "X-Lonelypsd-Cluster-Target"
	peerBodyHeader   = "X-Lonelypsd-Cluster-Body"
)

const peerAuthSkew = 2 * time.Minute

// maxNonces bounds the nonces a node remembers. Past it the oldest are
// forgotten and every request dated at or before the newest forgotten one
// is refused, so the bound never reopens a replay: at thousands of peer
// requests per second the floor stays seconds behind the clock.
const maxNonces = 100_000

var errPeerAuth = errors.New("cluster: request not signed with the cluster secret")

// peerStamp is what a signature covers.
type peerStamp struct {
	method, path, target string
	ms                   int64 // unix milliseconds
	nonce                string
	length               int64
	digest               [sha256.Size]byte
}

func (s *peerStamp) mac(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "lonelypsd-cluster/2\n%s\n%s\n%d\n%s\n%s\n%d\n%x\n",
		s.method, s.path, s.ms, s.nonce, s.target, s.length, s.digest)
	return m.Sum(nil)
}

func newNonce() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("cluster: no randomness: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// signPeer sets the signature headers of a request to target carrying body.
func signPeer(h http.Header, secret []byte, method, path, target string, body []byte, now time.Time) {
	setPeerHeaders(h, secret, peerStamp{
		method: method, path: path, target: target, ms: now.UnixMilli(), nonce: newNonce(),
		length: int64(len(body)), digest: sha256.Sum256(body),
	})
}

func setPeerHeaders(h http.Header, secret []byte, s peerStamp) {
	h.Set(peerAuthHeader, strconv.FormatInt(s.ms, 10)+":"+s.nonce+":"+base64.StdEncoding.EncodeToString(s.mac(secret)))
	h.Set(peerTargetHeader, s.target)
	h.Set(peerBodyHeader, strconv.FormatInt(s.length, 10)+":"+hex.EncodeToString(s.digest[:]))
}

// peerVerifier checks signed requests addressed to one node.
type peerVerifier struct {
	secret    []byte
	self      string
	notBefore int64 // unix milliseconds of the process start
	nonces    *nonceCache
}

func newPeerVerifier(secret []byte, self string, started time.Time) *peerVerifier {
	return &peerVerifier{
		secret: secret, self: self, notBefore: started.UnixMilli(),
		nonces: newNonceCache(maxNonces, peerAuthSkew.Milliseconds()),
	}
}

func (v *peerVerifier) startedAt() time.Time { return time.UnixMilli(v.notBefore) }

// check verifies everything but the body's digest, which the caller
// compares once it has read the declared length. The nonce is used up
// only by a request whose MAC verifies, so unsigned traffic cannot fill
// the cache.
func (v *peerVerifier) check(h http.Header, method, path string, now time.Time) (peerStamp, error) {
	s := peerStamp{method: method, path: path, target: h.Get(peerTargetHeader)}
	msStr, rest, ok1 := strings.Cut(h.Get(peerAuthHeader), ":")
	nonce, code, ok2 := strings.Cut(rest, ":")
	lenStr, digestStr, ok3 := strings.Cut(h.Get(peerBodyHeader), ":")
	if !ok1 || !ok2 || !ok3 || len(nonce) < 16 || len(nonce) > 64 {
		return s, errPeerAuth
	}
	s.nonce = nonce
	var err error
	if s.ms, err = strconv.ParseInt(msStr, 10, 64); err != nil {
		return s, errPeerAuth
	}
	if s.length, err = strconv.ParseInt(lenStr, 10, 64); err != nil || s.length < 0 {
		return s, errPeerAuth
	}
	d, err := hex.DecodeString(digestStr)
	if err != nil || len(d) != sha256.Size {
		return s, errPeerAuth
	}
	copy(s.digest[:], d)
	mac, err := base64.StdEncoding.DecodeString(code)
	if err != nil || !hmac.Equal(mac, s.mac(v.secret)) {
		return s, errPeerAuth
	}
	if s.target != v.self {
		return s, fmt.Errorf("%w: meant for node %q, this is %q", errPeerAuth, s.target, v.self)
	}
	nowMs := now.UnixMilli()
	if d := nowMs - s.ms; d > peerAuthSkew.Milliseconds() || d < -peerAuthSkew.Milliseconds() {
		return s, fmt.Errorf("%w: dated %s from this node's clock", errPeerAuth, time.Duration(d)*time.Millisecond)
	}
	if s.ms < v.notBefore {
		return s, fmt.Errorf("%w: dated before this node started", errPeerAuth)
	}
	if !v.nonces.use(s.nonce, s.ms, nowMs) {
		return s, fmt.Errorf("%w: replayed", errPeerAuth)
	}
	return s, nil
}

// nonceCache remembers the nonces of accepted requests for the skew
// window, in arrival order.
type nonceCache struct {
	mu     sync.Mutex
	seen   map[string]struct{}
	queue  []nonceEntry
	head   int
	max    int
	window int64 // milliseconds
	// floor: requests dated at or before it are refused, their nonces
	// may have been forgotten to keep the cache within max.
	floor int64
}

type nonceEntry struct {
	nonce string
	ms    int64
}

func newNonceCache(max int, windowMs int64) *nonceCache {
	return &nonceCache{seen: map[string]struct{}{}, max: max, window: windowMs, floor: -1 << 62}
}

// use records nonce and reports whether it was fresh.
func (c *nonceCache) use(nonce string, ms, nowMs int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// An entry past the window can go: its request fails the time check.
	for c.head < len(c.queue) && nowMs-c.queue[c.head].ms > c.window {
		c.pop()
	}
	if ms <= c.floor {
		return false
	}
	if _, dup := c.seen[nonce]; dup {
		return false
	}
	for len(c.seen) >= c.max {
		e := c.pop()
		c.floor = max(c.floor, e.ms)
	}
	if ms <= c.floor {
		return false
	}
	c.seen[nonce] = struct{}{}
	c.queue = append(c.queue, nonceEntry{nonce: nonce, ms: ms})
	return true
}

func (c *nonceCache) pop() nonceEntry {
	e := c.queue[c.head]
	c.queue[c.head] = nonceEntry{}
	c.head++
	delete(c.seen, e.nonce)
	if c.head > len(c.queue)/2 && c.head > 1024 {
		c.queue = append(c.queue[:0:0], c.queue[c.head:]...)
		c.head = 0
	}
	return e
}
