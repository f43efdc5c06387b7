package users

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/strictjson"
)

// This file is the store's events (internal/events), with -events: each
// is a line of the journal, appended in the same batch as the line of the
// change it tells of, so that one fsync makes both durable, or neither is
// acknowledged. Events are numbered under the store's lock, in the order
// of their changes, with no gaps but those a restore keeps unused
// (KeepIDsUnused). Two lines:
//
//	{"event":{"id":"evt_…","seq":7,"type":"user.created",…}}
//	{"events":{"last":7,"delivered":5}}
//
// the second records the last seq given, which a snapshot that dropped
// old events still knows, and how far the webhook has delivered. A
// snapshot keeps the events of the last events.Keep and, with -webhook,
// every one not yet delivered.

// eventLog is the store's events in memory. s.mu guards it, but durable
// and recorded, which are read without it.
type eventLog struct {
	record bool // -events: changes record their events
	// hold keeps an event not yet delivered past events.Keep (-webhook).
	// Until the server says (told: RecordEvents or RecordNoEvents), such an
	// event is kept too: a compaction at the start (finishErasures) or a
	// tool's knows nothing of -webhook, and must not drop what it may
	// still have to deliver.
	hold bool
	told bool
	list []events.Event // ascending seq
	// shared counts the Lines not yet written out that hold list: while
	// one does, list is changed only in a copy, which gets a count of its
	// own (nil until a Lines holds it), so that those holding the list
	// before do not count down the copy's when they end. A Lines never
	// written out keeps its count above 0, and so the copy made, for good.
	shared    *int
	last      int64        // the last seq given
	delivered int64        // the webhook's cursor
	durable   atomic.Int64 // every event up to this seq is durable
	recorded  chan struct{}
}

// The prefixes of the lines of this file.
const (
	eventPrefix  = `{"event":`
	cursorPrefix = `{"events":`
)

// Cursor is the line of the events' numbers.
type Cursor struct {
	Last      int64 `json:"last"`
	Delivered int64 `json:"delivered"`
}

// RecordEvents makes every later change record its events; hold keeps
// those not yet delivered (-webhook) however old. Called before serving.
func (s *Store) RecordEvents(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events.record, s.events.hold, s.events.told = true, hold, true
}

// RecordNoEvents says that changes record no events, and none is
// delivered: those recorded before are kept events.Keep, and no longer.
// Called before serving, without -events.
func (s *Store) RecordNoEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events.record, s.events.hold, s.events.told = false, false, true
}

// forgetPhoneLocked takes user id's phone number out of its events kept
// in memory, for its erasure: GET /events and the webhook then show its
// phone.bound without the number, and the snapshot the erasure asks for
// writes none. The list is changed in place, unless a snapshot may be
// encoding it (shared, keptEventsLocked): then in a copy, which at a
// million events is some 160 MB. s.mu is held.
func (s *Store) forgetPhoneLocked(id int64) {
	ev := &s.events
	i := slices.IndexFunc(ev.list, func(e events.Event) bool {
		return e.Data.UserID == id && e.Data.PhoneNumber+e.Data.PurePhoneNumber != ""
	})
	if i < 0 {
		return
	}
	list := ev.list
	if ev.shared != nil && *ev.shared > 0 {
		list, ev.shared = slices.Clone(list), nil // the copy is this store's alone
	}
	for ; i < len(list); i++ {
		if d := &list[i].Data; d.UserID == id {
			d.PhoneNumber, d.PurePhoneNumber, d.CountryCode = "", "", ""
		}
	}
	ev.list = list
}

// Recorded is signalled when an event becomes durable.
func (s *Store) Recorded() <-chan struct{} { return s.events.recorded }

// parseEventLine parses a line of this file, or reports false if line is
// not one.
func parseEventLine(line []byte) (Line, bool, error) {
	switch {
	case bytes.HasPrefix(line, []byte(eventPrefix)):
		var l struct {
			Event json.RawMessage `json:"event"`
		}
		if err := strictjson.Decode(line, &l); err != nil {
			return Line{}, true, fmt.Errorf("not an event line: %v", err)
		}
		e, err := events.Parse(l.Event)
		if err == nil && e.Seq < 1 {
			err = fmt.Errorf("event %s has no seq", e.ID)
		}
		return Line{Event: &e}, true, err
	case bytes.HasPrefix(line, []byte(cursorPrefix)):
		var l struct {
			Cursor *Cursor `json:"events"`
		}
		if err := strictjson.Decode(line, &l); err != nil || l.Cursor == nil {
			return Line{}, true, fmt.Errorf("not a line of the events' numbers: %v", err)
		}
		if c := l.Cursor; c.Last < 0 || c.Delivered < 0 || c.Delivered > c.Last {
			return Line{}, true, fmt.Errorf("events' numbers: last %d, delivered %d", c.Last, c.Delivered)
		}
		return Line{Cursor: l.Cursor}, true, nil
	}
	return Line{}, false, nil
}

// eventLine appends e's line to buf.
func eventLine(buf []byte, e *events.Event) []byte {
	buf = e.Append(append(buf, eventPrefix...))
	return append(buf, "}\n"...)
}

// cursorLine appends the line of the events' numbers to buf.
func cursorLine(buf []byte, c Cursor) []byte {
	return appendJSONLine(buf, map[string]Cursor{"events": c})
}

