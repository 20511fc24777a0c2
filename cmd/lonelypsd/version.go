package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Stamped at build time, e.g.
//
//	go build -ldflags "-X main.version=v1.2.0 -X main.revision=$(git rev-parse HEAD) -X main.buildDate=$(date -u +%FT%TZ)"
//
// (deploy/Dockerfile does). Left empty, they come from what the Go
// toolchain records: the module version and, in a git checkout, the
// commit and its time.
var version, revision, buildDate string

// buildInfo is what `lonelypsd version` prints and a node reports.
type buildInfo struct {
	Version, Revision, BuildDate, GoVersion string
	Modified                                bool // built from a checkout with uncommitted changes
}

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Revision: revision, BuildDate: buildDate, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Revision == "" {
					b.Revision = s.Value
				}
			case "vcs.time":
				if b.BuildDate == "" {
					b.BuildDate = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	for _, f := range []*string{&b.Version, &b.Revision, &b.BuildDate} {
		if *f == "" || *f == "(devel)" {
			*f = "unknown"
		}
	}
	return b
}

// String is the one-line form: version, revision, date, Go.
func (b buildInfo) String() string {
	rev := b.Revision
	if b.Modified {
		rev += "+modified"
	}
	return fmt.Sprintf("%s (revision %s, built %s, %s)", b.Version, rev, b.BuildDate, b.GoVersion)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] != "--help" && args[0] != "-h" {
		fmt.Fprintf(stderr, "lonelypsd version: unexpected argument %q\n", args[0])
		return 2
	}
	if len(args) > 0 {
		fmt.Fprintln(stdout, "Usage: lonelypsd version\n\nPrints the version, source revision, build date and Go version of this binary.")
		return 0
	}
	fmt.Fprintln(stdout, "lonelypsd "+currentBuild().String())
	return 0
}
