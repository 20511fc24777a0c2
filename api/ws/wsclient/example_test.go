package wsclient_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
)

// A subscriber that stays subscribed across broadcaster restarts and
// failovers, and resynchronises what it may have missed.
func ExampleSubscriber() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{
		URLs:    []string{"ws://10.0.0.1:3003/v1/websocket", "ws://10.0.0.2:3003/v1/websocket"},
		Options: wsclient.Options{EnableZstd: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Recorded now, sent on every connection.
	if err := s.SubscribeGlob(ctx, "cache/*"); err != nil {
		log.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	for e := range s.Events() {
		switch e.Kind {
		case wsclient.EventMessage:
			fmt.Printf("%s: %d bytes\n", e.Message.Topic, len(e.Message.Data))
		case wsclient.EventMissed:
			fmt.Printf("missed a message on %s: resynchronise it\n", e.Message.Topic)
		case wsclient.EventConnected:
			if e.Reconnect {
				fmt.Println("reconnected: resynchronise everything")
			}
		case wsclient.EventDisconnected:
			log.Printf("lost %s: %v", e.Broadcaster, e.Err)
		}
	}
}

// Events name their kind.
func ExampleEventKind() {
	for _, k := range []wsclient.EventKind{wsclient.EventMessage, wsclient.EventMissed, wsclient.EventConnected, wsclient.EventDisconnected} {
		fmt.Println(k)
	}
	// Output:
	// message
	// missed
	// connected
	// disconnected
}