// replayEvent puts an event line, or the numbers' line, in memory. An
// event replayed twice is found by its seq; one a snapshot dropped since,
// by its seq below the last.
func (s *Store) replayEvent(l Line) error {
	ev := &s.events
	if c := l.Cursor; c != nil {
		ev.last, ev.delivered = max(ev.last, c.Last), max(ev.delivered, c.Delivered)
		ev.durable.Store(ev.last)
		return nil
	}
	e := *l.Event
	if e.Seq <= ev.last {
		i, found := slices.BinarySearchFunc(ev.list, e.Seq, bySeq)
		if found && ev.list[i].ID != e.ID {
			return fmt.Errorf("two events numbered %d", e.Seq)
		}
		return nil
	}
	ev.list = append(ev.list, e)
	ev.last = e.Seq
	ev.durable.Store(e.Seq)
	return nil
}

func bySeq(e events.Event, seq int64) int {
	switch {
	case e.Seq < seq:
		return -1
	case e.Seq > seq:
		return 1
	}
	return 0
}

// appendEventsLocked numbers list, keeps them, and appends their lines to
// buf; it returns buf and the last seq given (0 for none). s.mu is held.
func (s *Store) appendEventsLocked(buf []byte, list []events.Event) ([]byte, int64) {
	ev := &s.events
	if len(list) == 0 {
		return buf, 0
	}
	for i := range list {
		ev.last++
		list[i].Seq = ev.last
		buf = eventLine(buf, &list[i])
	}
	ev.list = append(ev.list, list...)
	return buf, ev.last
}

// personIDLocked is the id of user u's person: its earliest record's.
// s.mu is held.
func (s *Store) personIDLocked(u *account.User) int64 { return s.personLocked(u)[0] }

// personsOfLocked are the persons that user u, given unionid, brings
// together: its own, and that of the records that have unionid. s.mu is
// held.
func (s *Store) personsOfLocked(u *account.User, unionID string) []int64 {
	persons := []int64{s.personIDLocked(u)}
	if ids := s.byUnion[unionID]; len(ids) > 0 {
		persons = append(persons, s.personIDLocked(s.byID[ids[0]-1]))
	}
	return persons
}

// madeDurable records that every event through seq is durable, once the
// batch that held it is, and tells the webhook.
func (s *Store) madeDurable(seq int64) {
	if seq == 0 {
		return
	}
	// Without s.mu: every write with events passes here, and the writers
	// of later batches may come first.
	for d := &s.events.durable; ; {
		old := d.Load()
		if old >= seq || d.CompareAndSwap(old, seq) {
			break
		}
	}
	select {
	case s.events.recorded <- struct{}{}:
	default:
	}
}

// Events lists up to limit durable events with a seq above after, oldest
// first.
func (s *Store) Events(after int64, limit int) []events.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := &s.events
	durable := ev.durable.Load()
	i, _ := slices.BinarySearchFunc(ev.list, after+1, bySeq)
	var page []events.Event
	for ; i < len(ev.list) && len(page) < limit && ev.list[i].Seq <= durable; i++ {
		page = append(page, ev.list[i])
	}
	return page
}

// Delivered is the seq through which the webhook delivered every event.
func (s *Store) Delivered() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events.delivered
}

// SetDelivered moves the webhook's cursor on to seq. Its line is not
// waited for: a cursor lost in a crash delivers some events again, which
// at least once allows.
func (s *Store) SetDelivered(seq int64) error {
	if err := s.lockForWrite(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	ev := &s.events
	if seq <= ev.delivered {
		return nil
	}
	ev.delivered = min(seq, ev.durable.Load())
	s.line = cursorLine(s.line[:0], Cursor{Last: ev.last, Delivered: ev.delivered})
	s.journal.Append(s.line)
	return nil
}

// keptEventsLocked drops from memory the events a snapshot leaves out
// (those older than events.Keep, unless held and not yet delivered) and
// returns those it keeps, with the numbers' line, for Lines to write out
// after the lock is released: a snapshot copies them under the store's
// lock, and writes must not wait for a week of events to be encoded. The
// list is never changed in place while one is shared (forgetPhoneLocked),
// only appended to or cut at its head, so the slice returned stays as it
// is until the caller calls done, once, to say it no longer reads it. s.mu
// is held.
func (s *Store) keptEventsLocked(now time.Time) (kept []events.Event, c Cursor, ok bool, done func()) {
	ev := &s.events
	if ev.last == 0 {
		return nil, Cursor{}, false, func() {}
	}
	// The events leave in seq order: their times, made under the lock,
	// rise with it, and the delivered ones are the first.
	drop := 0
	for drop < len(ev.list) {
		e := &ev.list[drop]
		if now.Sub(e.At) <= events.Keep || (ev.hold || !ev.told) && e.Seq > ev.delivered {
			break
		}
		drop++
	}
	ev.list = ev.list[drop:]
	if ev.shared == nil {
		ev.shared = new(int)
	}
	shared := ev.shared // this list's count, even once a copy replaces it
	*shared++
	done = func() {
		s.mu.Lock()
		*shared--
		s.mu.Unlock()
	}
	return ev.list[:len(ev.list):len(ev.list)], Cursor{Last: ev.last, Delivered: ev.delivered}, true, done
}
