package main

import (
	"context"
	"crypto/sha512"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
)

// clientFlags are the flags every client tool (notify, listen) takes:
// where the broadcasters are and how to reach them.
type clientFlags struct {
	addr    string
	secrets string
	tlsCA   string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "http://127.0.0.1:3003",
		"broadcaster address(es), comma-separated, each HOST:PORT or http(s)://HOST:PORT[/prefix]; requests move on to another when one fails")
	fs.StringVar(&f.secrets, "secrets", "", "subscriber-secrets.json written by 'lonelypsd setup' (default: auth none)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of certificate authorities to trust, besides the system's, for https broadcasters")
}

// client returns a client of every --addr broadcaster with the secrets
// and CA given.
func (f *clientFlags) client() (*client.Client, error) {
	bases, err := client.BaseURLs(f.addr, false)
	if err != nil {
		return nil, err
	}
	c := client.New(bases...)
	if c.HTTP, err = client.HTTPClientTrusting(f.tlsCA); err != nil {
		return nil, err
	}
	if f.secrets != "" {
		s, err := auth.LoadSecrets(f.secrets)
		if err != nil {
			return nil, err
		}
		if c.Auth, err = s.NewPair(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// parseTool parses the flags of a client tool: the client flags into cf,
// and those register adds; ok false means the tool ends at once with code
// (see parseFlags).
func parseTool(name, usage string, args []string, stderr io.Writer, cf *clientFlags, register func(*flag.FlagSet)) (fs *flag.FlagSet, code int, ok bool) {
	fs = newFlagSet(name, "Usage: lonelypsd "+usage+"\n\nFlags:\n", stderr)
	cf.register(fs)
	register(fs)
	code, stop := parseFlags(fs, args)
	return fs, code, !stop
}

// notifyFlags say where notify's message comes from.
type notifyFlags struct {
	clientFlags
	topic, message, file, spoolDir string
	timeout                        time.Duration
}

// runNotify publishes one message and prints how many subscribers
// confirmed it.
func runNotify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var nf notifyFlags
	fs, code, ok := parseTool("notify", "notify --topic TOPIC [--message TEXT | --file PATH | reads stdin] [flags]", args, stderr, &nf.clientFlags, func(fs *flag.FlagSet) {
		fs.StringVar(&nf.topic, "topic", "", "topic to publish to (required)")
		fs.StringVar(&nf.message, "message", "", "the message; without it or --file the message is read from stdin")
		fs.StringVar(&nf.file, "file", "", "publish this file's content (any size; streamed, sent again on a retry)")
		fs.StringVar(&nf.spoolDir, "spool-dir", "", "folder for the temporary copy of a message read from a pipe, which must be hashed before it is sent (default: the system's)")
		fs.DurationVar(&nf.timeout, "timeout", 0, "give up after this long (0: no limit; Ctrl-C stops it)")
	})
	if !ok {
		return code
	}
	if nf.topic == "" || fs.NArg() > 0 || (isFlagSet(fs, "message") && nf.file != "") {
		fs.Usage()
		return 2
	}
	c, err := nf.client()
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd notify:", err)
		return 1
	}
	if nf.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nf.timeout)
		defer cancel()
	}
	n, err := nf.publish(ctx, c, isFlagSet(fs, "message"), os.Stdin)
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd notify:", err)
		return 1
	}
	fmt.Fprintf(stdout, "delivered to %d subscriber(s)\n", n)
	return 0
}

// publish sends the message from --message, --file or stdin. A stdin that
// is a regular file is hashed and streamed in place; a pipe is copied to a
// temporary file first, since the digest goes before the message.
func (nf notifyFlags) publish(ctx context.Context, c *client.Client, hasMessage bool, stdin *os.File) (uint32, error) {
	topic := []byte(nf.topic)
	switch {
	case hasMessage:
		return c.Notify(ctx, topic, []byte(nf.message))
	case nf.file != "":
		return c.NotifyFile(ctx, topic, nf.file)
	}
	if st, err := stdin.Stat(); err == nil && st.Mode().IsRegular() {
		start, err := stdin.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, fmt.Errorf("stdin: %w", err)
		}
		h := sha512.New()
		n, err := io.Copy(h, stdin)
		if err != nil {
			return 0, fmt.Errorf("reading stdin: %w", err)
		}
		if _, err := stdin.Seek(start, io.SeekStart); err != nil {
			return 0, fmt.Errorf("stdin: %w", err)
		}
		return c.NotifyStream(ctx, topic, stdin, uint64(n), [64]byte(h.Sum(nil)))
	}
	return c.NotifyReader(ctx, topic, stdin, nf.spoolDir)
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// httpClientOf is the client's HTTP client, for the websocket dial.
func httpClientOf(c *client.Client) *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
