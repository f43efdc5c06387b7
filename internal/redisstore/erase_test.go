package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/testkit"
)

// An erasure cut short after its tombstone (its openid's key, its person
// or the log of events unreachable a moment) is made all the same: it
// answers success, and every token of the user is dead at once. What is
// left is finished later by FinishErasures, here of another instance, one
// that records no events, so that no relay of the user.deleted does it:
// the openid's key is gone, the person lists the user no more, its phone
// number is out of the log, and the tombstone holds nothing but the time.
// A login of the same openid meanwhile is a new user with a new id, which
// the finish leaves alone.
func TestRedisAnErasureCutShortIsAnsweredAndFinishedLater(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		for _, step := range []string{"openid", "person", "phones"} {
			t.Run(string(kind)+"/"+step, func(t *testing.T) {
				cfg := startRedis(t, kind)
				ev := openEventStore(t, cfg) // only to log alice's phone.bound
				a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
				ctx := t.Context()
				login := loginOn(t, a)
				alice := login("wxshop", "alice", unionIDOf("alice"))
				game := login("wxgame", "alice", unionIDOf("alice")) // her person's other record
				if _, err := ev.Update(ctx, alice.ID, bindPhone); err != nil {
					t.Fatal(err)
				}
				if err := ev.RelayLeftovers(ctx); err != nil {
					t.Fatal(err)
				}
				token, err := a.Issue(ctx, account.Identity{AppID: "wxshop", OpenID: alice.OpenID, UserID: alice.ID}, "sk-alice")
				if err != nil {
					t.Fatal(err)
				}

				a.failErase = func(s string) error {
					if s == step {
						return fmt.Errorf("%s: %w", s, ErrUnavailable)
					}
					return nil
				}
				gone, revoked, err := a.EraseWithTokens(ctx, alice.ID)
				if err != nil || gone.UserID != alice.ID || revoked != 1 {
					t.Fatalf("EraseWithTokens cut short at %s = %+v, %d, %v; want alice erased, 1 token ended, no error", step, gone, revoked, err)
				}
				if _, ok, err := a.Lookup(ctx, token); ok || err != nil {
					t.Errorf("alice's token after her erasure: %v, %v; want it dead", ok, err)
				}
				if n := mustDo(t, a.rc, "ZCARD", erasingKey); n != int64(1) {
					t.Fatalf("wx:erasing holds %v ids after an erasure cut short; want alice's", n)
				}
				if _, _, err := a.EraseWithTokens(ctx, alice.ID); !errors.Is(err, account.ErrNoUser) {
					t.Errorf("a second erasure of alice = %v; want ErrNoUser: an erasure is made once", err)
				}
				again := alice
				if step == "openid" {
					// Her openid's key still names her erased id.
					again = login("wxshop", "alice", unionIDOf("alice"))
					if again.ID == alice.ID || again.ID == game.ID {
						t.Fatalf("alice back while her openid's key names her erased id is user %d; want a new id", again.ID)
					}
				}

				if err := b.FinishErasures(ctx); err != nil {
					t.Fatal(err)
				}
				if n := mustDo(t, a.rc, "ZCARD", erasingKey); n != int64(0) {
					t.Errorf("wx:erasing holds %v ids once the erasure is finished; want none", n)
				}
				if f, _ := mustDo(t, a.rc, "HGETALL", userKey(alice.ID)).([]any); len(f) != 2 || f[0] != "erased" {
					t.Errorf("alice's tombstone once finished holds %v; want only erased", f)
				}
				if v := mustDo(t, a.rc, "GET", openIDKey("wxshop", alice.OpenID)); step == "openid" && v != strconv.FormatInt(again.ID, 10) {
					t.Errorf("the openid's key once alice came back and her erasure was finished = %v; want her new id %d", v, again.ID)
				} else if step != "openid" && v != nil {
					t.Errorf("the openid's key once alice's erasure is finished = %v; want none", v)
				}
				_, members, _, err := a.Person(ctx, game.ID)
				if err != nil {
					t.Fatal(err)
				}
				if slices.ContainsFunc(members, func(m account.Member) bool { return m.ID == alice.ID }) {
					t.Errorf("once alice's erasure is finished her person lists %+v; want her gone", members)
				}
				for _, e := range allEvents(t, a) {
					if e.Type == events.PhoneBound && e.Data.UserID == alice.ID {
						t.Errorf("once alice's erasure is finished the log holds her %s %+v", e.Type, e.Data)
					}
				}
			})
		}
	}
}

