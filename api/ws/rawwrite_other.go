//go:build !linux

package ws

// newRawWriter has no raw writer to offer here: the connection writes the
// usual way (rawwrite_linux.go says what raw writes save).
func newRawWriter(any) func([]byte) (int, error) { return nil }
