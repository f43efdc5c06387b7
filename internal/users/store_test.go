package users

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/journal"
	"wxlogin/internal/testkit"
)

func TestUserLogin(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)

	first, created, err := s.Login("wxapp", "o-alice", "")
	if err != nil || !created || first.ID != 1 {
		t.Fatalf("first login = %+v, %v, %v; want user 1 created", first, created, err)
	}
	clock.Advance(time.Hour)
	again, created, err := s.Login("wxapp", "o-alice", "u-alice")
	if err != nil || created || again.ID != 1 {
		t.Fatalf("second login = %+v, %v, %v; want user 1 found", again, created, err)
	}
	if again.UnionID != "u-alice" || !again.LastLoginAt.Equal(clock.Now()) || !again.UpdatedAt.Equal(clock.Now()) ||
		!again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second login = %+v; want unionid learned, last_login_at and updated_at now, created_at kept", again)
	}
	other, created, _ := s.Login("wxother", "o-alice", "")
	if !created || other.ID != 2 {
		t.Errorf("same openid in another app = %+v, created %v; want a new user 2", other, created)
	}
	if got, ok := s.Get(1); !ok || got != again {
		t.Errorf("get(1) = %+v, %v; want %+v", got, ok, again)
	}
	if _, ok := s.Get(3); ok {
		t.Error("get(3) found a user that does not exist")
	}

	s.Close()
	reopened := openTestStore(t, dir, clock.Now)
	if got, ok := reopened.Get(1); !ok || got != again {
		t.Errorf("after reopen get(1) = %+v, %v; want %+v", got, ok, again)
	}
	if _, _, err := s.Login("wxapp", "o-late", ""); err == nil {
		t.Error("login on a closed store succeeded")
	}
}

// TestAReturningLoginWritesNothingWithinAMinute: a returning login within
// account.LastLoginEvery of the one recorded, which changes nothing else,
// appends not a byte to the journal, so it needs no fsync; one after that,
// or one that brings a new unionid, is written.
func TestAReturningLoginWritesNothingWithinAMinute(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	journalBytes := func() int64 {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, e := range entries {
			if info, err := e.Info(); err == nil && strings.Contains(e.Name(), ".journal.") {
				n += info.Size()
			}
		}
		return n
	}
	login := func(unionID string) {
		t.Helper()
		if _, _, err := s.Login("wxapp", "o-alice", unionID); err != nil {
			t.Fatal(err)
		}
	}
	login("u-alice")
	for _, tt := range []struct {
		after   time.Duration
		unionID string
		written bool
	}{
		{59 * time.Second, "u-alice", false},
		{0, "", false},
		{0, "u-alice-elsewhere", true},
		{59 * time.Second, "u-alice-elsewhere", false},
		{2 * time.Second, "u-alice-elsewhere", true},
	} {
		before := journalBytes()
		clock.Advance(tt.after)
		login(tt.unionID)
		if written := journalBytes() != before; written != tt.written {
			t.Errorf("a login %v later with unionid %q: written %v; want %v", tt.after, tt.unionID, written, tt.written)
		}
	}
}

