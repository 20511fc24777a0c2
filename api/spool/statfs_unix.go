//go:build linux || darwin || freebsd

package spool

import (
	"fmt"
	"syscall"
)

// FreeBytes is the space an unprivileged process may still write on dir's
// volume.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
