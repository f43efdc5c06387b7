package webhook

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"time"
	"wxlogin/internal/events"
	"wxlogin/internal/metrics"
)

// Source is where the events to deliver are: the store's event log, with
// the cursor of what is delivered, and a hold that lets one instance of
// those sharing the store deliver at a time.
type Source interface {
	// Events lists up to limit events with a seq above after, oldest
	// first: only events whose changes are durable.
	Events(ctx context.Context, after int64, limit int) ([]events.Event, error)
	// Delivered is the seq through which every event is delivered;
	// SetDelivered moves it on, never back.
	Delivered(ctx context.Context) (int64, error)
	SetDelivered(ctx context.Context, seq int64) error
	// HoldDelivery reports whether holder may deliver for the next ttl:
	// of the instances on one store, one delivers at a time.
	HoldDelivery(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	// Recorded is signalled when this process records an event.
	Recorded() <-chan struct{}
}

// Sender posts each event of a Source to URL, signed with Secret, until
// the receiver answers 2xx, and moves the Source's cursor past the events
// taken. A round posts up to Batch events on one kept-alive connection,
// written together (HTTP/1.1 pipelining, answered in order), at most one
// of each user's, and each user's in seq order: a user's next event goes
// only once the one before it was taken. An event not taken is posted
// again after a wait that doubles from 100 ms up to MaxBackoff; the other
// users' events go on meanwhile. The cursor moves on only past events
// taken, so a crash posts some again under the same webhook-id, never
// skips one: at least once.
type Sender struct {
	URL    string
	Secret Secret
	// Timeout bounds a round on the connection: connecting, writing its
	// posts and reading their answers.
	Timeout time.Duration
	Log     *slog.Logger
	// Poll is how often to look for events recorded by other instances,
	// and for the hold while another instance has it.
	Poll       time.Duration
	MaxBackoff time.Duration
	// Linger is how long a round waits, once an event is recorded, for
	// more to post with it.
	Linger time.Duration
	// Batch is the most events a round posts.
	Batch int
	// TLS, when set, is the base of the connection's TLS settings (tests
	// give their own root); the system's roots otherwise.
	TLS *tls.Config
	// Metrics counts the posts and shows how far delivery is; nil for none.
	Metrics *metrics.Metrics
}

// queueSize is how many events not yet taken are held in memory: past it,
// no more are read until some are taken.
const queueSize = 1000

// maxWaiting is how many of those may wait behind an earlier event of
// their user, not to be posted before it is taken. Past it, a user's later
// events are set aside, to be read again from the source, so that one user
// whose events the receiver refuses while the user makes more cannot fill
// the queue: reading stops only once queueSize-maxWaiting users wait.
const maxWaiting = queueSize / 2

// holdFor is how long a hold lasts unless renewed; each round renews it.
// An instance killed while holding it holds up delivery this long.
const holdFor = 10 * time.Second

// firstWait is how long an event not taken waits before it is posted again.
const firstWait = 100 * time.Millisecond

// pending is an event past the cursor, and its attempts so far.
type pending struct {
	event   events.Event
	taken   bool
	tries   int
	wait    time.Duration // before the next attempt, after the last
	nextTry time.Time
}

// delivery is the state of Run: the events read past the cursor and not
// yet taken, in seq order, and the seq of the last one read. Those taken
// leave the queue at once, so that an event the receiver refuses for long
// holds up its user's events only, not the reading of the others'; and a
// user's events past maxWaiting are set aside, not held, so that one user
// with many does not hold up the reading either.
type delivery struct {
	*Sender
	src    Source
	holder string
	sign   *signer
	conn   *conn
	queue  []*pending
	// aside holds, for each user with events set aside, the seq from
	// which none of its events up to read is in the queue or taken: they
	// are read again once the user has none left in the queue.
	aside  map[int64]int64
	cursor int64
	read   int64 // the seq of the last event read
	fresh  bool  // the queue is to be read again from the cursor
	// spare is where the next events queued are held (hold): a round
	// queues a hundred, one allocation for 64 of them, not one each.
	spare []pending
}

// Run delivers until ctx ends.
func (s *Sender) Run(ctx context.Context, src Source) {
	d := &delivery{Sender: s, src: src, holder: randomHolder(), sign: newSigner(s.Secret), conn: newConn(s.URL, s.Timeout, s.TLS), fresh: true}
	defer d.conn.close()
	for ctx.Err() == nil {
		wait, err := d.round(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("webhook: cannot read or record the events to deliver", "err", err)
			wait, d.fresh = s.Poll, true
		}
		if wait > 0 {
			d.idle(ctx, wait)
		}
	}
}

// idle waits up to wait, or until an event is recorded, and then Linger
// for more to come with it.
func (d *delivery) idle(ctx context.Context, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
		return
	case <-d.src.Recorded():
	}
	l := time.NewTimer(d.Linger)
	defer l.Stop()
	select {
	case <-ctx.Done():
	case <-l.C:
	}
}