func TestUserUpdate(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	created, _, _ := s.Login("wxapp", "o-alice", "")
	clock.Advance(time.Minute)

	updated, err := s.Update(1, func(u *account.User) {
		u.Nickname, u.PhoneNumber = "爱丽丝", "13800000000"
		u.ID, u.OpenID = 9, "o-mallory" // An update cannot change who the record is.
	})
	if err != nil || updated.Nickname != "爱丽丝" || updated.ID != 1 || updated.OpenID != "o-alice" ||
		!updated.UpdatedAt.Equal(clock.Now()) || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("update = %+v, %v; want the nickname and phone set, identity kept, updated_at now", updated, err)
	}
	// The acknowledged update is on disk already: a store opened beside the
	// live one, as after a kill -9, reads it.
	crashed, err := Open(dir, testMeta, clock.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := crashed.Get(1); got != updated {
		t.Errorf("on disk after update: %+v; want %+v", got, updated)
	}
	crashed.Close()

	clock.Advance(time.Minute)
	if same, err := s.Update(1, func(u *account.User) { u.Nickname = "爱丽丝" }); err != nil || same != updated {
		t.Errorf("an update that changes nothing = %+v, %v; want the record as it was", same, err)
	}
	if _, err := s.Update(2, func(*account.User) {}); err == nil {
		t.Error("update of a user that does not exist succeeded")
	}
	s.Close()
	if _, err := s.Update(1, func(u *account.User) { u.Nickname = "late" }); !errors.Is(err, journal.ErrClosed) {
		t.Errorf("update on a closed store = %v; want journal.ErrClosed", err)
	}
	if got, _ := s.Get(1); got != updated {
		t.Errorf("a refused update changed the record in memory to %+v", got)
	}
}

func TestUserConcurrentFirstLoginsCreateOneUser(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	const n = 100
	var wg sync.WaitGroup
	results := make(chan account.User, n)
	createdCount := make(chan bool, n)
	for range n {
		wg.Go(func() {
			u, created, err := s.Login("wxapp", "o-new", "")
			if err != nil {
				t.Errorf("login: %v", err)
			}
			results <- u
			createdCount <- created
		})
	}
	wg.Wait()
	close(results)
	close(createdCount)
	creations := 0
	for c := range createdCount {
		if c {
			creations++
		}
	}
	for u := range results {
		if u.ID != 1 {
			t.Errorf("a login got user %d; want 1", u.ID)
		}
	}
	if creations != 1 {
		t.Errorf("%d logins created the user; want exactly 1", creations)
	}
	s.Close()
	if n := openTestStore(t, dir, time.Now).Count(); n != 1 {
		t.Errorf("after reopen the store has %d users; want 1", n)
	}
}

func TestClaimsAreStoredOncePerPerson(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	shop, _, _ := s.Login("wxshop", "o-shop", "u-alice")
	game, _, _ := s.Login("wxgame", "o-game", "u-alice")
	solo, _, _ := s.Login("wxsolo", "o-solo", "")

	c, taken, err := s.Claim(game.ID, "welcome-gift")
	if err != nil || taken || c.AppID != "wxgame" || c.UserID != game.ID || !c.ClaimedAt.Equal(clock.Now()) {
		t.Fatalf("first claim = %+v, %v, %v; want a new claim in wxgame now", c, taken, err)
	}
	clock.Advance(time.Hour)
	again, taken, err := s.Claim(shop.ID, "welcome-gift")
	if err != nil || !taken || again != c {
		t.Errorf("claim by the same person from another app = %+v, %v, %v; want the first claim, taken", again, taken, err)
	}
	if _, taken, _ := s.Claim(solo.ID, "welcome-gift"); taken {
		t.Error("a record without a unionid shares claims with another person")
	}

	// Claims come back after a restart, and after a snapshot replaced the journal.
	s.Close()
	s = openTestStore(t, dir, clock.Now)
	if list := s.ClaimsOf(shop.ID); len(list) != 1 || list[0] != c {
		t.Errorf("after reopen claims = %+v; want %+v", list, c)
	}
	compactOnNextWrite(s)
	s.Claim(shop.ID, "coupon")
	s.Close()
	snapshot, _ := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if n := bytes.Count(snapshot, claimLinePrefix); n != 3 {
		t.Errorf("snapshot holds %d claims; want 3:\n%s", n, snapshot)
	}
	s = openTestStore(t, dir, clock.Now)
	if list := s.ClaimsOf(game.ID); len(list) != 2 || list[0] != c || list[1].Name != "coupon" {
		t.Errorf("after compaction and reopen claims = %+v", list)
	}
}

