package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// ConnectionNonce is the nonce of a websocket connection: SHA-256 of the
// subscriber's nonce followed by the broadcaster's.
func ConnectionNonce(subscriber, broadcaster [32]byte) [32]byte {
	var b [64]byte
	copy(b[:32], subscriber[:])
	copy(b[32:], broadcaster[:])
	return sha256.Sum256(b[:])
}

// WebsocketURL is the url signed in websocket messages:
// "websocket:<standard base64 nonce>:<signed lowercase hex counter>".
func WebsocketURL(nonce [32]byte, counter int64) string {
	return "websocket:" + base64.StdEncoding.EncodeToString(nonce[:]) + ":" + strconv.FormatInt(counter, 16)
}
