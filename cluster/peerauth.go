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
// A replay within the skew window repeats the request: harmless for
// forwarded writes (each carries a request id the FSM applies at most
// once) and reads, not for membership changes (cluster/DESIGN.md).
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
	ts, mac, err := peerStamp(secret, header, now)
	if err != nil {
		return err
	}
	return checkPeerMAC(secret, ts, mac, method, path, body)
}

// peerStamp checks what can be checked before the body is read: the
// header's form and its time. A request that fails it is refused without
// reading (up to maxPeerBody) of its body.
func peerStamp(secret []byte, header string, now time.Time) (ts int64, mac []byte, err error) {
	if len(secret) == 0 {
		return 0, nil, nil
	}
	tsStr, code, ok := strings.Cut(header, ":")
	if !ok {
		return 0, nil, errPeerAuth
	}
	if ts, err = strconv.ParseInt(tsStr, 10, 64); err != nil {
		return 0, nil, errPeerAuth
	}
	if d := now.Sub(time.Unix(ts, 0)); d > peerAuthSkew || d < -peerAuthSkew {
		return 0, nil, errPeerAuth
	}
	if mac, err = base64.StdEncoding.DecodeString(code); err != nil || len(mac) != sha256.Size {
		return 0, nil, errPeerAuth
	}
	return ts, mac, nil
}

func checkPeerMAC(secret []byte, ts int64, mac []byte, method, path string, body []byte) error {
	if len(secret) == 0 {
		return nil
	}
	if !hmac.Equal(mac, peerMAC(secret, method, path, ts, body)) {
		return errPeerAuth
	}
	return nil
}
