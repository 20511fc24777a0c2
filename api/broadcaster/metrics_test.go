package broadcaster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/metrics/metricstest"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily { return metricstest.Scrape(t, url) }

func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	return metricstest.Sum(fams, name, want)
}

// notifyOnce subscribes one HTTP subscriber and notifies it once.
func notifyOnce(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := client.NewSubscriber()
	srv := httptest.NewServer(sub)
	t.Cleanup(srv.Close)
	c := client.New(base)
	if err := c.SubscribeExact(ctx, srv.URL+"/v1/receive", []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("t"), []byte("m")); err != nil || n != 1 {
		t.Fatalf("notify: %d, %v", n, err)
	}
}

func checkFamilies(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	families := []string{
		"lonelypsd_notifies_total", "lonelypsd_deliveries_total", "lonelypsd_delivery_duration_seconds",
		"lonelypsd_subscriptions", "lonelypsd_missed_pending", "lonelypsd_missed_sent_total", "lonelypsd_missed_failed_total",
		"lonelypsd_websocket_connections", "lonelypsd_websocket_messages_received_total", "lonelypsd_websocket_messages_sent_total",
		"lonelypsd_websocket_compressed_bytes_total", "lonelypsd_websocket_uncompressed_bytes_total",
		"lonelypsd_build_info", "lonelypsd_raft_state", "lonelypsd_raft_term", "lonelypsd_raft_commit_index",
		"lonelypsd_raft_applied_index", "lonelypsd_raft_leader_changes_total",
		"go_goroutines", "process_cpu_seconds_total",
	}
	for _, name := range families {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	// hashicorp/raft's own metrics, through the go-metrics sink.
	raftOwn := 0
	for name := range fams {
		if strings.HasPrefix(name, "lonelypsd_raft_") && !strings.HasPrefix(name, "lonelypsd_raft_state") &&
			!strings.HasSuffix(name, "_index") && name != "lonelypsd_raft_term" && name != "lonelypsd_raft_leader_changes_total" {
			raftOwn++
		}
	}
	if raftOwn == 0 {
		t.Error("no metric of hashicorp/raft's own")
	}
	tests := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"lonelypsd_notifies_total", map[string]string{"transport": "http"}, 1},
		{"lonelypsd_deliveries_total", map[string]string{"outcome": "success"}, 1},
		{"lonelypsd_delivery_duration_seconds", nil, 1},
		{"lonelypsd_subscriptions", map[string]string{"kind": "exact"}, 1},
		{"lonelypsd_raft_state", map[string]string{"state": "leader"}, 1},
		{"lonelypsd_raft_leader_changes_total", nil, 1},
		{"lonelypsd_raft_applied_index", nil, 1},
		{"lonelypsd_build_info", map[string]string{"version": "v-test"}, 1},
	}
	for _, tc := range tests {
		if got := value(fams, tc.name, tc.labels); got < tc.min {
			t.Errorf("%s%v = %v, want at least %v", tc.name, tc.labels, got, tc.min)
		}
	}
	if got := value(fams, "lonelypsd_deliveries_total", map[string]string{"outcome": "failure"}); got != 0 {
		t.Errorf("failed deliveries = %v, want 0", got)
	}
}

func withBuild(c *Config) {
	c.Build = metrics.BuildInfo{Version: "v-test", Revision: "abc", GoVersion: "go-test"}
}

func TestMetricsOnAPIPort(t *testing.T) {
	base := runNodeWith(t, withBuild)
	notifyOnce(t, base)
	checkFamilies(t, scrape(t, base+"/metrics"))
}

func TestMetricsOwnListener(t *testing.T) {
	maddr := lonelypsdtest.FreeAddr(t)
	base := runNodeWith(t, func(c *Config) { withBuild(c); c.MetricsAddr = maddr })
	notifyOnce(t, base)
	if code, _ := lonelypsdtest.Get(t, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("API port /metrics: %d, want 404", code)
	}
	checkFamilies(t, scrape(t, "http://"+maddr+"/metrics"))
}
