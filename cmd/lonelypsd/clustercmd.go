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

status needs no secret. remove signs with the cluster secret of
--cluster-secret-file, else of --secrets, else the one a lone node
generated in --data-dir.
`

// runCluster holds the operator commands of membership.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommand(ctx, clusterUsage, args, stdout, stderr, map[string]command{"status": clusterStatus, "remove": clusterRemove})
}

func clusterStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	return adminCmd{name: "cluster status", usage: clusterUsage, timeout: 20 * time.Second, unsigned: true,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print the raw JSON status")
		},
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			st, err := c.Status(ctx, addr)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(ctx, c, st, stdout)
			return nil
		},
	}.exec(ctx, args, stdout, stderr)
}

func clusterRemove(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	return adminCmd{name: "cluster remove", usage: clusterUsage, timeout: 20 * time.Second,
		check: func(fs *flag.FlagSet) string {
			if id == "" && fs.NArg() == 1 {
				id = fs.Arg(0)
			}
			return required(id, "the ID of the node to remove")
		},
		run: func(ctx context.Context, c *cluster.Client, addr string) error {
			err := c.Remove(ctx, addr, id)
			if err == nil {
				fmt.Fprintf(stdout, "removed %s from the cluster\n", id)
			}
			return err
		},
	}.exec(ctx, args, stdout, stderr)
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
	fmt.Fprintln(tw, "ID\tHTTP\tRAFT\tVOTER\tSTATE\tAPPLIED\tLAG\tEXACT\tGLOB\tVERSION")
	for _, m := range st.Members {
		s, ok := statuses[m.ID]
		state, applied, lag, version, exact, glob := "unreachable", "-", "-", "-", "-", "-"
		if ok {
			state, applied = s.State, fmt.Sprint(s.AppliedIndex)
			exact, glob = fmt.Sprint(s.Subscriptions.Exact), fmt.Sprint(s.Subscriptions.Glob)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.HTTP, m.Raft, m.Voter, state, applied, lag, exact, glob, version)
	}
	_ = tw.Flush()
}
