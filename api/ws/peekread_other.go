//go:build !linux

package ws

import "io"

// newPeekReader has no peeking reader to offer here: the frame reader
// reads the connection itself (peekread_linux.go says what peeking saves).
func newPeekReader(any, int) io.Reader { return nil }
