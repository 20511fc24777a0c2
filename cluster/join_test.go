package cluster

import (
	"testing"
	"time"
)

func TestInternalURLNode(t *testing.T) {
	for raw, want := range map[string]string{
		"http://10.0.0.1:3003/v1/receive_for_websockets?node=n2&inc=abc": "n2",
		"http://10.0.0.1:3003/v1/missed_for_websockets?inc=x&node=pod-0": "pod-0",
		"http://10.0.0.1:3003/v1/receive?node=n2":                        "",
		"http://10.0.0.1:3003/v1/receive_for_websockets":                 "",
		"::not a url": "",
	} {
		if got := InternalURLNode(raw); got != want {
			t.Errorf("%q: %q, want %q", raw, got, want)
		}
	}
}

func TestPeerSignature(t *testing.T) {
	secret := []byte("s3cret")
	now := mustTime(t)
	h := signPeer(secret, "POST", "/cluster/apply", []byte("{}"), now)
	tests := []struct {
		name                 string
		secret               []byte
		header, method, path string
		body                 string
		offset               int64
		ok                   bool
	}{
		{"valid", secret, h, "POST", "/cluster/apply", "{}", 0, true},
		{"other body", secret, h, "POST", "/cluster/apply", "{ }", 0, false},
		{"other path", secret, h, "POST", "/cluster/join", "{}", 0, false},
		{"other secret", []byte("x"), h, "POST", "/cluster/apply", "{}", 0, false},
		{"missing", secret, "", "POST", "/cluster/apply", "{}", 0, false},
		{"too old", secret, h, "POST", "/cluster/apply", "{}", 121, false},
		{"from the future", secret, h, "POST", "/cluster/apply", "{}", -121, false},
		{"no colon", secret, "1700000000", "POST", "/cluster/apply", "{}", 0, false},
		{"time not a number", secret, "x" + h[10:], "POST", "/cluster/apply", "{}", 0, false},
		{"mac not base64", secret, h[:11] + "!!!", "POST", "/cluster/apply", "{}", 0, false},
		{"mac truncated", secret, h[:len(h)-8], "POST", "/cluster/apply", "{}", 0, false},
		{"no secret configured accepts", nil, "", "POST", "/cluster/apply", "{}", 0, true},
	}
	for _, tc := range tests {
		err := verifyPeer(tc.secret, tc.header, tc.method, tc.path, []byte(tc.body), now.Add(durationSeconds(tc.offset)))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func mustTime(t *testing.T) time.Time {
	t.Helper()
	return time.Unix(1700000000, 0)
}

func durationSeconds(s int64) time.Duration { return time.Duration(s) * time.Second }
