package users

import (
	"bytes"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/testkit"
)

// eventSummary is an event as these tests compare it: its seq, type and
// data.
func eventSummary(e events.Event) string {
	d := e.Data
	s := fmt.Sprintf("%d %s user=%d app=%s person=%d", e.Seq, e.Type, d.UserID, d.AppID, d.PersonID)
	if d.PreviousPersonID != 0 {
		s += fmt.Sprintf(" previous=%d", d.PreviousPersonID)
	}
	if d.PhoneNumber != "" {
		s += " phone=" + d.PhoneNumber
	}
	if d.Claim != "" {
		s += " claim=" + d.Claim
	}
	return s
}

func summaries(list []events.Event) string {
	var lines []string
	for _, e := range list {
		lines = append(lines, eventSummary(e))
	}
	return strings.Join(lines, "\n")
}

// TestEventsOfEachChange: each change other services follow records its
// event, with the user's person, and nothing else records one.
func TestEventsOfEachChange(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	s.RecordEvents(false)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := s.Login("wxa", "o1", "") // 1: created, its own person
	must(err)
	_, _, err = s.Login("wxb", "o2", "u1") // 2: created, its own person
	must(err)
	_, _, err = s.Login("wxa", "o1", "") // a returning login: nothing
	must(err)
	_, _, err = s.Login("wxa", "o1", "u1") // 1 learns u1: 2 joins 1's person
	must(err)
	_, err = s.Update(2, func(u *account.User) {
		u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+86 13800000000", "13800000000", "86"
	})
	must(err)
	_, err = s.Update(2, func(u *account.User) { u.Nickname = "n" }) // not followed
	must(err)
	_, _, err = s.Claim(2, "gift")
	must(err)
	_, _, err = s.Claim(1, "gift") // taken already: nothing
	must(err)
	_, _, err = s.Login("wxc", "o3", "u1") // 3: created in person 1
	must(err)
	_, err = s.Erase(1)
	must(err)

	want := strings.Join([]string{
		"1 user.created user=1 app=wxa person=1",
		"2 user.created user=2 app=wxb person=2",
		"3 person.joined user=1 app=wxa person=1 previous=2",
		"4 phone.bound user=2 app=wxb person=1 phone=+86 13800000000",
		"5 claim.taken user=2 app=wxb person=1 claim=gift",
		"6 user.created user=3 app=wxc person=1",
		"7 user.deleted user=1 app=wxa person=1",
	}, "\n")
	// User 1, learning u1, brings user 2's person into its own.
	if got := summaries(s.Events(0, 100)); got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
	if got := summaries(s.Events(4, 2)); got != strings.Join(strings.Split(want, "\n")[4:6], "\n") {
		t.Errorf("Events(4, 2):\n%s", got)
	}

	// The same after a restart, and after a snapshot.
	must(s.Close())
	s = openTestStore(t, dir, time.Now)
	if got := summaries(s.Events(0, 100)); got != want {
		t.Errorf("after a restart:\n%s\nwant:\n%s", got, want)
	}
	s.journal.CompactSoon()
	must(s.journal.Wait(s.journal.Barrier()))
	s.journal.WaitCompactions()
	must(s.Close())
	s = openTestStore(t, dir, time.Now)
	if got := summaries(s.Events(0, 100)); got != want {
		t.Errorf("after a snapshot:\n%s\nwant:\n%s", got, want)
	}
	ids := map[string]bool{}
	for _, e := range s.Events(0, 100) {
		ids[e.ID] = true
	}
	if len(ids) != 7 {
		t.Errorf("%d ids for 7 events", len(ids))
	}
}