// round posts what is due, if this instance holds the delivery, and says
// how long to wait before the next round (0: at once).
func (d *delivery) round(ctx context.Context) (time.Duration, error) {
	held, err := d.src.HoldDelivery(ctx, d.holder, holdFor)
	if err != nil {
		return 0, err
	}
	if !held {
		d.fresh = true // another instance moves the cursor meanwhile
		return d.Poll, nil
	}
	if err := d.fill(ctx); err != nil {
		return 0, err
	}
	now := time.Now()
	batch, next := d.due(now)
	due := len(batch)
	if batch, err = d.current(ctx, batch); err != nil {
		return 0, err
	}
	if len(batch) == 0 {
		if err := d.advance(ctx); err != nil { // past an event gone from the source
			return 0, err
		}
		if due > 0 {
			return 0, nil // the next events of the users whose event was gone are due now
		}
		if next.IsZero() {
			return d.Poll, nil
		}
		// The hold is renewed while events wait for their retry, so that
		// another instance does not take the delivery over meanwhile.
		return min(next.Sub(now), holdFor/3), nil
	}
	errs := d.conn.post(ctx, d.sign, batch)
	for i, p := range batch {
		d.settle(p, errs[i])
	}
	if err := d.advance(ctx); err != nil {
		return 0, err
	}
	if len(batch) < d.Batch {
		// A round not full: the next waits a little for more, so that
		// under load a round carries many posts, not one or two.
		return d.Linger, nil
	}
	return 0, nil
}

// fill reads the events past the last read, up to queueSize not taken,
// and again those set aside of the users with none left in the queue;
// from the cursor when the queue is fresh.
func (d *delivery) fill(ctx context.Context) error {
	if d.fresh {
		cursor, err := d.src.Delivered(ctx)
		if err != nil {
			return err
		}
		d.cursor, d.read, d.queue, d.aside, d.fresh = cursor, cursor, nil, map[int64]int64{}, false
	}
	held := map[int64]int{} // each user's events in the queue
	for _, p := range d.queue {
		held[p.event.Data.UserID]++
	}
	if err := d.readAside(ctx, held); err != nil {
		return err
	}
	if len(d.queue) >= queueSize {
		return nil
	}
	list, err := d.src.Events(ctx, d.read, queueSize-len(d.queue))
	if err != nil {
		return err
	}
	for _, e := range list {
		d.read = e.Seq
		user := e.Data.UserID
		if _, ok := d.aside[user]; ok {
			continue // read again after those of its set aside
		}
		if !d.hold(e, held) {
			d.aside[user] = e.Seq
		}
	}
	return nil
}

// hold queues e, unless its user has events in the queue (held) and
// maxWaiting events wait behind an earlier one of theirs: then it reports
// false, for e to be set aside.
func (d *delivery) hold(e events.Event, held map[int64]int) bool {
	user := e.Data.UserID
	if held[user] > 0 && len(d.queue)-len(held) >= maxWaiting {
		return false
	}
	if len(d.spare) == 0 {
		d.spare = make([]pending, 64)
	}
	p := &d.spare[0]
	d.spare = d.spare[1:]
	*p = pending{event: e}
	d.queue = append(d.queue, p)
	held[user]++
	return true
}

