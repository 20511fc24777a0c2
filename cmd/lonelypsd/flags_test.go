package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/broadcaster"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/cluster"
)

// updateFlagList rewrites testdata/serve-flags.txt from the flags serve
// registers instead of comparing them.
var updateFlagList = flag.Bool("update", false, "rewrite testdata/serve-flags.txt from the flags of lonelypsd serve")

// serveFlagListFile is read by deploy/check, which validates the
// StatefulSet's command line without building or importing this command.
const serveFlagListFile = "testdata/serve-flags.txt"

const serveFlagListHeader = `# The flags of lonelypsd serve, one a line: NAME and whether it takes a
# value ("value") or is a bool flag ("bool", given as --NAME or --NAME=false).
# deploy/check reads this file to validate the StatefulSet's command line.
# Written by: go test ./cmd/lonelypsd -run TestServeFlagList -update
`

// serveFlagList renders the flags serve registers in the format of
// serveFlagListFile, sorted by name (VisitAll's order).
func serveFlagList() string {
	fs := flag.NewFlagSet("lonelypsd serve", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs, false)
	var b strings.Builder
	b.WriteString(serveFlagListHeader)
	fs.VisitAll(func(fl *flag.Flag) {
		kind := "value"
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			kind = "bool"
		}
		b.WriteString(fl.Name + " " + kind + "\n")
	})
	return b.String()
}

// TestServeFlagList keeps the committed flag list equal to the flags serve
// really has, so that deploy/check neither accepts a flag serve would
// refuse nor refuses a new one.
func TestServeFlagList(t *testing.T) {
	want := serveFlagList()
	if *updateFlagList {
		if err := os.MkdirAll(filepath.Dir(serveFlagListFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(serveFlagListFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(serveFlagListFile)
	if err != nil {
		t.Fatalf("%v\nwrite it with: go test ./cmd/lonelypsd -run TestServeFlagList -update", err)
	}
	if string(got) != want {
		t.Fatalf("cmd/lonelypsd/%s differs from the flags lonelypsd serve registers:\n%s\nrefresh it with: go test ./cmd/lonelypsd -run TestServeFlagList -update",
			serveFlagListFile, lineDiff(string(got), want))
	}
}

// lineDiff lists the lines only in the committed file (-) and only in the
// flags serve registers (+).
func lineDiff(committed, current string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	old, cur := in(committed), in(current)
	var out []string
	for _, l := range strings.Split(committed, "\n") {
		if !cur[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(current, "\n") {
		if !old[l] {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		return "(same lines, other order or line endings)"
	}
	return strings.Join(out, "\n")
}

// TestFlagDefaultsAreTheEmbeddedDefaults: a node configured from
// serve's flags left at their defaults runs exactly as a Go program's
// broadcaster.Config left zero does.
func TestFlagDefaultsAreTheEmbeddedDefaults(t *testing.T) {
	required := []string{"--node-id", "n1", "--http-addr", "127.0.0.1:3003", "--raft-addr", "127.0.0.1:3004", "--data-dir", "/tmp/d"}
	f, code := parseNodeFlags("serve", required, io.Discard)
	if f == nil {
		t.Fatalf("flags refused (%d)", code)
	}
	fromFlags, err := f.daemonConfig("serve", nil)
	if err != nil {
		t.Fatal(err)
	}
	zero := broadcaster.Config{
		Cluster:  cluster.Config{NodeID: "n1", RaftAddr: "127.0.0.1:3004", DataDir: "/tmp/d"},
		HTTPAddr: "127.0.0.1:3003",
	}
	a, err := broadcaster.Defaults(fromFlags)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broadcaster.Defaults(zero)
	if err != nil {
		t.Fatal(err)
	}
	// What is not a setting: the build, the logger and callbacks.
	for _, c := range []*broadcaster.Config{&a, &b} {
		c.Logger, c.Ready, c.Build, c.Cluster.Version = nil, nil, metrics.BuildInfo{}, ""
		c.Cluster.Logger, c.Cluster.InternalURLNode, c.Cluster.Pruned, c.Cluster.Health = nil, nil, nil, nil
		c.Fanout.Health, c.Cluster.HTTPClient = nil, nil
	}
	if diff := configDiff(reflect.ValueOf(a), reflect.ValueOf(b), "Config"); len(diff) > 0 {
		t.Fatalf("flag defaults and zero-config defaults differ:\n%s", strings.Join(diff, "\n"))
	}
}

// configDiff lists the fields where a and b differ, by path.
func configDiff(a, b reflect.Value, path string) []string {
	if a.Kind() == reflect.Struct {
		var out []string
		for i := range a.NumField() {
			if !a.Type().Field(i).IsExported() {
				continue
			}
			out = append(out, configDiff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
		}
		return out
	}
	if a.Kind() == reflect.Func {
		return nil
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{fmt.Sprintf("%s: flags %v, zero config %v", path, a.Interface(), b.Interface())}
	}
	return nil
}
