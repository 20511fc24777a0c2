package client

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire"
)

// TestSubscriberStream sends RECEIVEs as a broadcaster does (auth none)
// to a Subscriber with Stream and checks what the callback saw and how the
// subscriber answered: a whole message ends with io.EOF and is
// confirmed; a tampered or short one ends with an error and is refused.
func TestSubscriberStream(t *testing.T) {
	msg := bytes.Repeat([]byte("stream me "), 50_000)
	cases := []struct {
		name       string
		body       []byte // what is sent after the header
		readAll    bool   // the callback reads to the end
		wantEnd    error
		wantStatus int
	}{
		{"whole, read", msg, true, io.EOF, http.StatusOK},
		{"whole, left unread", msg, false, nil, http.StatusOK},
		{"tampered", append(bytes.Clone(msg[:len(msg)-1]), 'x'), true, ErrDigestMismatch, http.StatusForbidden},
		{"short", msg[:len(msg)-10], true, ErrShortMessage, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got bytes.Buffer
			var end error
			sub := NewSubscriber()
			sub.Discard = true
			sub.Stream = func(rec Received, r io.Reader) Reply {
				if !tc.readAll {
					return Confirm
				}
				mu.Lock()
				defer mu.Unlock()
				_, end = io.Copy(&got, r)
				if end == nil {
					end = io.EOF
				}
				return Confirm
			}
			srv := httptest.NewServer(sub)
			defer srv.Close()
			head, err := wire.AppendReceiveHeader(nil, wire.Receive{Topic: []byte("t"), Identifier: []byte{1, 2}, Length: uint64(len(msg))})
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/receive", io.MultiReader(bytes.NewReader(head), bytes.NewReader(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(head) + len(tc.body))
			req.Header.Set("Repr-Digest", wire.ReprDigest(sha512.Sum512(msg)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(b)), tc.wantStatus)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.readAll && !errors.Is(end, tc.wantEnd) {
				t.Fatalf("the callback's reader ended with %v, want %v", end, tc.wantEnd)
			}
			if tc.wantEnd == io.EOF && !bytes.Equal(got.Bytes(), msg) {
				t.Fatalf("the callback read %d bytes, want the %d of the message", got.Len(), len(msg))
			}
			if tc.wantStatus == http.StatusOK && sub.Count() != 1 {
				t.Fatalf("count %d, want 1", sub.Count())
			}
		})
	}
}
