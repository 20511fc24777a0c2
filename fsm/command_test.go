package fsm

import "testing"

func TestSubscriptionUnsubscribe(t *testing.T) {
	tests := []struct {
		name string
		sub  Subscription
		want Command
	}{
		{"exact", Subscription{Kind: Exact, URL: "http://a/r", Key: "t\x00", Recovery: "http://a/m"},
			Command{Op: OpUnsubscribeExact, URL: "http://a/r", Topic: []byte("t\x00")}},
		{"glob", Subscription{Kind: Glob, URL: "http://a/r", Key: "t*", Recovery: "http://a/m"},
			Command{Op: OpUnsubscribeGlob, URL: "http://a/r", Glob: "t*"}},
	}
	for _, tc := range tests {
		got := tc.sub.Unsubscribe()
		if got.Op != tc.want.Op || got.URL != tc.want.URL || string(got.Topic) != string(tc.want.Topic) ||
			got.Glob != tc.want.Glob || got.Recovery != "" {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{
		0: "op(0)", OpSubscribeExact: "subscribe_exact", OpSetSubscriptions: "set_subscriptions",
		OpRemoveNode: "remove_node", OpRestoreCommit: "restore_commit", OpRestoreCommit + 1: "op(11)", 255: "op(255)",
	} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(op), got, want)
		}
	}
}
