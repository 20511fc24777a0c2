package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
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
	// OpRestoreBegin, OpRestoreRows and OpRestoreCommit replace the whole
	// table with a backup's rows. A backup is larger than a log entry
	// should be, so its rows are staged in several entries and swapped in
	// by the commit; a begin discards whatever an unfinished restore
	// staged, and rows or a commit of another restore are refused.
	OpRestoreBegin
	OpRestoreRows
	OpRestoreCommit
)

func (o Op) String() string {
	names := [...]string{"", "subscribe_exact", "subscribe_glob", "unsubscribe_exact", "unsubscribe_glob", "set_subscriptions",
		"set_node", "remove_node", "restore_begin", "restore_rows", "restore_commit"}
	if int(o) < len(names) && names[o] != "" {
		return names[o]
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
	// MaxPerURL caps the rows (exact and glob together) URL may hold after
	// a subscribe or set_subscriptions; 0 means no cap. The proposer puts
	// its configured cap here, so every replica decides alike whatever its
	// own configuration.
	MaxPerURL int `json:"max_per_url,omitempty"`
	// Restore names the restore an OpRestore* entry belongs to; Rows are
	// the rows an OpRestoreRows stages, and Count is how many rows the
	// restore staged in all, which its commit checks.
	Restore string       `json:"restore,omitempty"`
	Rows    []RestoreRow `json:"rows,omitempty"`
	Count   int          `json:"count,omitempty"`
}

// RestoreRow is one row of a backup in an OpRestoreRows entry. Key is
// bytes: an exact topic need not be UTF-8.
type RestoreRow struct {
	Kind     Kind   `json:"k"`
	URL      string `json:"u"`
	Key      []byte `json:"key"`
	Recovery string `json:"r,omitempty"`
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

// DecodeCommand parses a Raft log entry written by Encode and validates
// it (Validate). Its verdict depends on the bytes alone, so every replica
// refuses the same entries.
func DecodeCommand(b []byte) (Command, error) {
	c, ok := decodeSetFast(b)
	if !ok {
		c = Command{}
		if err := json.Unmarshal(b, &c); err != nil {
			return Command{}, fmt.Errorf("%w: decode: %w", ErrInvalidCommand, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Field limits of a Command. They keep every bbolt key and value a
// command can produce far inside bbolt's limits, so no entry can make a
// write fail, and bound what one entry costs every replica. They are part
// of the log format: an entry valid under one version must stay valid
// under the next, so they may be raised but never lowered.
const (
	// MaxRequestID is the longest request id.
	MaxRequestID = 128
	// MaxURL is the longest subscriber URL and the longest recovery URL:
	// what the protocol's u16 length can carry, as every version accepted
	// (a subscriber URL is bounded further by MaxRowKey with its topic).
	MaxURL = 1<<16 - 1
	// MaxNodeField is the longest node id, HTTP address and Raft address.
	MaxNodeField = 1 << 10
	// AuthCodeSize is the length of an HMAC code.
	AuthCodeSize = 64
)

// ErrInvalidCommand is wrapped by every error of Validate and
// DecodeCommand: the command is malformed and changes nothing (400).
var ErrInvalidCommand = errors.New("fsm: invalid command")

// Validate checks c against the field limits and the shape its op needs.
// The FSM applies only commands that pass; proposers check first, to
// answer 400 instead of proposing an entry that will be refused. Errors
// wrap ErrInvalidCommand, and also ErrRowTooLong for a row past
// MaxRowKey.
func (c Command) Validate() error {
	if err := c.validateCommon(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidCommand, c.Op, err)
	}
	var err error
	switch c.Op {
	case OpSubscribeExact, OpUnsubscribeExact:
		err = checkRow(c.URL, len(c.Topic))
	case OpSubscribeGlob, OpUnsubscribeGlob:
		if err = checkRow(c.URL, len(c.Glob)); err == nil && !utf8.ValidString(c.Glob) {
			err = errors.New("glob is not valid UTF-8")
		}
	case OpSetSubscriptions:
		err = c.validateSet()
	case OpSetNode, OpRemoveNode:
		err = c.validateNode()
	case OpRestoreBegin, OpRestoreRows, OpRestoreCommit:
		err = c.validateRestore()
	default:
		err = fmt.Errorf("unknown op %d", uint8(c.Op))
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidCommand, c.Op, err)
	}
	return nil
}

func (c Command) validateCommon() error {
	switch {
	case len(c.ID) > MaxRequestID:
		return fmt.Errorf("request id of %d bytes exceeds %d", len(c.ID), MaxRequestID)
	case len(c.URL) > MaxURL:
		return fmt.Errorf("url of %d bytes exceeds %d", len(c.URL), MaxURL)
	case len(c.Recovery) > MaxURL:
		return fmt.Errorf("recovery url of %d bytes exceeds %d", len(c.Recovery), MaxURL)
	case c.MaxPerURL < 0:
		return fmt.Errorf("negative max_per_url %d", c.MaxPerURL)
	case c.AuthCode != nil && len(c.AuthCode.Code) != AuthCodeSize:
		return fmt.Errorf("auth code of %d bytes, want %d", len(c.AuthCode.Code), AuthCodeSize)
	case c.AuthCode != nil && c.AuthCode.ExpiresMs < 0:
		return fmt.Errorf("auth code expiry %d before 1970", c.AuthCode.ExpiresMs)
	}
	return nil
}

// checkRow refuses a row key bbolt cannot hold (or a URL-less row).
func checkRow(url string, keyLen int) error {
	if url == "" {
		return errors.New("no url")
	}
	if len(url)+keyLen > MaxRowKey {
		return fmt.Errorf("url (%d bytes) and key (%d bytes): %w", len(url), keyLen, ErrRowTooLong)
	}
	return nil
}

// checkEntry checks a row of a set or a restore: checkRow, and its
// recovery URL within MaxURL.
func checkEntry(url string, keyLen int, recovery string) error {
	if err := checkRow(url, keyLen); err != nil {
		return err
	}
	if len(recovery) > MaxURL {
		return fmt.Errorf("recovery url of %d bytes exceeds %d", len(recovery), MaxURL)
	}
	return nil
}

// validateSet checks a desired state: rows bbolt can hold, each list
// strictly ascending (the order reconcile merges in; it also rules out
// duplicates), recovery URLs within MaxURL.
func (c Command) validateSet() error {
	if err := checkRow(c.URL, 0); err != nil {
		return err
	}
	for i, e := range c.Exact {
		if err := checkEntry(c.URL, len(e.Topic), e.Recovery); err != nil {
			return fmt.Errorf("exact entry %d: %w", i, err)
		}
		if i > 0 && bytes.Compare(c.Exact[i-1].Topic, e.Topic) >= 0 {
			return fmt.Errorf("exact entry %d: topics not strictly ascending", i)
		}
	}
	for i, g := range c.Globs {
		if err := checkEntry(c.URL, len(g.Glob), g.Recovery); err != nil {
			return fmt.Errorf("glob entry %d: %w", i, err)
		}
		if !utf8.ValidString(g.Glob) {
			return fmt.Errorf("glob entry %d: not valid UTF-8", i)
		}
		if i > 0 && strings.Compare(c.Globs[i-1].Glob, g.Glob) >= 0 {
			return fmt.Errorf("glob entry %d: globs not strictly ascending", i)
		}
	}
	return nil
}

func (c Command) validateRestore() error {
	if c.Restore == "" || len(c.Restore) > MaxRequestID {
		return fmt.Errorf("restore id of %d bytes, want 1 to %d", len(c.Restore), MaxRequestID)
	}
	if c.Count < 0 {
		return fmt.Errorf("negative row count %d", c.Count)
	}
	for i, r := range c.Rows {
		if r.Kind != Exact && r.Kind != Glob {
			return fmt.Errorf("row %d: unknown kind %d", i, r.Kind)
		}
		if err := checkEntry(r.URL, len(r.Key), r.Recovery); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if r.Kind == Glob && !utf8.Valid(r.Key) {
			return fmt.Errorf("row %d: glob is not valid UTF-8", i)
		}
	}
	return nil
}

func (c Command) validateNode() error {
	if c.Node == nil || c.Node.ID == "" {
		return errors.New("no node id")
	}
	for _, f := range []struct{ name, v string }{{"id", c.Node.ID}, {"http", c.Node.HTTP}, {"raft", c.Node.Raft}} {
		if len(f.v) > MaxNodeField {
			return fmt.Errorf("node %s of %d bytes exceeds %d", f.name, len(f.v), MaxNodeField)
		}
	}
	return nil
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
	// TooMany: the change would leave the URL with more rows than the
	// command's MaxPerURL; nothing changed.
	TooMany
)

// Result is the response of Apply for one command.
type Result struct {
	Outcome Outcome
	// Err is set when the entry was refused (undecodable or invalid:
	// ErrInvalidCommand); nothing changed.
	Err error
}
