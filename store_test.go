package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
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
	"wxlogin/internal/clock"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/journal"
	"wxlogin/internal/opendata"
	"wxlogin/internal/tokenfile"
)

var (
	alice = account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: 1}
	bob   = account.Identity{AppID: "wxapp", OpenID: "o-bob", UserID: 2}
)

// knownUsers is a user store's identity lookup, for alice and bob.
func knownUsers(id int64) (account.Identity, bool) {
	for _, who := range []account.Identity{alice, bob} {
		if who.UserID == id {
			return who, true
		}
	}
	return account.Identity{}, false
}

func TestTokenIssue(t *testing.T) {
	tokens := newTokenStore(2*time.Hour, 720*time.Hour, newFakeClock().clock())
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
	if who.Identity != alice || who.SessionKey != "key-1" {
		t.Errorf("lookup = %+v, key %q; want %+v, key-1", who.Identity, who.SessionKey, alice)
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
			tokens := newTokenStore(ttl, maxAge, clock.clock())
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
	tokens := newTokenStore(time.Hour, time.Hour, newFakeClock().clock())
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

// Revoking all of a user's tokens (account deletion) ends every live one
// and counts only those: a token already expired was not revoked by it.
func TestTokenRevokeUserCountsLiveTokens(t *testing.T) {
	clock := newFakeClock()
	tokens := newTokenStore(time.Hour, 3*time.Hour, clock.clock())
	tokens.issue(alice, "key")
	clock.Advance(time.Hour + time.Minute)
	live, again := tokens.issue(alice, "key"), tokens.issue(alice, "key")
	if n := tokens.revokeUser(alice.UserID); n != 2 {
		t.Errorf("revokeUser = %d, want 2: the two live tokens, not the expired one", n)
	}
	for _, token := range []string{live, again} {
		if _, ok := tokens.lookup(token); ok {
			t.Error("a token is still valid after revokeUser")
		}
	}
}

func TestTokenNewestSessionKeyWins(t *testing.T) {
	tokens := newTokenStore(time.Hour, time.Hour, newFakeClock().clock())
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

func TestTokenSaveAndLoad(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	before := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
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
	after := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	who, ok := after.lookup(live)
	if !ok || who.Identity != alice || who.SessionKey != "alice-key" {
		t.Errorf("reloaded lookup = %+v, %v; want alice with alice-key", who, ok)
	}
	if _, ok := after.lookup(dying); ok {
		t.Error("a token that expired while the server was down was reloaded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("token file still there after load (stat err %v): a later crash would revive revoked tokens", err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, clock.clock()).load(path, knownUsers); err != nil || n != 0 {
		t.Errorf("load with no file = %d, %v; want 0, nil", n, err)
	}
}

// A token file that cannot be read whole, whatever is wrong with it, is
// dropped with every login in it, those read before the fault too, and
// removed: the error names the file and the line, and says what is wrong
// without quoting the file, which holds session keys.
func TestTokenLoadDropsAnUnreadableFile(t *testing.T) {
	const header = `{"format":"wxlogin-tokens","version":2,"saved_at":"2026-01-01T00:00:00Z"}` + "\n"
	const key = "c2Vzc2lvbi1rZXktbm90LWZvci1sb2dz" // a session key, which no error may quote
	keyLine := `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"` + key + `","stored_ns":1}` + "\n"
	// A file that is good up to its last line: alice's live token, then the
	// fault.
	clock := newFakeClock()
	good := filepath.Join(t.TempDir(), tokenfile.Name)
	live := newTokenStore(time.Hour, time.Hour, clock.clock())
	token := live.issue(alice, key)
	if _, err := live.save(good); err != nil {
		t.Fatal(err)
	}
	goodFile := readFile(t, good)
	binary := make([]byte, 300)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	tests := []struct {
		name, content string
		where         string // the file, and the line, the error must name
	}{
		{"not json", "hello " + key + "\nworld\n", ":1: not a wxlogin token file: not JSON"},
		{"other format", `{"format":"something-else","version":2}` + "\n", ":1: not a wxlogin token file of version 2"},
		{"a newer version", `{"format":"wxlogin-tokens","version":3}` + "\n", ":1: not a wxlogin token file of version 2"},
		{"bad hash", header + `{"sha256":"` + key + `","user_id":1,"issued_ns":1,"last_used_ns":1}` + "\n", ":2: its token hash is not"},
		{"unknown field", header + `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1,"` + key + `":true}` + "\n", ":2: not a session key line"},
		{"wrong type", header + `{"user_id":"` + key + `","appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1}` + "\n", ":2: not a session key line: a value of the wrong type for user_id"},
		{"syntax error", header + keyLine + `{"sha256":,}` + "\n", ":3: not a token line: not JSON"},
		{"cut short", header + keyLine[:len(keyLine)/2], ":2: cut short"},
		{"a good token, then a line cut short", goodFile + keyLine[:len(keyLine)/2], ":4: cut short"},
		{"a good token, then garbage", goodFile + key + "\n", ":4: not a session key line"},
		{"an indented document, not ours", "{\n \"format\": \"other\",\n}\n", ":1: not a wxlogin token file"},
		{"empty", "", ": empty"},
		{"binary", string(binary) + key, ":1: not a wxlogin token file"},
		{"one line longer than the buffer", strings.Repeat(key, 3000), ":1: not a wxlogin token file: a line longer than"},
		{"an older wxlogin's", versionOneTokenFile, ": written by an older wxlogin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tokenfile.Name)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			after := newTokenStore(time.Hour, time.Hour, clock.clock())
			n, err := after.load(path, knownUsers)
			if !errors.Is(err, errTokenFileDropped) || n != 0 {
				t.Fatalf("load = %d, %v; want 0, and the file dropped", n, err)
			}
			if want := path + tt.where; !strings.Contains(err.Error(), want) {
				t.Errorf("load = %v; want an error naming %s", err, want)
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), key[:8]) {
				t.Errorf("load's error quotes the file: %v", err)
			}
			if _, statErr := os.Stat(path); !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("a file that could not be read is still there (stat: %v)", statErr)
			}
			if _, ok := after.lookup(token); ok {
				t.Error("a token read before the fault was kept")
			}
			if after.loginStateOf(alice.UserID) != nil {
				t.Error("a session key read before the fault was kept")
			}
		})
	}
}

// versionOneTokenFile is an empty token file as wxlogin before version 2
// wrote it: one indented JSON document.
const versionOneTokenFile = "{\n \"format\": \"wxlogin-tokens\",\n \"version\": 1,\n \"tokens\": [],\n \"session_keys\": []\n}\n"

// A token file written by a wxlogin before version 2 (one JSON document) is
// dropped with its file, and said to be an older wxlogin's: tokens are
// login state, lost in a crash too, and each phone logs in again. Refusing
// to start would be worse.
func TestTokenLoadDropsTheOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	if err := os.WriteFile(path, []byte(versionOneTokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, clock.System()).load(path, knownUsers); !errors.Is(err, tokenfile.ErrOldFormat) || !errors.Is(err, errTokenFileDropped) || n != 0 {
		t.Fatalf("load of a version 1 file = %d, %v; want 0, tokenfile.ErrOldFormat", n, err)
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
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	before := newTokenStore(time.Hour, time.Hour, clock.clock())
	stranger := before.issue(account.Identity{AppID: "wxapp", OpenID: "o-stranger", UserID: 3}, "key")
	impostor := before.issue(account.Identity{AppID: "wxapp", OpenID: "o-mallory", UserID: bob.UserID}, "key")
	known := before.issue(alice, "alice-key")
	if _, err := before.save(path); err != nil {
		t.Fatal(err)
	}
	after := newTokenStore(time.Hour, time.Hour, clock.clock())
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	if _, ok := after.lookup(stranger); ok {
		t.Error("a token of a user the store does not know was reloaded")
	}
	if who, ok := after.lookup(impostor); ok {
		t.Errorf("a token saved for o-mallory was reloaded as %+v", who.Identity)
	}
	if who, ok := after.lookup(known); !ok || who.Identity != alice {
		t.Errorf("lookup of alice's token = %+v, %v; want alice", who, ok)
	}
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

	updated, err := s.update(1, func(u *account.User) {
		u.Nickname, u.PhoneNumber = "爱丽丝", "13800000000"
		u.ID, u.OpenID = 9, "o-mallory" // An update cannot change who the record is.
	})
	if err != nil || updated.Nickname != "爱丽丝" || updated.ID != 1 || updated.OpenID != "o-alice" ||
		!updated.UpdatedAt.Equal(clock.Now()) || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("update = %+v, %v; want the nickname and phone set, identity kept, updated_at now", updated, err)
	}
	// The acknowledged update is on disk already: a store opened beside the
	// live one, as after a kill -9, reads it.
	crashed, err := openUserStore(dir, testMeta, clock.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := crashed.get(1); got != updated {
		t.Errorf("on disk after update: %+v; want %+v", got, updated)
	}
	crashed.Close()

	clock.Advance(time.Minute)
	if same, err := s.update(1, func(u *account.User) { u.Nickname = "爱丽丝" }); err != nil || same != updated {
		t.Errorf("an update that changes nothing = %+v, %v; want the record as it was", same, err)
	}
	if _, err := s.update(2, func(*account.User) {}); err == nil {
		t.Error("update of a user that does not exist succeeded")
	}
	s.Close()
	if _, err := s.update(1, func(u *account.User) { u.Nickname = "late" }); !errors.Is(err, journal.ErrClosed) {
		t.Errorf("update on a closed store = %v; want journal.ErrClosed", err)
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
	results := make(chan account.User, n)
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

// benchOpenID is the openid of the ith user of the benchmarks: WeChat's
// length and alphabet, as the fake makes them.
func benchOpenID(i int) string { return fakewechat.OpenID("wxbench", strconv.Itoa(i)) }

// seedUsers adds users 0 to n-1 to s through the store's own write path,
// ten thousand to a batch (one fsync each), so that a benchmark can start
// from a store of any size in seconds rather than hours.
func seedUsers(tb testing.TB, s *userStore, n int) {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	for start := 0; start < n; start += 10_000 {
		s.mu.Lock()
		var b *journal.Batch
		for i := start; i < min(n, start+10_000); i++ {
			b = s.putLocked(&account.User{
				ID: int64(len(s.byID)) + 1, AppID: "wxbench", OpenID: benchOpenID(i), UnionID: fakewechat.UnionID(strconv.Itoa(i)),
				CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
			})
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
		s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenIssue(b *testing.B) {
	s := newTokenStore(2*time.Hour, 720*time.Hour, clock.System())
	i := 0
	for b.Loop() {
		i++
		s.issue(account.Identity{AppID: "wxbench", OpenID: benchOpenID(i % 100_000), UserID: int64(i%100_000 + 1)}, officialSessionKey)
	}
}

// BenchmarkTokenLookup looks up tokens, from every core at once, in a store
// of 100 k live ones: what every authenticated request does first.
func BenchmarkTokenLookup(b *testing.B) {
	s := newTokenStore(2*time.Hour, 720*time.Hour, clock.System())
	tokens := make([]string, 100_000)
	for i := range tokens {
		tokens[i] = s.issue(account.Identity{AppID: "wxbench", OpenID: benchOpenID(i), UserID: int64(i + 1)}, officialSessionKey)
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

// The token store keeps the key a login replaced for
// opendata.PreviousKeyWindow, for every token of the user; the sweep then
// forgets it.
func TestTheReplacedKeyIsKeptForItsWindowOnly(t *testing.T) {
	clock := newFakeClock()
	tokens := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
	first := tokens.issue(alice, "key-1")
	clock.Advance(time.Minute)
	tokens.issue(alice, "key-2")
	replaced := clock.Now()
	who, _ := tokens.lookup(first)
	if who.SessionKey != "key-2" || who.PreviousKey != "key-1" || !who.ReplacedAt.Equal(replaced) {
		t.Errorf("after a second login: key %q, previous %q replaced at %v; want key-2, key-1 at %v", who.SessionKey, who.PreviousKey, who.ReplacedAt, replaced)
	}
	// WeChat may give the same key again: what it replaced still is, but
	// logins with it do not stretch the window, however many.
	for range 3 {
		clock.Advance(opendata.PreviousKeyWindow / 3)
		tokens.issue(alice, "key-2")
		if who, _ := tokens.lookup(first); who.PreviousKey != "key-1" || !who.ReplacedAt.Equal(replaced) {
			t.Errorf("after the same key again, previous %q replaced at %v; want key-1 at %v", who.PreviousKey, who.ReplacedAt, replaced)
		}
	}

	clock.Advance(time.Second) // past the window since the replacement
	if who, _ := tokens.lookup(first); who.PreviousKey != "" {
		t.Errorf("past the window, previous = %q; want none", who.PreviousKey)
	}
	tokens.issue(alice, "key-2")
	if who, _ := tokens.lookup(first); who.PreviousKey != "" {
		t.Errorf("past the window, after the same key again, previous = %q; want none", who.PreviousKey)
	}
	tokens.sweep()
	if k := tokens.loginStateOf(alice.UserID).key.Load(); k.previous != nil || k.key != "key-2" {
		t.Errorf("after the sweep, the user's key is %+v; want key-2 alone", k)
	}
}