// readAside reads again the events set aside of the users with none left
// in the queue (held), up to queueSize in the queue and maxWaiting waiting,
// and keeps the queue in seq order. A user whose events do not all fit
// keeps the rest aside.
func (d *delivery) readAside(ctx context.Context, held map[int64]int) error {
	ready := map[int64]bool{}
	after := d.read
	for user, from := range d.aside {
		if held[user] == 0 {
			ready[user] = true
			after = min(after, from-1)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	defer func() { // the queue as it is on return, not as it is now
		slices.SortFunc(d.queue, func(a, b *pending) int { return cmp.Compare(a.event.Seq, b.event.Seq) })
	}()
	for len(ready) > 0 && after < d.read {
		list, err := d.src.Events(ctx, after, queueSize)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			break // the source lists no more: as if read through
		}
		for _, e := range list {
			if e.Seq > d.read {
				after = d.read // read through, whatever seqs the source skips
				break
			}
			after = e.Seq
			user := e.Data.UserID
			if !ready[user] || e.Seq < d.aside[user] {
				continue
			}
			if len(d.queue) >= queueSize {
				// Full: every user still ready keeps aside what was not
				// read again, from here.
				for user := range ready {
					d.aside[user] = max(d.aside[user], e.Seq)
				}
				return nil
			}
			if !d.hold(e, held) {
				d.aside[user] = e.Seq
				delete(ready, user)
			}
		}
	}
	for user := range ready {
		delete(d.aside, user) // every event set aside is in the queue again
	}
	return nil
}

// due picks the events to post now: in seq order, each user's first not
// yet taken, if its wait is over, up to Batch. next is when the first of
// those waiting is due, zero when none is.
func (d *delivery) due(now time.Time) (batch []*pending, next time.Time) {
	busy := map[int64]bool{} // users with an earlier event not taken
	for _, p := range d.queue {
		if p.taken || busy[p.event.Data.UserID] {
			continue
		}
		busy[p.event.Data.UserID] = true
		if p.nextTry.After(now) {
			if next.IsZero() || p.nextTry.Before(next) {
				next = p.nextTry
			}
			continue
		}
		if batch = append(batch, p); len(batch) == d.Batch {
			break
		}
	}
	return batch, next
}

// current is batch with each phone.bound as the source holds it now: an
// erasure since it was read takes the number out of it (the data
// directory), or deletes it (Redis: it is then taken, not posted). A
// phone.bound may wait in the queue long, behind its user's event the
// receiver refuses, and an erased user's number must not go out after the
// erasure. One read of the source for each, and phones are bound rarely.
func (d *delivery) current(ctx context.Context, batch []*pending) ([]*pending, error) {
	out := batch[:0]
	for _, p := range batch {
		if p.event.Type != events.PhoneBound {
			out = append(out, p)
			continue
		}
		now, err := d.src.Events(ctx, p.event.Seq-1, 1)
		if err != nil {
			return nil, err
		}
		if len(now) == 0 || now[0].ID != p.event.ID {
			p.taken = true // gone from the source: nothing to deliver
			continue
		}
		p.event = now[0]
		out = append(out, p)
	}
	return out, nil
}

// settle records an attempt of p: taken (err nil), or to be posted again.
func (d *delivery) settle(p *pending, err error) {
	p.tries++
	switch {
	case err == nil:
		d.Metrics.WebhookPosted("taken")
	case isStatus(err):
		d.Metrics.WebhookPosted("refused")
	default:
		d.Metrics.WebhookPosted("failed")
	}
	if err == nil {
		p.taken = true
		if p.tries > 1 {
			d.Log.Info("webhook: delivered after retries", "event", p.event.ID, "seq", p.event.Seq, "attempts", p.tries)
		}
		return
	}
	if err == errCutShort {
		return // not the receiver's refusal: posted again at once
	}
	p.wait = min(max(2*p.wait, firstWait), d.MaxBackoff)
	p.nextTry = time.Now().Add(p.wait)
	if p.tries == 1 || p.wait == d.MaxBackoff && p.tries%10 == 0 {
		d.Log.Warn("webhook: the receiver did not take an event; retrying", "event", p.event.ID, "seq", p.event.Seq,
			"attempt", p.tries, "err", err, "retry_in", p.wait)
	}
}

// advance takes the events taken out of the queue, and moves the cursor
// on to the last event read before the first not taken (or to the last
// read, when every one was), and records it.
func (d *delivery) advance(ctx context.Context) error {
	d.queue = slices.DeleteFunc(d.queue, func(p *pending) bool { return p.taken })
	cursor := d.read
	if len(d.queue) > 0 {
		cursor = d.queue[0].event.Seq - 1
	}
	for _, from := range d.aside {
		cursor = min(cursor, from-1)
	}
	if cursor > d.cursor {
		if err := d.src.SetDelivered(ctx, cursor); err != nil {
			return err
		}
		d.cursor = cursor
	}
	var oldest time.Time
	if len(d.queue) > 0 {
		oldest = d.queue[0].event.At
	}
	d.Metrics.WebhookState(d.cursor, oldest)
	return nil
}
