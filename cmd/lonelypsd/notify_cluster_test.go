package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// TestClusterNotifyAfterSubscribeAtAnotherNode is the upstream suite's
// test_notify_many shape on a cluster: a subscriber subscribes at one node
// and, as soon as that node acknowledges, a notify goes to another node.
// The notify must count and reach the subscriber every time, whichever
// nodes are involved and whether either side is a websocket. Without a
// read barrier on notify the accepting node matches against a replica
// that has not applied the subscription yet (it learns the commit index
// a few milliseconds later), and the count comes back short.
func TestClusterNotifyAfterSubscribeAtAnotherNode(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	_, leader := c.leader()
	f := c.followers()
	if len(f) != 2 {
		t.Fatalf("want two followers, have %d", len(f))
	}

	cases := []struct {
		name       string
		subAt      *lonelypsdtest.Proc
		notifyAt   *lonelypsdtest.Proc
		wsSubscrib bool // the subscriber is a websocket connection at subAt
		wsNotifier bool // the notifier is a websocket connection at notifyAt
	}{
		{"http subscriber at leader, http notify at follower", leader, f[0], false, false},
		{"http subscriber at follower, http notify at other follower", f[0], f[1], false, false},
		{"http subscriber at follower, http notify at leader", f[1], leader, false, false},
		{"websocket subscriber at leader, http notify at follower", leader, f[1], true, false},
		{"http subscriber at leader, websocket notify at follower", leader, f[0], false, true},
		{"websocket subscriber at follower, websocket notify at other follower", f[1], f[0], true, true},
	}
	// Enough rounds that a replication window of a few milliseconds shows
	// up in several of them; each round is a fresh topic.
	const rounds = 20
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				hsub *lonelypsdtest.Subscriber
				wsub *wsclient.Conn
				wpub *wsclient.Conn
			)
			if tc.wsSubscrib {
				wsub = dialWS(t, tc.subAt, wsclient.Options{})
			} else {
				hsub = lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
			}
			if tc.wsNotifier {
				wpub = dialWS(t, tc.notifyAt, wsclient.Options{})
			}
			short := 0
			for i := range rounds {
				topic := []byte(fmt.Sprintf("case%d-round%d", ci, i))
				msg := []byte(fmt.Sprintf("message %d", i))
				before := int64(0)
				if hsub != nil {
					before = hsub.Count()
					if err := tc.subAt.Client().SubscribeExact(ctx, hsub.Receive, topic, ""); err != nil {
						t.Fatalf("round %d: subscribe: %v", i, err)
					}
				} else if err := wsub.SubscribeExact(ctx, topic); err != nil {
					t.Fatalf("round %d: websocket subscribe: %v", i, err)
				}

				var (
					n   uint64
					err error
				)
				if wpub != nil {
					n, err = wpub.Notify(ctx, topic, msg)
				} else {
					var n32 uint32
					n32, err = tc.notifyAt.Client().Notify(ctx, topic, msg)
					n = uint64(n32)
				}
				if err != nil {
					t.Fatalf("round %d: notify: %v", i, err)
				}
				if n != 1 {
					short++
					t.Errorf("round %d: the notify counted %d subscribers, want 1", i, n)
					continue
				}
				// A notify answers after its deliveries ended, so a counted
				// HTTP delivery has already arrived; a websocket one is queued
				// on the connection.
				if hsub != nil {
					if got := hsub.Count() - before; got != 1 {
						t.Errorf("round %d: the subscriber received %d messages, want 1", i, got)
					}
					continue
				}
				if m := lonelypsdtest.NextMessage(t, wsub, 10*time.Second); string(m.Topic) != string(topic) || string(m.Data) != string(msg) {
					t.Errorf("round %d: the websocket received %q on %q, want %q on %q", i, m.Data, m.Topic, msg, topic)
				}
			}
			if short > 0 {
				t.Errorf("%d of %d notifies missed a subscription acknowledged just before at another node", short, rounds)
			}
		})
	}
}

// TestClusterNotifyWithoutQuorumUsesLocalReplica: the read barrier must
// never hold a notify indefinitely. With the two other nodes frozen, a
// notify at the remaining node still answers, counting what its own
// replica holds, and the node says in its log why it could not do better.
func TestClusterNotifyWithoutQuorumUsesLocalReplica(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	lone := c.followers()[0]
	if err := lone.Client().SubscribeExact(ctx, s.Receive, []byte("kept"), ""); err != nil {
		t.Fatal(err)
	}
	var frozen []*lonelypsdtest.Proc
	for _, p := range c.nodes {
		if p != lone {
			frozen = append(frozen, p)
		}
	}
	for _, p := range frozen {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range frozen {
			_ = p.Signal(syscall.SIGCONT)
		}
	})

	// First while the lone node still believes in its (frozen) leader,
	// then after it noticed there is none: both must answer.
	for i, what := range []string{"leader known but frozen", "no leader"} {
		if i == 1 {
			lonelypsdtest.WaitFor(t, "the lone node to lose its leader", 10*time.Second, func() bool {
				st, err := c.status(lone)
				return err == nil && st.LeaderID == ""
			})
		}
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := lone.Client().Notify(nctx, []byte("kept"), []byte(what))
		cancel()
		if err != nil || n != 1 {
			t.Fatalf("%s: notify at the lone node: %d, %v\n%s", what, n, err, lone.Logs())
		}
	}
	if !strings.Contains(lone.Logs(), "notify read barrier failed") {
		t.Errorf("the lone node did not log why it served from its own replica\n%s", lone.Logs())
	}
}
