package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/cluster"
)

const clusterUsage = `Usage:
  lonelypsd cluster status --addr HOST:PORT [--json]
  lonelypsd cluster remove ID --addr HOST:PORT [--secrets FILE | --cluster-secret-file FILE | --data-dir DIR]

remove signs with the cluster secret of --cluster-secret-file, else of
--secrets, else the one a lone node generated in --data-dir.
`

// runCluster holds the operator commands.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, clusterUsage+"\nRun 'lonelypsd cluster status --help' or 'cluster remove --help' for their flags.\n")
		return 0
	}
	if len(args) == 0 || (args[0] != "status" && args[0] != "remove") {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var id string
	if sub == "remove" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("lonelypsd cluster "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3003", "HTTP API address of any node")
	asJSON := fs.Bool("json", false, "print the raw JSON status")
	secrets := fs.String("secrets", "", "broadcaster-secrets.json holding the cluster secret")
	secretFile := fs.String("cluster-secret-file", "", "file holding the cluster secret")
	dataDir := fs.String("data-dir", "./lonelypsd-data", "data folder of a node that generated its own cluster secret (dev)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), clusterUsage+"\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if sub == "remove" && id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "lonelypsd cluster %s: %v\n", sub, err)
		return 1
	}
	if sub == "status" {
		c := cluster.NewClient("")
		st, err := c.Status(ctx, *addr)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(st)
			return 0
		}
		printStatus(ctx, c, st, stdout)
		return 0
	}
	if id == "" {
		fs.Usage()
		return 2
	}
	secret, err := clusterSecret(*secrets, *secretFile, *dataDir)
	if err != nil {
		return fail(err)
	}
	if err := cluster.NewClient(secret).Remove(ctx, *addr, id); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "removed %s from the cluster\n", id)
	return 0
}

func clusterSecret(secrets, file, dataDir string) (string, error) {
	switch {
	case file != "":
		return auth.LoadClusterSecret(file)
	case secrets != "":
		s, err := auth.LoadSecrets(secrets)
		if err != nil {
			return "", err
		}
		if s.Cluster != "" {
			return s.Cluster, nil
		}
	}
	// A node without a configured secret (dev, or a secrets file without
	// the "cluster" key) generated one in its data folder.
	return cluster.GeneratedSecret(dataDir)
}

// printStatus shows the cluster for a person: the leader, and each member
// with its state and how far it lags behind the leader's log.
func printStatus(ctx context.Context, c *cluster.Client, st cluster.Status, w io.Writer) {
	leader := st.LeaderID
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "leader: %s %s\n", leader, st.LeaderHTTP)
	var leaderLast uint64
	leaderKnown := false
	statuses := map[string]cluster.Status{}
	for _, m := range st.Members {
		if m.HTTP == "" {
			continue
		}
		if s, err := c.Status(ctx, m.HTTP); err == nil {
			statuses[m.ID] = s
			if m.ID == st.LeaderID {
				leaderLast, leaderKnown = s.LastIndex, true
			}
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHTTP\tRAFT\tVOTER\tSTATE\tAPPLIED\tLAG\tVERSION")
	for _, m := range st.Members {
		s, ok := statuses[m.ID]
		state, applied, lag, version := "unreachable", "-", "-", "-"
		if ok {
			state, applied = s.State, fmt.Sprint(s.AppliedIndex)
			if s.Version != "" {
				version = s.Version
			}
			switch {
			case !leaderKnown:
				// Without the leader's log there is nothing to lag behind.
			case leaderLast >= s.AppliedIndex:
				lag = fmt.Sprint(leaderLast - s.AppliedIndex)
			default:
				lag = "0"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", m.ID, m.HTTP, m.Raft, m.Voter, state, applied, lag, version)
	}
	_ = tw.Flush()
}
