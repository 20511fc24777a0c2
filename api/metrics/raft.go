package metrics

import (
	"fmt"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
)

// CaptureRaftMetrics sends the metrics hashicorp/raft emits (apply and
// commit times, replication, snapshots, follower contact, ...) to this
// node's registry, named lonelypsd_raft_* as raft names them (dots become
// underscores).
//
// raft emits only through go-metrics' process-wide global (armon/go-metrics,
// as raft v1.7 is built by default), so this replaces that global: in a
// process running several nodes (tests), the last node to call it gets
// raft's metrics. A real deployment runs one node per process.
func (n *Node) CaptureRaftMetrics() error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
		Registerer: n.Registry,
		Name:       namespace + "_go_metrics_sink",
	})
	if err != nil {
		return fmt.Errorf("raft metrics sink: %w", err)
	}
	cfg := gometrics.DefaultConfig(namespace)
	// A hostname in the names (or labels) would make every node's series
	// differ for nothing: Prometheus labels them by target already.
	cfg.EnableHostname = false
	cfg.EnableHostnameLabel = false
	// The Go collector reports the runtime already.
	cfg.EnableRuntimeMetrics = false
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	return nil
}
