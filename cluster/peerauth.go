package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// peerAuthHeader carries a node's proof that it knows the cluster secret:
// "<unix seconds>:<base64 HMAC-SHA256(secret, method \n path \n seconds \n body)>".
// Replays within the skew window are harmless: every forwarded write
// carries a request id the FSM applies at most once.
const peerAuthHeader = "X-Lonelypsd-Cluster"

const peerAuthSkew = 2 * time.Minute

var errPeerAuth = errors.New("cluster: request not signed with the cluster secret")

func peerMAC(secret []byte, method, path string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(method + "\n" + path + "\n" + strconv.FormatInt(ts, 10) + "\n"))
	m.Write(body)
	return m.Sum(nil)
}

func signPeer(secret []byte, method, path string, body []byte, now time.Time) string {
	if len(secret) == 0 {
		return ""
	}
	ts := now.Unix()
	return strconv.FormatInt(ts, 10) + ":" + base64.StdEncoding.EncodeToString(peerMAC(secret, method, path, ts, body))
}

func verifyPeer(secret []byte, header, method, path string, body []byte, now time.Time) error {
	if len(secret) == 0 {
		return nil
	}
	tsStr, code, ok := strings.Cut(header, ":")
	if !ok {
		return errPeerAuth
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return errPeerAuth
	}
	if d := now.Sub(time.Unix(ts, 0)); d > peerAuthSkew || d < -peerAuthSkew {
		return errPeerAuth
	}
	got, err := base64.StdEncoding.DecodeString(code)
	if err != nil || !hmac.Equal(got, peerMAC(secret, method, path, ts, body)) {
		return errPeerAuth
	}
	return nil
}
