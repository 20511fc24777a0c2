package ws

import (
	"crypto/rand"
	"sync"

	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// A message fanned out to many connections is the same RECEIVE_STREAM on
// each of them but for the authorization: the topic, lengths, hash,
// payload and (chosen per message, not per connection) the identifier do
// not depend on the connection. When the authorization is the same too
// (auth none or a token), the encoded message is built once per node and
// every connection writes those bytes.

// maxSharedFrame bounds the messages encoded once and kept with their
// body: a copy of the body, so only short ones; longer ones are encoded
// per connection, which their write dwarfs anyway.
const maxSharedFrame = batchDirect

// sharedFrame is the one-part RECEIVE_STREAM of a body and the identifier
// its deliveries use.
type sharedFrame struct {
	mu    sync.Mutex
	idSet bool
	id    [receiveIdentifierLen]byte
	built bool   // out and auth are set (out nil: not shareable)
	auth  string // the authorization out carries
	out   []byte
}

// identifier returns the identifier of b's deliveries, drawn once. It
// only has to be distinct among a connection's unacknowledged messages,
// as a random one per connection was.
func (b *body) identifier() [receiveIdentifierLen]byte {
	f := &b.frame
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.idSet {
		// crypto/rand.Read does not fail (it crashes the process instead).
		_, _ = rand.Read(f.id[:])
		f.idSet = true
	}
	return f.id
}

// wholeFrame returns s's message as one encoded RECEIVE_STREAM part when
// it fits in one, signed with authz: built by the first connection, shared
// by those whose authorization is the same. nil when the message needs
// several parts, is not in memory, or is signed differently here (the
// caller encodes it itself).
func (s *sending) wholeFrame(authz string, maxMessage int) ([]byte, error) {
	src := s.src
	if src.f != nil || src.n > maxSharedFrame {
		return nil, nil
	}
	f := &src.frame
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.built {
		if f.out == nil || f.auth != authz {
			return nil, nil
		}
		return f.out, nil
	}
	f.built, f.auth = true, authz
	m := wsproto.ReceiveStream{Authorization: authz, Identifier: s.id[:], First: &wsproto.StreamFirst{
		Topic: s.topic, Compressor: s.compressor, CompressedLength: src.n,
		DecompressedLength: s.declen, CompressedSHA512: src.sum,
	}}
	// The payload is the whole message, so the headers encoded without
	// one are exactly the bytes that precede it.
	out, err := wsproto.AppendMinimal(make([]byte, 0, 256+src.n), m)
	if err != nil {
		return nil, err
	}
	if len(out)+int(src.n) > maxMessage {
		return nil, nil
	}
	f.out = append(out, src.data[:src.n]...)
	return f.out, nil
}
