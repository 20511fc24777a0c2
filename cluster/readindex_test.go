package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// leaderAndFollowers splits a test cluster by role.
func leaderAndFollowers(t *testing.T, nodes []*inProcess) (*inProcess, []*inProcess) {
	t.Helper()
	var leader *inProcess
	var followers []*inProcess
	for _, p := range nodes {
		if p.node.IsLeader() {
			leader = p
		} else {
			followers = append(followers, p)
		}
	}
	if leader == nil || len(followers) != len(nodes)-1 {
		t.Fatalf("want one leader among %d nodes, have leader %v and %d followers", len(nodes), leader != nil, len(followers))
	}
	return leader, followers
}

// TestReadBarrierCoversWritesAcknowledgedElsewhere: once a write is
// acknowledged at one node, a read barrier at any other node returns only
// when that node's table holds the write, every time.
func TestReadBarrierCoversWritesAcknowledgedElsewhere(t *testing.T) {
	nodes := startInProcess(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every node must know the leader's address before the rounds start;
	// the barrier's first moments after an election are a separate case.
	leader, f := leaderAndFollowers(t, nodes)
	for _, p := range nodes {
		err := p.node.ReadBarrier(ctx)
		for attempt := 0; err != nil && attempt < 250; attempt++ {
			time.Sleep(20 * time.Millisecond)
			err = p.node.ReadBarrier(ctx)
		}
		if err != nil {
			t.Fatalf("read barrier at %s never succeeded: %v", p.node.ID(), err)
		}
	}

	cases := []struct {
		name          string
		write, notify *inProcess
	}{
		{"write at leader, barrier at follower", leader, f[0]},
		{"write at follower, barrier at other follower", f[0], f[1]},
		{"write at follower, barrier at leader", f[1], leader},
		// (A write at the leader and a barrier there cannot miss: the
		// leader applies before it acknowledges.)
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 20 {
				topic := fmt.Sprintf("rb-%d-%d", ci, i)
				if _, err := tc.write.node.Apply(ctx, subscribeCmd(topic)); err != nil {
					t.Fatalf("round %d: apply: %v", i, err)
				}
				if err := tc.notify.node.ReadBarrier(ctx); err != nil {
					t.Fatalf("round %d: read barrier: %v", i, err)
				}
				if _, ok := tc.notify.node.FSM().Lookup(fsm.Exact, "http://127.0.0.1:9/r", topic); !ok {
					t.Fatalf("round %d: the barrier returned before %s applied the write acknowledged at %s",
						i, tc.notify.node.ID(), tc.write.node.ID())
				}
			}
		})
	}

	// Many notifies at once at a follower: every barrier completes and
	// covers a write acknowledged before it started.
	if _, err := leader.node.Apply(ctx, subscribeCmd("burst")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f[0].node.ReadBarrier(ctx); err != nil {
				errs <- err
				return
			}
			if _, ok := f[0].node.FSM().Lookup(fsm.Exact, "http://127.0.0.1:9/r", "burst"); !ok {
				errs <- errors.New("a concurrent barrier returned before the write was applied")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestReadBarrierWithoutLeaderGivesUpBounded: with the other nodes gone a
// barrier fails (ErrReadBarrier) instead of waiting for a leader, so the
// notify can go on with the local replica.
func TestReadBarrierWithoutLeaderGivesUpBounded(t *testing.T) {
	nodes := startInProcess(t, 3)
	_, f := leaderAndFollowers(t, nodes)
	lone := f[0]
	for _, p := range nodes {
		if p != lone {
			_ = p.srv.Close()
			_ = p.node.Close()
		}
	}
	// A context far longer than the barrier's own bound: the barrier
	// must end by itself.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Closing the leader hands leadership over, possibly to lone, which
	// then leads alone until its lease runs out: a barrier may still
	// succeed for that moment. Every call must end within its bound, and
	// within a few seconds they must fail, three in a row.
	failed := 0
	for i := 0; failed < 3; i++ {
		if i == 100 {
			t.Fatalf("the barrier still succeeds %d calls after quorum was lost", i)
		}
		start := time.Now()
		err := lone.node.ReadBarrier(ctx)
		// Its own bound is DefaultReadBarrierTimeout; ten times that
		// leaves room for a loaded machine and still tells a bounded
		// barrier from one that waits for the caller's minute.
		if took := time.Since(start); took > 10*DefaultReadBarrierTimeout {
			t.Fatalf("call %d: the barrier took %s, past its bound", i, took)
		}
		switch {
		case errors.Is(err, ErrReadBarrier):
			failed++
		case err == nil:
			failed = 0
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("call %d: %v, want ErrReadBarrier", i, err)
		}
	}
}