// An id in wx:erasing whose record is whole is an erasure that failed
// before its tombstone, whose caller was told so: FinishErasures leaves
// the user as it is, and drops the id once erasureGrace has passed.
func TestRedisAnErasureThatFailedBeforeItsTombstoneIsDropped(t *testing.T) {
	clock := testkit.NewFakeClock()
	rs := openStore(t, startRedis(t, onRedis), clock.Now)
	ctx := t.Context()
	alice := loginOn(t, rs)("wxshop", "alice", "")
	mustDo(t, rs.rc, "ZADD", erasingKey, strconv.FormatInt(clock.Now().UnixMilli(), 10), strconv.FormatInt(alice.ID, 10))
	for _, wait := range []time.Duration{0, erasureGrace} {
		clock.Advance(wait)
		if err := rs.FinishErasures(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := rs.Get(ctx, alice.ID); !ok || err != nil {
			t.Fatalf("alice after FinishErasures, %v on: %v, %v; want her record", wait, ok, err)
		}
		if n := mustDo(t, rs.rc, "ZCARD", erasingKey); wait == 0 && n != int64(1) {
			t.Fatalf("wx:erasing holds %v ids at once; want alice's kept, her erasure maybe under way", n)
		}
	}
	if n := mustDo(t, rs.rc, "ZCARD", erasingKey); n != int64(0) {
		t.Errorf("wx:erasing holds %v ids after erasureGrace; want none", n)
	}
}

// RunErasures finishes, at its start, an erasure another instance cut
// short, whose log line names the user by id, never by openid; it stops
// when its context ends.
func TestRedisRunErasuresFinishesWhatAnotherCutShort(t *testing.T) {
	cfg := startRedis(t, onRedis)
	a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
	logs := &testkit.SyncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs, nil))
	ctx := t.Context()
	alice := loginOn(t, a)("wxshop", "alice", "")
	a.failErase = func(step string) error { return fmt.Errorf("%s: %w", step, ErrUnavailable) }
	if _, err := a.Erase(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); !strings.Contains(got, "user_id="+strconv.FormatInt(alice.ID, 10)) || strings.Contains(got, alice.OpenID) {
		t.Errorf("the erasure cut short logged %q; want alice's id, never her openid", got)
	}

	running, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.RunErasures(running)
	}()
	testkit.WaitFor(t, "the other instance to finish alice's erasure", func() bool {
		return mustDo(t, a.rc, "EXISTS", erasingKey, openIDKey("wxshop", alice.OpenID)) == int64(0)
	})
	stop()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Error("RunErasures did not stop when its context ended")
	}
}

// The same user of one app erased twice, under two unionids (its app moved
// to another Open Platform account between), the first time while another
// record of its first person (bob, in another app) held the gift, the
// second time as the last record of its second person, is of both persons
// still when it comes back without a unionid: the app's and openid's
// alias stays on the person with records, which takes the claims of the
// second, as the file store keeps them (users.Store.Erase). Bob erased
// too after, the gift stays found.
func TestRedisAUserErasedTwiceKeepsTheAliasOfItsPersonWithRecords(t *testing.T) {
	for _, bobErased := range []bool{false, true} {
		t.Run(fmt.Sprintf("bob erased %v", bobErased), func(t *testing.T) {
			rs := openStore(t, startRedis(t, onRedis), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			bob := login("wxgame", "bob", unionIDOf("alice"))
			if _, _, err := rs.Claim(ctx, bob.ID, "welcome-gift"); err != nil {
				t.Fatal(err)
			}
			first := login("wxshop", "alice", unionIDOf("alice"))
			if _, err := rs.Erase(ctx, first.ID); err != nil {
				t.Fatal(err)
			}
			second := login("wxshop", "alice", unionIDOf("alice-moved"))
			if _, _, err := rs.Claim(ctx, second.ID, "coupon"); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, second.ID); err != nil {
				t.Fatal(err)
			}
			if bobErased {
				if _, err := rs.Erase(ctx, bob.ID); err != nil {
					t.Fatal(err)
				}
			}
			back := login("wxshop", "alice", "")
			for _, name := range []string{"welcome-gift", "coupon"} {
				if _, taken, err := rs.Claim(ctx, back.ID, name); !taken || err != nil {
					t.Errorf("alice back without a unionid claims %s: taken %v, %v; want it taken before", name, taken, err)
				}
			}
		})
	}
}

