package main

import (
	"errors"
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
	fset := flag.NewFlagSet("lonelypsd setup", flag.ContinueOnError)
	fset.SetOutput(stderr)
	toB := fset.String("to-broadcaster-auth", "hmac", "how subscribers authorise to the broadcaster: hmac, token or none")
	toS := fset.String("to-subscriber-auth", "hmac", "how the broadcaster authorises to subscribers: hmac, token or none")
	toBSecret := fset.String("to-broadcaster-secret", "", "use this secret instead of a random one")
	toSSecret := fset.String("to-subscriber-secret", "", "use this secret instead of a random one")
	dir := fset.String("dir", ".", "folder to write broadcaster-secrets.json and subscriber-secrets.json into")
	fset.Usage = func() {
		fmt.Fprintln(fset.Output(), "Usage: lonelypsd setup [flags]\n\nWrites broadcaster-secrets.json (for lonelypsd --secrets) and subscriber-secrets.json\n(for subscribers, e.g. the Python lonelypsc client). Refuses to overwrite either.\n\nFlags:")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "lonelypsd setup: %v\n", err)
		return 1
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
