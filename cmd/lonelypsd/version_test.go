package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func TestVersionCommand(t *testing.T) {
	tests := []struct {
		name                      string
		stampVersion, stampRev    string
		wantVersion, wantRevision string
	}{
		{"stamped", "v1.2.3", "abc123", "v1.2.3", "revision abc123"},
		// A test binary records no module version or revision.
		{"unstamped", "", "", "unknown", "revision unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oldV, oldR := version, revision
			version, revision = tc.stampVersion, tc.stampRev
			defer func() { version, revision = oldV, oldR }()
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			got := out.String()
			if !strings.HasPrefix(got, "lonelypsd "+tc.wantVersion) || !strings.Contains(got, tc.wantRevision) ||
				!strings.Contains(got, runtime.Version()) {
				t.Fatalf("version printed %q", got)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version", "extra"}, &out, &errb); code != 2 {
		t.Fatalf("version with an argument: exit %d, want 2", code)
	}
}

// TestStatusReportsVersion: a node's /cluster/status and `cluster status`
// carry the version the binary prints.
func TestStatusReportsVersion(t *testing.T) {
	out, errs, code := cli(t, "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, errs)
	}
	want := strings.Fields(out)[1]
	node := startNode(t, t.TempDir())
	resp, err := http.Get(node.HTTP + "/cluster/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Version != want {
		t.Fatalf("status version %q, binary says %q", st.Version, want)
	}
	// The table reads each member's own status once the member has
	// recorded its API address, just after start-up.
	lonelypsdtest.WaitFor(t, "cluster status to show the version", 10*time.Second, func() bool {
		table, errs, code := cli(t, "cluster", "status", "--addr", node.Addr())
		lines := strings.Split(strings.TrimSpace(table+errs), "\n")
		return code == 0 && len(lines) >= 3 && strings.HasSuffix(strings.TrimSpace(lines[1]), "VERSION") &&
			strings.HasSuffix(strings.TrimSpace(lines[2]), " "+want)
	})
}
