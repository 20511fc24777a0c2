package wire

import (
	"encoding/binary"
	"time"
)

// SimpleTracing returns the smallest tracing blob the Python test-suite client
// can decode from a RESPONSE_NOTIFY: not truncated (0), no trace entries (u16
// 0), then the request-received and response-sent times in nanoseconds since
// the Unix epoch, 19 bytes in all.
func SimpleTracing(received, sent time.Time) []byte {
	b := make([]byte, 0, 19)
	b = append(b, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(received.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(sent.UnixNano()))
	return b
}
