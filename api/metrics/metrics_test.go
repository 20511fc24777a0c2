package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Packages hold nil instruments when they run without metrics.
func TestNilInstrumentsCountNothing(t *testing.T) {
	var (
		n *Notifies
		d *Deliveries
		m *Missed
		w *Websocket
	)
	n.HTTP()
	n.Websocket()
	d.Observe(Success, time.Second)
	m.Sent()
	m.Failed()
	w.Received(1)
	w.Sent(1)
	w.Body(In, 1, 2)
}

func TestCounters(t *testing.T) {
	node := New(BuildInfo{Version: "v", Revision: "r", GoVersion: "g"})
	node.Notifies.HTTP()
	node.Notifies.HTTP()
	node.Notifies.Websocket()
	node.Deliveries.Observe(Success, time.Millisecond)
	node.Deliveries.Observe(Unsubscribed, time.Millisecond)
	node.Deliveries.Observe(Failure, time.Second)
	node.Websocket.Body(In, 10, 40)
	node.Websocket.Body(Out, 5, 5)
	node.RegisterSubscriptions(func() (int, int) { return 3, 2 })
	node.RegisterRaft(func() RaftStats { return RaftStats{State: "Leader", Term: 4} })
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"http notifies", testutil.ToFloat64(node.Notifies.http), 2},
		{"websocket notifies", testutil.ToFloat64(node.Notifies.websocket), 1},
		{"successes", testutil.ToFloat64(node.Deliveries.success), 1},
		{"failures", testutil.ToFloat64(node.Deliveries.failure), 1},
		{"unsubscribed", testutil.ToFloat64(node.Deliveries.unsubscribed), 1},
		{"compressed in", testutil.ToFloat64(node.Websocket.compressedIn), 10},
		{"uncompressed in", testutil.ToFloat64(node.Websocket.uncompressedIn), 40},
		{"uncompressed out", testutil.ToFloat64(node.Websocket.uncompressedOut), 5},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	for name, want := range map[string]int{
		"lonelypsd_delivery_duration_seconds": 1, "lonelypsd_subscriptions": 2, "lonelypsd_raft_state": 4,
		"lonelypsd_build_info": 1, "lonelypsd_raft_term": 1,
	} {
		got, err := testutil.GatherAndCount(node.Registry, name)
		if err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
}
