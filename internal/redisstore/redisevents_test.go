package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
	"wxlogin/internal/webhook"
)

// openEventStore is openStore with events recorded (Options.Events).
func openEventStore(t testing.TB, cfg redis.Config) *Store {
	t.Helper()
	rc := redis.NewClient(cfg)
	t.Cleanup(rc.Close)
	s, err := Open(t.Context(), rc, Options{Durability: Fsync, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, PreviousKeyWindow: 2 * time.Minute, Now: time.Now, Log: discardLogger(),
		Events: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runRelay runs s's relay (RunRelay) until the test ends, and checks that
// it stops then.
func runRelay(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.RunRelay(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("the relay did not stop when its context ended")
		}
	})
}

// relayed waits until no outbox holds an event: the relay has moved into
// the log all that was pushed (it empties an outbox only once its events
// are in the log), and then answers the log as allEvents does.
func relayed(t *testing.T, s *Store) []events.Event {
	t.Helper()
	testkit.WaitFor(t, "the relay to empty every outbox", func() bool {
		keys, err := s.rc.Scan(t.Context(), "wx:{*}:ev")
		if err != nil {
			t.Fatal(err)
		}
		return len(keys) == 0
	})
	return allEvents(t, s)
}

// allEvents is every event of s's log, checked as GET /events would
// serve them: seqs rising, ids unique.
func allEvents(t *testing.T, s *Store) []events.Event {
	t.Helper()
	list, err := s.Events(t.Context(), 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i, e := range list {
		if i > 0 && e.Seq <= list[i-1].Seq {
			t.Errorf("event %d has seq %d after %d; want seqs rising", i, e.Seq, list[i-1].Seq)
		}
		if ids[e.ID] {
			t.Errorf("event id %s twice in the log", e.ID)
		}
		ids[e.ID] = true
		if e.At.IsZero() {
			t.Errorf("event %s has no timestamp", e.ID)
		}
	}
	return list
}

// told is what an event tells: its type and data.
type told struct {
	Type string
	Data events.Data
}

func toldBy(list []events.Event) []told {
	var out []told
	for _, e := range list {
		out = append(out, told{e.Type, e.Data})
	}
	return out
}

// Each change other services follow records its event, naming the person
// as GET /user does (its earliest record), and a change of nothing they
// follow records none; the log pages on from any seq.
func TestRedisStoreRecordsEvents(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, kind))
			runRelay(t, rs)
			ctx := t.Context()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			login := func(appID, name, unionID string) account.User {
				t.Helper()
				u, _, err := rs.Login(ctx, appID, openIDOf(appID, name), unionID)
				must(err)
				return u
			}
			var want []told
			// step does a change, and checks that the log tells what it
			// answers, after what it told before.
			step := func(name string, change func() []told) {
				t.Helper()
				want = append(want, change()...)
				if got := toldBy(relayed(t, rs)); !slices.Equal(got, want) {
					t.Fatalf("after %s, the log tells\n%+v\nwant\n%+v", name, got, want)
				}
			}
			alice := unionIDOf("alice")
			var shop, game, bob, carol account.User
			step("a new user's login", func() []told {
				shop = login("wxshop", "alice", alice)
				return []told{{events.UserCreated, events.Data{UserID: shop.ID, AppID: "wxshop", PersonID: shop.ID}}}
			})
			step("the same person in a second app", func() []told {
				game = login("wxgame", "alice", alice)
				return []told{{events.UserCreated, events.Data{UserID: game.ID, AppID: "wxgame", PersonID: shop.ID}}}
			})
			step("a returning login", func() []told { login("wxshop", "alice", alice); return nil })
			step("a changed unionid, which keeps the person", func() []told {
				login("wxshop", "alice", unionIDOf("alice-elsewhere"))
				return nil
			})
			step("a user with no unionid", func() []told {
				bob = login("wxgame", "bob", "")
				return []told{{events.UserCreated, events.Data{UserID: bob.ID, AppID: "wxgame", PersonID: bob.ID}}}
			})
			step("a unionid learned by an update", func() []told {
				_, err := rs.Update(ctx, bob.ID, func(u *account.User) { u.UnionID = alice })
				must(err)
				return []told{{events.PersonJoined, events.Data{UserID: bob.ID, AppID: "wxgame", PersonID: shop.ID, PreviousPersonID: bob.ID}}}
			})
			step("another user with no unionid", func() []told {
				carol = login("wxthird", "carol", "")
				return []told{{events.UserCreated, events.Data{UserID: carol.ID, AppID: "wxthird", PersonID: carol.ID}}}
			})
			step("a unionid learned by a login", func() []told {
				login("wxthird", "carol", alice)
				return []told{{events.PersonJoined, events.Data{UserID: carol.ID, AppID: "wxthird", PersonID: shop.ID, PreviousPersonID: carol.ID}}}
			})
			setPhone := func(u *account.User) {
				u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+86 13800138000", "13800138000", "86"
			}
			step("a phone bound", func() []told {
				_, err := rs.Update(ctx, game.ID, setPhone)
				must(err)
				return []told{{events.PhoneBound, events.Data{UserID: game.ID, AppID: "wxgame", PersonID: shop.ID,
					PhoneNumber: "+86 13800138000", PurePhoneNumber: "13800138000", CountryCode: "86"}}}
			})
			step("the same phone again, and a nickname", func() []told {
				_, err := rs.Update(ctx, game.ID, func(u *account.User) { setPhone(u); u.Nickname = "Alice" })
				must(err)
				login("wxgame", "alice", alice)
				return nil
			})
			step("a claim", func() []told {
				_, taken, err := rs.Claim(ctx, bob.ID, "welcome-gift")
				must(err)
				if taken {
					t.Fatal("the first claim was taken already")
				}
				return []told{{events.ClaimTaken, events.Data{UserID: bob.ID, AppID: "wxgame", PersonID: shop.ID, Claim: "welcome-gift"}}}
			})
			step("a claim taken already", func() []told {
				_, taken, err := rs.Claim(ctx, carol.ID, "welcome-gift")
				must(err)
				if !taken {
					t.Fatal("the second claim was not taken already")
				}
				return nil
			})
			var dave account.User
			step("a user of a person of its own", func() []told {
				dave = login("wxfourth", "dave", unionIDOf("dave"))
				return []told{{events.UserCreated, events.Data{UserID: dave.ID, AppID: "wxfourth", PersonID: dave.ID}}}
			})
			step("a changed unionid that brings that later person in", func() []told {
				login("wxshop", "alice", unionIDOf("dave")) // the shop moved to dave's Open Platform account
				// As the data directory tells it (TestEventsOfEachChange):
				// the person dave was in joined alice's.
				return []told{{events.PersonJoined, events.Data{UserID: shop.ID, AppID: "wxshop", PersonID: shop.ID, PreviousPersonID: dave.ID}}}
			})
			step("an erasure", func() []told {
				_, err := rs.Erase(ctx, carol.ID)
				must(err)
				return []told{{events.UserDeleted, events.Data{UserID: carol.ID, AppID: "wxthird", PersonID: shop.ID}}}
			})

			list := allEvents(t, rs)
			for _, tt := range []struct{ after, limit, from, to int }{
				{0, 3, 0, 3}, {3, 3, 3, 6}, {6, 100, 6, len(list)}, {len(list), 10, 0, 0},
			} {
				after := int64(0)
				if tt.after > 0 {
					after = list[tt.after-1].Seq
				}
				page, err := rs.Events(ctx, after, tt.limit)
				must(err)
				if !slices.EqualFunc(page, list[tt.from:tt.to], func(a, b events.Event) bool { return a.ID == b.ID && a.Seq == b.Seq }) {
					t.Errorf("Events(%d, %d) = %d events; want events %d to %d of the log", after, tt.limit, len(page), tt.from, tt.to)
				}
			}
			select {
			case <-rs.Recorded():
			default:
				t.Error("Recorded was not signalled after events went into the log")
			}
			// What the hash keeps of its events stays out of records and exports.
			contents, err := rs.Export(ctx)
			must(err)
			if len(contents.Users) != 4 {
				t.Errorf("export has %d users; want 4", len(contents.Users))
			}
		})
	}
}