// An erasure whose last steps fail stays listed in wx:erasing, though
// another instance took it off meanwhile, having found the record whole a
// moment before the tombstone (FinishErasures, past erasureGrace on a
// clock behind); and one that FinishErasures fails to finish is listed
// again as of now, behind those listed after it, so that erasures it
// fails every time never hold the others up. Either way another instance
// finishes it once it can.
func TestRedisAnErasureLeftToFinishStaysListed(t *testing.T) {
	clock := testkit.NewFakeClock()
	cfg := startRedis(t, onRedis)
	a, b := openStore(t, cfg, clock.Now), openStore(t, cfg, clock.Now)
	ctx := t.Context()
	alice := loginOn(t, a)("wxshop", "alice", "")
	id := strconv.FormatInt(alice.ID, 10)
	a.failErase = func(step string) error {
		mustDo(t, a.rc, "ZREM", erasingKey, id) // another instance's FinishErasures, a moment before
		return fmt.Errorf("%s: %w", step, ErrUnavailable)
	}
	if _, err := a.Erase(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, a.rc, "ZSCORE", erasingKey, id); got == nil {
		t.Fatal("alice's erasure, cut short after another instance took it off wx:erasing, is not listed; want it listed again")
	}

	clock.Advance(time.Minute)
	b.failErase = func(step string) error { return fmt.Errorf("%s: %w", step, ErrUnavailable) }
	if err := b.FinishErasures(ctx); err == nil {
		t.Fatal("FinishErasures with every step failing = nil; want the failure")
	}
	if got, want := mustDo(t, a.rc, "ZSCORE", erasingKey, id), strconv.FormatInt(clock.Now().UnixMilli(), 10); got != want {
		t.Errorf("alice's erasure after a failed finish is listed as of %v; want %s, now, behind the others", got, want)
	}

	b.failErase = nil
	if err := b.FinishErasures(ctx); err != nil {
		t.Fatal(err)
	}
	if n := mustDo(t, a.rc, "EXISTS", erasingKey, openIDKey("wxshop", alice.OpenID)); n != int64(0) {
		t.Errorf("after the finish, %v of wx:erasing and alice's openid key left; want none", n)
	}
}

// An erasure read the user, and the user changed before its tombstone:
// it learned a unionid at a login of another instance, moving to the
// person of it, and took a gift there. The erasure is made of the user as
// it is by then: its person lists it no more, and the same user back
// without its unionid finds the gift taken, through the alias of its app
// and openid, as if the erasure had come after the login.
func TestRedisAnErasureOfAUserChangedMeanwhileErasesItAsItIs(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := startRedis(t, kind)
			a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
			ctx := t.Context()
			bob := loginOn(t, a)("wxgame", "bob", "u1")
			alice := loginOn(t, a)("wxshop", "alice", "")
			a.beforeTombstone = func() {
				a.beforeTombstone = nil
				loginOn(t, b)("wxshop", "alice", "u1")
				if _, _, err := b.Claim(ctx, alice.ID, "gift"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			if _, members, _, err := a.Person(ctx, bob.ID); err != nil || len(members) != 1 {
				t.Errorf("bob's person after alice's erasure = %+v, %v; want bob alone", members, err)
			}
			back := loginOn(t, b)("wxshop", "alice", "")
			if back.ID == alice.ID {
				t.Fatalf("alice back is user %d, her erased id", back.ID)
			}
			if c, taken, err := b.Claim(ctx, back.ID, "gift"); err != nil || !taken {
				t.Errorf("alice back without her unionid: gift = %+v, taken %v, %v; want taken before her erasure", c, taken, err)
			}
		})
	}
}

