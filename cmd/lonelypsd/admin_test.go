package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// listRows runs `subs list --json` with extra flags against p.
func listRows(t *testing.T, p *lonelypsdtest.Proc, extra ...string) []cluster.Row {
	t.Helper()
	out, errs, code := cli(t, append([]string{"subs", "list", "--addr", p.Addr(), "--data-dir", p.DataDir, "--json"}, extra...)...)
	if code != 0 {
		t.Fatalf("subs list exited %d: %s", code, errs)
	}
	var rows []cluster.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("subs list --json printed %q: %v", out, err)
	}
	return rows
}

// deadURL is a loopback URL nothing listens on.
func deadURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d/v1/receive", lonelypsdtest.FreePort(t))
}

func TestSubsListShowsHealthAndRemoves(t *testing.T) {
	n, ctx, c := startNodeClient(t, t.TempDir())
	live := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	dead := deadURL(t) + "?tenant=1&shard=2"
	for _, err := range []error{
		c.SubscribeExact(ctx, live.Receive, []byte("a"), live.Recover),
		c.SubscribeGlob(ctx, live.Receive, "g/*", ""),
		c.SubscribeExact(ctx, dead, []byte("a"), ""),
		c.SubscribeExact(ctx, dead, []byte("b"), ""),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	rows := listRows(t, n)
	if len(rows) != 4 {
		t.Fatalf("listed %d rows, want 4: %+v", len(rows), rows)
	}
	if _, err := c.Notify(ctx, []byte("a"), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	unhealthy := listRows(t, n, "--unhealthy")
	if len(unhealthy) != 2 {
		t.Fatalf("--unhealthy listed %+v, want the dead URL's 2 rows", unhealthy)
	}
	for _, r := range unhealthy {
		h := r.Health
		if r.URL != dead || h.ConsecutiveFailures != 1 || h.LastError == "" || !h.LastSuccess.IsZero() || h.LastFailure.IsZero() {
			t.Fatalf("unhealthy row %+v", r)
		}
	}
	liveRows := listRows(t, n, "--url", live.Receive, "--topic", "a")
	if len(liveRows) != 1 || liveRows[0].Kind != "exact" || liveRows[0].Recovery != live.Recover || liveRows[0].Health.LastSuccess.IsZero() {
		t.Fatalf("live row %+v", liveRows)
	}
	// JSON shows URLs as they are, not HTML-escaped.
	if out, _, _ := cli(t, "subs", "list", "--addr", n.Addr(), "--data-dir", n.DataDir, "--json"); !strings.Contains(out, "&shard=2") {
		t.Fatalf("--json escapes the URL:\n%s", out)
	}
	// The readable table names the columns and the rows.
	out, _, code := cli(t, "subs", "list", "--addr", n.Addr(), "--data-dir", n.DataDir, "--glob", "g/*")
	if code != 0 || !strings.Contains(out, "LAST SUCCESS") || !strings.Contains(out, live.Receive) || strings.Contains(out, dead) {
		t.Fatalf("table (exit %d):\n%s", code, out)
	}

	tests := []struct {
		name    string
		args    []string
		code    int
		out     string
		remains int
	}{
		{"one row", []string{"--url", live.Receive, "--glob", "g/*"}, 0, "removed 1", 3},
		{"absent row", []string{"--url", live.Receive, "--glob", "g/*"}, 1, "", 3},
		{"every row of a URL", []string{"--url", dead}, 0, "removed 2", 1},
		{"both topic and glob", []string{"--url", dead, "--topic", "a", "--glob", "x"}, 2, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := cli(t, append([]string{"subs", "remove", "--addr", n.Addr(), "--data-dir", n.DataDir}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.out) {
				t.Fatalf("exit %d, out %q, err %q; want exit %d and %q", code, out, errs, tt.code, tt.out)
			}
			if got := len(listRows(t, n)); got != tt.remains {
				t.Fatalf("%d rows remain, want %d", got, tt.remains)
			}
		})
	}
	// Without the secret the operator endpoints refuse, and the command
	// says where it looked for one.
	_, errs, code := cli(t, "subs", "list", "--addr", n.Addr(), "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "403") || !strings.Contains(errs, "no cluster secret was found") {
		t.Fatalf("without a secret: exit %d, %q", code, errs)
	}
}

func TestDeadSubscriberIsPruned(t *testing.T) {
	n, ctx, c := startNodeClient(t, t.TempDir(), "--prune-unhealthy-after", "2s")
	live := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	dead := deadURL(t)
	for _, err := range []error{
		c.SubscribeExact(ctx, live.Receive, []byte("a"), ""),
		c.SubscribeExact(ctx, dead, []byte("a"), ""),
		c.SubscribeGlob(ctx, dead, "*", ""),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Notify until the dead URL's rows are gone: every delivery to it
	// fails, and after 2 s of nothing but failures it is pruned.
	lonelypsdtest.WaitFor(t, "the dead subscriber to be pruned", 30*time.Second, func() bool {
		if _, err := c.Notify(ctx, []byte("a"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // paces the notifies, whose failures are the scenario
		return len(listRows(t, n, "--url", dead)) == 0
	})
	if rows := listRows(t, n); len(rows) != 1 || rows[0].URL != live.Receive {
		t.Fatalf("after pruning: %+v, want the live row alone", rows)
	}
	fams := scrapeMetrics(t, n.HTTP+"/metrics")
	if got := sample(fams, "lonelypsd_subscriptions_pruned_total", "", ""); got != 2 {
		t.Fatalf("lonelypsd_subscriptions_pruned_total = %v, want 2", got)
	}
	if got := strings.Count(n.Logs(), "pruned a dead subscriber"); got != 1 {
		t.Fatalf("pruning logged %d times, want once:\n%s", got, n.Logs())
	}
	// Each failed delivery is not a log line of its own.
	if got := strings.Count(n.Logs(), "delivery failed"); got > 3 {
		t.Fatalf("%d delivery failure lines for one dead subscriber, want them rate-limited", got)
	}
}

func TestSnapshotSaveAndRestoreOnAFreshNode(t *testing.T) {
	src := startNode(t, t.TempDir())
	ctx := ctxT(t)
	urls := []string{"http://127.0.0.1:1/a", "http://127.0.0.1:1/b"}
	c := src.Client()
	for i, u := range urls {
		for _, err := range []error{
			c.SubscribeExact(ctx, u, []byte(fmt.Sprintf("topic-%d", i)), "http://127.0.0.1:1/recover"),
			c.SubscribeExact(ctx, u, []byte{0xff, 0x00, byte(i)}, ""),
			c.SubscribeGlob(ctx, u, fmt.Sprintf("g/%d/*", i), ""),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	file := filepath.Join(t.TempDir(), "table.backup")
	out, errs, code := cli(t, "snapshot", "save", "--addr", src.Addr(), "--data-dir", src.DataDir, "--out", file)
	if code != 0 || !strings.Contains(out, "saved 4 exact and 2 glob") {
		t.Fatalf("save: exit %d, %q %q", code, out, errs)
	}

	dst := startNode(t, t.TempDir())
	dc := dst.Client()
	if err := dc.SubscribeExact(ctx, "http://127.0.0.1:1/other", []byte("gone after restore"), ""); err != nil {
		t.Fatal(err)
	}
	before, err := dc.CheckSubscriptions(ctx, urls[0])
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, content, want string
	}{
		{"corrupt", string(good[:40]) + string(good[40]^1) + string(good[41:]), "SHA-256"},
		{"foreign", "SQLite format 3\x00 not a backup", "does not start with"},
		{"truncated", string(good[:len(good)-5]), "truncated"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "bad")
			if err := os.WriteFile(f, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, errs, code := cli(t, "snapshot", "restore", "--addr", dst.Addr(), "--data-dir", dst.DataDir, "--in", f)
			if code == 0 || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, %q; want a refusal naming %q", code, errs, tt.want)
			}
			if after, err := dc.CheckSubscriptions(ctx, urls[0]); err != nil || after != before {
				t.Fatalf("a refused restore changed the table (%v)", err)
			}
		})
	}

	out, errs, code = cli(t, "snapshot", "restore", "--addr", dst.Addr(), "--data-dir", dst.DataDir, "--in", file)
	if code != 0 || !strings.Contains(out, "restored 4 exact and 2 glob") {
		t.Fatalf("restore: exit %d, %q %q", code, out, errs)
	}
	for _, u := range append(urls, "http://127.0.0.1:1/other") {
		want, err := c.CheckSubscriptions(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dc.CheckSubscriptions(ctx, u)
		if err != nil || got != want {
			t.Fatalf("etag of %s after restore differs from the source's (%v)", u, err)
		}
	}
	// The restored table is what notify matches, and survives a restart.
	dst.Restart()
	if rows := listRows(t, dst); len(rows) != 6 {
		t.Fatalf("after a restart the restored node lists %d rows, want 6", len(rows))
	}
}

// TestEveryCommandHasHelp: --help of every command exits 0 and prints
// its usage; the client commands name the flags they share.
func TestEveryCommandHasHelp(t *testing.T) {
	clientFlags := []string{"-addr", "-secrets", "-tls-ca"}
	for _, tc := range []struct {
		args     []string
		mentions []string
	}{
		{[]string{"--help"}, nil}, {[]string{"help"}, nil}, {[]string{"dev", "--help"}, nil}, {[]string{"serve", "--help"}, nil},
		{[]string{"setup", "--help"}, nil}, {[]string{"notify", "--help"}, clientFlags}, {[]string{"listen", "--help"}, clientFlags},
		{[]string{"version", "--help"}, nil}, {[]string{"train-dict", "--help"}, nil},
		{[]string{"cluster", "--help"}, nil}, {[]string{"cluster", "status", "--help"}, nil}, {[]string{"cluster", "remove", "--help"}, nil},
		{[]string{"subs", "--help"}, nil}, {[]string{"subs", "list", "--help"}, nil}, {[]string{"subs", "remove", "--help"}, nil},
		{[]string{"snapshot", "--help"}, nil}, {[]string{"snapshot", "save", "--help"}, nil}, {[]string{"snapshot", "restore", "--help"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := cli(t, tc.args...)
			if code != 0 || !strings.Contains(out+errs, "Usage") {
				t.Fatalf("exit %d; stdout %q stderr %q", code, out, errs)
			}
			for _, flag := range tc.mentions {
				if !strings.Contains(out+errs, flag) {
					t.Errorf("the help does not mention %s", flag)
				}
			}
		})
	}
}

func TestOperatorCommandsOverHTTPS(t *testing.T) {
	ca := newTestCA(t)
	p := startTLSNode(t, ca, false)
	caFile := filepath.Join(p.DataDir, "ca.pem")
	data := filepath.Join(p.DataDir, "data")
	backup := filepath.Join(t.TempDir(), "b")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"status", []string{"cluster", "status", "--addr", p.HTTP, "--tls-ca", caFile}, 0, "leader: n1"},
		{"status without the CA", []string{"cluster", "status", "--addr", p.HTTP}, 1, "certificate"},
		{"subs list", []string{"subs", "list", "--addr", p.HTTP, "--tls-ca", caFile, "--data-dir", data, "--json"}, 0, "[]"},
		{"snapshot save", []string{"snapshot", "save", "--addr", p.HTTP, "--tls-ca", caFile, "--data-dir", data, "--out", backup}, 0, "saved 0 exact"},
		{"snapshot restore", []string{"snapshot", "restore", "--addr", p.HTTP, "--tls-ca", caFile, "--data-dir", data, "--in", backup}, 0, "restored 0 exact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := cli(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errs, tt.want) {
				t.Fatalf("exit %d; stdout %q stderr %q; want exit %d and %q", code, out, errs, tt.code, tt.want)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	n := startNode(t, t.TempDir(), "--access-log")
	if code, _ := lonelypsdtest.Get(t, n.HTTP+"/healthz?secret=not-logged"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	lonelypsdtest.WaitFor(t, "the access log line", 5*time.Second, func() bool {
		return strings.Contains(n.Logs(), "path=/healthz status=200")
	})
	if strings.Contains(n.Logs(), "not-logged") {
		t.Fatal("the access log shows the query string")
	}
}
