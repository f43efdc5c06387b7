package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"wxlogin/internal/events"
)

// Source is where the events to deliver are: the store's event log, with
// the cursor of what is delivered, and a hold that lets one instance of
// those sharing the store deliver at a time.
type Source interface {
	Events(ctx context.Context, after int64, limit int) ([]events.Event, error)
	Delivered(ctx context.Context) (int64, error)
	SetDelivered(ctx context.Context, seq int64) error
	HoldDelivery(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	Recorded() <-chan struct{}
}

// Sender posts each event of a Source to URL, signed with Secret, in the
// order of their seq, one at a time: so in order per user too. An event is
// posted again, after a wait that doubles up to MaxBackoff, until the
// receiver answers 2xx; only then does the cursor move past it. The cursor
// moves on after the answer, so a crash between the two posts the event
// again: at least once, with the same webhook-id, which a receiver uses
// to drop the second.
type Sender struct {
	URL    string
	Secret Secret
	Client *http.Client // its Timeout bounds one post
	Log    *slog.Logger
	// Poll is how often to look for events recorded by other instances,
	// and for the hold when another instance has it.
	Poll       time.Duration
	MaxBackoff time.Duration
}

// pageSize is how many events are read at a time.
const pageSize = 100

// holdFor is how long a hold lasts unless renewed; it is renewed before
// each post.
const holdFor = 30 * time.Second

// Run delivers until ctx ends.
func (s *Sender) Run(ctx context.Context, src Source) {
	holder := randomHolder()
	for ctx.Err() == nil {
		delivered, err := s.deliverPage(ctx, src, holder)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("webhook: cannot read the events to deliver", "err", err)
		}
		if delivered == 0 {
			select {
			case <-ctx.Done():
			case <-src.Recorded():
			case <-time.After(s.Poll):
			}
		}
	}
}

// deliverPage delivers the next page of events if this instance holds
// the delivery, and says how many it delivered.
func (s *Sender) deliverPage(ctx context.Context, src Source, holder string) (int, error) {
	held, err := src.HoldDelivery(ctx, holder, holdFor)
	if err != nil || !held {
		return 0, err
	}
	after, err := src.Delivered(ctx)
	if err != nil {
		return 0, err
	}
	page, err := src.Events(ctx, after, pageSize)
	if err != nil {
		return 0, err
	}
	for i, e := range page {
		if i > 0 {
			if held, err := src.HoldDelivery(ctx, holder, holdFor); err != nil || !held {
				return i, err
			}
		}
		if !s.deliver(ctx, src, holder, &e) {
			return i, nil
		}
		if err := src.SetDelivered(ctx, e.Seq); err != nil {
			return i + 1, err
		}
	}
	return len(page), nil
}

// deliver posts e until the receiver takes it, and reports whether it did:
// false when ctx ended first.
func (s *Sender) deliver(ctx context.Context, src Source, holder string, e *events.Event) bool {
	body := e.Append(nil)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, e.ID, body)
		if err == nil {
			if attempt > 1 {
				s.Log.Info("webhook: delivered after retries", "event", e.ID, "seq", e.Seq, "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt == 1 || wait == s.MaxBackoff {
			s.Log.Warn("webhook: the receiver did not take an event; retrying", "event", e.ID, "seq", e.Seq, "attempt", attempt, "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, s.MaxBackoff)
		// Still the one delivering: a hold lost while waiting goes on, and
		// the other instance's posts are duplicates the receiver drops.
		src.HoldDelivery(ctx, holder, holdFor)
	}
}

// post sends one signed attempt; nil when the receiver answered 2xx.
func (s *Sender) post(ctx context.Context, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wxlogin-webhook")
	s.Secret.SetHeaders(req.Header, id, time.Now(), body)
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// NewClient is the client a Sender posts with: each attempt bounded by
// timeout, and a redirect not followed (it is a failure: the receiver's
// URL is configured, not discovered).
func NewClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func randomHolder() string {
	b := make([]byte, 8)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return hex.EncodeToString(b)
}
