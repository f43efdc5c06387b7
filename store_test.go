package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock, so tests expire tokens and codes without
// sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

var (
	alice = identity{AppID: "wxapp", OpenID: "o-alice", UserID: 1}
	bob   = identity{AppID: "wxapp", OpenID: "o-bob", UserID: 2}
)

// knownUsers is a user store's identity lookup, for alice and bob.
func knownUsers(id int64) (identity, bool) {
	for _, who := range []identity{alice, bob} {
		if who.UserID == id {
			return who, true
		}
	}
	return identity{}, false
}

func TestTokenIssue(t *testing.T) {
	tokens := newTokenStore(2*time.Hour, 720*time.Hour, newFakeClock().Now)
	seen := map[string]bool{}
	for range 100 {
		token := tokens.issue(alice, "key")
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q: want 32 bytes of base64url without padding (err %v, %d bytes)", token, err, len(raw))
		}
		if seen[token] {
			t.Fatalf("token %q issued twice", token)
		}
		seen[token] = true
	}
	token := tokens.issue(alice, "key-1")
	who, ok := tokens.lookup(token)
	if !ok {
		t.Fatal("lookup of a fresh token failed")
	}
	if who.identity != alice || who.SessionKey != "key-1" {
		t.Errorf("lookup = %+v, key %q; want %+v, key-1", who.identity, who.SessionKey, alice)
	}
	if _, ok := tokens.lookup(token + "x"); ok {
		t.Error("lookup of an unknown token succeeded")
	}
}

func TestTokenExpiry(t *testing.T) {
	const ttl, maxAge = 2 * time.Hour, 5 * time.Hour
	tests := []struct {
		name  string
		steps []time.Duration // clock advances; the token is looked up after each
		valid []bool          // whether each lookup should succeed
	}{
		{"used within ttl", []time.Duration{ttl - time.Second}, []bool{true}},
		{"idle for ttl", []time.Duration{ttl}, []bool{false}},
		{"each use renews the idle lifetime", []time.Duration{ttl * 3 / 4, ttl * 3 / 4, ttl * 3 / 4}, []bool{true, true, true}},
		{"max age caps a token in use", []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour, time.Hour - time.Second, time.Second}, []bool{true, true, true, true, true, false}},
		{"dead stays dead", []time.Duration{ttl, -time.Hour}, []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tokens := newTokenStore(ttl, maxAge, clock.Now)
			token := tokens.issue(alice, "key")
			for i, d := range tt.steps {
				clock.Advance(d)
				if _, ok := tokens.lookup(token); ok != tt.valid[i] {
					t.Fatalf("lookup after step %d (%v) = %v; want %v", i, d, ok, tt.valid[i])
				}
			}
		})
	}
}

func TestTokenRevoke(t *testing.T) {
	tokens := newTokenStore(time.Hour, time.Hour, newFakeClock().Now)
	token, other := tokens.issue(alice, "key"), tokens.issue(alice, "key")
	who, _ := tokens.lookup(token)
	tokens.revoke(who)
	if _, ok := tokens.lookup(token); ok {
		t.Error("revoked token still valid")
	}
	if _, ok := tokens.lookup(other); !ok {
		t.Error("revoking one token revoked another of the same user")
	}
}

func TestTokenNewestSessionKeyWins(t *testing.T) {
	tokens := newTokenStore(time.Hour, time.Hour, newFakeClock().Now)
	phone := tokens.issue(alice, "old-key")
	laptop := tokens.issue(alice, "new-key")
	for name, token := range map[string]string{"older token": phone, "newer token": laptop} {
		who, ok := tokens.lookup(token)
		if !ok || who.SessionKey != "new-key" {
			t.Errorf("%s: lookup = %v, key %q; want valid with new-key", name, ok, who.SessionKey)
		}
	}
	if who, _ := tokens.lookup(tokens.issue(bob, "bob-key")); who.SessionKey != "bob-key" {
		t.Errorf("bob's key = %q; want bob-key", who.SessionKey)
	}
}

