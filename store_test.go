package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/clock"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/opendata"
	"wxlogin/internal/testkit"
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
	tokens := newTokenStore(2*time.Hour, 720*time.Hour, testkit.NewFakeClock().Clock())
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
			clock := testkit.NewFakeClock()
			tokens := newTokenStore(ttl, maxAge, clock.Clock())
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
	tokens := newTokenStore(time.Hour, time.Hour, testkit.NewFakeClock().Clock())
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
	clock := testkit.NewFakeClock()
	tokens := newTokenStore(time.Hour, 3*time.Hour, clock.Clock())
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
	tokens := newTokenStore(time.Hour, time.Hour, testkit.NewFakeClock().Clock())
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
	clock := testkit.NewFakeClock()
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	before := newTokenStore(time.Hour, 24*time.Hour, clock.Clock())
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
	testkit.AssertPrivate(t, path)

	clock.Advance(20 * time.Minute) // down for a while: bob's token expires meanwhile
	after := newTokenStore(time.Hour, 24*time.Hour, clock.Clock())
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
	if n, err := newTokenStore(time.Hour, time.Hour, clock.Clock()).load(path, knownUsers); err != nil || n != 0 {
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
	clock := testkit.NewFakeClock()
	good := filepath.Join(t.TempDir(), tokenfile.Name)
	live := newTokenStore(time.Hour, time.Hour, clock.Clock())
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
			after := newTokenStore(time.Hour, time.Hour, clock.Clock())
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
	clock := testkit.NewFakeClock()
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	before := newTokenStore(time.Hour, time.Hour, clock.Clock())
	stranger := before.issue(account.Identity{AppID: "wxapp", OpenID: "o-stranger", UserID: 3}, "key")
	impostor := before.issue(account.Identity{AppID: "wxapp", OpenID: "o-mallory", UserID: bob.UserID}, "key")
	known := before.issue(alice, "alice-key")
	if _, err := before.save(path); err != nil {
		t.Fatal(err)
	}
	after := newTokenStore(time.Hour, time.Hour, clock.Clock())
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

// benchOpenID is the openid of the ith user of the benchmarks: WeChat's
// length and alphabet, as the fake makes them.
func benchOpenID(i int) string { return fakewechat.OpenID("wxbench", strconv.Itoa(i)) }

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
	clock := testkit.NewFakeClock()
	tokens := newTokenStore(time.Hour, 24*time.Hour, clock.Clock())
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
