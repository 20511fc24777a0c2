package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
)

// A client of a three-node cluster, signing with the subscriber secrets
// file that `lonelypsd setup` wrote. Each request goes to the nodes in a
// random order and moves on when one is down or answers 502/503/504.
func ExampleNew() {
	bases, err := client.BaseURLs("10.0.0.1:3003,10.0.0.2:3003,10.0.0.3:3003", false)
	if err != nil {
		log.Fatal(err)
	}
	c := client.New(bases...)
	secrets, err := auth.LoadSecrets("subscriber-secrets.json")
	if err != nil {
		log.Fatal(err)
	}
	if c.Auth, err = secrets.NewPair(); err != nil {
		log.Fatal(err)
	}
	c.HTTP = &http.Client{Timeout: time.Minute}
	n, err := c.Notify(context.Background(), []byte("cache/bust"), []byte("users:42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered to", n)
}

// Publishing a file of any size: it is hashed, then streamed, and sent
// again from its start if a broadcaster fails.
func ExampleClient_NotifyFile() {
	c := client.New("http://127.0.0.1:3003")
	n, err := c.NotifyFile(context.Background(), []byte("releases/api"), "build/api.tar.gz")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered to", n)
}

// Publishing a stream whose length and digest are not known in advance
// (stdin, a pipe): it is spooled to a temporary file first.
func ExampleClient_NotifyReader() {
	c := client.New("http://127.0.0.1:3003")
	n, err := c.NotifyReader(context.Background(), []byte("logs/nightly"), os.Stdin, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered to", n)
}

// A subscriber that saves each message to a file as it arrives, whatever
// its size, and keeps the file only if the message was intact.
func ExampleSubscriber_Stream() {
	sub := client.NewSubscriber()
	sub.Discard = true
	sub.Stream = func(r client.Received, body io.Reader) client.Reply {
		f, err := os.CreateTemp("", "message-*")
		if err != nil {
			return client.Fail // the broadcaster retries later, then sends MISSED
		}
		defer f.Close()
		if _, err := io.Copy(f, body); err != nil {
			_ = os.Remove(f.Name()) // ErrDigestMismatch or ErrShortMessage
			return client.Fail
		}
		log.Printf("%s: %d bytes in %s", r.Topic, r.Length, f.Name())
		return client.Confirm
	}
	sub.OnMissed = func(topic []byte) { log.Printf("missed a message on %s: resynchronise it", topic) }
	// The subscriber's URL (http://HOST:8080/v1/receive) is what
	// Client.SubscribeExact registers, with http://HOST:8080/v1/recover.
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", sub))
}

// Spool copies a stream to a temporary file while hashing it.
func ExampleSpool() {
	sp, err := client.Spool(context.Background(), strings.NewReader("hello"), "")
	if err != nil {
		log.Fatal(err)
	}
	defer sp.Close()
	fmt.Printf("%d bytes, sha512 %x...\n", sp.Length, sp.SHA512[:8])
	// Output: 5 bytes, sha512 9b71d224bd62f378...
}

// Addresses as the CLI's --addr takes them.
func ExampleBaseURLs() {
	bases, err := client.BaseURLs("127.0.0.1:3003, https://broadcaster.example/pubsub/", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Join(bases, "\n"))
	// Output:
	// http://127.0.0.1:3003
	// https://broadcaster.example/pubsub
}

// Retry rules for a publisher that must not publish twice: a connection
// error is returned instead of trying another broadcaster.
func ExampleRetry() {
	c := client.New("http://10.0.0.1:3003", "http://10.0.0.2:3003")
	c.Retry = client.Retry{Rounds: 5, Backoff: 500 * time.Millisecond, Jitter: time.Second, NoRetryAmbiguous: true}
	fmt.Println(len(c.Broadcasters), "broadcasters")
	// Output: 2 broadcasters
}
