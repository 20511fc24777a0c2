package cluster

import (
	"testing"

	"github.com/lonelypsd/lonelypsd/fsm"
)

func TestUnsubscribeCommand(t *testing.T) {
	tests := []struct {
		name string
		sub  fsm.Subscription
		want fsm.Command
	}{
		{"exact", fsm.Subscription{Kind: fsm.Exact, URL: "http://a/r", Key: "t\x00"},
			fsm.Command{Op: fsm.OpUnsubscribeExact, URL: "http://a/r", Topic: []byte("t\x00")}},
		{"glob", fsm.Subscription{Kind: fsm.Glob, URL: "http://a/r", Key: "t*"},
			fsm.Command{Op: fsm.OpUnsubscribeGlob, URL: "http://a/r", Glob: "t*"}},
	}
	for _, tc := range tests {
		got := UnsubscribeCommand(tc.sub)
		if got.Op != tc.want.Op || got.URL != tc.want.URL || string(got.Topic) != string(tc.want.Topic) || got.Glob != tc.want.Glob {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
