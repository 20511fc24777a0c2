//go:build linux || darwin || freebsd

package cluster

import (
	"fmt"
	"syscall"
)

// freeBytes is the space on dir's volume available to this process.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
