package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
)

// clientFlags are shared by the notify and listen commands.
type clientFlags struct {
	addr    string
	secrets string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "http://127.0.0.1:3003", "base URL of a broadcaster")
	fs.StringVar(&f.secrets, "secrets", "", "subscriber-secrets.json (default: auth none)")
}

func (f *clientFlags) client() (*client.Client, error) {
	c := client.New(f.addr)
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

func parseTool(name, usage string, args []string, stderr io.Writer, register func(*flag.FlagSet)) (*flag.FlagSet, int, bool) {
	fs := flag.NewFlagSet("lonelypsd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lonelypsd %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	return fs, 0, true
}

// runNotify publishes one message and prints how many subscribers
// confirmed it.
func runNotify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	var topic, message string
	fs, code, ok := parseTool("notify", "notify --topic TOPIC [--message TEXT | reads stdin] [flags]", args, stderr, func(fs *flag.FlagSet) {
		cf.register(fs)
		fs.StringVar(&topic, "topic", "", "topic to publish to (required)")
		fs.StringVar(&message, "message", "", "the message; without it the message is read from stdin")
	})
	if !ok {
		return code
	}
	if topic == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd notify:", err)
		return 1
	}
	data := []byte(message)
	if !isFlagSet(fs, "message") {
		if data, err = io.ReadAll(os.Stdin); err != nil {
			fmt.Fprintln(stderr, "lonelypsd notify: reading stdin:", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	n, err := c.Notify(ctx, []byte(topic), data)
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd notify:", err)
		return 1
	}
	fmt.Fprintf(stdout, "delivered to %d subscriber(s)\n", n)
	return 0
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runListen is a subscriber on the command line: it serves /v1/receive and
// /v1/recover, subscribes, prints what arrives, and unsubscribes on exit.
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	var listen string
	var exact, globs multiFlag
	fs, code, ok := parseTool("listen", "listen [--topic T]... [--glob G]... [--listen HOST:PORT] [flags]", args, stderr, func(fs *flag.FlagSet) {
		cf.register(fs)
		fs.StringVar(&listen, "listen", "127.0.0.1:0", "HOST:PORT this subscriber listens on (the broadcaster must reach it)")
		fs.Var(&exact, "topic", "exact topic to subscribe to (repeatable)")
		fs.Var(&globs, "glob", "glob pattern to subscribe to (repeatable)")
	})
	if !ok {
		return code
	}
	if len(exact)+len(globs) == 0 || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd listen:", err)
		return 1
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(stderr, "lonelypsd listen:", err)
		return 1
	}
	sub := client.NewSubscriber()
	sub.Auth = c.Auth
	sub.Decide = func(r client.Received) client.Reply {
		body := string(r.Message)
		if r.Message == nil && r.Length > 0 {
			body = fmt.Sprintf("(%d bytes)", r.Length)
		}
		fmt.Fprintf(stdout, "%s\t%q\n", r.Topic, body)
		return client.Confirm
	}
	sub.Discard = true
	srv := &http.Server{Handler: sub, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	base := "http://" + ln.Addr().String()
	url, recovery := base+"/v1/receive", base+"/v1/recover"
	reqCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range exact {
		if err := c.SubscribeExact(reqCtx, url, []byte(t), recovery); err != nil && !errors.Is(err, client.ErrConflict) {
			fmt.Fprintln(stderr, "lonelypsd listen: subscribe:", err)
			return 1
		}
	}
	for _, g := range globs {
		if err := c.SubscribeGlob(reqCtx, url, g, recovery); err != nil && !errors.Is(err, client.ErrConflict) {
			fmt.Fprintln(stderr, "lonelypsd listen: subscribe:", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "listening on %s for %s; Ctrl-C to stop\n", url, strings.Join(append(exact, globs...), ", "))
	<-ctx.Done()
	// Drop every subscription of this URL in one request.
	done, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := c.SetSubscriptions(done, url, nil, nil); err != nil {
		fmt.Fprintln(stderr, "lonelypsd listen: unsubscribe:", err)
		return 1
	}
	return 0
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
