// Package ws serves the websocket ("stateful") side of the lonelypss
// protocol and the two internal endpoints that make it work across a
// cluster:
//
//   - GET /v1/websocket: one connection per subscriber, running the state
//     machine of the protocol (CONFIGURE, subscribe and unsubscribe with
//     confirmations in request order, NOTIFY and NOTIFY_STREAM with their
//     acknowledgements, RECEIVE_STREAM in parts with at most a few
//     unacknowledged parts, MISSED, zstd compressor 1), with every
//     authorization checked or produced with the connection's counters.
//   - POST /v1/receive_for_websockets and /v1/missed_for_websockets: this
//     node subscribes its own internal URLs, through Raft, for every exact
//     topic and glob its connections hold; any node that publishes a
//     matching message POSTs a RECEIVE there, and the hub hands it to the
//     matching local connections.
//
// A Hub owns the connections of one node, the local subscription index and
// the reference-counted registration of the node's internal URLs; a conn is
// one websocket with a reader, a processor and a writer goroutine, pinged
// from a timer. DESIGN.md explains the key decisions: ordering,
// back-pressure, counters, compression and cleanup of stale rows.
package ws