func TestTokenSweep(t *testing.T) {
	clock := newFakeClock()
	tokens := newTokenStore(time.Hour, 3*time.Hour, clock.Now)
	old := tokens.issue(alice, "key")
	clock.Advance(30 * time.Minute)
	fresh := tokens.issue(bob, "bob-key")
	clock.Advance(45 * time.Minute) // old is dead, fresh is not

	if n := tokens.sweep(); n != 1 {
		t.Errorf("sweep removed %d tokens; want 1", n)
	}
	if _, ok := tokens.tokens.Load(hashToken(old)); ok {
		t.Error("sweep kept an expired token")
	}
	if _, ok := tokens.lookup(fresh); !ok {
		t.Error("sweep removed a live token")
	}
	clock.Advance(3 * time.Hour)
	tokens.sweep()
	if n := len(tokens.users); n != 0 {
		t.Errorf("%d users' session keys left after every token reached max age; want 0", n)
	}
}

func TestRunSweeperStopsWithContext(t *testing.T) {
	tokens := newTokenStore(time.Hour, time.Hour, time.Now)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tokens.runSweeper(ctx, time.Millisecond)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("runSweeper did not return after its context ended")
	}
}

func TestTokenSaveAndLoad(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), tokenFileName)
	before := newTokenStore(time.Hour, 24*time.Hour, clock.Now)
	live := before.issue(alice, "alice-key")
	dying := before.issue(bob, "bob-key")
	clock.Advance(50 * time.Minute)
	before.lookup(live) // alice's token was used recently; bob's was not

	if n, err := before.save(path); err != nil || n != 2 {
		t.Fatalf("save = %d, %v; want 2, nil", n, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(live)) || bytes.Contains(data, []byte(dying)) {
		t.Error("the token file holds a token, not just its hash")
	}
	assertPrivate(t, path)

	clock.Advance(20 * time.Minute) // down for a while: bob's token expires meanwhile
	after := newTokenStore(time.Hour, 24*time.Hour, clock.Now)
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	who, ok := after.lookup(live)
	if !ok || who.identity != alice || who.SessionKey != "alice-key" {
		t.Errorf("reloaded lookup = %+v, %v; want alice with alice-key", who, ok)
	}
	if _, ok := after.lookup(dying); ok {
		t.Error("a token that expired while the server was down was reloaded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("token file still there after load (stat err %v): a later crash would revive revoked tokens", err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, clock.Now).load(path, knownUsers); err != nil || n != 0 {
		t.Errorf("load with no file = %d, %v; want 0, nil", n, err)
	}
}

func TestTokenLoadRejectsForeignFile(t *testing.T) {
	const header = `{"format":"wxlogin-tokens","version":2,"saved_at":"2026-01-01T00:00:00Z"}` + "\n"
	tests := []struct {
		name, content string
		line          int // the line the error must name
	}{
		{"not json", "hello\nworld\n", 1},
		{"other format", `{"format":"something-else","version":2}` + "\n", 1},
		{"a newer version", `{"format":"wxlogin-tokens","version":3}` + "\n", 1},
		{"bad hash", header + `{"sha256":"xyz","user_id":1,"issued_ns":1,"last_used_ns":1}` + "\n", 2},
		{"unknown field", header + `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1,"admin":true}` + "\n", 2},
		{"syntax error", header + `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1}` + "\n" + `{"sha256":,}` + "\n", 3},
		{"cut short", header + `{"user_id":1,"session_key":"k"`, 2},
		{"an indented document, not ours", "{\n \"format\": \"other\",\n}\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tokenFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := newTokenStore(time.Hour, time.Hour, time.Now).load(path, knownUsers)
			if want := fmt.Sprintf("%s:%d:", path, tt.line); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("load = %v; want an error naming %s", err, want)
			}
			if _, statErr := os.Stat(path); statErr != nil {
				t.Errorf("a file that failed to load was removed (%v); it must be left for the operator", statErr)
			}
		})
	}
}

// A token file written by a wxlogin before version 2 (one JSON document) is
// dropped with its file: tokens are login state, lost in a crash too, and
// each phone logs in again. Refusing to start would be worse.
// versionOneTokenFile is an empty token file as wxlogin before version 2
// wrote it: one indented JSON document.
const versionOneTokenFile = "{\n \"format\": \"wxlogin-tokens\",\n \"version\": 1,\n \"tokens\": [],\n \"session_keys\": []\n}\n"

func TestTokenLoadDropsTheOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokenFileName)
	if err := os.WriteFile(path, []byte(versionOneTokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, time.Now).load(path, knownUsers); !errors.Is(err, errOldTokenFile) || n != 0 {
		t.Fatalf("load of a version 1 file = %d, %v; want 0, errOldTokenFile", n, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the version 1 file is still there (stat err %v)", err)
	}
}

// A token whose user the user store does not know, or knows as someone
// else, as when a token file is put next to other users, is not reloaded:
// a token must never speak for another user.
func TestTokenLoadDropsUnknownUsers(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), tokenFileName)
	before := newTokenStore(time.Hour, time.Hour, clock.Now)
	stranger := before.issue(identity{AppID: "wxapp", OpenID: "o-stranger", UserID: 3}, "key")
	impostor := before.issue(identity{AppID: "wxapp", OpenID: "o-mallory", UserID: bob.UserID}, "key")
	known := before.issue(alice, "alice-key")
	if _, err := before.save(path); err != nil {
		t.Fatal(err)
	}
	after := newTokenStore(time.Hour, time.Hour, clock.Now)
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	if _, ok := after.lookup(stranger); ok {
		t.Error("a token of a user the store does not know was reloaded")
	}
	if who, ok := after.lookup(impostor); ok {
		t.Errorf("a token saved for o-mallory was reloaded as %+v", who.identity)
	}
	if who, ok := after.lookup(known); !ok || who.identity != alice {
		t.Errorf("lookup of alice's token = %+v, %v; want alice", who, ok)
	}
}

