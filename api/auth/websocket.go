package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// ConnectionNonce is the nonce of a websocket connection: SHA-256 of the
// subscriber's CONFIGURE nonce followed by the broadcaster's
// CONFIRM_CONFIGURE nonce. Both sides derive it, so every websocket
// signature is bound to its connection.
func ConnectionNonce(subscriber, broadcaster [32]byte) [32]byte {
	var b [64]byte
	copy(b[:32], subscriber[:])
	copy(b[32:], broadcaster[:])
	return sha256.Sum256(b[:])
}

// WebsocketURL is the url signed in websocket messages:
// "websocket:<nonce>:<counter>" with the connection nonce in STANDARD
// base64 with padding (the reference's docstring says base64url; its code
// and the Python client use standard) and the counter in signed lowercase
// hex ("-a", "ff"). Subscriber counters are negative, broadcaster counters
// positive, so the two sides never sign the same url.
func WebsocketURL(nonce [32]byte, counter int64) string {
	return "websocket:" + base64.StdEncoding.EncodeToString(nonce[:]) + ":" + strconv.FormatInt(counter, 16)
}
