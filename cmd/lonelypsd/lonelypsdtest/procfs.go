package lonelypsdtest

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Ended reports whether exited, closed when a process ends, is closed.
func Ended(exited <-chan struct{}) bool {
	select {
	case <-exited:
		return true
	default:
		return false
	}
}

// ProcStatus returns fields of /proc/<pid>/status given in kB (VmRSS:,
// VmHWM:, RssAnon: ...), in bytes; 0 for a field it cannot read.
func ProcStatus(pid int, names ...string) []int64 {
	out := make([]int64, len(names))
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if i := slices.Index(names, fields[0]); i >= 0 {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			out[i] = kb << 10
		}
	}
	return out
}

// ResetPeakRSS makes the peak resident set size (VmHWM) of pid start
// again from its current RSS.
func ResetPeakRSS(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
