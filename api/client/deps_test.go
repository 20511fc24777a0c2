package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The clients are imported by programs that run no node: they must not
// drag in the node's storage, consensus or delivery code.
func TestClientsDoNotDependOnTheServer(t *testing.T) {
	forbidden := []string{
		"go.etcd.io/bbolt",
		"github.com/hashicorp/raft",
		"github.com/lonelypsd/lonelypsd/fsm",
		"github.com/lonelypsd/lonelypsd/cluster",
		"github.com/lonelypsd/lonelypsd/fanout",
	}
	for _, pkg := range []string{
		"github.com/lonelypsd/lonelypsd/api/client",
		"github.com/lonelypsd/lonelypsd/api/ws/wsclient",
	} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", pkg, err)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 5 {
				t.Fatalf("go list -deps %s listed only %v", pkg, deps)
			}
			for _, d := range deps {
				for _, f := range forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s", pkg, d)
					}
				}
			}
		})
	}
}
