package fsm

import (
	"encoding/json"
	"fmt"
)

// Op names a change to the subscription table. The values are part of the
// Raft log format: never renumber them, only append.
type Op uint8

const (
	OpSubscribeExact Op = iota + 1
	OpSubscribeGlob
	OpUnsubscribeExact
	OpUnsubscribeGlob
	OpSetSubscriptions
	// OpSetNode records a cluster member's addresses (joins, restarts).
	OpSetNode
	// OpRemoveNode forgets a member that left the cluster.
	OpRemoveNode
)

func (o Op) String() string {
	switch o {
	case OpSubscribeExact:
		return "subscribe_exact"
	case OpSubscribeGlob:
		return "subscribe_glob"
	case OpUnsubscribeExact:
		return "unsubscribe_exact"
	case OpUnsubscribeGlob:
		return "unsubscribe_glob"
	case OpSetSubscriptions:
		return "set_subscriptions"
	case OpSetNode:
		return "set_node"
	case OpRemoveNode:
		return "remove_node"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ExactEntry is one exact subscription of a URL in a set_subscriptions command.
type ExactEntry struct {
	Topic    []byte `json:"t"`
	Recovery string `json:"r,omitempty"`
}

// GlobEntry is one glob subscription of a URL in a set_subscriptions command.
type GlobEntry struct {
	Glob     string `json:"g"`
	Recovery string `json:"r,omitempty"`
}

// Command is one entry of the Raft log. It is encoded as JSON: entries are
// small, the format is self-describing for operators reading a log, and
// new optional fields can be added without a version bump.
type Command struct {
	Op Op `json:"op"`
	// ID names the request that proposed the command. A command whose ID
	// was applied before (within RequestRetention of log time) is not
	// applied again: its first outcome is returned. This is what makes a
	// write retried across a leader change apply at most once.
	ID  string `json:"id,omitempty"`
	URL string `json:"url,omitempty"`
	// Topic is the exact topic of OpSubscribeExact and OpUnsubscribeExact.
	Topic []byte `json:"topic,omitempty"`
	// Glob is the pattern of OpSubscribeGlob and OpUnsubscribeGlob.
	Glob string `json:"glob,omitempty"`
	// Recovery is the MISSED target of a subscribe; empty means none.
	Recovery string `json:"recovery,omitempty"`
	// Exact and Globs are the desired state of OpSetSubscriptions, each
	// strictly ascending by key.
	Exact []ExactEntry `json:"exact,omitempty"`
	Globs []GlobEntry  `json:"globs,omitempty"`
	// Node is the member of OpSetNode and OpRemoveNode (only ID for the
	// latter).
	Node *NodeInfo `json:"node,omitempty"`
	// AuthCode is the HMAC code that authorised the change, if any. The
	// FSM refuses a code it has seen before its expiry: a replayed
	// subscription change is refused on every node of the cluster.
	AuthCode *AuthCode `json:"auth,omitempty"`
}

// AuthCode is a 64-byte HMAC code and when it may be forgotten.
type AuthCode struct {
	Code      []byte `json:"code"`
	ExpiresMs int64  `json:"expires_ms"`
}

// NodeInfo is what the cluster knows of a member: how to reach its API and
// its Raft transport.
type NodeInfo struct {
	ID   string `json:"id"`
	HTTP string `json:"http,omitempty"`
	Raft string `json:"raft,omitempty"`
}

// Encode returns the bytes stored in the Raft log.
func (c Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return b, nil
}

// DecodeCommand parses a Raft log entry written by Encode.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("decode command: %w", err)
	}
	if c.Op < OpSubscribeExact || c.Op > OpRemoveNode {
		return Command{}, fmt.Errorf("decode command: unknown op %d", c.Op)
	}
	if (c.Op == OpSetNode || c.Op == OpRemoveNode) && (c.Node == nil || c.Node.ID == "") {
		return Command{}, fmt.Errorf("decode command: %s without a node id", c.Op)
	}
	return c, nil
}

// Outcome is what applying a command did; the API maps it to a status code.
type Outcome uint8

const (
	// Applied: the table changed as asked (200).
	Applied Outcome = iota + 1
	// Conflict: a subscribe found the row present, or an unsubscribe found
	// it absent; nothing changed (409).
	Conflict
	// Replayed: the command's HMAC code was used before; nothing changed
	// (403).
	Replayed
)

// Result is the response of Apply for one command.
type Result struct {
	Outcome Outcome
	// Err is set when the entry could not be decoded; nothing changed.
	Err error
}