// A user made before events were recorded is not announced as new, and
// its changes from then on are, each by its own script: a unionid learned
// by a login in a second app, a phone bound in the first, which never
// logged in since; a returning login records nothing.
func TestRedisRecordsEventsOfUsersFromBeforeEvents(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := startRedis(t, kind)
			before := openStore(t, cfg, time.Now) // events off
			ctx := t.Context()
			shop, _, err := before.Login(ctx, "wxshop", openIDOf("wxshop", "erin"), unionIDOf("erin"))
			if err != nil {
				t.Fatal(err)
			}
			game, _, err := before.Login(ctx, "wxgame", openIDOf("wxgame", "erin"), "")
			if err != nil {
				t.Fatal(err)
			}
			rs := openEventStore(t, cfg)
			runRelay(t, rs)
			if _, _, err := rs.Login(ctx, "wxshop", shop.OpenID, unionIDOf("erin")); err != nil {
				t.Fatal(err)
			}
			if got := relayed(t, rs); len(got) != 0 {
				t.Fatalf("after erin's returning login the log tells %+v; want nothing", toldBy(got))
			}
			if _, _, err := rs.Login(ctx, "wxgame", game.OpenID, unionIDOf("erin")); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Update(ctx, shop.ID, func(u *account.User) { u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+1 5550100", "5550100", "1" }); err != nil {
				t.Fatal(err)
			}
			want := []told{{events.PersonJoined, events.Data{UserID: game.ID, AppID: "wxgame", PersonID: shop.ID, PreviousPersonID: game.ID}},
				{events.PhoneBound, events.Data{UserID: shop.ID, AppID: "wxshop", PersonID: shop.ID,
					PhoneNumber: "+1 5550100", PurePhoneNumber: "5550100", CountryCode: "1"}}}
			if got := toldBy(relayed(t, rs)); !slices.Equal(got, want) {
				t.Errorf("after erin's changes, the log tells\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// The relay moves the outboxes of many changes at once, each user's
// events in order, and an outbox longer than a batch whole.
func TestRedisRelaysManyOutboxesInOrder(t *testing.T) {
	cfg := startRedis(t, onRedis)
	rs := openEventStore(t, cfg)
	ctx := t.Context()
	long := relayBatch*2 + 5
	var pushed []string
	for range long {
		e := events.New(events.PhoneBound, time.Now(), events.Data{UserID: 1000, AppID: "wxshop", PersonID: 1000})
		if _, err := rs.rc.Do(ctx, "RPUSH", userOutboxKey(1000), string(e.Append(nil))); err != nil {
			t.Fatal(err)
		}
		pushed = append(pushed, e.ID)
	}
	rs.note(userOutboxKey(1000))
	runRelay(t, rs)
	var users []account.User
	done := make(chan error)
	for i := range 20 {
		go func() {
			u, _, err := rs.Login(ctx, "wxshop", openIDOf("wxshop", fmt.Sprint("user", i)), "")
			if err == nil {
				_, err = rs.Update(ctx, u.ID, func(u *account.User) { u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+1 5550100", "5550100", "1" })
			}
			done <- err
		}()
	}
	for range 20 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	got := relayed(t, rs)
	if len(got) != long+40 {
		t.Fatalf("the log holds %d events; want %d", len(got), long+40)
	}
	seen := map[int64]string{} // each user's last event's type
	var moved []string         // the ids of user 1000's events
	for _, e := range got {
		switch {
		case e.Data.UserID == 1000:
			moved = append(moved, e.ID)
		case seen[e.Data.UserID] == "" && e.Type == events.UserCreated, seen[e.Data.UserID] == events.UserCreated && e.Type == events.PhoneBound:
			users = append(users, account.User{ID: e.Data.UserID})
		default:
			t.Errorf("user %d's %s after %q", e.Data.UserID, e.Type, seen[e.Data.UserID])
		}
		seen[e.Data.UserID] = e.Type
	}
	if len(users) != 40 {
		t.Errorf("%d events of the logins in order; want 40", len(users))
	}
	if !slices.Equal(moved, pushed) {
		t.Errorf("the long outbox's events reached the log out of order, or not all (%d of %d)", len(moved), len(pushed))
	}
}

// Events an outbox still holds (a relay that failed, or an instance
// stopped before it) go into the log at the next sweep, or when a store
// opens; a relay cut short between its append and its pop moves them
// again: the log holds them twice with one id, never loses one.
func TestRedisRelaysLeftoverEventsAtLeastOnce(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := startRedis(t, kind)
			rs := openEventStore(t, cfg)
			ctx := t.Context()
			leave := func(outbox string, kinds ...string) []string {
				t.Helper()
				var ids []string
				for _, kind := range kinds {
					e := events.New(kind, time.Now(), events.Data{UserID: 7, AppID: "wxshop", PersonID: 7, Claim: "gift"})
					if _, err := rs.rc.Do(ctx, "RPUSH", outbox, string(e.Append(nil))); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, e.ID)
				}
				return ids
			}
			idsOf := func() []string {
				t.Helper()
				list, err := rs.Events(ctx, 0, 1000) // ids may repeat here
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, e := range list {
					ids = append(ids, e.ID)
				}
				return ids
			}
			user := leave(userOutboxKey(7), events.UserCreated, events.PhoneBound)
			person := leave(personOutboxKey(rs.PersonHash("wxshop", "o-7", "")), events.ClaimTaken)
			if got := idsOf(); len(got) != 0 {
				t.Fatalf("the log holds %v before any relay", got)
			}
			if _, err := rs.Export(ctx); err != nil {
				t.Errorf("export with a person's outbox left = %v; want it read as no person", err)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			got := idsOf()
			if len(got) != 3 || !slices.Equal(slices.DeleteFunc(slices.Clone(got), func(id string) bool { return id == person[0] }), user) {
				t.Fatalf("after the sweep the log holds %v; want %v in order, and %v", got, user, person)
			}
			if keys, _ := rs.rc.Scan(ctx, "wx:{*}:ev"); len(keys) != 0 {
				t.Errorf("outboxes %v are left after the sweep; want none", keys)
			}

			// A relay cut short after its append: the sweep appends again.
			again := leave(userOutboxKey(8), events.UserDeleted)
			head, err := rs.rc.Do(ctx, "LRANGE", userOutboxKey(8), "0", "-1")
			if err != nil {
				t.Fatal(err)
			}
			if err := rs.appendEvents(ctx, []string{head.([]any)[0].(string)}); err != nil {
				t.Fatal(err)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			// (A user.deleted takes its user's phone.bound out: compare the end.)
			if got := idsOf(); len(got) < 2 || !slices.Equal(got[len(got)-2:], []string{again[0], again[0]}) {
				t.Errorf("after a relay cut short and the sweep, the log is %v; want it to end with %s twice", got, again[0])
			}

			// A store opening relays what is left.
			last := leave(userOutboxKey(9), events.UserCreated)
			openEventStore(t, cfg)
			if got := idsOf(); got[len(got)-1] != last[0] {
				t.Errorf("after a store opened, the log ends %v; want %s", got[len(got)-1], last[0])
			}
		})
	}
}

// The whole keyspace is swept for outboxes left (RelayLeftovers, a SCAN)
// only when an instance may have left some: not while every relay renews
// its lease, but by the first relay to find another's lapsed (an instance
// killed); and a relay that stops moves what it noted and gives its lease
// up.
func TestRedisSweepsOnlyWhenAnInstanceIsGone(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := startRedis(t, kind)
			ctx := t.Context()
			a, killed := openEventStore(t, cfg), openEventStore(t, cfg)
			a.beat = 10 * time.Millisecond
			lease := func(s *Store) string { // when s's lease ends, "" for none
				t.Helper()
				reply, err := a.rc.Do(ctx, "HGETALL", relaysKey)
				if err != nil {
					t.Fatal(err)
				}
				return hashField(reply, s.relayID)
			}
			if lease(a) == "" || lease(killed) == "" {
				t.Fatal("a store opened without taking a lease")
			}
			runRelay(t, a)

			// An instance's pushes that its relay never moved: it was killed.
			u, _, err := killed.Login(ctx, "wxshop", openIDOf("wxshop", "left"), "")
			if err != nil {
				t.Fatal(err)
			}
			left := func() int64 {
				t.Helper()
				n, err := a.rc.Do(ctx, "LLEN", userOutboxKey(u.ID))
				if err != nil {
					t.Fatal(err)
				}
				return n.(int64)
			}
			seen := map[string]bool{}
			testkit.WaitFor(t, "three beats of the live relay", func() bool {
				seen[lease(a)] = true
				return len(seen) > 3
			})
			if left() != 1 {
				t.Fatalf("the outbox of a live instance's push holds %d events after three beats; want it left alone, no sweep", left())
			}

			// Its lease lapses: the live relay sweeps.
			killed.lease = time.Millisecond
			killed.renewLease(ctx)
			testkit.WaitFor(t, "the live relay to sweep the killed instance's outbox", func() bool { return left() == 0 })
			if got := allEvents(t, a); len(got) != 1 || got[0].Type != events.UserCreated || got[0].Data.UserID != u.ID {
				t.Errorf("after the sweep the log holds %+v; want the killed instance's user.created", got)
			}
			if got := lease(killed); got != "" {
				t.Errorf("the lapsed lease is still there: %s", got)
			}

			// A relay that stops moves what it noted first, and makes the
			// sweep it owes (one failed), then gives its lease up.
			stopping := openEventStore(t, cfg)
			v, _, err := stopping.Login(ctx, "wxshop", openIDOf("wxshop", "last"), "")
			if err != nil {
				t.Fatal(err)
			}
			owed := events.New(events.UserDeleted, time.Now(), events.Data{UserID: 99, AppID: "wxshop", PersonID: 99})
			if _, err := a.rc.Do(ctx, "RPUSH", userOutboxKey(99), string(owed.Append(nil))); err != nil {
				t.Fatal(err)
			}
			stopping.sweepOwed.Store(true)
			done, cancel := context.WithCancel(ctx)
			cancel()
			stopping.RunRelay(done)
			got := allEvents(t, a)
			if len(got) != 3 || got[1].Data.UserID != v.ID || got[2].ID != owed.ID {
				t.Errorf("after a relay stopped, the log holds %+v; want its last user's user.created, then what it owed a sweep", got)
			}
			if lease(stopping) != "" || lease(a) == "" {
				t.Errorf("after a relay stopped, its lease ends at %q and the live one's at %q; want its own given up, the live one's kept", lease(stopping), lease(a))
			}
		})
	}
}

// On one server the relay moves every outbox noted in one script, one
// round trip however many there are, under an ACL user that may touch
// wxlogin's keys only (docs/security.md). It leaves an outbox whose user's
// hash holds no good copy of its person's list (a spread cut short, or a
// copy naming the user under another app) to the relay a Cluster makes,
// which reads the person as Person does: both fill in the same person id.
// A script that fails midway keeps every event, and more events than one
// script moves follow in the order they were noted.
func TestRedisRelaysInOneScriptOnOneServer(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := t.Context()
	if _, err := srv.Client(t, "", "").Do(ctx, "ACL", "SETUSER", "wxlogin", "on", ">app-pass", "~wx:*", "+@all"); err != nil {
		t.Fatal(err)
	}
	s := openEventStore(t, redis.Config{Addrs: []string{srv.Addr}, User: "wxlogin", Password: "app-pass", PoolSize: 4, Timeout: 5 * time.Second})
	alice := unionIDOf("alice")
	var want []told
	login := func(appID string) account.User {
		t.Helper()
		u, _, err := s.Login(ctx, appID, openIDOf(appID, "alice"), alice)
		if err != nil {
			t.Fatal(err)
		}
		person := u.ID
		if len(want) > 0 {
			person = want[0].Data.UserID
		}
		want = append(want, told{events.UserCreated, events.Data{UserID: u.ID, AppID: appID, PersonID: person}})
		return u
	}
	check := func(what string) {
		t.Helper()
		if got := toldBy(allEvents(t, s)); !slices.Equal(got, want) {
			t.Fatalf("%s, the log tells\n%+v\nwant\n%+v", what, got, want)
		}
	}
	first := login("wxapp0")
	if err := s.relayNoted(ctx); err != nil { // Redis learns the script
		t.Fatal(err)
	}
	for i := range 5 {
		login(fmt.Sprint("wxapp", i+1))
	}
	if _, _, err := s.Claim(ctx, first.ID, "gift"); err != nil { // onto the person's outbox
		t.Fatal(err)
	}
	want = append(want, told{events.ClaimTaken, events.Data{UserID: first.ID, AppID: "wxapp0", PersonID: first.ID, Claim: "gift"}})
	before := s.rc.RoundTrips()
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.rc.RoundTrips() - before; n != 1 {
		t.Errorf("the relay of 6 outboxes made %d round trips; want 1", n)
	}
	check("after the relay of six outboxes")

	// Each join spreads the person's list to all its records: the copies
	// are spoilt once the three have joined.
	u := login("wxnocopy")
	login("wxgood") // after one left to the Cluster's relay
	v := login("wxbadcopy")
	if _, err := s.rc.Do(ctx, "HDEL", userKey(u.ID), "m"); err != nil {
		t.Fatal(err)
	}
	tag := personTag(hashField(mustDo(t, s.rc, "HGETALL", userKey(v.ID)), "person"))
	if _, err := s.rc.Do(ctx, "HSET", userKey(v.ID), "m", tag+"@999|0:wxother,"+strconv.FormatInt(v.ID, 10)+":wxwrong"); err != nil {
		t.Fatal(err)
	}
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	check("with outboxes of no good copy of the person's list")

	// The counter set behind the log (an operator's mistake): the append
	// fails, and the outbox keeps its event until the relay can move it.
	w := login("wxlate")
	if _, err := s.rc.Do(ctx, "SET", eventSeqKey, "0"); err != nil {
		t.Fatal(err)
	}
	if err := s.relayNoted(ctx); err == nil {
		t.Fatal("the relay with the counter behind the log succeeded")
	}
	if n := mustDo(t, s.rc, "LLEN", userOutboxKey(w.ID)); n != int64(1) {
		t.Fatalf("after a relay that failed, the outbox holds %v events; want its 1 kept", n)
	}
	if _, err := s.rc.Do(ctx, "SET", eventSeqKey, "1000000"); err != nil {
		t.Fatal(err)
	}
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	check("once the counter is past the log")

	// An outbox named twice is moved once.
	var twice []string
	for range relayBatch + 50 {
		e := events.New(events.PhoneBound, time.Now(), events.Data{UserID: first.ID, AppID: "wxapp0", PersonID: first.ID})
		mustDo(t, s.rc, "RPUSH", userOutboxKey(first.ID), string(e.Append(nil)))
		twice = append(twice, e.ID)
	}
	for outboxes := []string{userOutboxKey(first.ID), userOutboxKey(first.ID)}; len(outboxes) > 0; {
		var err error
		if outboxes, err = s.relay(ctx, outboxes); err != nil {
			t.Fatal(err)
		}
	}
	var moved []string
	for _, e := range allEvents(t, s)[len(want):] {
		moved = append(moved, e.ID)
	}
	if !slices.Equal(moved, twice) {
		t.Errorf("an outbox of %d events named twice: %d reached the log, or out of order; want each once", len(twice), len(moved))
	}
	for _, e := range allEvents(t, s)[len(want):] {
		want = append(want, told{e.Type, e.Data})
	}

	// The events read count towards relayMax, those dropped too: with
	// three outboxes of person.joined that joined no one, a script stops
	// after the two that reach relayMax.
	s.relayMax = 2*relayBatch - 2
	for _, id := range []int64{want[1].Data.UserID, want[2].Data.UserID, want[3].Data.UserID} {
		for range relayBatch - 1 {
			around := joinedTemplate(time.Now(), &account.User{ID: id, AppID: "wxapp"})
			mustDo(t, s.rc, "RPUSH", userOutboxKey(id), around[0]+strconv.FormatInt(first.ID, 10)+around[1])
		}
		s.note(userOutboxKey(id))
	}
	before = s.rc.RoundTrips()
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.rc.RoundTrips() - before; n != 2 {
		t.Errorf("the relay of three outboxes of %d events, %d at most a script, made %d round trips; want 2", relayBatch-1, s.relayMax, n)
	}
	check("after joins that joined no one")
	s.relayMax = relayMax

	// More events than one script reads (relayMax), in outboxes each
	// read whole: the rest follow, in the order they were noted.
	var pushes [][]string
	var pushed []string
	for id := int64(1000); len(pushed) < relayMax+relayBatch; id++ {
		for range relayBatch - 1 {
			e := events.New(events.PhoneBound, time.Now(), events.Data{UserID: id, AppID: "wxshop", PersonID: id})
			pushes = append(pushes, []string{"RPUSH", userOutboxKey(id), string(e.Append(nil))})
			pushed = append(pushed, e.ID)
		}
		s.note(userOutboxKey(id))
	}
	if _, err := s.rc.Pipeline(ctx, pushes); err != nil {
		t.Fatal(err)
	}
	before = s.rc.RoundTrips()
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.rc.RoundTrips() - before; n != 2 {
		t.Errorf("the relay of %d events made %d round trips; want 2, at most %d events a script", len(pushed), n, relayMax)
	}
	moved = nil
	for _, e := range allEvents(t, s)[len(want):] {
		moved = append(moved, e.ID)
	}
	if !slices.Equal(moved, pushed) {
		t.Errorf("of %d events noted, %d reached the log, or out of order", len(pushed), len(moved))
	}
}

// mustDo is rc's reply to a command, which must not fail.
func mustDo(t *testing.T, rc *redis.Client, args ...string) any {
	t.Helper()
	reply, err := rc.Do(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// A relay that fails (Redis lost) keeps what it noted, and moves it at the
// next try, once Redis is back: no sweep is needed for it.
func TestRedisRelayTriesAgainWhatFailed(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s := openEventStore(t, redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: time.Second})
	ctx := t.Context()
	u, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := s.relayNoted(ctx); err == nil {
		t.Fatal("a relay with Redis lost succeeded")
	}
	srv.Start(t)
	testkit.WaitFor(t, "the relay to move what failed, once Redis is back", func() bool { return s.relayNoted(ctx) == nil })
	if got := allEvents(t, s); len(got) != 1 || got[0].Data.UserID != u.ID {
		t.Errorf("after the relay tried again, the log holds %+v; want user %d's user.created", got, u.ID)
	}
}

// An outbox the relay cannot move for what it holds (not a list, an event
// with no person id outside a user's outbox, or one whose user's key is
// not a hash) is left as it is and set aside, and the others go on, in
// the relay and in the sweep.
func TestRedisRelayGoesOnPastAnOutboxItCannotMove(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			s := openEventStore(t, startRedis(t, kind))
			ctx := t.Context()
			notList, noPerson, notHash := userOutboxKey(5), personOutboxKey("bad"), userOutboxKey(7)
			placeholder := events.New(events.ClaimTaken, time.Now(), events.Data{UserID: 6, AppID: "wxshop", Claim: "gift"})
			created := events.New(events.UserCreated, time.Now(), events.Data{UserID: 7, AppID: "wxshop"})
			for _, cmd := range [][]string{
				{"SET", notList, "x"},
				{"RPUSH", noPerson, string(placeholder.Append(nil))},
				{"SET", userKey(7), "x"}, {"RPUSH", notHash, string(created.Append(nil))},
			} {
				mustDo(t, s.rc, cmd...)
			}
			u, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, outbox := range []string{notList, noPerson, notHash} {
				s.note(outbox)
			}
			if err := s.relayNoted(ctx); err != nil {
				t.Fatalf("the relay failed for outboxes it cannot move: %v", err)
			}
			if got := allEvents(t, s); len(got) != 1 || got[0].Data.UserID != u.ID {
				t.Errorf("the log holds %+v; want alice's user.created, moved past the three", got)
			}
			for _, outbox := range []string{notList, noPerson, notHash} {
				if !slices.Contains(s.troubled, outbox) {
					t.Errorf("set aside: %v; want %s among them, to try again at the next beat", s.troubled, outbox)
				}
			}

			v, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", "bob"), "")
			if err != nil {
				t.Fatal(err)
			}
			s.noted = nil // left to the sweep, as a killed instance leaves it
			if err := s.RelayLeftovers(ctx); err != nil {
				t.Fatalf("the sweep failed for outboxes it cannot move: %v", err)
			}
			if got := allEvents(t, s); len(got) != 2 || got[1].Data.UserID != v.ID {
				t.Errorf("after the sweep the log holds %+v; want bob's user.created too", got)
			}
			for _, outbox := range []string{noPerson, notHash} {
				if n := mustDo(t, s.rc, "LLEN", outbox); n != int64(1) {
					t.Errorf("%s holds %v events; want its event left as it is", outbox, n)
				}
			}
		})
	}
}