// openTestStore opens a user store in dir, closing it when the test ends.
func openTestStore(t testing.TB, dir string, now func() time.Time) *userStore {
	t.Helper()
	s, err := openUserStore(dir, now, discardLogger())
	if err != nil {
		t.Fatalf("openUserStore(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUserLogin(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)

	first, created, err := s.login("wxapp", "o-alice", "")
	if err != nil || !created || first.ID != 1 {
		t.Fatalf("first login = %+v, %v, %v; want user 1 created", first, created, err)
	}
	clock.Advance(time.Hour)
	again, created, err := s.login("wxapp", "o-alice", "u-alice")
	if err != nil || created || again.ID != 1 {
		t.Fatalf("second login = %+v, %v, %v; want user 1 found", again, created, err)
	}
	if again.UnionID != "u-alice" || !again.LastLoginAt.Equal(clock.Now()) || !again.UpdatedAt.Equal(clock.Now()) ||
		!again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second login = %+v; want unionid learned, last_login_at and updated_at now, created_at kept", again)
	}
	other, created, _ := s.login("wxother", "o-alice", "")
	if !created || other.ID != 2 {
		t.Errorf("same openid in another app = %+v, created %v; want a new user 2", other, created)
	}
	if got, ok := s.get(1); !ok || got != again {
		t.Errorf("get(1) = %+v, %v; want %+v", got, ok, again)
	}
	if _, ok := s.get(3); ok {
		t.Error("get(3) found a user that does not exist")
	}

	s.Close()
	reopened := openTestStore(t, dir, clock.Now)
	if got, ok := reopened.get(1); !ok || got != again {
		t.Errorf("after reopen get(1) = %+v, %v; want %+v", got, ok, again)
	}
	if _, _, err := s.login("wxapp", "o-late", ""); err == nil {
		t.Error("login on a closed store succeeded")
	}
}

func TestUserUpdate(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	created, _, _ := s.login("wxapp", "o-alice", "")
	clock.Advance(time.Minute)

	updated, err := s.update(1, func(u *userRecord) {
		u.Nickname, u.PhoneNumber = "爱丽丝", "13800000000"
		u.ID, u.OpenID = 9, "o-mallory" // An update cannot change who the record is.
	})
	if err != nil || updated.Nickname != "爱丽丝" || updated.ID != 1 || updated.OpenID != "o-alice" ||
		!updated.UpdatedAt.Equal(clock.Now()) || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("update = %+v, %v; want the nickname and phone set, identity kept, updated_at now", updated, err)
	}
	// The acknowledged update is on disk already: a store opened beside the
	// live one, as after a kill -9, reads it.
	crashed, err := openUserStore(dir, clock.Now, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := crashed.get(1); got != updated {
		t.Errorf("on disk after update: %+v; want %+v", got, updated)
	}
	crashed.Close()

	clock.Advance(time.Minute)
	if same, err := s.update(1, func(u *userRecord) { u.Nickname = "爱丽丝" }); err != nil || same != updated {
		t.Errorf("an update that changes nothing = %+v, %v; want the record as it was", same, err)
	}
	if _, err := s.update(2, func(*userRecord) {}); err == nil {
		t.Error("update of a user that does not exist succeeded")
	}
	s.Close()
	if _, err := s.update(1, func(u *userRecord) { u.Nickname = "late" }); !errors.Is(err, errJournalClosed) {
		t.Errorf("update on a closed store = %v; want errJournalClosed", err)
	}
	if got, _ := s.get(1); got != updated {
		t.Errorf("a refused update changed the record in memory to %+v", got)
	}
}

func TestUserConcurrentFirstLoginsCreateOneUser(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	const n = 100
	var wg sync.WaitGroup
	results := make(chan userRecord, n)
	createdCount := make(chan bool, n)
	for range n {
		wg.Go(func() {
			u, created, err := s.login("wxapp", "o-new", "")
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
	if n := openTestStore(t, dir, time.Now).count(); n != 1 {
		t.Errorf("after reopen the store has %d users; want 1", n)
	}
}

func TestUserStoreFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openTestStore(t, dir, time.Now)
	compactOnNextWrite(s)
	if _, _, err := s.login("wxapp", "o-alice", ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode = %v (err %v); want 0700", info.Mode().Perm(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "users.*"))
	if len(files) < 2 {
		t.Fatalf("files %v; want a snapshot and a journal", files)
	}
	for _, f := range files {
		assertPrivate(t, f)
	}
}

// compactOnNextWrite makes the store's next write start a snapshot, after
// waiting for any snapshot still being written.
func compactOnNextWrite(s *userStore) {
	s.journal.compactions.Wait()
	s.journal.flushMu.Lock()
	defer s.journal.flushMu.Unlock()
	s.journal.compactAt = 0
}

func assertPrivate(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o; want 0600", path, perm)
	}
}

func TestClaimsAreStoredOncePerPerson(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	shop, _, _ := s.login("wxshop", "o-shop", "u-alice")
	game, _, _ := s.login("wxgame", "o-game", "u-alice")
	solo, _, _ := s.login("wxsolo", "o-solo", "")

	c, taken, err := s.claim(game.ID, "welcome-gift")
	if err != nil || taken || c.AppID != "wxgame" || c.UserID != game.ID || !c.ClaimedAt.Equal(clock.Now()) {
		t.Fatalf("first claim = %+v, %v, %v; want a new claim in wxgame now", c, taken, err)
	}
	clock.Advance(time.Hour)
	again, taken, err := s.claim(shop.ID, "welcome-gift")
	if err != nil || !taken || again != c {
		t.Errorf("claim by the same person from another app = %+v, %v, %v; want the first claim, taken", again, taken, err)
	}
	if _, taken, _ := s.claim(solo.ID, "welcome-gift"); taken {
		t.Error("a record without a unionid shares claims with another person")
	}

	// Claims come back after a restart, and after a snapshot replaced the journal.
	s.Close()
	s = openTestStore(t, dir, clock.Now)
	if list := s.claimsOf(shop.ID); len(list) != 1 || list[0] != c {
		t.Errorf("after reopen claims = %+v; want %+v", list, c)
	}
	compactOnNextWrite(s)
	s.claim(shop.ID, "coupon")
	s.Close()
	snapshot, _ := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if n := bytes.Count(snapshot, claimLinePrefix); n != 3 {
		t.Errorf("snapshot holds %d claims; want 3:\n%s", n, snapshot)
	}
	s = openTestStore(t, dir, clock.Now)
	if list := s.claimsOf(game.ID); len(list) != 2 || list[0] != c || list[1].Name != "coupon" {
		t.Errorf("after compaction and reopen claims = %+v", list)
	}
}

func TestEarliestClaimCountsAfterPersonsJoin(t *testing.T) {
	for _, firstClaimant := range []int64{1, 2} {
		t.Run(fmt.Sprint("first claim by user ", firstClaimant), func(t *testing.T) {
			clock := newFakeClock()
			s := openTestStore(t, t.TempDir(), clock.Now)
			s.login("wxshop", "o-shop", "") // user 1
			s.login("wxgame", "o-game", "") // user 2: two persons, as neither has a unionid yet
			first, _, _ := s.claim(firstClaimant, "gift")
			clock.Advance(time.Minute)
			if _, taken, _ := s.claim(3-firstClaimant, "gift"); taken {
				t.Fatal("a claim was taken by another person")
			}
			s.login("wxshop", "o-shop", "u-alice")
			s.login("wxgame", "o-game", "u-alice") // now one person
			for _, id := range []int64{1, 2} {
				if c, taken, _ := s.claim(id, "gift"); !taken || c != first {
					t.Errorf("claim by user %d after joining = %+v, %v; want the earliest, %+v", id, c, taken, first)
				}
				if list := s.claimsOf(id); len(list) != 1 || list[0] != first {
					t.Errorf("claims of user %d after joining = %+v; want only %+v", id, list, first)
				}
			}
		})
	}
}

func TestPersonFollowsTheUnionID(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	a, _, _ := s.login("wxshop", "o-a", "u-1")
	b, _, _ := s.login("wxgame", "o-b", "u-1")
	ids := func(id int64) []int64 {
		var out []int64
		users, _ := s.person(id)
		for _, u := range users {
			out = append(out, u.ID)
		}
		return out
	}
	if got := ids(b.ID); !slices.Equal(got, []int64{a.ID, b.ID}) {
		t.Errorf("person of b = %v; want [a b]", got)
	}
	s.login("wxshop", "o-a", "u-2") // WeChat now gives a another unionid
	if got := ids(b.ID); !slices.Equal(got, []int64{b.ID}) {
		t.Errorf("after a's unionid changed, person of b = %v; want b alone", got)
	}
	if got := ids(a.ID); !slices.Equal(got, []int64{a.ID}) {
		t.Errorf("after a's unionid changed, person of a = %v; want a alone", got)
	}
	c, _, _ := s.login("wxsolo", "o-c", "")
	if got := ids(c.ID); !slices.Equal(got, []int64{c.ID}) {
		t.Errorf("person of a record without unionid = %v; want itself", got)
	}
}

func TestUserStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	for i := range 50 {
		if i%10 == 0 {
			compactOnNextWrite(s)
		}
		if _, _, err := s.login("wxapp", fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.login("wxapp", fmt.Sprintf("o-%d", i/2), "u"); err != nil {
			t.Fatal(err)
		}
	}
	compactOnNextWrite(s)
	if _, _, err := s.login("wxapp", "o-0", ""); err != nil {
		t.Fatal(err)
	}
	want := make([]userRecord, 50)
	for i := range want {
		want[i], _ = s.get(int64(i + 1))
	}
	s.Close()

	snapshot, err := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if err != nil {
		t.Fatalf("no snapshot after compaction: %v", err)
	}
	if !bytes.HasPrefix(snapshot, []byte(`{"format":"wxlogin-users-snapshot"`)) {
		t.Errorf("snapshot starts %q", snapshot[:40])
	}
	if lines := bytes.Count(snapshot, []byte("\n")); lines != 1+50 {
		t.Errorf("snapshot has %d lines; want a header and each of the 50 users once", lines)
	}
	journals, _ := filepath.Glob(filepath.Join(dir, "users.journal.*"))
	if len(journals) != 1 {
		t.Errorf("journals after compaction: %v; want only the newest", journals)
	}
	reopened := openTestStore(t, dir, time.Now)
	for i, w := range want {
		if got, ok := reopened.get(int64(i + 1)); !ok || got != w {
			t.Errorf("after reopen user %d = %+v; want %+v", i+1, got, w)
		}
	}
	if n := reopened.count(); n != 50 {
		t.Errorf("after reopen %d users; want 50", n)
	}
}

func TestUserStoreRecoversFromCrashDebris(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"torn last line", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "users.journal.000001.jsonl"), `{"id":3,"appid":"wxapp","ope`)
		}},
		{"torn header of a new journal", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), `{"format":"wxlogin-us`)
		}},
		{"empty new journal", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), "")
		}},
		{"snapshot temp file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ".users.snapshot.jsonl.tmp123"), `{"format":"wxlogin-users-snapshot","version":1,"gener`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, time.Now)
			s.login("wxapp", "o-1", "")
			s.login("wxapp", "o-2", "")
			s.Close()
			tt.damage(t, dir)

			s = openTestStore(t, dir, time.Now)
			if n := s.count(); n != 2 {
				t.Fatalf("after recovery %d users; want 2", n)
			}
			if u, created, err := s.login("wxapp", "o-3", ""); err != nil || !created || u.ID != 3 {
				t.Fatalf("login after recovery = %+v, %v, %v; want user 3 created", u, created, err)
			}
			s.Close()
			if n := openTestStore(t, dir, time.Now).count(); n != 3 {
				t.Errorf("second reopen: %d users; want 3", n)
			}
			if tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmp) > 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}
}

func TestUserStoreRejectsDamagedFiles(t *testing.T) {
	const header = `{"format":"wxlogin-users-journal","version":1,"generation":1}` + "\n"
	const u1 = `{"id":1,"appid":"wxapp","openid":"o-1","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	const u2 = `{"id":2,"appid":"wxapp","openid":"o-2","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	tests := []struct {
		name, file, content, wantLine string
	}{
		{"foreign file", "users.journal.000001.jsonl", "id,name\n1,alice\n", ":1:"},
		{"newer version", "users.journal.000001.jsonl", `{"format":"wxlogin-users-journal","version":2,"generation":1}` + "\n", ":1:"},
		{"garbage line", "users.journal.000001.jsonl", header + u1 + "not json\n" + u2, ":3:"},
		{"duplicate user", "users.journal.000001.jsonl", header + u1 + strings.Replace(u1, `"id":1`, `"id":2`, 1), ":3:"},
		{"id gap", "users.journal.000001.jsonl", header + u2, ":2:"},
		{"openid changed", "users.journal.000001.jsonl", header + u1 + strings.Replace(u1, "o-1", "o-x", 1), ":3:"},
		{"unknown field", "users.journal.000001.jsonl", header + strings.Replace(u1, `"id":1,`, `"id":1,"phone":"1",`, 1), ":2:"},
		{"stray brace", "users.journal.000001.jsonl", header + strings.Replace(u1, "}\n", "}}\n", 1), ":2:"},
		{"claim of an unknown user", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":2,"at":"2026-01-01T00:00:00Z"}}` + "\n", ":3:"},
		{"claim made twice", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":1,"at":"2026-01-01T00:00:00Z"}}` + "\n" +
			`{"claim":{"name":"gift","user_id":1,"at":"2026-01-02T00:00:00Z"}}` + "\n", ":4:"},
		{"claim with a bad name", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"Gift!","user_id":1,"at":"2026-01-01T00:00:00Z"}}` + "\n", ":3:"},
		{"claim with an unknown field", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":1,"at":"2026-01-01T00:00:00Z","by":"x"}}` + "\n", ":3:"},
		{"no openid", "users.journal.000001.jsonl", header + strings.Replace(u1, `"openid":"o-1",`, "", 1), ":2:"},
		{"generation mismatch", "users.journal.000001.jsonl", strings.Replace(header, `"generation":1`, `"generation":7`, 1), ":1:"},
		{"torn snapshot", "users.snapshot.jsonl", `{"format":"wxlogin-users-snapshot","version":1,"generation":0}` + "\n" + u1[:30], ":2:"},
		{"torn line in an older journal", "users.journal.000001.jsonl", header + u1[:30], ":2:"},
		{"odd journal name", "users.journal.1.jsonl", header, ": not a wxlogin journal name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			writeFile(t, path, tt.content)
			if tt.name == "torn line in an older journal" {
				writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), strings.Replace(header, `"generation":1`, `"generation":2`, 1))
			}
			s, err := openUserStore(dir, time.Now, discardLogger())
			if err == nil {
				s.Close()
				t.Fatal("openUserStore succeeded on a damaged file")
			}
			if !strings.Contains(err.Error(), path+tt.wantLine) {
				t.Errorf("openUserStore = %v; want an error naming %s%s", err, path, tt.wantLine)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Error("the damaged file was changed; it must be left for the operator")
			}
		})
	}
}

