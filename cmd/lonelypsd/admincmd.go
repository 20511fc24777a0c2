package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// adminFlags are shared by the commands that talk to a node's operator
// endpoints (cluster, subs, snapshot).
type adminFlags struct {
	addr, secrets, secretFile, dataDir, tlsCA string
	timeout                                   time.Duration
}

func (a *adminFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&a.addr, "addr", "127.0.0.1:3003", "HTTP API of any node: HOST:PORT or a URL (https://HOST:PORT)")
	fs.StringVar(&a.secrets, "secrets", "", "broadcaster-secrets.json holding the cluster secret")
	fs.StringVar(&a.secretFile, "cluster-secret-file", "", "file holding the cluster secret")
	fs.StringVar(&a.dataDir, "data-dir", "./lonelypsd-data", "data folder of a node that generated its own cluster secret (dev, make run)")
	fs.StringVar(&a.tlsCA, "tls-ca", "", "PEM file of certificate authorities to trust, besides the system's, for https nodes")
	fs.DurationVar(&a.timeout, "timeout", timeout, "give up after this long")
}

// secretHint says where the operator commands find the cluster secret.
const secretHint = "give --cluster-secret-file, --secrets, or --data-dir of the node that generated one"

// client returns a cluster client signing with the secret the flags
// name (none when unsigned is true); signed reports whether it has one.
func (a *adminFlags) client(unsigned bool) (c *cluster.Client, signed bool, err error) {
	hc := &http.Client{}
	if a.tlsCA != "" {
		if hc, err = client.HTTPClientTrusting(a.tlsCA); err != nil {
			return nil, false, err
		}
	}
	secret := ""
	if !unsigned {
		if secret, err = clusterSecret(a.secrets, a.secretFile, a.dataDir); err != nil {
			return nil, false, fmt.Errorf("%w (%s)", err, secretHint)
		}
	}
	return cluster.NewClientHTTP(secret, hc), secret != "", nil
}

// explainRefusal adds to the node's refusal of a request that went out
// unsigned, because no secret was found, where the secret is looked for:
// the refusal alone does not say why the request carried none.
func explainRefusal(err error) error {
	var se *cluster.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized && se.Code != http.StatusForbidden {
		return err
	}
	return fmt.Errorf("%w; no cluster secret was found: %s", err, secretHint)
}

// command runs a subcommand with the arguments after its name and
// returns the exit code.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// subcommand runs the entry of cmds that args name, or prints usage.
func subcommand(ctx context.Context, usage string, args []string, stdout, stderr io.Writer, cmds map[string]command) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return cmds[args[0]](ctx, args[1:], stdout, stderr)
}

// adminCmd is one operator command: its flags, a check of them, and what
// it does with a cluster client once they are good.
type adminCmd struct {
	name, usage string
	timeout     time.Duration
	unsigned    bool                          // sends no signature (status)
	flags       func(fs *flag.FlagSet)        // registers the command's own flags
	check       func(fs *flag.FlagSet) string // a usage error, or ""
	run         func(ctx context.Context, c *cluster.Client, addr string) error
}

// exec parses args and runs the command: exit 0 when it succeeded, 1 when
// it failed, 2 for a usage error.
func (ac adminCmd) exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(ac.name, ac.usage+"\nFlags:\n", stderr)
	var a adminFlags
	a.register(fs, ac.timeout)
	if ac.flags != nil {
		ac.flags(fs)
	}
	if code, stop := parseFlags(fs, args); stop {
		if code == 0 {
			fs.SetOutput(stdout)
			fs.Usage()
		}
		return code
	}
	if ac.check != nil {
		if msg := ac.check(fs); msg != "" {
			fmt.Fprintf(stderr, "lonelypsd %s: %s\n", ac.name, msg)
			return 2
		}
	}
	c, signed, err := a.client(ac.unsigned)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		if err = ac.run(ctx, c, a.addr); !signed && !ac.unsigned {
			err = explainRefusal(err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "lonelypsd %s: %v\n", ac.name, err)
		return 1
	}
	return 0
}

const subsUsage = `Usage:
  lonelypsd subs list   --addr HOST:PORT [--url U] [--topic T] [--glob G] [--unhealthy] [--json]
  lonelypsd subs remove --addr HOST:PORT --url U [--topic T | --glob G]

list shows the subscriptions of the node's replica (brought up to date
first) with the delivery health of each URL merged across the cluster;
remove removes one row, or every row of --url, through Raft. Both sign
with the cluster secret: --cluster-secret-file, else the "cluster" key of
--secrets, else the secret a node generated in --data-dir (so they work
against 'make run' from the repository folder without flags).
`

func runSubs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommand(ctx, subsUsage, args, stdout, stderr, map[string]command{"list": subsList, "remove": subsRemove})
}

// optString is a flag that records whether it was given, so an empty
// topic can be asked for.
type optString struct{ v *string }

func (o *optString) String() string {
	if o.v == nil {
		return ""
	}
	return *o.v
}
func (o *optString) Set(s string) error { o.v = &s; return nil }

func subsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f cluster.ListFilter
	var topic, glob optString
	var asJSON bool
	return adminCmd{name: "subs list", usage: subsUsage, timeout: 5 * time.Minute,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.URL, "url", "", "only this subscriber URL")
			fs.Var(&topic, "topic", "only exact subscriptions to this topic")
			fs.Var(&glob, "glob", "only glob subscriptions with this pattern")
			fs.BoolVar(&f.Unhealthy, "unhealthy", false, "only URLs whose latest delivery failed")
			fs.BoolVar(&asJSON, "json", false, "print a JSON array of objects (url, kind, key, recovery, health)")
		},
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			f.Topic, f.Glob = topic.v, glob.v
			out := newRowPrinter(stdout, asJSON)
			incomplete, err := c.ListSubscriptions(ctx, addr, f, out.row)
			if err != nil {
				return err
			}
			out.end()
			if incomplete != "" {
				fmt.Fprintf(stderr, "lonelypsd subs list: health is missing some members' view: %s\n", incomplete)
			}
			return nil
		},
	}.exec(ctx, args, stdout, stderr)
}

// rowPrinter writes rows as a JSON array or a table, as they arrive.
type rowPrinter struct {
	w     io.Writer
	json  bool
	n     int
	table *tabwriter.Writer
}

func newRowPrinter(w io.Writer, asJSON bool) *rowPrinter {
	p := &rowPrinter{w: w, json: asJSON}
	if !asJSON {
		p.table = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(p.table, "URL\tKIND\tKEY\tRECOVERY\tLAST SUCCESS\tLAST FAILURE\tFAILURES\tLAST ERROR")
	}
	return p
}

func (p *rowPrinter) row(r cluster.Row) error {
	defer func() { p.n++ }()
	if p.json {
		// URLs keep their & and < as they are.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			return err
		}
		sep := ",\n  "
		if p.n == 0 {
			sep = "[\n  "
		}
		_, err := fmt.Fprintf(p.w, "%s%s", sep, bytes.TrimSuffix(b.Bytes(), []byte("\n")))
		return err
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	h := r.Health
	_, err := fmt.Fprintf(p.table, "%s\t%s\t%q\t%s\t%s\t%s\t%d\t%s\n", r.URL, r.Kind, r.Key, orDash(r.Recovery),
		when(h.LastSuccess), when(h.LastFailure), h.ConsecutiveFailures, orDash(strings.ReplaceAll(h.LastError, "\n", " ")))
	return err
}

func (p *rowPrinter) end() {
	if p.json {
		if p.n == 0 {
			fmt.Fprintln(p.w, "[]")
		} else {
			fmt.Fprintln(p.w, "\n]")
		}
		return
	}
	_ = p.table.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func subsRemove(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var req cluster.RemoveRequest
	var topic, glob optString
	return adminCmd{name: "subs remove", usage: subsUsage, timeout: time.Minute,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&req.URL, "url", "", "subscriber URL whose rows to remove (required)")
			fs.Var(&topic, "topic", "remove only the exact subscription to this topic")
			fs.Var(&glob, "glob", "remove only the glob subscription with this pattern")
		},
		check: func(*flag.FlagSet) string {
			if req.Topic, req.Glob = topic.v, glob.v; req.URL == "" || (req.Topic != nil && req.Glob != nil) {
				return "give --url, and at most one of --topic and --glob"
			}
			return ""
		},
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			n, err := c.RemoveSubscriptions(ctx, addr, req)
			if err == nil {
				fmt.Fprintf(stdout, "removed %d subscription(s) of %s\n", n, req.URL)
			}
			return err
		},
	}.exec(ctx, args, stdout, stderr)
}

const snapshotUsage = `Usage:
  lonelypsd snapshot save    --addr HOST:PORT --out FILE
  lonelypsd snapshot restore --addr HOST:PORT --in FILE

save writes a consistent copy of the subscription table of a running
node (its replica brought up to date first) to FILE: versioned and
checksummed, subscriptions only (no members, no request ids).
restore replaces the whole table of the running cluster with FILE,
through Raft; a corrupt or foreign file is refused and changes nothing.
Both sign with the cluster secret, found as 'lonelypsd subs' finds it.
`

func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommand(ctx, snapshotUsage, args, stdout, stderr, map[string]command{"save": snapshotSave, "restore": snapshotRestore})
}

func snapshotSave(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var out string
	return adminCmd{name: "snapshot save", usage: snapshotUsage, timeout: 30 * time.Minute,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "file to write (required); written beside it first and renamed when complete")
		},
		check: func(*flag.FlagSet) string { return required(out, "--out FILE") },
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			info, err := saveBackup(ctx, c, addr, out)
			if err == nil {
				fmt.Fprintf(stdout, "saved %d exact and %d glob subscriptions (raft index %d) to %s\n", info.Exact, info.Globs, info.Applied, out)
			}
			return err
		},
	}.exec(ctx, args, stdout, stderr)
}

// saveBackup writes the backup beside out and renames it over out once it
// is complete and on disk.
func saveBackup(ctx context.Context, c *cluster.Client, addr, out string) (fsm.BackupInfo, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".partial-*")
	if err != nil {
		return fsm.BackupInfo{}, err
	}
	defer os.Remove(tmp.Name())
	info, err := c.Backup(ctx, addr, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	return info, err
}

func required(v, flagName string) string {
	if v == "" {
		return flagName + " is required"
	}
	return ""
}

func snapshotRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var in string
	return adminCmd{name: "snapshot restore", usage: snapshotUsage, timeout: 30 * time.Minute,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&in, "in", "", "backup file written by 'snapshot save' (required)")
		},
		check: func(*flag.FlagSet) string { return required(in, "--in FILE") },
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			info, err := c.Restore(ctx, addr, in)
			if err == nil {
				fmt.Fprintf(stdout, "restored %d exact and %d glob subscriptions from %s\n", info.Exact, info.Globs, in)
			}
			return err
		},
	}.exec(ctx, args, stdout, stderr)
}