// TestAJoinNamesThePersonBefore: a user whose unionid joins it to an
// earlier person tells which person it was in.
func TestAJoinNamesThePersonBefore(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.RecordEvents(false)
	for _, l := range [][3]string{{"wxa", "o1", "u1"}, {"wxb", "o2", "u2"}, {"wxc", "o3", "u2"}, {"wxc", "o3", "u1"}} {
		if _, _, err := s.Login(l[0], l[1], l[2]); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Events(3, 10)
	if len(got) != 1 || eventSummary(got[0]) != "4 person.joined user=3 app=wxc person=1 previous=2" {
		t.Errorf("the unionid change recorded:\n%s", summaries(got))
	}
}

// TestNoEventsUnlessRecorded: a store that does not record events writes
// none.
func TestNoEventsUnlessRecorded(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	if _, _, err := s.Login("wxa", "o1", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(1, "gift"); err != nil {
		t.Fatal(err)
	}
	for l := range s.Lines() {
		if strings.Contains(string(l), "event") {
			t.Errorf("a line %s", l)
		}
	}
}

// TestEventsAreListedOnlyOnceDurable: an event whose batch is not on disk
// yet is not listed, so no receiver hears of a change a crash could undo.
func TestEventsAreListedOnlyOnceDurable(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.RecordEvents(false)
	release := make(chan struct{})
	writing := make(chan struct{}, 1)
	s.journal.InjectFault(func(step string) error {
		if step == "write" {
			writing <- struct{}{}
			<-release
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Login("wxa", "o1", "")
		done <- err
	}()
	<-writing
	if got := s.Events(0, 10); len(got) != 0 {
		t.Errorf("listed before it is durable: %s", summaries(got))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Recorded():
	default:
		t.Error("Recorded not signalled")
	}
	if got := s.Events(0, 10); len(got) != 1 {
		t.Errorf("once durable: %s", summaries(got))
	}
}

// TestDeliveredEventsAgeOut: a snapshot drops the events older than
// events.Keep, but, when they are held for the webhook, not one it has
// not delivered; the numbering goes on where it was.
func TestDeliveredEventsAgeOut(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			dir := t.TempDir()
			now := time.Now()
			clock := func() time.Time { return now }
			s := openTestStore(t, dir, clock)
			s.RecordEvents(hold)
			for i := range 4 {
				if _, _, err := s.Login("wxa", fmt.Sprintf("o%d", i), ""); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetDelivered(2); err != nil {
				t.Fatal(err)
			}
			if err := s.SetDelivered(1); err != nil { // never back
				t.Fatal(err)
			}
			now = now.Add(events.Keep + time.Minute)
			s.journal.CompactSoon()
			if _, _, err := s.Login("wxa", "o4", ""); err != nil { // 5, within Keep
				t.Fatal(err)
			}
			s.journal.WaitCompactions()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestStore(t, dir, clock)
			var seqs []int64
			for _, e := range s.Events(0, 10) {
				seqs = append(seqs, e.Seq)
			}
			want := []int64{5}
			if hold {
				want = []int64{3, 4, 5}
			}
			if !slices.Equal(seqs, want) {
				t.Errorf("kept %v, want %v", seqs, want)
			}
			if got := s.Delivered(); got != 2 {
				t.Errorf("Delivered() = %d after a restart, want 2", got)
			}
			s.RecordEvents(hold)
			if _, _, err := s.Login("wxa", "o5", ""); err != nil {
				t.Fatal(err)
			}
			if got := s.Events(5, 10); len(got) != 1 || got[0].Seq != 6 {
				t.Errorf("numbering after the snapshot: %s", summaries(got))
			}
		})
	}
}

// TestAnEventSeqIsNeverGivenTwice: lines of two events with one seq, as
// files put together from different times would hold, are refused.
func TestAnEventSeqIsNeverGivenTwice(t *testing.T) {
	s := newMemoryStore()
	e := events.Created(time.Now(), &account.User{ID: 1, AppID: "wxa"}, 1)
	e.Seq = 1
	other := e
	other.ID = events.NewID()
	if err := s.replay(Line{Event: &e}); err != nil {
		t.Fatal(err)
	}
	if err := s.replay(Line{Event: &e}); err != nil {
		t.Errorf("the same event replayed twice: %v", err)
	}
	if err := s.replay(Line{Event: &other}); err == nil {
		t.Error("a second event numbered 1 was taken")
	}
}

// FuzzParseEventLine: an event line, or the numbers' line, the parser
// accepts reads the same once written again.
func FuzzParseEventLine(f *testing.F) {
	f.Add([]byte(`{"event":{"id":"evt_AAAAAAAAAAAAAAAAAAAAAA","seq":3,"type":"claim.taken","timestamp":"2026-12-07T10:00:00.123Z","data":{"user_id":7,"appid":"wxa","person_id":3,"claim":"welcome-gift"}}}` + "\n"))
	f.Add([]byte(`{"event":{"id":"evt_B","seq":1,"type":"phone.bound","timestamp":"2026-12-07T10:00:00Z","data":{"user_id":1,"appid":"wxa","person_id":1,"phone_number":"+86 138","pure_phone_number":"138","country_code":"86"}}}`))
	f.Add([]byte(`{"events":{"last":7,"delivered":5}}` + "\n"))
	f.Add([]byte(`{"events":{"last":1,"delivered":5}}`))
	f.Add([]byte(`{"event":{"id":"x","seq":0}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		l, ok, err := parseEventLine(line)
		if !ok || err != nil {
			return
		}
		again := l.Append(nil)
		back, ok, err := parseEventLine(again)
		if !ok || err != nil || (l.Cursor != nil && *back.Cursor != *l.Cursor) ||
			(l.Event != nil && string(back.Append(nil)) != string(again)) {
			t.Fatalf("%q reads as %+v; written again, %q reads as %+v, %v", line, l, again, back, err)
		}
	})
}

// TestEventsTurnedOnLater: users stored before events were recorded get
// no user.created; their later changes are told.
func TestEventsTurnedOnLater(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	if _, _, err := s.Login("wxa", "o1", ""); err != nil {
		t.Fatal(err)
	}
	s.RecordEvents(false)
	if _, _, err := s.Login("wxa", "o1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(1, func(u *account.User) { u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "138", "138", "86" }); err != nil {
		t.Fatal(err)
	}
	if got := summaries(s.Events(0, 10)); got != "1 phone.bound user=1 app=wxa person=1 phone=138" {
		t.Errorf("events of a user stored before:\n%s", got)
	}
}

// The compaction an unfinished erasure makes at the start (finishErasures)
// runs before the server says it delivers events (RecordEvents): it keeps
// every event not yet delivered, however old, as -webhook needs, here
// after a week with the receiver down.
func TestTheCompactionAtAStartKeepsUndeliveredEvents(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	s := openTestStore(t, dir, clock)
	s.RecordEvents(true)
	for i := range 3 {
		if _, _, err := s.Login(mockAppID, fmt.Sprintf("o%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(events.Keep + time.Minute)
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("no space")
		}
		return nil
	})
	if _, err := s.Erase(3); err != nil { // its compaction fails: made at the next start
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"after the start that compacts", "after the next"} {
		s = openTestStore(t, dir, clock)
		s.RecordEvents(true) // as the server does, once the store is open
		s.journal.WaitCompactions()
		if got := s.Events(0, 10); len(got) != 4 {
			t.Errorf("%s, the events not delivered: %s; want all 4", when, summaries(got))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// An erased user's phone number leaves its events with the rest of its
// data: GET /events lists its phone.bound without the number at once, and
// once the erasure's compaction is made (at once, or at the next start
// when it failed) no file holds it, and a restart lists none either.
func TestAnErasureTakesThePhoneOutOfTheEvents(t *testing.T) {
	for _, failed := range []bool{false, true} {
		t.Run(map[bool]string{false: "compacted", true: "compacted at the next start"}[failed], func(t *testing.T) {
			clock := testkit.NewFakeClock()
			dir := t.TempDir()
			s := openTestStore(t, dir, clock.Now)
			s.RecordEvents(false)
			a, _, err := s.Login(mockAppID, "o-alice", "u-alice")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Update(a.ID, func(u *account.User) {
				u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "13912345678", "13912345678", "86"
			}); err != nil {
				t.Fatal(err)
			}
			if failed {
				s.journal.InjectFault(func(step string) error {
					if step == "snapshot" {
						return fmt.Errorf("no space")
					}
					return nil
				})
			}
			if _, err := s.Erase(a.ID); err != nil {
				t.Fatal(err)
			}
			check := func(when string, s *Store) {
				t.Helper()
				list := s.Events(0, 100)
				if len(list) != 3 {
					t.Errorf("%s, the events: %s; want user.created, phone.bound and user.deleted", when, summaries(list))
				}
				for _, e := range list {
					if e.Data.PhoneNumber+e.Data.PurePhoneNumber+e.Data.CountryCode != "" {
						t.Errorf("%s, GET /events lists %s (seq %d) with the erased user's phone", when, e.Type, e.Seq)
					}
				}
			}
			check("after the erasure", s)
			for range 2 { // the second start finds the compaction made
				s.journal.WaitCompactions()
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openTestStore(t, dir, clock.Now)
				check("after a restart", s)
			}
			s.journal.WaitCompactions()
			if found := testkit.FilesHolding(t, dir, "13912345678"); len(found) > 0 {
				t.Errorf("once the erasure's compaction is made, files hold the phone: %v", found)
			}
		})
	}
}

// Without -events (RecordNoEvents), the events a store recorded before are
// kept a week, as with -events and no webhook, and no longer.
func TestWithoutEventsOldEventsAgeOut(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	s := openTestStore(t, dir, clock)
	s.RecordEvents(false)
	if _, _, err := s.Login(mockAppID, "o-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(events.Keep + time.Hour)
	s = openTestStore(t, dir, clock)
	s.RecordNoEvents()
	s.mu.Lock()
	kept, _, _, _ := s.keptEventsLocked(now)
	s.mu.Unlock()
	if len(kept) != 0 {
		t.Errorf("a snapshot without -events keeps %s, older than a week; want none", summaries(kept))
	}
}

// An erasure takes the phone out of the events in memory in place, not in
// a copy of the whole list (some 160 MB at a million events), unless a
// snapshot not yet written out holds the list: that one is written as it
// was when it was taken, and the store's list is a copy from then on.
func TestAnErasureChangesTheEventsInPlaceUnlessASnapshotHoldsThem(t *testing.T) {
	s := openTestStore(t, t.TempDir(), testkit.NewFakeClock().Now)
	s.RecordEvents(false)
	withPhone := func(openID string) account.User {
		t.Helper()
		u, _, err := s.Login(mockAppID, openID, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(u.ID, func(u *account.User) {
			u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "13912345678", "13912345678", "86"
		}); err != nil {
			t.Fatal(err)
		}
		return u
	}
	alice, bob := withPhone("o-alice"), withPhone("o-bob")
	// phones counts the phone.bound events of list that hold a number.
	phones := func(list []events.Event) (n int) {
		for _, e := range list {
			if e.Data.PhoneNumber != "" {
				n++
			}
		}
		return n
	}
	list := func() []events.Event {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.events.list
	}

	held := s.Lines() // a snapshot taken, not yet written out
	if _, err := s.Erase(alice.ID); err != nil {
		t.Fatal(err)
	}
	written := 0
	for line := range held {
		if bytes.HasPrefix(line, []byte(eventPrefix)) && bytes.Contains(line, []byte("13912345678")) {
			written++
		}
	}
	if written != 2 {
		t.Errorf("the snapshot taken before the erasure writes %d phone.bound with a number; want 2, as it was taken", written)
	}

	s.journal.WaitCompactions() // the erasure's own snapshot, written out
	before := list()
	if _, err := s.Erase(bob.ID); err != nil {
		t.Fatal(err)
	}
	if n := phones(before); n != 0 {
		t.Errorf("with no snapshot holding the events, the erasure left %d numbers in the list it had: it changed a copy", n)
	}
	for _, e := range s.Events(0, 100) {
		if e.Data.PhoneNumber != "" {
			t.Errorf("after both erasures GET /events lists %s (seq %d) with a phone", e.Type, e.Seq)
		}
	}
}

// A snapshot that ends says nothing of the snapshots taken since: an
// erasure must not change in place the events a later one, not yet
// written out, holds, though an earlier one, taken before the erasure's
// copy, ended meanwhile.
func TestAnEarlierSnapshotEndingLeavesALaterOnesEventsAsTaken(t *testing.T) {
	s := openTestStore(t, t.TempDir(), testkit.NewFakeClock().Now)
	s.RecordEvents(false)
	ids := map[string]int64{}
	for _, who := range []string{"alice", "bob"} {
		u, _, err := s.Login(mockAppID, "o-"+who, "")
		if err != nil {
			t.Fatal(err)
		}
		phone := map[string]string{"alice": "13900000001", "bob": "13900000002"}[who]
		if _, err := s.Update(u.ID, func(u *account.User) {
			u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = phone, phone, "86"
		}); err != nil {
			t.Fatal(err)
		}
		ids[who] = u.ID
	}
	drain := func(lines iter.Seq[[]byte], phone string) (n int) {
		for line := range lines {
			if bytes.HasPrefix(line, []byte(eventPrefix)) && bytes.Contains(line, []byte(phone)) {
				n++
			}
		}
		return n
	}

	earlier := s.Lines()
	if _, err := s.Erase(ids["alice"]); err != nil { // the list is copied: earlier holds it
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	later := s.Lines() // holds the copy
	drain(earlier, "")
	if _, err := s.Erase(ids["bob"]); err != nil {
		t.Fatal(err)
	}
	if n := drain(later, "13900000002"); n != 1 {
		t.Errorf("a snapshot taken before bob's erasure writes %d phone.bound with his number; want 1, as it was taken", n)
	}
}
