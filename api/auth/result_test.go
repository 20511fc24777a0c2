package auth

import "testing"

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{
		OK: "ok", Unauthorized: "unauthorized", Forbidden: "forbidden", Unavailable: "unavailable", 4: "result(4)", -1: "result(-1)",
	} {
		if got := r.String(); got != want {
			t.Errorf("Result(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}
