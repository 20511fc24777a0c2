package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// setupSecrets runs `lonelypsd setup` and returns the broadcaster's file
// and the subscribers' secrets.
func setupSecrets(t *testing.T, toB, toS string) (string, auth.Secrets) {
	t.Helper()
	dir := setupDir(t, toB, toS)
	s, err := auth.LoadSecrets(filepath.Join(dir, "subscriber-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster != "" {
		t.Fatal("the subscribers' file holds the cluster secret")
	}
	return filepath.Join(dir, "broadcaster-secrets.json"), s
}

func pairOf(t *testing.T, s auth.Secrets) auth.Pair {
	t.Helper()
	p, err := s.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startAuthNode starts a node with the secrets `lonelypsd setup` writes
// for the schemes toB (to the broadcaster) and toS (to subscribers), a
// client that signs with them and a subscriber that verifies with them.
func startAuthNode(t *testing.T, toB, toS string) (*lonelypsdtest.Proc, context.Context, *client.Client, *lonelypsdtest.Subscriber, auth.Secrets) {
	t.Helper()
	file, secrets := setupSecrets(t, toB, toS)
	node, ctx, c := startNodeClient(t, t.TempDir(), "--secrets", file)
	c.Auth = pairOf(t, secrets)
	sub := client.NewSubscriber()
	sub.Auth = pairOf(t, secrets)
	return node, ctx, c, lonelypsdtest.StartSubscriber(t, sub), secrets
}

// TestAuthAllNineCombinations: subscribe, notify, deliver and confirm with
// every scheme in each direction; the subscriber verifies the
// broadcaster's RECEIVE with the to-subscriber secret and signs its
// confirmation with the to-broadcaster one.
func TestAuthAllNineCombinations(t *testing.T) {
	schemes := []string{"none", "token", "hmac"}
	for _, toB := range schemes {
		for _, toS := range schemes {
			t.Run(toB+"-to-broadcaster/"+toS+"-to-subscriber", func(t *testing.T) {
				_, ctx, c, s, _ := startAuthNode(t, toB, toS)
				if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), s.Recover); err != nil {
					t.Fatal(err)
				}
				if err := c.SubscribeGlob(ctx, s.Receive, "g/*", ""); err != nil {
					t.Fatal(err)
				}
				n, err := c.Notify(ctx, []byte("t"), []byte("secret message"))
				if err != nil || n != 1 {
					t.Fatalf("notify: %d, %v", n, err)
				}
				if n, err := c.Notify(ctx, []byte("g/1"), []byte("x")); err != nil || n != 1 {
					t.Fatalf("glob notify: %d, %v", n, err)
				}
				r := s.Received()
				if len(r) != 2 || string(r[0].Message) != "secret message" {
					t.Fatalf("received %+v", r)
				}
				if h := r[0].Header.Get("Authorization"); (toS == "none") != (h == "") {
					t.Fatalf("RECEIVE authorization %q under %s", h, toS)
				}
				etag, err := c.CheckSubscriptions(ctx, s.Receive)
				if err != nil {
					t.Fatal(err)
				}
				want := wire.Etag(s.Receive, []wire.ExactEntry{{Topic: []byte("t"), Recovery: s.Recover}}, []wire.GlobEntry{{Glob: "g/*"}})
				if etag != want {
					t.Fatal("etag mismatch")
				}
				if err := c.SetSubscriptions(ctx, s.Receive, nil, nil); err != nil {
					t.Fatal(err)
				}
				if err := c.UnsubscribeExact(ctx, s.Receive, []byte("t")); err != client.ErrConflict {
					t.Fatalf("unsubscribe after set: %v", err)
				}
			})
		}
	}
}

