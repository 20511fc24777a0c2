package wire

import (
	"encoding/binary"
	"math"
	"time"
)

// Trace is one event of the broadcaster's side of a request, reported to
// the notifier in the "simple tracing" format of RESPONSE_NOTIFY.
type Trace struct {
	Name      string
	ExtraJSON string // a JSON object; "{}" when there is nothing to add
	At        time.Time
}

// SimpleTracing returns the tracing blob of a RESPONSE_NOTIFY in the format
// the Python client's simple tracer decodes: not truncated (0), u16 trace
// count, each trace as str16 name, str16 extra JSON and f64 seconds since
// the epoch, then the request-received and response-sent times in
// nanoseconds. The Python client fails on a blob with zero traces (it
// reads the last trace's name after its loop), so callers pass at least one.
// From the first trace that would not fit the u16 length of tracing on,
// the traces are dropped and the blob is marked truncated.
func SimpleTracing(received, sent time.Time, traces ...Trace) []byte {
	const fixed = 1 + 2 + 16
	size, n := fixed, 0
	for _, t := range traces {
		sz := 2 + len(t.Name) + 2 + len(t.ExtraJSON) + 8
		if size+sz > MaxStr16 {
			break
		}
		size += sz
		n++
	}
	b := make([]byte, 0, size)
	truncated := byte(0)
	if n < len(traces) {
		truncated = 1
	}
	b = append(b, truncated)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, t := range traces[:n] {
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Name)))
		b = append(b, t.Name...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.ExtraJSON)))
		b = append(b, t.ExtraJSON...)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(t.At.UnixNano())/1e9))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(received.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(sent.UnixNano()))
	return b
}