// An erasure cut short before it took the user out of its person leaves
// it listed there until it is finished. The same user back meanwhile,
// with a unionid that makes it another person, takes the claims kept
// under its app's and openid's hash all the same: those of the erased
// user, who is no record however the list still names it.
func TestRedisAUserBackBeforeItsErasureIsFinishedTakesItsClaims(t *testing.T) {
	for _, tc := range []struct {
		kind          redisKind
		before, after string
	}{{onRedis, "", "u1"}, {onRedis, "u1", "u2"}, {onRedisCluster, "", "u1"}} {
		t.Run(fmt.Sprintf("%s/%q then %q", tc.kind, tc.before, tc.after), func(t *testing.T) {
			cfg := startRedis(t, tc.kind)
			a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
			ctx := t.Context()
			alice := loginOn(t, a)("wxshop", "alice", tc.before)
			if _, _, err := a.Claim(ctx, alice.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			a.failErase = func(step string) error {
				if step == "person" {
					return fmt.Errorf("%s: %w", step, ErrUnavailable)
				}
				return nil
			}
			if _, err := a.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			back := loginOn(t, b)("wxshop", "alice", tc.after)
			if back.ID == alice.ID {
				t.Fatalf("alice back is user %d, her erased id", back.ID)
			}
			if err := b.FinishErasures(ctx); err != nil {
				t.Fatal(err)
			}
			if c, taken, err := b.Claim(ctx, back.ID, "gift"); err != nil || !taken {
				t.Errorf("alice back with %q before her erasure was finished: gift = %+v, taken %v, %v; want taken before", tc.after, c, taken, err)
			}
		})
	}
}

// A user whose login with its first unionid was cut short after its
// script, before its join to the person of it (Redis lost, wxlogin
// killed), and who is erased before any login finishes it, is erased as
// of that person: the same user back without its unionid finds the gift
// bob, its person's other record, took, as the file store finds it.
func TestRedisAnErasureFinishesACutShortJoinFirst(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			bob := login("wxgame", "bob", "u1")
			if _, _, err := rs.Claim(ctx, bob.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			alice := login("wxshop", "alice", "")
			now := time.Now()
			if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(alice.ID)}, strconv.FormatInt(alice.ID, 10), "wxshop", alice.OpenID, "u1",
				formatTime(now), rs.PersonHash("", "", "u1"), "0", formatTime(now.Add(-time.Hour)), "", "", "", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			back := login("wxshop", "alice", "")
			if c, taken, err := rs.Claim(ctx, back.ID, "gift"); err != nil || !taken {
				t.Errorf("alice back without her unionid: gift = %+v, taken %v, %v; want taken by bob, her person's", c, taken, err)
			}
		})
	}
}

// The same user of one app erased twice, the first time without a unionid
// and cut short before it left its person (its app's and openid's hash),
// the second time with one: that hash becomes an alias of its second
// person all the same, and the user back without a unionid finds the
// gifts of both.
func TestRedisAUserErasedTwiceTheFirstCutShortFindsBothGifts(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			first := login("wxshop", "alice", "")
			if _, _, err := rs.Claim(ctx, first.ID, "early"); err != nil {
				t.Fatal(err)
			}
			rs.failErase = func(step string) error {
				if step == "person" {
					return fmt.Errorf("%s: %w", step, ErrUnavailable)
				}
				return nil
			}
			if _, err := rs.Erase(ctx, first.ID); err != nil {
				t.Fatal(err)
			}
			rs.failErase = nil
			second := login("wxshop", "alice", "u1")
			if _, _, err := rs.Claim(ctx, second.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, second.ID); err != nil {
				t.Fatal(err)
			}
			back := login("wxshop", "alice", "")
			for _, name := range []string{"early", "gift"} {
				if c, taken, err := rs.Claim(ctx, back.ID, name); err != nil || !taken {
					t.Errorf("alice back without a unionid: %s = %+v, taken %v, %v; want taken before", name, c, taken, err)
				}
			}
		})
	}
}

