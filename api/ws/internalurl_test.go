package ws

import (
	"testing"

	"github.com/lonelypsd/lonelypsd/api/auth"
)

func TestInternalURLNode(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"receive row", "http://10.0.0.1:3003/v1/receive_for_websockets?node=n2&inc=abc", "n2"},
		{"missed row, parameters in another order", "http://10.0.0.1:3003/v1/missed_for_websockets?inc=x&node=pod-0", "pod-0"},
		{"a subscriber's own path", "http://10.0.0.1:3003/v1/receive?node=n2", ""},
		{"internal path without a node", "http://10.0.0.1:3003/v1/receive_for_websockets", ""},
		{"not a URL", "::not a url", ""},
	}
	for _, tc := range tests {
		if got := InternalURLNode(tc.raw); got != tc.want {
			t.Errorf("%s: InternalURLNode(%q) = %q, want %q", tc.name, tc.raw, got, tc.want)
		}
	}
}

// TestInternalURLNodeReadsTheHubsRows: the URLs the hub registers name
// its node, so a removed member's rows are found.
func TestInternalURLNodeReadsTheHubsRows(t *testing.T) {
	h, err := New(Config{NodeID: "node-7", AdvertiseHTTP: "127.0.0.1:3003", SpoolDir: t.TempDir()}, nil, nil, nil, auth.NonePair(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{h.ReceiveURL(), h.MissedURL()} {
		if got := InternalURLNode(u); got != "node-7" {
			t.Errorf("InternalURLNode(%q) = %q", u, got)
		}
	}
}

// TestOwnInternalURL: a node recognises the rows its hub registers (a
// wildcard advertised host included), and nothing else on its port.
func TestOwnInternalURL(t *testing.T) {
	for _, advertise := range []string{"127.0.0.1:3003", "0.0.0.0:3003", ":3003", "node-1.internal:3003"} {
		h, err := New(Config{NodeID: "node-1", AdvertiseHTTP: advertise, SpoolDir: t.TempDir()}, nil, nil, nil, auth.NonePair(), nil)
		if err != nil {
			t.Fatal(err)
		}
		own := OwnInternalURL(advertise, "node-1")
		for _, u := range []string{h.ReceiveURL(), h.MissedURL()} {
			if !own(u) {
				t.Errorf("advertise %s: own row %q not recognised", advertise, u)
			}
		}
		host := internalHost(advertise)
		for _, u := range []string{
			"http://" + host + "/v1/receive?node=node-1",                      // a subscriber path
			"http://" + host + "/v1/receive_for_websockets?node=node-2&inc=1", // another node's row
			"http://other:3003/v1/receive_for_websockets?node=node-1&inc=1",   // another host
			"ftp://" + host + "/v1/receive_for_websockets?node=node-1&inc=1",  // another scheme
			"http://" + host + "/cluster/apply?x=/v1/receive_for_websockets",  // a peer endpoint
		} {
			if own(u) {
				t.Errorf("advertise %s: %q taken for an own row", advertise, u)
			}
		}
	}
}