func TestUserStoreWriteFailureIsSticky(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.journal.file.Close() // the disk goes away under the store
	if _, _, err := s.login("wxapp", "o-1", ""); err == nil {
		t.Fatal("login succeeded although the journal write failed")
	}
	if _, _, err := s.login("wxapp", "o-2", ""); err == nil {
		t.Fatal("a write after a failed fsync succeeded; it cannot be trusted to be durable")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenJournal feeds arbitrary journal contents to start-up: it must
// load them or refuse with an error, never panic, and what it loads must
// load the same way again.
func FuzzOpenJournal(f *testing.F) {
	const header = `{"format":"wxlogin-users-journal","version":1,"generation":1}` + "\n"
	f.Add([]byte(header + `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(header + `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z"`))
	f.Add([]byte(header[:20]))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "users.journal.000001.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openUserStore(dir, time.Now, discardLogger())
		if err != nil {
			return
		}
		n := s.count()
		s.Close()
		s, err = openUserStore(dir, time.Now, discardLogger())
		if err != nil {
			t.Fatalf("a journal that loaded once fails the second time: %v", err)
		}
		defer s.Close()
		if s.count() != n {
			t.Fatalf("second load has %d users; first had %d", s.count(), n)
		}
	})
}

// benchOpenID is the openid of the ith user of the benchmarks: WeChat's
// length and alphabet, as the fake makes them.
func benchOpenID(i int) string { return fakeOpenID("wxbench", strconv.Itoa(i)) }

// seedUsers adds users 0 to n-1 to s through the store's own write path,
// ten thousand to a batch (one fsync each), so that a benchmark can start
// from a store of any size in seconds rather than hours.
func seedUsers(tb testing.TB, s *userStore, n int) {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	for start := 0; start < n; start += 10_000 {
		s.mu.Lock()
		var b *batch
		for i := start; i < min(n, start+10_000); i++ {
			b = s.putLocked(&userRecord{
				ID: int64(len(s.byID)) + 1, AppID: "wxbench", OpenID: benchOpenID(i), UnionID: fakeUnionID(strconv.Itoa(i)),
				CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
			})
		}
		s.mu.Unlock()
		if err := s.journal.wait(b); err != nil {
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
				if _, created, err := s.login("wxbench", benchOpenID(i), ""); err != nil || !created {
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
			if _, _, err := s.login("wxbench", benchOpenID(int(next.Add(1))), ""); err != nil {
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
		s, err := openUserStore(dir, time.Now, discardLogger())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenIssue(b *testing.B) {
	s := newTokenStore(2*time.Hour, 720*time.Hour, time.Now)
	i := 0
	for b.Loop() {
		i++
		s.issue(identity{AppID: "wxbench", OpenID: benchOpenID(i % 100_000), UserID: int64(i%100_000 + 1)}, officialSessionKey)
	}
}

// BenchmarkTokenLookup looks up tokens, from every core at once, in a store
// of 100 k live ones: what every authenticated request does first.
func BenchmarkTokenLookup(b *testing.B) {
	s := newTokenStore(2*time.Hour, 720*time.Hour, time.Now)
	tokens := make([]string, 100_000)
	for i := range tokens {
		tokens[i] = s.issue(identity{AppID: "wxbench", OpenID: benchOpenID(i), UserID: int64(i + 1)}, officialSessionKey)
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := s.lookup(tokens[next.Add(1)%int64(len(tokens))]); !ok {
				b.Error("a live token was not found")
				return
			}
		}
	})
}
