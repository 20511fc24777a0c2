package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// TestNodeWithoutClusterSecretServesNoOpenPeerEndpoints: a lone node with
// no cluster secret configured (auth none; a secrets file without the
// "cluster" key, as the Python reference writes it) refuses unsigned
// /cluster requests, and `lonelypsd cluster remove` signs with the secret
// the node generated in its data folder.
func TestNodeWithoutClusterSecretServesNoOpenPeerEndpoints(t *testing.T) {
	broadcasterFile, _ := setupSecrets(t, "hmac", "hmac")
	// The subscribers' file has the broadcaster's format without the
	// cluster key: what the Python reference's setup writes.
	pythonFile := filepath.Join(filepath.Dir(broadcasterFile), "subscriber-secrets.json")
	tests := []struct {
		name string
		args []string
	}{
		{"auth none", nil},
		{"secrets file without the cluster key", []string{"--secrets", pythonFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			node := startNode(t, dir, tc.args...)
			addr := node.Addr()
			body, err := json.Marshal(fsm.Command{Op: fsm.OpSubscribeExact, ID: "intruder", URL: "http://127.0.0.1:9/r", Topic: []byte("t")})
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := lonelypsdtest.Post(t, node.HTTP+"/cluster/apply", "", body); code != http.StatusForbidden {
				t.Fatalf("unsigned apply: %d, want 403", code)
			}
			secret, err := cluster.GeneratedSecret(dir)
			if err != nil || secret == "" {
				t.Fatalf("no generated secret in the data folder: %q, %v", secret, err)
			}
			if keys := tableKeys(t, secret, node, "http://127.0.0.1:9/r"); len(keys) != 0 {
				t.Fatalf("subscriptions after the unsigned apply: %q", keys)
			}
			// Without a secret (run where no data folder is) remove is refused;
			// with the node's data folder it is signed and accepted.
			if out, errs, code := cli(t, "cluster", "remove", "ghost", "--addr", addr, "--data-dir", t.TempDir()); code == 0 ||
				!strings.Contains(errs, "403") || !strings.Contains(errs, "no cluster secret was found") {
				t.Fatalf("remove without a secret: exit %d\n%s%s", code, out, errs)
			}
			if out, errs, code := cli(t, "cluster", "remove", "ghost", "--addr", addr, "--data-dir", dir); code != 0 || !strings.Contains(out, "removed ghost") {
				t.Fatalf("remove with the generated secret: exit %d\n%s%s", code, out, errs)
			}
		})
	}
}

// TestJoinWithoutClusterSecretRefusesToStart: a node that forms a cluster
// with others needs their shared secret and says where to put it.
func TestJoinWithoutClusterSecretRefusesToStart(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"join", []string{"--join", fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t))}},
		{"bootstrap-expect", []string{"--bootstrap-expect", "3"}},
	}
	for _, tc := range tests {
		out := refusedStart(t, "serve", append([]string{"--node-id", "n1"}, tc.args...)...)
		for _, want := range []string{`cluster\" key`, "--cluster-secret-file", "lonelypsd setup"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the message does not name %s:\n%s", tc.name, want, out)
			}
		}
	}
}

// TestUnsignedLargePeerBodyIsNotRead: the node answers an unsigned 64 MiB
// /cluster/apply without reading the body and closes the connection, so
// the sender gets to write only what the sockets buffer.
func TestUnsignedLargePeerBodyIsNotRead(t *testing.T) {
	const size = 64 << 20
	node := startNode(t, t.TempDir())
	code, written := lonelypsdtest.SendLarge(t, node.Addr(), "/cluster/apply", nil, size)
	if code != http.StatusForbidden {
		t.Fatalf("answer %d, want 403", code)
	}
	if written >= size {
		t.Fatalf("the whole body was sent (%d bytes)", written)
	}
}
