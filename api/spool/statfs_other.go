//go:build !(linux || darwin || freebsd)

package spool

import "errors"

// FreeBytes cannot tell on this system: reserves are not enforced.
func FreeBytes(string) (int64, error) {
	return 0, errors.New("free space unknown on this system")
}
