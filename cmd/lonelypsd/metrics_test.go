package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/lonelypsd/lonelypsd/api/metrics/metricstest"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	return metricstest.Scrape(t, url)
}

// sample is the value of the series of name with the label pair (every
// series when label is empty); -1 when there is none.
func sample(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	if label == "" {
		return metricstest.Sum(fams, name, nil)
	}
	return metricstest.Sum(fams, name, map[string]string{label: value})
}

// The binary serves its metrics on --metrics-addr, not on the API port,
// and they move with HTTP and websocket notifies and deliveries.
func TestMetricsMoveWithWork(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t))
	node := startNode(t, t.TempDir(), "--metrics-addr", maddr)
	ctx := ctxT(t)

	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("API port /metrics: %d, want 404 with --metrics-addr", code)
	}

	deliverOnce(t, ctx, node, "h", "over http")
	wsub := dialWS(t, node, wsclient.Options{})
	wpub := dialWS(t, node, wsclient.Options{})
	if err := wsub.SubscribeExact(ctx, []byte("w")); err != nil {
		t.Fatal(err)
	}
	if n, err := wpub.Notify(ctx, []byte("w"), []byte("over a websocket")); err != nil || n != 1 {
		t.Fatalf("websocket notify: %d, %v", n, err)
	}
	lonelypsdtest.NextMessage(t, wsub, 10*time.Second)

	fams := scrapeMetrics(t, "http://"+maddr+"/metrics")
	tests := []struct {
		name, label, value string
		min                float64
	}{
		{"lonelypsd_notifies_total", "transport", "http", 1},
		{"lonelypsd_notifies_total", "transport", "websocket", 1},
		{"lonelypsd_deliveries_total", "outcome", "success", 2},
		{"lonelypsd_deliveries_total", "outcome", "failure", 0},
		{"lonelypsd_deliveries_total", "outcome", "unsubscribed", 0},
		{"lonelypsd_delivery_duration_seconds", "", "", 2},
		{"lonelypsd_subscriptions", "kind", "exact", 2},
		{"lonelypsd_subscriptions", "kind", "glob", 0},
		{"lonelypsd_missed_pending", "", "", 0},
		{"lonelypsd_missed_sent_total", "", "", 0},
		{"lonelypsd_missed_failed_total", "", "", 0},
		{"lonelypsd_websocket_connections", "", "", 2},
		{"lonelypsd_websocket_messages_received_total", "", "", 4},
		{"lonelypsd_websocket_messages_sent_total", "", "", 3},
		{"lonelypsd_websocket_compressed_bytes_total", "direction", "in", 1},
		{"lonelypsd_websocket_compressed_bytes_total", "direction", "out", 1},
		{"lonelypsd_websocket_uncompressed_bytes_total", "direction", "in", 1},
		{"lonelypsd_websocket_uncompressed_bytes_total", "direction", "out", 1},
		{"lonelypsd_build_info", "", "", 1},
		{"lonelypsd_raft_state", "state", "leader", 1},
		{"lonelypsd_raft_term", "", "", 1},
		{"lonelypsd_raft_commit_index", "", "", 1},
		{"lonelypsd_raft_applied_index", "", "", 1},
		{"lonelypsd_raft_leader_changes_total", "", "", 1},
		{"lonelypsd_raft_apply", "", "", 1},
		{"go_goroutines", "", "", 1},
		{"process_resident_memory_bytes", "", "", 1},
	}
	for _, tc := range tests {
		if got := sample(fams, tc.name, tc.label, tc.value); got < tc.min {
			t.Errorf("%s{%s=%q} = %v, want at least %v", tc.name, tc.label, tc.value, got, tc.min)
		}
	}
}

func TestMetricsOff(t *testing.T) {
	node := startNode(t, t.TempDir(), "--metrics=false")
	deliverOnce(t, ctxT(t), node, "t", "m")
	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics with --metrics=false: %d, want 404", code)
	}
}
