package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lonelypsd/lonelypsd/api/auth"
)

// runSetup writes the secrets files of a deployment: the broadcaster's
// (both directions plus the cluster secret) and the subscribers' (both
// directions only, in the format the Python client reads).
func runSetup(args []string, stdout, stderr io.Writer) int {
	fset := newFlagSet("setup", "Usage: lonelypsd setup [flags]\n\nWrites broadcaster-secrets.json (for lonelypsd --secrets) and subscriber-secrets.json\n(for subscribers, e.g. the Python lonelypsc client). Refuses to overwrite either.\n\nFlags:\n", stderr)
	toB := fset.String("to-broadcaster-auth", "hmac", "how subscribers authorise to the broadcaster: hmac, token or none")
	toS := fset.String("to-subscriber-auth", "hmac", "how the broadcaster authorises to subscribers: hmac, token or none")
	toBSecret := fset.String("to-broadcaster-secret", "", "use this secret instead of a random one")
	toSSecret := fset.String("to-subscriber-secret", "", "use this secret instead of a random one")
	dir := fset.String("dir", ".", "folder to write broadcaster-secrets.json and subscriber-secrets.json into")
	registerReferenceSpellings(fset)
	if code, stop := parseFlags(fset, args); stop {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "lonelypsd setup: %v\n", err)
		return 1
	}
	if err := checkReferenceSpellings(fset, stderr); err != nil {
		fmt.Fprintf(stderr, "lonelypsd setup: %v\n", err)
		return 2
	}
	var s auth.Secrets
	var err error
	if s.ToBroadcaster, err = secretSpec("--to-broadcaster-auth", *toB, *toBSecret); err != nil {
		return fail(err)
	}
	if s.ToSubscriber, err = secretSpec("--to-subscriber-auth", *toS, *toSSecret); err != nil {
		return fail(err)
	}
	if s.Cluster, err = auth.GenerateSecret(); err != nil {
		return fail(err)
	}
	bPath := filepath.Join(*dir, "broadcaster-secrets.json")
	sPath := filepath.Join(*dir, "subscriber-secrets.json")
	for _, p := range []string{bPath, sPath} {
		if _, err := os.Stat(p); err == nil {
			return fail(fmt.Errorf("%s already exists; remove it first if you mean to replace it: %w", p, fs.ErrExist))
		}
	}
	if err := auth.WriteSecretsFile(bPath, s, true); err != nil {
		return fail(err)
	}
	if err := auth.WriteSecretsFile(sPath, s, false); err != nil {
		_ = os.Remove(bPath)
		return fail(err)
	}
	fmt.Fprintf(stdout, "wrote %s (for lonelypsd --secrets) and %s (for subscribers)\n", bPath, sPath)
	return 0
}

func secretSpec(flagName, typ, given string) (auth.SecretSpec, error) {
	switch typ {
	case "none":
		if given != "" {
			return auth.SecretSpec{}, fmt.Errorf("%s none takes no secret", flagName)
		}
		return auth.SecretSpec{Type: "none"}, nil
	case "hmac", "token":
		if given == "" {
			var err error
			if given, err = auth.GenerateSecret(); err != nil {
				return auth.SecretSpec{}, err
			}
		}
		return auth.SecretSpec{Type: typ, Secret: given}, nil
	}
	return auth.SecretSpec{}, fmt.Errorf("%s %q: want hmac, token or none", flagName, typ)
}

// setupSpellings are the names lonelypss's own `--setup` gives setup's
// flags, so a script written for it runs unchanged.
var setupSpellings = map[string]string{
	"to-broadcasters-auth":   "to-broadcaster-auth",
	"to-subscribers-auth":    "to-subscriber-auth",
	"to-broadcasters-secret": "to-broadcaster-secret",
	"to-subscribers-secret":  "to-subscriber-secret",
}

// registerReferenceSpellings adds lonelypss's names of setup's flags,
// sharing their values, and its --setup and --db, which lonelypsd does
// not need: --setup only says what the command is, and subscriptions live
// in the Raft store whatever --db named.
func registerReferenceSpellings(fset *flag.FlagSet) {
	for alias, name := range setupSpellings {
		fset.Var(fset.Lookup(name).Value, alias, "same as --"+name+" (lonelypss's spelling)")
	}
	fset.Bool("setup", false, "accepted for scripts written for 'lonelypss --setup'; changes nothing")
	fset.String("db", "sqlite", "accepted for scripts written for 'lonelypss --setup' (sqlite or rqlite); lonelypsd keeps subscriptions in its own Raft store")
}

// checkReferenceSpellings refuses both spellings of one flag and a --db
// lonelypss would not take, and notes that --db is not used.
func checkReferenceSpellings(fset *flag.FlagSet, stderr io.Writer) error {
	for alias, name := range setupSpellings {
		if isFlagSet(fset, alias) && isFlagSet(fset, name) {
			return fmt.Errorf("--%s and --%s are the same flag: give one", alias, name)
		}
	}
	if isFlagSet(fset, "db") {
		db := fset.Lookup("db").Value.String()
		if db != "sqlite" && db != "rqlite" {
			return fmt.Errorf("--db %q: lonelypss takes sqlite or rqlite (and lonelypsd needs neither)", db)
		}
		fmt.Fprintf(stderr, "lonelypsd setup: --db %s ignored: subscriptions live in lonelypsd's Raft store (docs/migrating.md)\n", db)
	}
	return nil
}