func hmacScheme(t *testing.T, secret string, opts ...auth.HMACOption) auth.Scheme {
	t.Helper()
	key, err := auth.DecodeHMACSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.HMAC(key, auth.NewMemoryReplayStore(time.Now), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthRefusalsChangeNothing: missing, wrong, expired, replayed and
// tampered authorizations get 401 or 403, and nothing is applied or
// delivered.
func TestAuthRefusalsChangeNothing(t *testing.T) {
	node, ctx, good, s, secrets := startAuthNode(t, "hmac", "hmac")
	if err := good.SubscribeExact(ctx, s.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	before, err := good.CheckSubscriptions(ctx, s.Receive)
	if err != nil {
		t.Fatal(err)
	}

	right := hmacScheme(t, secrets.ToBroadcaster.Secret)
	other, _ := auth.GenerateSecret()
	wrong := hmacScheme(t, other)
	old := hmacScheme(t, secrets.ToBroadcaster.Secret, auth.WithClock(func() time.Time { return time.Now().Add(-5 * time.Minute) }))

	subBody := func(topic string) []byte {
		b, _ := wire.AppendSubscribeExact(nil, wire.SubscribeExact{URL: s.Receive, Topic: []byte(topic)})
		return b
	}
	sign := func(sch auth.Scheme, topic string) string {
		h, err := sch.Authorize(auth.SubscribeExact{URL: s.Receive, Topic: []byte(topic)})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	msg := []byte("m")
	sum := sha512.Sum512(msg)
	notify := func(topic string) []byte { return notifyBody(t, []byte(topic), msg, sum, uint64(len(msg))) }
	signNotify := func(sch auth.Scheme, topic string) string {
		h, _ := sch.Authorize(auth.Notify{Topic: []byte(topic), Identifier: []byte{1, 2, 3, 4}, SHA512: sum})
		return h
	}

	// subscribeOnce subscribes to topic with a valid header and
	// unsubscribes again, which leaves the table as it was, and returns
	// the subscribe's header, now spent.
	subscribeOnce := func(topic string) string {
		t.Helper()
		h := sign(right, topic)
		if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/subscribe/exact", h, subBody(topic)); code != 200 {
			t.Fatalf("first use of a valid header for %s: %d", topic, code)
		}
		unsub := subBody(topic)
		if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/unsubscribe/exact", sign(right, topic), unsub[:len(unsub)-2]); code != 200 {
			t.Fatalf("unsubscribe from %s: %d", topic, code)
		}
		return h
	}
	replayed := subscribeOnce("x")
	before2, _ := good.CheckSubscriptions(ctx, s.Receive)
	if before2 != before {
		t.Fatal("setup changed the subscriptions")
	}
	notifyReplayed := signNotify(right, "t")
	if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/notify", notifyReplayed, notify("t")); code != 200 {
		t.Fatalf("first notify: %d", code)
	}
	delivered := len(s.Received())

	tests := []struct {
		name  string
		path  string
		authz string
		body  []byte
		want  int
	}{
		{"subscribe without authorization", "/v1/subscribe/exact", "", subBody("y"), 401},
		{"subscribe with the wrong secret", "/v1/subscribe/exact", sign(wrong, "y"), subBody("y"), 403},
		{"subscribe with an expired timestamp", "/v1/subscribe/exact", sign(old, "y"), subBody("y"), 403},
		{"subscribe replayed", "/v1/subscribe/exact", replayed, subBody("x"), 403},
		{"subscribe with a tampered topic", "/v1/subscribe/exact", sign(right, "y"), subBody("z"), 403},
		{"subscribe with a token instead", "/v1/subscribe/exact", "Bearer " + secrets.ToBroadcaster.Secret, subBody("y"), 403},
		{"notify without authorization", "/v1/notify", "", notify("t"), 401},
		{"notify with the wrong secret", "/v1/notify", signNotify(wrong, "t"), notify("t"), 403},
		{"notify replayed", "/v1/notify", notifyReplayed, notify("t"), 403},
		{"notify with a tampered topic", "/v1/notify", signNotify(right, "u"), notify("t"), 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := lonelypsdtest.Post(t, node.HTTP+tc.path, tc.authz, tc.body); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	if after, _ := good.CheckSubscriptions(ctx, s.Receive); after != before {
		t.Fatal("a refused request changed the subscriptions")
	}
	if got := len(s.Received()); got != delivered {
		t.Fatalf("refused notifies delivered %d messages", got-delivered)
	}

	// A subscribe replayed after a restart is still refused: the code is
	// in the Raft log, not in memory.
	fresh := subscribeOnce("after-restart")
	node.Restart()
	if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/subscribe/exact", fresh, subBody("after-restart")); code != 403 {
		t.Fatalf("subscribe replayed after a restart: %d, want 403", code)
	}
	// And a notify replayed after a clean restart: the node-local store is
	// durable.
	if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/notify", notifyReplayed, notify("t")); code != 403 {
		t.Fatalf("notify replayed after a restart: %d, want 403", code)
	}
	if after, _ := good.CheckSubscriptions(ctx, s.Receive); after != before {
		t.Fatal("replays after the restart changed the subscriptions")
	}
}

// TestMissingOrMalformedSecretsStopStartUp: the node refuses to start and
// says why.
func TestMissingOrMalformedSecretsStopStartUp(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := writeFile(bad, `{"version": "2", "to-broadcaster": {"type": "hmac", "secret": "short"}}`); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ file, want string }{
		"missing":   {filepath.Join(dir, "nope.json"), "no such file"},
		"malformed": {bad, `\"to-broadcaster\": invalid hmac secret`},
	} {
		t.Run(name, func(t *testing.T) {
			out := refusedStart(t, "dev", "--secrets", tc.file)
			if !strings.Contains(out, tc.want) || !strings.Contains(out, tc.file) {
				t.Fatalf("output does not say what is wrong:\n%s", out)
			}
		})
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestSetupTakesTheReferenceSpellings: the flags of `lonelypss --setup`
// work on `lonelypsd setup` and mean the same as ours.
func TestSetupTakesTheReferenceSpellings(t *testing.T) {
	secret := strings.Repeat("A", 86) // 64 bytes, url-safe base64 as lonelypss draws them
	cases := []struct {
		name         string
		args         []string
		wantCode     int
		wantB, wantS string // types written
		wantSecret   string // the to-broadcaster secret, when given
	}{
		{"reference hmac both ways", []string{"--setup", "--to-broadcasters-auth", "hmac", "--to-subscribers-auth", "hmac"}, 0, "hmac", "hmac", ""},
		{"reference token and none, sqlite", []string{"--setup", "--db", "sqlite", "--to-broadcasters-auth", "token", "--to-subscribers-auth", "none"}, 0, "token", "none", ""},
		{"reference secret", []string{"--to-broadcasters-auth", "hmac", "--to-broadcasters-secret", secret, "--db", "rqlite"}, 0, "hmac", "hmac", secret},
		{"our spelling still works", []string{"--to-broadcaster-auth", "none", "--to-subscriber-auth", "token"}, 0, "none", "token", ""},
		{"both spellings of one flag", []string{"--to-broadcaster-auth", "hmac", "--to-broadcasters-auth", "none"}, 2, "", "", ""},
		{"unknown db", []string{"--setup", "--db", "postgres"}, 2, "", "", ""},
		{"bad auth type", []string{"--to-subscribers-auth", "basic"}, 1, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var out, errOut bytes.Buffer
			code := run(t.Context(), append([]string{"setup", "--dir", dir}, tc.args...), &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tc.wantCode, errOut.String())
			}
			if code != 0 {
				return
			}
			for _, name := range []string{"broadcaster-secrets.json", "subscriber-secrets.json"} {
				s, err := auth.LoadSecrets(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if s.ToBroadcaster.Type != tc.wantB || s.ToSubscriber.Type != tc.wantS {
					t.Fatalf("%s: types %s/%s, want %s/%s", name, s.ToBroadcaster.Type, s.ToSubscriber.Type, tc.wantB, tc.wantS)
				}
				if tc.wantSecret != "" && s.ToBroadcaster.Secret != tc.wantSecret {
					t.Fatalf("%s: the given secret was not used", name)
				}
			}
		})
	}
}
