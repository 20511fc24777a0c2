package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/auth"
)

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