// The webhook's cursor only moves on, and one instance holds the
// delivery at a time, until its lease lapses.
func TestRedisDeliveryCursorAndLease(t *testing.T) {
	cfg := startRedis(t, onRedis)
	a, b := openEventStore(t, cfg), openEventStore(t, cfg)
	ctx := t.Context()
	for _, tt := range []struct{ set, want int64 }{{5, 5}, {3, 5}, {7, 7}, {7, 7}} {
		if err := a.SetDelivered(ctx, tt.set); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Delivered(ctx); err != nil || got != tt.want {
			t.Errorf("after SetDelivered(%d), Delivered = %d, %v; want %d", tt.set, got, err, tt.want)
		}
	}
	hold := func(s *Store, holder string) bool {
		t.Helper()
		ok, err := s.HoldDelivery(ctx, holder, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold(a, "a") {
		t.Fatal("a cannot hold a free lease")
	}
	if hold(b, "b") {
		t.Error("b holds the lease a holds")
	}
	if !hold(a, "a") {
		t.Error("a cannot extend its own lease")
	}
	testkit.WaitFor(t, "a's lease to lapse for b", func() bool { return hold(b, "b") })
	if hold(a, "a") {
		t.Error("a holds the lease b took after it lapsed")
	}
}

// With events off, the store writes nothing of them: no key, no field,
// and a returning login costs no round trip more with them on.
func TestRedisWithoutEventsRecordsNothing(t *testing.T) {
	cfg := startRedis(t, onRedis)
	rs := openStore(t, cfg, time.Now)
	ctx := t.Context()
	u, _, err := rs.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), unionIDOf("alice"))
	if err != nil {
		t.Fatal(err)
	}
	game, _, err := rs.Login(ctx, "wxgame", openIDOf("wxgame", "alice"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Update(ctx, game.ID, func(u *account.User) { u.UnionID, u.PhoneNumber = unionIDOf("alice"), "5550100" }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.Claim(ctx, u.ID, "gift"); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Erase(ctx, game.ID); err != nil {
		t.Fatal(err)
	}
	keys, err := rs.rc.Scan(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if strings.Contains(key, "ev") {
			t.Errorf("key %s written with events off", key)
		}
	}
	if fields, _ := rs.rc.Do(ctx, "HKEYS", userKey(u.ID)); slices.ContainsFunc(fields.([]any), func(f any) bool { return strings.HasPrefix(f.(string), "ev_") }) {
		t.Errorf("user's hash has fields %v with events off", fields)
	}

	on := openEventStore(t, cfg) // its relay not running: it would share the client counted
	costs := func(s *Store, name string) int64 {
		t.Helper()
		login := func() {
			if _, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", name), ""); err != nil {
				t.Fatal(err)
			}
		}
		login()
		before := s.rc.RoundTrips()
		login()
		return s.rc.RoundTrips() - before
	}
	if off, on := costs(rs, "bob"), costs(on, "carol"); on != off {
		t.Errorf("a returning login costs %d round trips with events, %d without; want the same", on, off)
	}
}

// BenchmarkRedisRelay is what moving events into the log costs: an op is
// one relay of the user.created of 50 users, pushed as logins push them,
// redis-µs/event is Redis's CPU per event moved (its INFO cpu), and
// wxlogin-µs/event this process's. "script" is the relay on one server (relayScript),
// "each" the same relay as a Cluster makes it (relayEach), on the same
// server.
func BenchmarkRedisRelay(b *testing.B) {
	for _, way := range []string{"script", "each"} {
		b.Run(way, func(b *testing.B) {
			s := openEventStore(b, startRedis(b, onRedis))
			ctx := b.Context()
			var outboxes []string
			var pushes [][]string
			for i := range 50 {
				u, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", fmt.Sprint("user", i)), "")
				if err != nil {
					b.Fatal(err)
				}
				outboxes = append(outboxes, userOutboxKey(u.ID))
				pushes = append(pushes, []string{"RPUSH", userOutboxKey(u.ID), s.loginEvents(u.ID, u.AppID, "", true, false)[0]})
			}
			relay := func() {
				var err error
				if way == "script" {
					_, err = s.relay(ctx, outboxes)
				} else {
					_, err = s.relayEach(ctx, outboxes)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			relay() // Redis learns the script
			var cpu, own time.Duration
			for b.Loop() {
				b.StopTimer()
				if _, err := s.rc.Pipeline(ctx, pushes); err != nil {
					b.Fatal(err)
				}
				before, ownBefore := redisCPU(b, s.rc), ownCPU()
				b.StartTimer()
				relay()
				b.StopTimer()
				cpu, own = cpu+redisCPU(b, s.rc)-before, own+ownCPU()-ownBefore
				b.StartTimer()
			}
			events := float64(b.N * len(outboxes))
			b.ReportMetric(float64(cpu.Microseconds())/events, "redis-µs/event")
			b.ReportMetric(float64(own.Microseconds())/events, "wxlogin-µs/event")
		})
	}
}

// bindPhone gives a user a phone number: an update whose event
// (phone.bound) goes onto the user's outbox.
func bindPhone(u *account.User) {
	u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+86 13800138000", "13800138000", "86"
}

// ownCPU is the CPU time this process has used.
func ownCPU() time.Duration {
	var r syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// redisCPU is the CPU time the Redis of rc has used, as INFO says.
func redisCPU(b *testing.B, rc *redis.Client) time.Duration {
	b.Helper()
	reply, err := rc.Do(b.Context(), "INFO", "cpu")
	if err != nil {
		b.Fatal(err)
	}
	text, _ := reply.(string)
	var seconds float64
	for line := range strings.SplitSeq(text, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		if name == "used_cpu_sys" || name == "used_cpu_user" {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			seconds += v
		}
	}
	return time.Duration(seconds * float64(time.Second))
}

// BenchmarkRedisNewUserEvents is what events cost a new user's login on
// one Redis server: an op is one new user's login with its token
// (LoginWithToken), from 32 goroutines at once as from 32 connections,
// with events off, with events and the relay running ("relay"), and with
// a webhook.Sender posting them too ("webhook", to a receiver in this
// process that answers 204); redis-µs/login is Redis's CPU per login, and
// wxlogin-µs/login this process's (the receiver's included), counted
// until every event is in the log and, with the webhook, delivered. Each
// runs with appendfsync always, as -redis-durability=fsync needs, and
// with appendfsync no, so that what the fsyncs cost shows apart.
func BenchmarkRedisNewUserEvents(b *testing.B) {
	for _, fsync := range []string{"always", "no"} {
		for _, way := range []string{"off", "relay", "webhook"} {
			b.Run("fsync="+fsync+"/"+way, func(b *testing.B) {
				benchmarkNewUserEvents(b, fsync, way)
			})
		}
	}
}

func benchmarkNewUserEvents(b *testing.B, fsync, way string) {
	srv := testkit.StartRedis(b, "--appendonly", "yes", "--appendfsync", fsync)
	rc := redis.NewClient(redis.Config{Addrs: []string{srv.Addr}, PoolSize: 16, Timeout: 5 * time.Second})
	b.Cleanup(rc.Close)
	durability := Fsync
	if fsync != "always" {
		durability = Unchecked
	}
	s, err := Open(b.Context(), rc, Options{Durability: durability, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, PreviousKeyWindow: 2 * time.Minute, Now: time.Now, Log: discardLogger(),
		Events: way != "off"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(b.Context())
	var running sync.WaitGroup
	defer running.Wait()
	defer stop()
	if way != "off" {
		running.Go(func() { s.RunRelay(ctx) })
	}
	if way == "webhook" {
		receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		b.Cleanup(receiver.Close)
		sender := &webhook.Sender{URL: receiver.URL, Secret: webhook.NewSecret(), Timeout: 10 * time.Second, Log: discardLogger(),
			Poll: time.Second, MaxBackoff: 30 * time.Second, Linger: 50 * time.Millisecond, Batch: 100}
		running.Go(func() { sender.Run(ctx, s) })
	}
	var next atomic.Int64
	b.SetParallelism(16)
	before, ownBefore := redisCPU(b, rc), ownCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := "user" + strconv.FormatInt(next.Add(1), 10)
			if _, created, _, err := s.LoginWithToken(ctx, "wxshop", openIDOf("wxshop", name), "", "a-session-key"); err != nil || !created {
				b.Errorf("a new user's login: created %v, %v", created, err)
				return
			}
		}
	})
	n := next.Load()
	testkit.WaitFor(b, "every event in the log, and delivered", func() bool {
		if way == "off" {
			return true
		}
		seq, err := rc.Do(ctx, "GET", eventSeqKey)
		if err != nil {
			b.Fatal(err)
		}
		text, _ := seq.(string)
		if text != strconv.FormatInt(n, 10) {
			return false
		}
		if way == "relay" {
			return true
		}
		delivered, err := s.Delivered(ctx)
		return err == nil && delivered == n
	})
	b.StopTimer()
	b.ReportMetric(float64((redisCPU(b, rc)-before).Microseconds())/float64(n), "redis-µs/login")
	b.ReportMetric(float64((ownCPU()-ownBefore).Microseconds())/float64(n), "wxlogin-µs/login")
}

// A user's claim.taken, pushed onto its person's outbox, never reaches the
// log before the user's own events made before it: not when another
// instance pushed those and was killed before moving them (the claim's
// relay moves the claimant's outbox first, even when another member's claim
// noted the person's outbox before it), and not when the user's outbox
// holds more than one relay moves (nothing noted after it is moved before
// its rest).
func TestRedisAClaimNeverOvertakesItsClaimantsEvents(t *testing.T) {
	typesOf := func(list []events.Event, id int64) []string {
		var out []string
		for _, e := range list {
			if e.Data.UserID == id {
				out = append(out, e.Type)
			}
		}
		return out
	}
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := startRedis(t, kind)
			killed, live := openEventStore(t, cfg), openEventStore(t, cfg)
			ctx := t.Context()

			alice, _, err := killed.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := killed.Update(ctx, alice.ID, bindPhone); err != nil { // left to a relay: killed before it ran
				t.Fatal(err)
			}
			if _, _, err := live.Claim(ctx, alice.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if err := live.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			if err := live.RelayLeftovers(ctx); err != nil { // the sweep, once the killed one's lease lapsed
				t.Fatal(err)
			}
			if got, want := typesOf(allEvents(t, live), alice.ID), []string{events.UserCreated, events.PhoneBound, events.ClaimTaken}; !slices.Equal(got, want) {
				t.Errorf("alice's events in the log: %v; want %v, the order they were made in", got, want)
			}

			// carol's user.created left by the killed instance, and her
			// person's outbox noted already, by another member's claim.
			carol := unionIDOf("carol")
			shopCarol, _, err := live.Login(ctx, "wxshop", openIDOf("wxshop", "carol"), carol)
			if err != nil {
				t.Fatal(err)
			}
			if err := live.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			gameCarol, _, err := killed.Login(ctx, "wxgame", openIDOf("wxgame", "carol"), carol)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := live.Claim(ctx, shopCarol.ID, "coupon"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := live.Claim(ctx, gameCarol.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if err := live.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := typesOf(allEvents(t, live), gameCarol.ID), []string{events.UserCreated, events.ClaimTaken}; !slices.Equal(got, want) {
				t.Errorf("carol's events in wxgame, in the log: %v; want %v, the order they were made in", got, want)
			}

			bob, _, err := live.Login(ctx, "wxshop", openIDOf("wxshop", "bob"), "")
			if err != nil {
				t.Fatal(err)
			}
			for i := range relayBatch + 5 {
				if _, err := live.Update(ctx, bob.ID, func(u *account.User) {
					u.PurePhoneNumber = strconv.Itoa(5550000 + i)
					u.PhoneNumber, u.CountryCode = "+1 "+u.PurePhoneNumber, "1"
				}); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := live.Claim(ctx, bob.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if err := live.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			got := typesOf(allEvents(t, live), bob.ID)
			if len(got) != relayBatch+7 || got[len(got)-1] != events.ClaimTaken {
				t.Errorf("bob's %d events in the log end with %v; want %d, his claim, made last, last", len(got), got[max(len(got)-3, 0):], relayBatch+7)
			}
		})
	}
}

// A person.joined is judged when the change that pushed it has settled
// its person, as the data directory records it: a join followed, before
// the relay runs, by the erasure of its person's earliest record (which
// gives the joiner its own id back as its person's) stays recorded, with
// the person it joined.
func TestRedisAJoinStaysRecordedWhateverFollowsBeforeTheRelay(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			s := openEventStore(t, startRedis(t, kind))
			ctx := t.Context()
			alice := unionIDOf("alice")
			shop, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), alice)
			if err != nil {
				t.Fatal(err)
			}
			game, _, err := s.Login(ctx, "wxgame", openIDOf("wxgame", "alice"), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Update(ctx, game.ID, func(u *account.User) { u.UnionID = alice }); err != nil { // joins shop's person
				t.Fatal(err)
			}
			if _, err := s.Erase(ctx, shop.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			var got []told
			for _, e := range toldBy(allEvents(t, s)) {
				if e.Data.UserID == game.ID {
					got = append(got, e)
				}
			}
			want := []told{{events.UserCreated, events.Data{UserID: game.ID, AppID: "wxgame", PersonID: game.ID}},
				{events.PersonJoined, events.Data{UserID: game.ID, AppID: "wxgame", PersonID: shop.ID, PreviousPersonID: game.ID}}}
			if !slices.Equal(got, want) {
				t.Errorf("game's events in the log:\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// A user's record damaged in a field the relay must read to fill in a
// person id (its copy of its person's list gone, and a field that does not
// parse) holds that user's events in its outbox, in order, and is logged
// as an error naming the outbox; every other user's events go on. Once the
// record is mended, the relay's next try moves the held events.
func TestRedisRelayGoesOnPastADamagedRecord(t *testing.T) {
	damages := []struct {
		name  string
		field string
		bad   string
	}{
		{"created_at not a time", "created_at", "yesterday"},
		{"gender not a number", "gender", "x"},
		{"id not a number", "id", "seven"},
	}
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			s := openEventStore(t, startRedis(t, kind))
			logs := &testkit.SyncBuffer{}
			s.log = slog.New(slog.NewTextHandler(logs, nil))
			ctx := t.Context()
			for _, tt := range damages {
				t.Run(tt.name, func(t *testing.T) {
					d, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", tt.name), "")
					if err != nil {
						t.Fatal(err)
					}
					if err := s.relayNoted(ctx); err != nil {
						t.Fatal(err)
					}
					good := mustDo(t, s.rc, "HGET", userKey(d.ID), tt.field) // nil for a field the record lacks
					mustDo(t, s.rc, "HDEL", userKey(d.ID), "m")
					mustDo(t, s.rc, "HSET", userKey(d.ID), tt.field, tt.bad)
					held := events.New(events.PhoneBound, time.Now(), events.Data{UserID: d.ID, AppID: "wxshop"}) // "person_id":0
					mustDo(t, s.rc, "RPUSH", userOutboxKey(d.ID), string(held.Append(nil)))
					s.note(userOutboxKey(d.ID)) // ahead of the other user's
					o, _, err := s.Login(ctx, "wxshop", openIDOf("wxshop", "other of "+tt.name), "")
					if err != nil {
						t.Fatal(err)
					}

					if err := s.relayNoted(ctx); err != nil {
						t.Fatalf("the relay failed past a damaged record: %v", err)
					}
					last := allEvents(t, s)
					if got := last[len(last)-1]; got.Type != events.UserCreated || got.Data.UserID != o.ID {
						t.Errorf("the log ends with %+v; want user %d's user.created, moved past the damaged record", got, o.ID)
					}
					if slices.ContainsFunc(last, func(e events.Event) bool { return e.ID == held.ID }) {
						t.Errorf("the damaged record's event %s reached the log; want it held in its outbox", held.ID)
					}
					if n := mustDo(t, s.rc, "LLEN", userOutboxKey(d.ID)); n != int64(1) {
						t.Errorf("the damaged record's outbox holds %v events; want its 1 kept", n)
					}
					if !slices.Contains(s.troubled, userOutboxKey(d.ID)) {
						t.Errorf("set aside: %v; want %s, to try again at the next beat", s.troubled, userOutboxKey(d.ID))
					}
					if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), userOutboxKey(d.ID)) {
						t.Errorf("the logs say\n%s\nwant an error naming %s", logs, userOutboxKey(d.ID))
					}

					if good, ok := good.(string); ok { // mended
						mustDo(t, s.rc, "HSET", userKey(d.ID), tt.field, good)
					} else {
						mustDo(t, s.rc, "HDEL", userKey(d.ID), tt.field)
					}
					s.relayMu.Lock()
					s.noted, s.troubled = s.troubled, nil // as the next beat does
					s.relayMu.Unlock()
					if err := s.relayNoted(ctx); err != nil {
						t.Fatal(err)
					}
					last = allEvents(t, s)
					want := told{events.PhoneBound, events.Data{UserID: d.ID, AppID: "wxshop", PersonID: d.ID}}
					if got := last[len(last)-1]; got.ID != held.ID || (told{got.Type, got.Data}) != want {
						t.Errorf("once mended, the log ends with %+v; want %+v under %s", got, want, held.ID)
					}
				})
			}
		})
	}
}

// On a Cluster, where the relay reads an outbox, appends to the log and
// pops in three round trips, a join's pin (pinJoins) may run between the
// read and the pop: the person.joined the relay read without its person
// id, the pin writes it in. Each is logged once all the same, with one
// person id, as the person was meanwhile or not. The test holds the relay
// at its append with CLIENT PAUSE on the log's node, and pins the join
// then, on the user's node.
func TestRedisARelayAndAJoinsPinLogTheJoinOnce(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3, "--appendonly", "yes", "--appendfsync", "always")
	s := openEventStore(t, redis.Config{Addrs: []string{cl.Nodes[0].Addr}, Cluster: true, PoolSize: 16, Timeout: 5 * time.Second})
	ctx := t.Context()
	login := loginOn(t, s)
	alice := unionIDOf("alice")
	shop, app := login("wxshop", "alice", alice), login("wxapp", "alice", alice)
	var game account.User
	for i := 0; ; i++ { // a record whose slot is on another node than the log's
		game = login(fmt.Sprint("wxgame", i), "alice", "")
		if cl.OwnerOf(userKey(game.ID)) != cl.OwnerOf(eventLogKey) {
			break
		}
	}
	if _, err := s.Update(ctx, game.ID, func(u *account.User) { u.UnionID = alice }); err != nil {
		t.Fatal(err)
	}
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	logNode, userNode := cl.Direct(t, cl.OwnerOf(eventLogKey)), cl.Direct(t, cl.OwnerOf(userKey(game.ID)))
	lranges := func() int { // LRANGEs the user's node ran, in scripts too
		t.Helper()
		info, err := userNode.Do(ctx, "INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		_, after, _ := strings.Cut(info.(string), "cmdstat_lrange:calls=")
		n, _ := strconv.Atoi(after[:strings.IndexByte(after, ',')])
		return n
	}
	mCopy := hashField(mustDo(t, s.rc, "HGETALL", userKey(game.ID)), "m")

	for _, tt := range []struct {
		name string
		m    string // the copy of game's person's list as the pin reads it
	}{
		{"the person as it was", mCopy},
		{"the person's earliest record gone meanwhile", strings.Replace(mCopy, fmt.Sprintf("%d:wxshop,", shop.ID), "", 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mustDo(t, s.rc, "HSET", userKey(game.ID), "m", mCopy)
			logged := len(allEvents(t, s))
			around := joinedTemplate(time.Now(), &game) // pushed, its pin still to come
			mustDo(t, s.rc, "RPUSH", userOutboxKey(game.ID), around[0]+strconv.FormatInt(game.ID, 10)+around[1])
			before := lranges()
			mustDo(t, logNode, "CLIENT", "PAUSE", "10000", "WRITE")
			s.note(userOutboxKey(game.ID))
			relayed := make(chan error, 1)
			go func() { relayed <- s.relayNoted(ctx) }()
			testkit.WaitFor(t, "the relay to read game's outbox", func() bool { return lranges() > before })
			mustDo(t, s.rc, "HSET", userKey(game.ID), "m", tt.m)
			pinned := s.pinJoins(ctx, game.ID)
			mustDo(t, logNode, "CLIENT", "UNPAUSE")
			if pinned != nil {
				t.Fatal(pinned)
			}
			if err := <-relayed; err != nil {
				t.Fatal(err)
			}
			s.note(userOutboxKey(game.ID)) // whatever the relay left
			if err := s.relayNoted(ctx); err != nil {
				t.Fatal(err)
			}
			if n := mustDo(t, s.rc, "LLEN", userOutboxKey(game.ID)); n != int64(0) {
				t.Errorf("game's outbox holds %v events after two relays; want none", n)
			}
			var joins []events.Data
			for _, e := range allEvents(t, s)[logged:] {
				if e.Type == events.PersonJoined && e.Data.UserID == game.ID {
					joins = append(joins, e.Data)
				}
			}
			if len(joins) != 1 || (joins[0].PersonID != shop.ID && joins[0].PersonID != app.ID) {
				t.Errorf("the relay and the pin logged game's join as %+v; want it once, into person %d or %d", joins, shop.ID, app.ID)
			}
		})
	}
}

// An erasure takes the user's phone numbers out of the log: those relayed
// before it, one still in its outbox then, and one a relay read before it
// and appends after (as a Cluster's relay, in steps, may); the log keeps
// the user's other events, which hold only ids, and other users' numbers.
func TestRedisAnErasureTakesThePhoneOutOfTheLog(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, kind))
			ctx := t.Context()
			login := loginOn(t, rs)
			alice, bob := login("wxshop", "alice", ""), login("wxshop", "bob", "")
			bind := func(u account.User, phone string) account.User {
				t.Helper()
				u, err := rs.Update(ctx, u.ID, func(u *account.User) { u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+86 "+phone, phone, "86" })
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			relay := func() {
				t.Helper()
				if err := rs.RelayLeftovers(ctx); err != nil {
					t.Fatal(err)
				}
			}
			carol := login("wxshop", "carol", "")
			bind(carol, "13600136000") // before any event is in the log
			if _, err := rs.Erase(ctx, carol.ID); err != nil {
				t.Fatal(err)
			}
			bind(alice, "13800138000")
			bind(bob, "13900139000")
			relay()
			late := events.PhoneChanged(time.Now(), ptr(bind(alice, "13700137000")), alice.ID) // in her outbox at the erasure
			if _, err := rs.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			relay()
			if err := rs.appendEvents(ctx, []string{string(late.Append(nil))}); err != nil { // a relay that read it before
				t.Fatal(err)
			}
			var got []told
			for _, e := range allEvents(t, rs) {
				if e.Type == events.PhoneBound || e.Type == events.UserDeleted {
					got = append(got, told{e.Type, e.Data})
				}
			}
			slices.SortStableFunc(got, func(a, b told) int { return cmp.Compare(a.Data.UserID, b.Data.UserID) }) // in order by user
			want := []told{
				{events.UserDeleted, events.Data{UserID: alice.ID, AppID: "wxshop", PersonID: alice.ID}},
				{events.PhoneBound, events.Data{UserID: bob.ID, AppID: "wxshop", PersonID: bob.ID, PhoneNumber: "+86 13900139000", PurePhoneNumber: "13900139000", CountryCode: "86"}},
				{events.UserDeleted, events.Data{UserID: carol.ID, AppID: "wxshop", PersonID: carol.ID}},
			}
			if !slices.Equal(got, want) {
				t.Errorf("after alice's erasure the log's phones and deletions are\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// appendAsBefore appends e to the log as a wxlogin from before the index
// of the phones did: under the next seq, without the index, and answers
// its seq.
func appendAsBefore(t *testing.T, s *Store, e events.Event) int64 {
	t.Helper()
	seq, _ := mustDo(t, s.rc, "INCR", eventSeqKey).(int64)
	mustDo(t, s.rc, "XADD", eventLogKey, fmt.Sprintf("%d-1", seq), "e", string(e.Append(nil)))
	return seq
}

// phoneBound is u's phone.bound of number, as the relay logs it.
func phoneBound(u account.User, number string) events.Event {
	u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = "+86 "+number, number, "86"
	return events.PhoneChanged(time.Now(), &u, u.ID)
}

// The phone.bound events an earlier wxlogin logged, not in the index of
// the phones, are indexed once: the phone.bound of a user erased before
// that is deleted then, that of a user erased by the earlier wxlogin (its
// user.deleted in the log) too, and those of the others stay, indexed
// once each, so that their erasure deletes them. An indexing cut short
// between two chunks goes on from where it got; once done, it changes
// nothing, nor does it run again once its marker is deleted.
func TestRedisIndexesThePhonesAnEarlierWxloginLogged(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, kind))
			ctx := t.Context()
			login := loginOn(t, rs)
			alice, bob, carol, dave, erin := login("wxshop", "alice", ""), login("wxshop", "bob", ""), login("wxshop", "carol", ""), login("wxshop", "dave", ""), login("wxshop", "erin", "")
			if err := rs.RelayLeftovers(ctx); err != nil { // their user.created: seqs 1 to 5
				t.Fatal(err)
			}
			alicePhone := appendAsBefore(t, rs, phoneBound(alice, "13800138000")) // 6
			bobPhone := appendAsBefore(t, rs, phoneBound(bob, "13900139000"))
			carolPhone := appendAsBefore(t, rs, phoneBound(carol, "13600136000"))
			appendAsBefore(t, rs, phoneBound(erin, "13500135000"))
			appendAsBefore(t, rs, events.Deleted(time.Now(), erin.ID, "wxshop", erin.ID)) // erased then
			daveBefore := appendAsBefore(t, rs, phoneBound(dave, "13700137000"))
			if _, err := rs.Update(ctx, dave.ID, bindPhone); err != nil { // logged by this wxlogin, indexed
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			daveNow := mustDo(t, rs.rc, "HGET", phonesKey, strconv.FormatInt(dave.ID, 10))

			// Cut short after its first chunk, which reached alice's phone.
			did, err := rs.indexOlder(ctx, int(alicePhone))
			if err != nil {
				t.Fatal(err)
			}
			if did.done || did.deleted != 1 {
				t.Fatalf("the first chunk did %+v; want alice's phone deleted, and more to index", did)
			}
			if mark := mustDo(t, rs.rc, "GET", indexedKey); mark != fmt.Sprintf("%d,%s", alicePhone, mustDo(t, rs.rc, "GET", eventSeqKey)) {
				t.Fatalf("after the first chunk %s holds %v; want how far it got, and the last seq at its start", indexedKey, mark)
			}
			rs.indexOlderPhones(ctx) // as the next start does

			var got []told
			for _, e := range allEvents(t, rs) {
				if e.Type == events.PhoneBound || e.Type == events.UserDeleted {
					got = append(got, told{e.Type, e.Data})
				}
			}
			slices.SortStableFunc(got, func(a, b told) int { return cmp.Compare(a.Data.UserID, b.Data.UserID) })
			bound := func(u account.User, number string) told {
				e := phoneBound(u, number)
				return told{e.Type, e.Data}
			}
			want := []told{
				{events.UserDeleted, events.Data{UserID: alice.ID, AppID: "wxshop", PersonID: alice.ID}},
				bound(bob, "13900139000"),
				bound(carol, "13600136000"),
				bound(dave, "13700137000"),
				bound(dave, "13800138000"),
				{events.UserDeleted, events.Data{UserID: erin.ID, AppID: "wxshop", PersonID: erin.ID}},
			}
			if !slices.Equal(got, want) {
				t.Errorf("once indexed, the log's phones and deletions are\n%+v\nwant\n%+v", got, want)
			}
			daveSeqs := []string{strconv.FormatInt(daveBefore, 10), daveNow.(string)}
			slices.Sort(daveSeqs)
			wantIndex := map[string]string{
				strconv.FormatInt(bob.ID, 10):   strconv.FormatInt(bobPhone, 10),
				strconv.FormatInt(carol.ID, 10): strconv.FormatInt(carolPhone, 10),
				strconv.FormatInt(dave.ID, 10):  strings.Join(daveSeqs, ","),
			}
			index := map[string]string{}
			pairs, _ := mustDo(t, rs.rc, "HGETALL", phonesKey).([]any)
			for i := 0; i+1 < len(pairs); i += 2 {
				seqs := strings.Split(pairs[i+1].(string), ",")
				slices.Sort(seqs)
				index[pairs[i].(string)] = strings.Join(seqs, ",")
			}
			if !maps.Equal(index, wantIndex) {
				t.Errorf("%s holds %v; want %v: each phone.bound left, once", phonesKey, index, wantIndex)
			}

			if _, err := rs.Erase(ctx, bob.ID); err != nil {
				t.Fatal(err)
			}
			for _, e := range allEvents(t, rs) {
				if e.Type == events.PhoneBound && e.Data.UserID == bob.ID {
					t.Errorf("bob's phone.bound, logged by the earlier wxlogin, is in the log after his erasure")
				}
			}

			before := mustDo(t, rs.rc, "XLEN", eventLogKey)
			indexBefore := fmt.Sprint(mustDo(t, rs.rc, "HGETALL", phonesKey))
			if did, err := rs.indexOlder(ctx, indexChunk); err != nil || did != (indexed{done: true}) {
				t.Errorf("the indexing once done did %+v, %v; want nothing", did, err)
			}
			mustDo(t, rs.rc, "DEL", indexedKey) // as an operator does, to index the whole log again
			if did, err := rs.indexOlder(ctx, indexChunk); err != nil || !did.done || did.phones+did.deleted != 0 {
				t.Errorf("the indexing run again did %+v, %v; want it done, with no phone.bound to index or delete", did, err)
			}
			if after, indexAfter := mustDo(t, rs.rc, "XLEN", eventLogKey), fmt.Sprint(mustDo(t, rs.rc, "HGETALL", phonesKey)); after != before || indexAfter != indexBefore {
				t.Errorf("the indexing once done, and run again, changed the log (%v entries, then %v) or the index (%s, then %s)", before, after, indexBefore, indexAfter)
			}
		})
	}
}

// Instances indexing the older log at once, two and a relay's, while
// users are erased and their user.deleted relayed, leave no erased user's
// phone.bound in the log, and each other's indexed once.
func TestRedisIndexingRacesRelaysAndErasures(t *testing.T) {
	cfg := startRedis(t, onRedis)
	a, b := openEventStore(t, cfg), openEventStore(t, cfg)
	ctx := t.Context()
	login := loginOn(t, a)
	var users []account.User
	seqs := map[int64][]string{}
	for i := range 20 {
		users = append(users, login("wxshop", fmt.Sprint("user", i), ""))
	}
	for round := range indexChunk/len(users) + 2 { // more than a chunk
		for _, u := range users {
			seqs[u.ID] = append(seqs[u.ID], strconv.FormatInt(appendAsBefore(t, a, phoneBound(u, fmt.Sprint(13000000000+round))), 10))
		}
	}
	var wg sync.WaitGroup
	runRelay(t, b)
	wg.Go(func() { a.indexOlderPhones(ctx) })
	wg.Go(func() { b.indexOlderPhones(ctx) })
	wg.Go(func() {
		for _, u := range users[:len(users)/2] {
			if _, err := b.Erase(ctx, u.ID); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if mark := mustDo(t, a.rc, "GET", indexedKey); mark != "done" {
		t.Fatalf("%s holds %v once both indexings returned; want done", indexedKey, mark)
	}
	left := map[int64]int{}
	for _, e := range allEvents(t, a) {
		if e.Type == events.PhoneBound {
			left[e.Data.UserID]++
		}
	}
	for i, u := range users {
		id := strconv.FormatInt(u.ID, 10)
		index, _ := mustDo(t, a.rc, "HGET", phonesKey, id).(string)
		got := strings.Split(index, ",")
		slices.Sort(got)
		want := slices.Sorted(slices.Values(seqs[u.ID]))
		if i < len(users)/2 {
			if left[u.ID] > 0 || index != "" {
				t.Errorf("user %d, erased, has %d phone.bound events left in the log, and %q in the index; want none", u.ID, left[u.ID], index)
			}
		} else if left[u.ID] != len(want) || !slices.Equal(got, want) {
			t.Errorf("user %d has %d phone.bound events in the log, and %v in the index; want %d, and %v", u.ID, left[u.ID], got, len(want), want)
		}
	}
}

// The relay indexes the log's older phone.bound events at its start, in
// the background, and marks the indexing done.
func TestRedisRelayIndexesTheOlderLogAtItsStart(t *testing.T) {
	rs := openEventStore(t, startRedis(t, onRedis))
	ctx := t.Context()
	alice := loginOn(t, rs)("wxshop", "alice", "")
	appendAsBefore(t, rs, phoneBound(alice, "13800138000"))
	if _, err := rs.Erase(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	runRelay(t, rs)
	testkit.WaitFor(t, "the indexing to be done", func() bool { return mustDo(t, rs.rc, "GET", indexedKey) == "done" })
	for _, e := range allEvents(t, rs) {
		if e.Type == events.PhoneBound {
			t.Errorf("alice's phone.bound, logged by an earlier wxlogin, is in the log after her erasure and the relay's start")
		}
	}
}

// An erasure cut short after its record is gone, before its phone numbers
// left the log (the log's slot unreachable then, or wxlogin killed), is
// made, and answered so; besides FinishErasures, its user.deleted, pushed
// with the erasure, takes the numbers out of the log as the relay moves
// it. The test makes the erasure's call to the log's slot fail with the
// set of the erased a string.
func TestRedisAnErasureCutShortStillTakesThePhoneOutOfTheLog(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, kind))
			ctx := t.Context()
			alice := loginOn(t, rs)("wxshop", "alice", "")
			if _, err := rs.Update(ctx, alice.ID, bindPhone); err != nil {
				t.Fatal(err)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			mustDo(t, rs.rc, "SET", forgottenKey, "not a set")
			if _, err := rs.Erase(ctx, alice.ID); err != nil {
				t.Fatalf("Erase with the log's slot refusing = %v; want the erasure made", err)
			}
			if n := mustDo(t, rs.rc, "ZCARD", erasingKey); n != int64(1) {
				t.Fatalf("wx:erasing holds %v ids; want alice's, her erasure cut short", n)
			}
			mustDo(t, rs.rc, "DEL", forgottenKey)
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			var got []told
			for _, e := range allEvents(t, rs) {
				if e.Data.UserID == alice.ID && e.Type != events.UserCreated {
					got = append(got, told{e.Type, e.Data})
				}
			}
			want := []told{{events.UserDeleted, events.Data{UserID: alice.ID, AppID: "wxshop", PersonID: alice.ID}}}
			if !slices.Equal(got, want) {
				t.Errorf("alice's events in the log after her erasure cut short: %+v; want %+v", got, want)
			}
		})
	}
}

// An erasure deletes from the log only its user's phone.bound: a log an
// operator deleted and began again, its index of phones kept, holds other
// events under the seqs the index names.
func TestRedisAnErasureDeletesOnlyItsOwnPhonesFromTheLog(t *testing.T) {
	rs := openEventStore(t, startRedis(t, onRedis))
	ctx := t.Context()
	text := func(e events.Event) string { return string(e.Append(nil)) }
	alice, bob := &account.User{ID: 1, AppID: "wxshop", PhoneNumber: "13800138000"}, &account.User{ID: 2, AppID: "wxshop"}
	if err := rs.appendEvents(ctx, []string{text(events.PhoneChanged(time.Now(), alice, 1))}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, rs.rc, "DEL", eventLogKey, eventSeqKey) // the log begun again
	if err := rs.appendEvents(ctx, []string{text(events.Created(time.Now(), bob, 2))}); err != nil {
		t.Fatal(err)
	}
	if err := rs.forgetPhones(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if got := toldBy(allEvents(t, rs)); len(got) != 1 || got[0].Data.UserID != bob.ID {
		t.Errorf("after alice's erasure the log tells %+v; want bob's user.created, under the seq her phone.bound had", got)
	}
}

// An erasure whose phones cannot leave the log (the log's slot refusing,
// on a Cluster another master) has still taken its user out of its
// person: the others' list no longer names it.
func TestRedisAnErasureCutShortAtTheLogLeavesItsPersonWhole(t *testing.T) {
	rs := openEventStore(t, startRedis(t, onRedis))
	ctx := t.Context()
	login := loginOn(t, rs)
	alice := login("wxshop", "alice", "u1")
	bob := login("wxgame", "alice", "u1")
	mustDo(t, rs.rc, "SET", forgottenKey, "not a set")
	if _, err := rs.Erase(ctx, alice.ID); err != nil {
		t.Fatalf("Erase with the log's slot refusing = %v; want the erasure made", err)
	}
	if n := mustDo(t, rs.rc, "ZCARD", erasingKey); n != int64(1) {
		t.Fatalf("wx:erasing holds %v ids; want alice's, her erasure cut short", n)
	}
	_, members, _, err := rs.Person(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == alice.ID {
			t.Errorf("after alice's erasure, bob's person lists %+v; want her gone", members)
		}
	}
}

// A link cut short once it merged another person into the user's, before
// it was marked done (wxlogin killed), tells the merge at the user's next
// login: the person merged is an alias by then, and only the user's hash
// ("merging", noted before any record moved) still says which it was.
// Told once, however many logins follow.
func TestRedisAMergeCutShortIsToldAtTheNextLogin(t *testing.T) {
	s := openEventStore(t, startRedis(t, onRedis))
	ctx := t.Context()
	login := loginOn(t, s)
	alice := login("wxshop", "alice", "u-old")
	zed := login("wxnew", "zed", "u-new") // a person of his own, later than alice's
	if err := s.relayNoted(ctx); err != nil {
		t.Fatal(err)
	}
	login("wxshop", "alice", "u-new") // the shop moved to the new account
	// Cut short before the link was marked: as if the joined it pushed
	// then had never been pushed.
	head, _ := mustDo(t, s.rc, "LRANGE", userOutboxKey(alice.ID), "0", "-1").([]any)
	if len(head) != 1 || !strings.Contains(head[0].(string), `"previous_person_id":`+strconv.FormatInt(zed.ID, 10)) {
		t.Fatalf("alice's outbox holds %v; want the merge's person.joined alone (the login's joined no one)", head)
	}
	mustDo(t, s.rc, "RPOP", userOutboxKey(alice.ID))
	mustDo(t, s.rc, "HDEL", userKey(alice.ID), "linked")
	mustDo(t, s.rc, "HSET", userKey(alice.ID), "merging", strconv.FormatInt(zed.ID, 10))

	for range 2 {
		login("wxshop", "alice", "u-new")
		if err := s.relayNoted(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []told{
		{events.UserCreated, events.Data{UserID: alice.ID, AppID: "wxshop", PersonID: alice.ID}},
		{events.UserCreated, events.Data{UserID: zed.ID, AppID: "wxnew", PersonID: zed.ID}},
		{events.PersonJoined, events.Data{UserID: alice.ID, AppID: "wxshop", PersonID: alice.ID, PreviousPersonID: zed.ID}},
	}
	if got := toldBy(allEvents(t, s)); !slices.Equal(got, want) {
		t.Errorf("the log tells\n%+v\nwant\n%+v", got, want)
	}
	if f := mustDo(t, s.rc, "HGET", userKey(alice.ID), "merging"); f != nil {
		t.Errorf("alice's hash still holds merging %v once the merge is told", f)
	}
}

// A user back in its app after its erasure, without a unionid (through
// its app's and openid's alias) or with another one, whose login is cut
// short before it is back in its erased user's person, and whose
// outbox a relay meets meanwhile (another instance's sweep, or this one's
// once it restarts), is told created into that person all the same, as
// the file store tells it (docs/events.md: a new user's user.created
// names the person it is created into), and nothing else: the person it
// is about to leave was never its own to receivers. Cut short after the
// login's script, or, with a unionid, after its join to the unionid's
// person too, before it rejoins (takeOwnClaims); its next login finishes
// it.
func TestRedisAUserBackAfterItsErasureIsToldCreatedIntoItsPerson(t *testing.T) {
	for _, tc := range []struct {
		unionID string
		joined  bool // cut short after the join to its unionid's person, not after the script
	}{{"", false}, {"u2", false}, {"u2", true}} {
		t.Run(fmt.Sprintf("unionid %q, joined %v", tc.unionID, tc.joined), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, onRedis))
			ctx := t.Context()
			login := loginOn(t, rs)
			openID := openIDOf("wxshop", "alice")
			bob := login("wxgame", "bob", "u1")
			if _, err := rs.Erase(ctx, login("wxshop", "alice", "u1").ID); err != nil {
				t.Fatal(err)
			}
			own := ""
			if tc.unionID != "" {
				own = rs.PersonHash("wxshop", openID, "")
			}
			id, _, own, err := rs.userID(ctx, "wxshop", openID, 1, own)
			if err != nil {
				t.Fatal(err)
			}
			reply := newUsersLoginScript(t, rs, id, "wxshop", openID, tc.unionID, own)
			if tc.joined {
				settleFrom(t, rs, reply)
			}
			if err := rs.RelayLeftovers(ctx); err != nil { // a sweep
				t.Fatal(err)
			}
			if back := login("wxshop", "alice", tc.unionID); back.ID != id {
				t.Fatalf("alice's next login is user %d; want %d", back.ID, id)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}
			var got []told
			for _, tl := range toldBy(allEvents(t, rs)) {
				if tl.Data.UserID == id {
					got = append(got, tl)
				}
			}
			want := []told{{events.UserCreated, events.Data{UserID: id, AppID: "wxshop", PersonID: bob.ID}}}
			if !slices.Equal(got, want) {
				t.Errorf("alice back is told\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}
