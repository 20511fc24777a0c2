//go:build !(linux || darwin || freebsd)

package cluster

import "errors"

// freeBytes cannot tell on this system: the reserve is not enforced.
func freeBytes(string) (int64, error) {
	return 0, errors.New("free space unknown on this system")
}
