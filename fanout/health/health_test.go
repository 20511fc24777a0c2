package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestMerge(t *testing.T) {
	ok := func(s int) Record { return Record{LastSuccess: at(s)} }
	failing := func(since, last, n int) Record {
		return Record{FailingSince: at(since), LastFailure: at(last), ConsecutiveFailures: n, LastError: fmt.Sprint("e", last)}
	}
	tests := []struct {
		name      string
		in        []Record
		wantN     int
		wantSince time.Time
		wantErr   string
	}{
		{"nothing", nil, 0, time.Time{}, ""},
		{"one node failing", []Record{failing(10, 20, 5)}, 5, at(10), "e20"},
		{"streaks add up", []Record{failing(10, 20, 5), failing(5, 30, 2)}, 7, at(5), "e30"},
		{"a later success elsewhere clears", []Record{failing(10, 20, 5), ok(25)}, 0, time.Time{}, "e20"},
		{"streak straddling a success counts once from its last failure", []Record{failing(10, 30, 5), ok(20)}, 1, at(30), "e30"},
		{"success then failures", []Record{
			{LastSuccess: at(1), FailingSince: at(10), LastFailure: at(40), ConsecutiveFailures: 3, LastError: "x"}, ok(5),
		}, 3, at(10), "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(tt.in...)
			if got.ConsecutiveFailures != tt.wantN || !got.FailingSince.Equal(tt.wantSince) || got.LastError != tt.wantErr {
				t.Fatalf("Merge = %+v, want %d failures since %v, error %q", got, tt.wantN, tt.wantSince, tt.wantErr)
			}
		})
	}
}

func TestTrackerStreaksAndLogging(t *testing.T) {
	tr := NewTracker(0, time.Minute)
	now := t0
	tr.now = func() time.Time { return now }
	const u = "http://127.0.0.1:1/dead"
	var logged, suppressed int
	for i := range 100 {
		now = at(i) // one failure a second
		if l, s := tr.Failure(u, errors.New(strings.Repeat("x", 1000))); l {
			logged++
			suppressed += s
		}
	}
	// Logged at 0 s and 60 s; the 59 failures between were suppressed.
	if logged != 2 || suppressed != 59 {
		t.Fatalf("logged %d, suppressed %d; want 2 and 59", logged, suppressed)
	}
	r := tr.Get([]string{u})[u]
	if r.ConsecutiveFailures != 100 || !r.FailingSince.Equal(at(0)) || len(r.LastError) != maxErrorLen {
		t.Fatalf("record %+v", r)
	}
	if got := tr.DeadSince(at(50)); len(got) != 1 || got[0] != u {
		t.Fatalf("DeadSince(50 s) = %v", got)
	}
	if got := tr.DeadSince(at(-1)); len(got) != 0 {
		t.Fatalf("DeadSince before the first failure = %v", got)
	}
	tr.Success(u)
	if got := tr.DeadSince(at(1000)); len(got) != 0 {
		t.Fatalf("a success did not end the streak: %v", got)
	}
	if l, _ := tr.Failure(u, nil); !l {
		t.Fatal("the first failure after a success was not logged")
	}
}

func TestTrackerIsBounded(t *testing.T) {
	tr := NewTracker(100, time.Minute)
	for i := range 1000 {
		tr.Failure(fmt.Sprintf("http://127.0.0.1:1/%d", i), nil)
	}
	if n := len(tr.Get(nil)); n != 100 {
		t.Fatalf("holds %d URLs, want 100", n)
	}
	tr.Keep(func(u string) bool { return strings.HasSuffix(u, "7") })
	for u := range tr.Get(nil) {
		if !strings.HasSuffix(u, "7") {
			t.Fatalf("Keep left %s", u)
		}
	}
}

func TestRecordJSON(t *testing.T) {
	in := Record{LastFailure: at(3), ConsecutiveFailures: 1, FailingSince: at(3), LastError: "refused"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"last_success":null`) {
		t.Fatalf("a success never seen is not null: %s", b)
	}
	var out Record
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip %+v (%v), want %+v", out, err, in)
	}
}

func TestSuccessIsRecordedToTheGrain(t *testing.T) {
	tr := NewTracker(0, time.Minute)
	now := t0
	tr.now = func() time.Time { return now }
	const u = "http://127.0.0.1:1/ok"
	tr.Success(u)
	now = t0.Add(successGrain / 2)
	tr.Success(u)
	if got := tr.Get(nil)[u].LastSuccess; !got.Equal(t0) {
		t.Fatalf("a success within the grain rewrote the record: %v", got)
	}
	now = t0.Add(successGrain)
	tr.Success(u)
	if got := tr.Get(nil)[u].LastSuccess; !got.Equal(now) {
		t.Fatalf("a success a grain later was not recorded: %v", got)
	}
	// After a failure the next success is recorded at once.
	now = now.Add(time.Millisecond)
	tr.Failure(u, nil)
	now = now.Add(time.Millisecond)
	tr.Success(u)
	if r := tr.Get(nil)[u]; r.Failing() || !r.LastSuccess.Equal(now) {
		t.Fatalf("the success after a failure: %+v", r)
	}
}