func TestEarliestClaimCountsAfterPersonsJoin(t *testing.T) {
	for _, firstClaimant := range []int64{1, 2} {
		t.Run(fmt.Sprint("first claim by user ", firstClaimant), func(t *testing.T) {
			clock := testkit.NewFakeClock()
			s := openTestStore(t, t.TempDir(), clock.Now)
			s.Login("wxshop", "o-shop", "") // user 1
			s.Login("wxgame", "o-game", "") // user 2: two persons, as neither has a unionid yet
			first, _, _ := s.Claim(firstClaimant, "gift")
			clock.Advance(time.Minute)
			if _, taken, _ := s.Claim(3-firstClaimant, "gift"); taken {
				t.Fatal("a claim was taken by another person")
			}
			s.Login("wxshop", "o-shop", "u-alice")
			s.Login("wxgame", "o-game", "u-alice") // now one person
			for _, id := range []int64{1, 2} {
				if c, taken, _ := s.Claim(id, "gift"); !taken || c != first {
					t.Errorf("claim by user %d after joining = %+v, %v; want the earliest, %+v", id, c, taken, first)
				}
				if list := s.ClaimsOf(id); len(list) != 1 || list[0] != first {
					t.Errorf("claims of user %d after joining = %+v; want only %+v", id, list, first)
				}
			}
		})
	}
}

// TestPersonSurvivesAUnionIDChange: a mini program moved to another Open
// Platform account gives its users new unionids, the openids staying. The
// user stays in their person, and a user of another app who arrives with
// either unionid joins it; the person's claims stay with it.
func TestPersonSurvivesAUnionIDChange(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	a, _, _ := s.Login("wxshop", "o-a", "u-1")
	b, _, _ := s.Login("wxgame", "o-b", "u-1")
	ids := func(s *Store, id int64) []int64 {
		var out []int64
		users, _ := s.Person(id)
		for _, u := range users {
			out = append(out, u.ID)
		}
		return out
	}
	if got := ids(s, b.ID); !slices.Equal(got, []int64{a.ID, b.ID}) {
		t.Errorf("person of b = %v; want [a b]", got)
	}
	gift, _, err := s.Claim(b.ID, "gift")
	if err != nil {
		t.Fatal(err)
	}
	moved, _, _ := s.Login("wxshop", "o-a", "u-2") // Shop moved: WeChat now gives a another unionid
	if moved.UnionID != "u-2" || moved.PreviousUnionIDs != "u-1" {
		t.Errorf("a after the move = unionid %q, previous %q; want u-2, u-1", moved.UnionID, moved.PreviousUnionIDs)
	}
	c, _, _ := s.Login("wxnew", "o-c", "u-2")   // an app of the new account
	d, _, _ := s.Login("wxgame2", "o-d", "u-1") // one of the old
	e, _, _ := s.Login("wxsolo", "o-e", "")
	check := func(s *Store, when string) {
		t.Helper()
		for _, id := range []int64{a.ID, b.ID, c.ID, d.ID} {
			if got := ids(s, id); !slices.Equal(got, []int64{a.ID, b.ID, c.ID, d.ID}) {
				t.Errorf("%s: person of user %d = %v; want a, b, c and d", when, id, got)
			}
			if got, taken, _ := s.Claim(id, "gift"); !taken || got != gift {
				t.Errorf("%s: the gift by user %d = %+v, %v; want b's, taken already", when, id, got, taken)
			}
		}
		if got := ids(s, e.ID); !slices.Equal(got, []int64{e.ID}) {
			t.Errorf("%s: person of a record without unionid = %v; want itself", when, got)
		}
		if users, persons, _ := s.Census(); users != 5 || persons != 2 {
			t.Errorf("%s: census = %d users, %d persons; want 5 and 2", when, users, persons)
		}
	}
	check(s, "after the move")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, time.Now)
	check(s, "after a restart")
	// The user who took the gift deletes their account; and then the one
	// whose unionid changed: the gift stays taken for the others.
	for _, gone := range []int64{b.ID, a.ID} {
		if _, err := s.Erase(gone); err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{c.ID, d.ID} {
			if got, taken, _ := s.Claim(id, "gift"); !taken || got.ClaimedAt != gift.ClaimedAt {
				t.Errorf("after user %d was erased, the gift by user %d = %+v, %v; want b's, taken already", gone, id, got, taken)
			}
		}
	}
	// The one whose unionids joined the two sides is gone, and the person
	// is still one: a gift taken now on one side is taken on the other.
	if _, taken, err := s.Claim(c.ID, "later-gift"); taken || err != nil {
		t.Fatalf("a later gift by c = taken %v, %v; want it new", taken, err)
	}
	if _, taken, _ := s.Claim(d.ID, "later-gift"); !taken {
		t.Errorf("the later gift by d = new; want it taken by c, of the same person")
	}
	if _, persons, _ := s.Census(); persons != 2 {
		t.Errorf("after the erasures: %d persons; want 2 (c and d, e)", persons)
	}
}