// An erasure read the user, and before its tombstone a merge moved the
// user past an alias: another user's app moved to another Open Platform
// account, and her new unionid's person, the user's, was merged into hers
// (linkUnionID). The move changes the user's person, not its version
// (movePersonScript bumps "v" only when it adds unionids); the erasure's
// script compares the person as well as the version, so it is made again
// of the user where the merge put it: the person it is erased from lists
// it no more, and the same user back without its unionid finds its gift
// taken, through the alias of its app and openid.
func TestRedisAnErasureOfAUserMergedMeanwhileErasesItWhereItIs(t *testing.T) {
	cfg := startRedis(t, onRedis)
	a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
	ctx := t.Context()
	alice := loginOn(t, a)("wxshop", "alice", "u-old")
	bob := loginOn(t, a)("wxgame", "bob", "u-new")
	if _, _, err := a.Claim(ctx, bob.ID, "gift"); err != nil {
		t.Fatal(err)
	}
	into := a.PersonHash("", "", "u-old")
	a.beforeTombstone = func() {
		a.beforeTombstone = nil
		loginOn(t, b)("wxshop", "alice", "u-new") // bob's person merged into alice's
		if person, _ := a.rc.Do(ctx, "HGET", userKey(bob.ID), "person"); person != into {
			t.Fatalf("bob's person after the merge is %v; want alice's: the test shows nothing", person)
		}
	}
	gone, err := a.Erase(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone.ClaimsKept, []string{"gift"}) {
		t.Errorf("bob's erasure kept claims %q; want the gift", gone.ClaimsKept)
	}
	if n, err := a.rc.Do(ctx, "HEXISTS", personHashKey(into), "u:"+strconv.FormatInt(bob.ID, 10)); err != nil || n != int64(0) {
		t.Errorf("alice's person lists bob after his erasure (%v, %v); want him taken out", n, err)
	}
	if _, members, _, err := a.Person(ctx, alice.ID); err != nil || len(members) != 1 {
		t.Errorf("alice's person after bob's erasure = %+v, %v; want alice alone", members, err)
	}
	back := loginOn(t, b)("wxgame", "bob", "")
	if c, taken, err := b.Claim(ctx, back.ID, "gift"); err != nil || !taken {
		t.Errorf("bob back without his unionid: gift = %+v, taken %v, %v; want taken before his erasure", c, taken, err)
	}
}

// A user erased beside a live record of its person, back in its app with
// another unionid, rejoins that person (takeOwnClaims, rejoinPerson); if,
// between its read of the user's person and the move, a merge moves the
// user on (another user's app moved to another Open Platform account, and
// its new unionid, the user's, was linked to its old person), the move
// finds the user elsewhere and changes nothing. The rejoin is still to be
// made: the gift the person took before the erasure counts for the user.
func TestRedisARejoinRacingAMergeStillJoinsTheErasedUsersPerson(t *testing.T) {
	cfg := startRedis(t, onRedis)
	a, b := openStore(t, cfg, time.Now), openStore(t, cfg, time.Now)
	ctx := t.Context()
	loginOn(t, a)("wxshop", "alice", "u-old") // the person bob's new unionid is merged into
	carol := loginOn(t, a)("wxmall", "carol", "u-b")
	bob := loginOn(t, a)("wxgame", "bob", "u-b")
	if _, _, err := a.Claim(ctx, carol.ID, "gift"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Erase(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	merged := false
	a.beforeRejoin = func() {
		a.beforeRejoin = nil
		loginOn(t, b)("wxshop", "alice", "u-new") // bob's new person merged into alice's
		merged = true
	}
	back := loginOn(t, a)("wxgame", "bob", "u-new")
	if !merged {
		t.Fatal("bob's login back made no rejoin: the test shows nothing")
	}
	if c, taken, err := a.Claim(ctx, back.ID, "gift"); err != nil || !taken {
		t.Errorf("bob back with u-new: gift = %+v, taken %v, %v; want taken by carol, his person", c, taken, err)
	}
	alice := loginOn(t, b)("wxshop", "alice", "u-new")
	if c, taken, err := b.Claim(ctx, alice.ID, "gift"); err != nil || !taken {
		t.Errorf("alice, one person with bob by u-new: gift = %+v, taken %v, %v; want taken by carol", c, taken, err)
	}
}
