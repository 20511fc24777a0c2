package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

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
