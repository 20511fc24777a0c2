package ws

import (
	"net"
	"net/url"
	"strings"
)

// InternalURLNode returns the id of the node whose internal websocket row
// URL raw is (…/v1/receive_for_websockets?node=ID&inc=…, or the missed
// one), or "" for any other URL. The cluster removes a removed member's
// rows with it.
func InternalURLNode(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !IsInternalURL(u) {
		return ""
	}
	return u.Query().Get(paramNode)
}

// IsInternalURL reports whether u is the internal websocket row URL of
// some node (its path; the node is not checked).
func IsInternalURL(u *url.URL) bool {
	// A node mounted under a base path (embedded) has it before these.
	return strings.HasSuffix(u.Path, PathReceive) || strings.HasSuffix(u.Path, PathMissed)
}

// OwnInternalURL returns a test for the internal row URLs of the hub of
// node nodeID advertised at advertise (as Config gives them): the
// deliveries a node makes to itself for its websockets, which its
// subscriber address policy must let through although they aim at its
// own listener.
func OwnInternalURL(advertise, nodeID string) func(raw string) bool {
	advertise = internalHost(advertise)
	return func(raw string) bool {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, advertise) {
			return false
		}
		return InternalURLNode(raw) == nodeID
	}
}

// internalHost is the HOST:PORT internal URLs are built on: a wildcard or
// empty host becomes 127.0.0.1, which only works for a single node.
func internalHost(advertise string) string {
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return advertise
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return advertise
}
