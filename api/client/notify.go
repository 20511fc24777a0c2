package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
)

// Notify publishes message to topic and returns how many subscribers
// confirmed it.
func (c *Client) Notify(ctx context.Context, topic, message []byte) (uint32, error) {
	return c.NotifyStream(ctx, topic, bytes.NewReader(message), uint64(len(message)), sha512.Sum512(message))
}

// NotifyStream publishes a message of the given length and SHA-512 read
// from r, without holding it in memory. The digest is needed before the
// first byte is sent: it is part of the request's prefix and of its
// signature. An r that is an io.ReadSeeker is sent again from its current
// offset when a request is retried; any other r is retried only while
// nothing of it was read (a refused connection), so use NotifyFile or
// NotifyReader to publish a stream with full retries.
func (c *Client) NotifyStream(ctx context.Context, topic []byte, r io.Reader, length uint64, sum [64]byte) (uint32, error) {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, err
	}
	head, err := wire.AppendNotifyHeader(nil, wire.Notify{Topic: topic, SHA512: sum, Identifier: id[:], Length: length})
	if err != nil {
		return 0, err
	}
	body, err := rewindable(r)
	if err != nil {
		return 0, err
	}
	resp, err := c.post(ctx, "/v1/notify", auth.Notify{Topic: topic, Identifier: id[:], SHA512: sum},
		func() (io.Reader, int64, error) {
			msg, err := body()
			if err != nil {
				return nil, 0, err
			}
			return io.MultiReader(bytes.NewReader(head), io.LimitReader(msg, int64(length))), int64(len(head)) + int64(length), nil
		})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return c.notifyAnswer(ctx, resp, id[:], topic, sum)
}

// notifyAnswer checks RESPONSE_NOTIFY: the identifier sent, and the
// broadcaster's signature over the count, topic and digest.
func (c *Client) notifyAnswer(ctx context.Context, resp *http.Response, id, topic []byte, sum [64]byte) (uint32, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read notify response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	r, err := wire.ParseResponseNotify(b)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(r.Identifier, id) {
		return 0, fmt.Errorf("notify response echoes identifier %x, sent %x", r.Identifier, id)
	}
	if res := c.Auth.Verify(ctx, auth.ConfirmNotify{
		Tracing: r.Tracing, Identifier: r.Identifier, Subscribers: r.Count, Topic: topic, SHA512: sum,
	}, r.Authorization); res != auth.OK {
		return 0, fmt.Errorf("notify response: authorization %s", res)
	}
	return r.Count, nil
}

// rewindable returns a function giving r from its starting point for each
// attempt: by seeking when r can, else only while nothing was read.
func rewindable(r io.Reader) (func() (io.Reader, error), error) {
	if s, ok := r.(io.ReadSeeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("message body: %w", err)
		}
		return func() (io.Reader, error) {
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewind message body: %w", err)
			}
			return s, nil
		}, nil
	}
	cr := &countingReader{r: r}
	return func() (io.Reader, error) {
		if cr.n > 0 {
			return nil, errNoRewind
		}
		return cr, nil
	}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// NotifyFile publishes the content of the file at path: it is read once
// for its SHA-512, then streamed (again on each retry).
func (c *Client) NotifyFile(ctx context.Context, topic []byte, path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha512.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("hash %s: %w", path, err)
	}
	var sum [64]byte
	h.Sum(sum[:0])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind %s: %w", path, err)
	}
	return c.NotifyStream(ctx, topic, f, uint64(n), sum)
}

// NotifyReader publishes everything r yields, of any size and with flat
// memory: r is first copied to a temporary file in dir ("" for the
// system's) while hashed, since the digest must be known before sending;
// the file is removed before NotifyReader returns.
func (c *Client) NotifyReader(ctx context.Context, topic []byte, r io.Reader, dir string) (uint32, error) {
	sp, err := Spool(ctx, r, dir)
	if err != nil {
		return 0, err
	}
	defer sp.Close()
	return c.NotifyStream(ctx, topic, sp.File, sp.Length, sp.SHA512)
}

// Spooled is a message copied to a temporary file, with its length and
// SHA-512.
type Spooled struct {
	File   *os.File // positioned at the start of the message
	Length uint64
	SHA512 [64]byte
}

// Spool copies r to a new temporary file in dir ("" for the system's),
// hashing it on the way. The file is unlinked at once where the system
// allows it, so nothing is left behind even if the program dies; Close
// releases it. ctx stops a long copy.
func Spool(ctx context.Context, r io.Reader, dir string) (*Spooled, error) {
	f, err := os.CreateTemp(dir, "lonelypsd-notify-*")
	if err != nil {
		return nil, fmt.Errorf("spool message: %w", err)
	}
	_ = os.Remove(f.Name()) // fails on systems that keep open files; Close retries
	sp := &Spooled{File: f}
	h := sha512.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx: ctx, r: r})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = sp.Close()
		return nil, fmt.Errorf("spool message: %w", err)
	}
	sp.Length = uint64(n)
	h.Sum(sp.SHA512[:0])
	return sp, nil
}

// Close closes and removes the temporary file.
func (s *Spooled) Close() error {
	err := s.File.Close()
	if rerr := os.Remove(s.File.Name()); rerr != nil && !os.IsNotExist(rerr) && err == nil {
		err = rerr
	}
	return err
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
