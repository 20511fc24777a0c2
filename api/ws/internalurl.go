package ws

import "net/url"

// InternalURLNode returns the id of the node whose internal websocket row
// URL raw is (…/v1/receive_for_websockets?node=ID&inc=…, or the missed
// one), or "" for any other URL. The cluster removes a removed member's
// rows with it.
func InternalURLNode(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Path != PathReceive && u.Path != PathMissed) {
		return ""
	}
	return u.Query().Get(paramNode)
}
