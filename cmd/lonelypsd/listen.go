package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
)

// listenFlags configure the listen command.
type listenFlags struct {
	clientFlags
	listen    string
	websocket bool
	out       string
	textMax   int64
	spoolDir  string
	exact     multiFlag
	globs     multiFlag
}

// runListen is a subscriber on the command line: over HTTP it serves
// /v1/receive and /v1/recover and subscribes their URL; with --websocket
// it holds a websocket instead, reconnecting as needed. It prints what
// arrives until stopped, then unsubscribes.
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var lf listenFlags
	fs, code, ok := parseTool("listen", "listen [--topic T]... [--glob G]... [--websocket | --listen HOST:PORT] [--out DIR] [flags]", args, stderr, &lf.clientFlags, func(fs *flag.FlagSet) {
		fs.StringVar(&lf.listen, "listen", "127.0.0.1:0", "HOST:PORT this subscriber listens on (the broadcaster must reach it; not with --websocket)")
		fs.BoolVar(&lf.websocket, "websocket", false, "receive over a websocket to the broadcaster (reconnecting), instead of listening for its HTTP requests")
		fs.StringVar(&lf.out, "out", "", "save each message to a file in this folder (named by arrival number and topic)")
		fs.StringVar(&lf.spoolDir, "spool-dir", "", "with --websocket: folder for temporary copies of messages longer than --print-max while they arrive (default: the system's)")
		fs.Int64Var(&lf.textMax, "print-max", 4096, "messages up to this many bytes that are text are printed; others as their size and SHA-512")
		fs.Var(&lf.exact, "topic", "exact topic to subscribe to (repeatable)")
		fs.Var(&lf.globs, "glob", "glob pattern to subscribe to (repeatable)")
	})
	if !ok {
		return code
	}
	if len(lf.exact)+len(lf.globs) == 0 || fs.NArg() > 0 || (lf.websocket && isFlagSet(fs, "listen")) {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "lonelypsd listen:", err)
		return 1
	}
	c, err := lf.client()
	if err != nil {
		return fail(err)
	}
	if lf.out != "" {
		if err := os.MkdirAll(lf.out, 0o755); err != nil {
			return fail(err)
		}
	}
	p := &printer{w: stdout, dir: lf.out, textMax: lf.textMax}
	if lf.websocket {
		err = lf.overWebsocket(ctx, c, p, stderr)
	} else {
		err = lf.overHTTP(ctx, c, p, stderr)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// overHTTP serves the subscriber's endpoints, subscribes, and removes every
// subscription of its URL when ctx ends.
func (lf listenFlags) overHTTP(ctx context.Context, c *client.Client, p *printer, stderr io.Writer) error {
	ln, err := net.Listen("tcp", lf.listen)
	if err != nil {
		return err
	}
	sub := client.NewSubscriber()
	sub.Auth = c.Auth
	sub.Discard = true
	sub.Stream = func(r client.Received, body io.Reader) client.Reply {
		if err := p.message(r.Topic, r.Length, body); err != nil {
			fmt.Fprintf(stderr, "lonelypsd listen: %s: %v\n", r.Topic, err)
			return client.Fail
		}
		return client.Confirm
	}
	sub.OnMissed = func(topic []byte) { missed(stderr, topic) }
	srv := &http.Server{Handler: sub, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	base := "http://" + ln.Addr().String()
	url, recovery := base+"/v1/receive", base+"/v1/recover"
	reqCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, t := range lf.exact {
		if err := c.SubscribeExact(reqCtx, url, []byte(t), recovery); err != nil && !errors.Is(err, client.ErrConflict) {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	for _, g := range lf.globs {
		if err := c.SubscribeGlob(reqCtx, url, g, recovery); err != nil && !errors.Is(err, client.ErrConflict) {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	fmt.Fprintf(stderr, "listening on %s for %s; Ctrl-C to stop\n", url, strings.Join(append(lf.exact, lf.globs...), ", "))
	<-ctx.Done()
	// Drop every subscription of this URL in one request.
	done, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := c.SetSubscriptions(done, url, nil, nil); err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	return nil
}

// overWebsocket holds a reconnecting websocket to the broadcasters and
// prints its events until ctx ends.
func (lf listenFlags) overWebsocket(ctx context.Context, c *client.Client, p *printer, stderr io.Writer) error {
	var urls []string
	for _, b := range c.Broadcasters {
		urls = append(urls, "ws"+strings.TrimPrefix(b, "http")+"/v1/websocket")
	}
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: urls, Options: wsclient.Options{
		Auth: c.Auth, EnableZstd: true, DialOptions: &websocket.DialOptions{HTTPClient: httpClientOf(c)},
		SpoolAbove: lf.textMax, SpoolDir: lf.spoolDir}})
	if err != nil {
		return err
	}
	for _, t := range lf.exact {
		if err := s.SubscribeExact(ctx, []byte(t)); err != nil {
			return err
		}
	}
	for _, g := range lf.globs {
		if err := s.SubscribeGlob(ctx, g); err != nil {
			return err
		}
	}
	go func() { _ = s.Run(ctx) }()
	for e := range s.Events() {
		switch e.Kind {
		case wsclient.EventConnected:
			if !e.Reconnect {
				fmt.Fprintf(stderr, "listening on %s for %s; Ctrl-C to stop\n", e.Broadcaster, strings.Join(append(lf.exact, lf.globs...), ", "))
			} else {
				fmt.Fprintf(stderr, "reconnected to %s (messages sent meanwhile were not received)\n", e.Broadcaster)
			}
		case wsclient.EventDisconnected:
			if e.Broadcaster == "" {
				fmt.Fprintf(stderr, "no broadcaster reachable: %v; retrying\n", e.Err)
			} else {
				fmt.Fprintf(stderr, "disconnected from %s: %v; reconnecting\n", e.Broadcaster, e.Err)
			}
		case wsclient.EventMissed:
			missed(stderr, e.Message.Topic)
		case wsclient.EventMessage:
			var body io.Reader = bytes.NewReader(e.Message.Data)
			if e.Message.File != nil {
				body = e.Message.File
			}
			err := p.message(e.Message.Topic, e.Message.Size, body)
			closeMessage(e.Message)
			if err != nil {
				fmt.Fprintf(stderr, "lonelypsd listen: %s: %v\n", e.Message.Topic, err)
			}
		}
	}
	return nil
}

// closeMessage releases the file of a message spooled to disk.
func closeMessage(m wsclient.Message) {
	if m.File != nil {
		_ = m.File.Close()
	}
}

// missed says that the broadcaster could not deliver a message on topic.
func missed(stderr io.Writer, topic []byte) {
	fmt.Fprintf(stderr, "missed: a message on %q was not delivered\n", topic)
}

// printer writes one line per message: the topic and the message quoted
// when it is short text, else its size and SHA-512 (hex, as sha512sum
// prints it); with a folder, each message is saved there and the line
// names the file.
type printer struct {
	w       io.Writer
	dir     string
	textMax int64

	mu  sync.Mutex
	seq int
}

// message consumes body (length bytes) and prints it. An error (a body
// that did not match its digest, a full disk) leaves no file behind.
func (p *printer) message(topic []byte, length uint64, body io.Reader) error {
	h := sha512.New()
	var text bytes.Buffer
	dst := io.Writer(h)
	if length <= uint64(max(p.textMax, 0)) {
		dst = io.MultiWriter(h, &text)
	}
	path, err := p.save(topic, io.TeeReader(body, dst))
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s\t%d bytes\tsha512:%x", topic, length, h.Sum(nil))
	if int64(length) <= p.textMax && isText(text.Bytes()) {
		line = fmt.Sprintf("%s\t%q", topic, text.Bytes())
	}
	if path != "" {
		line += "\t" + path
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = fmt.Fprintln(p.w, line)
	return err
}

// save copies body to a new file of the folder (renamed into place only
// once whole), or just reads it without a folder; it returns the path.
func (p *printer) save(topic []byte, body io.Reader) (string, error) {
	if p.dir == "" {
		_, err := io.Copy(io.Discard, body)
		return "", err
	}
	p.mu.Lock()
	p.seq++
	name := fmt.Sprintf("%06d-%s", p.seq, fileSafe(topic))
	p.mu.Unlock()
	f, err := os.CreateTemp(p.dir, ".partial-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(p.dir, name)
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return path, nil
}

// fileSafe turns a topic into a file name part: letters, digits, '-', '_'
// and '.' kept, the rest '_', at most 100 bytes.
func fileSafe(topic []byte) string {
	var b strings.Builder
	for _, r := range string(topic) {
		if b.Len() >= 100 {
			break
		}
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// isText: valid UTF-8 without control characters other than tab and
// newline.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}
