package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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

// metricRef matches what may be a metric name in the monitoring files:
// the node's own families, the Go and process collectors it registers,
// and the few names of other exporters the rules read (up, node_exporter,
// the kubelet). Label values such as data-lonelypsd-0 or /var/lib/lonelypsd
// do not match: they are not followed by an underscore.
var metricRef = regexp.MustCompile(`\b(?:(?:lonelypsd|go|process|node|kubelet)_[A-Za-z0-9_:]+|up\{)`)

// foreign are the names the monitoring files may use that another exporter
// exports: the node cannot see its own disk or its own scrape.
var foreign = []string{
	"up",
	"node_filesystem_avail_bytes",
	"node_filesystem_size_bytes",
	"kubelet_volume_stats_available_bytes",
	"kubelet_volume_stats_capacity_bytes",
}

// metricRefs returns the metric names text references, sorted and unique.
func metricRefs(text string) []string {
	var names []string
	for _, m := range metricRef.FindAllString(text, -1) {
		names = append(names, strings.TrimSuffix(m, "{"))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestMonitoringMetricRefs(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{`rate(lonelypsd_deliveries_total{outcome="failure"}[5m])`, []string{"lonelypsd_deliveries_total"}},
		{`up{job=~"lonelypsd.*"} == 0`, []string{"up"}},
		{`kubelet_volume_stats_available_bytes{persistentvolumeclaim=~"data-lonelypsd-.*"}`, []string{"kubelet_volume_stats_available_bytes"}},
		{`histogram_quantile(0.5, rate(lonelypsd_delivery_duration_seconds_bucket[1m])) + go_goroutines`, []string{"go_goroutines", "lonelypsd_delivery_duration_seconds_bucket"}},
		{`mountpoint=~".*/var/lib/lonelypsd.*", setup, go_version="x"`, []string{"go_version"}},
	}
	for _, tc := range tests {
		if got := metricRefs(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("metricRefs(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

// exported reports whether name is a family of fams, or a series of one:
// histograms and summaries are queried as NAME_bucket, NAME_sum, NAME_count.
func exported(fams map[string]bool, name string) bool {
	if fams[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] {
			return true
		}
	}
	return false
}

// Every metric the alerting rules, the PrometheusRule and the dashboard
// under deploy/monitoring use is one a real node exports (or, for the few
// names of other exporters, one of an explicit list): a renamed family
// must not leave an alert that can never fire or an empty panel.
func TestMonitoringFilesUseExportedMetrics(t *testing.T) {
	node := startNode(t, t.TempDir())
	deliverOnce(t, ctxT(t), node, "m", "scrape me")
	fams := map[string]bool{}
	for name := range scrapeMetrics(t, node.HTTP+"/metrics") {
		fams[name] = true
	}

	dir := filepath.Join("..", "..", "deploy", "monitoring")
	files := []struct {
		name    string
		minRefs int // a file that stops referencing the node's metrics is suspect too
	}{
		{"alerts.yaml", 6},
		{"prometheusrule.yaml", 6},
		{"dashboard.json", 15},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, f.name))
			if err != nil {
				t.Fatal(err)
			}
			own := 0
			for _, name := range metricRefs(string(b)) {
				switch {
				case slices.Contains(foreign, name):
				case exported(fams, name):
					if strings.HasPrefix(name, "lonelypsd_") {
						own++
					}
				default:
					t.Errorf("%s uses %s, which the node does not export (and which is not in the list of other exporters' names)", f.name, name)
				}
			}
			if own < f.minRefs {
				t.Errorf("%s references %d of the node's lonelypsd_ metrics, want at least %d", f.name, own, f.minRefs)
			}
		})
	}
}