// TestUnionIDBackToAnOldOne: a user whose unionid goes back to one they had
// has it once, as the current one.
func TestUnionIDBackToAnOldOne(t *testing.T) {
	u := account.User{UnionID: "u-1"}
	for _, step := range []struct{ set, want, previous string }{
		{"u-2", "u-2", "u-1"}, {"", "u-2", "u-1"}, {"u-3", "u-3", "u-1 u-2"}, {"u-1", "u-1", "u-2 u-3"},
	} {
		u.SetUnionID(step.set)
		if u.UnionID != step.want || u.PreviousUnionIDs != step.previous {
			t.Errorf("SetUnionID(%q) = %q, previous %q; want %q, %q", step.set, u.UnionID, u.PreviousUnionIDs, step.want, step.previous)
		}
	}
}

// seedUsers adds users 0 to n-1 to s through the store's own write path,
// ten thousand to a batch (one fsync each), so that a benchmark can start
// from a store of any size in seconds rather than hours.
func seedUsers(tb testing.TB, s *Store, n int) {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	for start := 0; start < n; start += 10_000 {
		s.mu.Lock()
		var b *journal.Batch
		for i := start; i < min(n, start+10_000); i++ {
			b, _ = s.putLocked(nil, &account.User{
				ID: int64(len(s.byID)) + 1, AppID: "wxbench", OpenID: benchOpenID(i), UnionID: fakewechat.UnionID(strconv.Itoa(i)),
				CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
			}, now)
		}
		s.mu.Unlock()
		if err := s.journal.Wait(b); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkUserInsert is the cost of one new user, durable before it
// returns, in a store that already holds 10 k, 100 k or 1 M users. One
// insert at a time, so each pays its own fsync: the figure that matters for
// growth is the ratio between sizes (BENCHMARKS.md).
func BenchmarkUserInsert(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			s := openTestStore(b, b.TempDir(), time.Now)
			seedUsers(b, s, n)
			i := n
			for b.Loop() {
				if _, created, err := s.Login("wxbench", benchOpenID(i), ""); err != nil || !created {
					b.Fatalf("login of new user %d = %v, created %v", i, err, created)
				}
				i++
			}
		})
	}
}

// BenchmarkUserInsertConcurrent is new users arriving 64 at a time, as in a
// launch spike: concurrent inserts share one fsync (group commit).
func BenchmarkUserInsertConcurrent(b *testing.B) {
	s := openTestStore(b, b.TempDir(), time.Now)
	seedUsers(b, s, 100_000)
	var next atomic.Int64
	next.Store(100_000)
	b.SetParallelism(32) // 2 cores × 32 = 64 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Login("wxbench", benchOpenID(int(next.Add(1))), ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpenUserStore is the start-up replay: opening a store of 1 M
// users, as seeded (a snapshot and the journal written after it).
func BenchmarkOpenUserStore(b *testing.B) {
	dir := b.TempDir()
	seeded := openTestStore(b, dir, time.Now)
	seedUsers(b, seeded, 1_000_000)
	if err := seeded.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
