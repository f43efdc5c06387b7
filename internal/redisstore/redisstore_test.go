package redisstore

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

// redisOptions opens a store on srv as -redis-durability says, in real
// mode.
func redisOptions(t *testing.T, addr, userinfo, durability string) error {
	t.Helper()
	cfg := redis.Config{Addrs: []string{addr}, PoolSize: 4, Timeout: 5 * time.Second}
	if userinfo != "" {
		cfg.User, cfg.Password, _ = strings.Cut(userinfo, ":")
	}
	rc := redis.NewClient(cfg)
	defer rc.Close()
	_, err := Open(t.Context(), rc, Options{Durability: durability, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: discardLogger()})
	return err
}

// wxlogin starts on Redis only when it fsyncs each write, unless the
// operator says otherwise; a Redis that hides CONFIG needs that word too.
func TestRedisStoreRefusesWritesThatCouldBeLost(t *testing.T) {
	for _, tt := range []struct {
		name       string
		args       []string
		durability string
		want       string // in the error; "" for a start
	}{
		{"no AOF", nil, Fsync, "appendonly no and appendfsync everysec"},
		{"AOF fsynced each second", []string{"--appendonly", "yes"}, Fsync, "appendonly yes and appendfsync everysec"},
		{"AOF fsynced on each write", []string{"--appendonly", "yes", "--appendfsync", "always"}, Fsync, ""},
		{"no AOF, the operator's word", nil, Unchecked, ""},
		{"a policy that is not one", nil, "sometimes", `-redis-durability="sometimes"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := testkit.StartRedis(t, tt.args...)
			err := redisOptions(t, srv.Addr, "", tt.durability)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("open = %v; want it open", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("open = %v; want an error saying %q", err, tt.want)
			case tt.want != "" && tt.durability == Fsync && !strings.Contains(err.Error(), "-redis-durability=unchecked"):
				t.Errorf("open = %v; want it to name the way out", err)
			}
		})
	}
	t.Run("CONFIG refused", func(t *testing.T) {
		srv := testkit.StartRedis(t)
		admin := srv.Client(t, "", "")
		if _, err := admin.Do(t.Context(), "ACL", "SETUSER", "app", "on", ">app-pass", "~*", "+@all", "-config"); err != nil {
			t.Fatal(err)
		}
		err := redisOptions(t, srv.Addr, "app:app-pass", Fsync)
		if err == nil || !strings.Contains(err.Error(), "refuses CONFIG GET") || !strings.Contains(err.Error(), "-redis-durability=unchecked") {
			t.Errorf("open with CONFIG refused = %v; want it to say so and name -redis-durability=unchecked", err)
		}
		if err := redisOptions(t, srv.Addr, "app:app-pass", Unchecked); err != nil {
			t.Errorf("open with CONFIG refused, unchecked = %v; want it open", err)
		}
	})
}

// A Redis used in mock mode is refused in real mode, as a data directory is.
func TestRedisStoreKeepsMockAndRealApart(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 5 * time.Second}
	open := func(mode string) error {
		rc := redis.NewClient(cfg)
		defer rc.Close()
		_, err := Open(t.Context(), rc, Options{Durability: Fsync, Meta: account.Meta{Mode: mode},
			TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: discardLogger()})
		return err
	}
	if err := open(account.ModeMock); err != nil {
		t.Fatal(err)
	}
	if err := open(account.ModeMock); err != nil {
		t.Errorf("mock mode again = %v", err)
	}
	if err := open(account.ModeReal); err == nil || !strings.Contains(err.Error(), "mock mode") {
		t.Errorf("real mode on a Redis of mock mode = %v; want it refused", err)
	}
}

// However often durability is found weak, the log says so once, and once
// when it is restored; a Redis that does not answer the check changes
// nothing.
func TestRedisWeakenedDurabilityIsLoggedOnce(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	rc := redis.NewClient(redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 300 * time.Millisecond})
	t.Cleanup(rc.Close)
	logs := &testkit.SyncBuffer{}
	rs, err := Open(t.Context(), rc, Options{Durability: Fsync, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	admin := srv.Client(t, "", "")
	for _, step := range []struct {
		name     string
		set      []string // CONFIG SET's arguments before the checks; none for none
		stop     bool     // Redis stopped (SIGSTOP) during the checks
		writable bool
		errors   int // lines at error level so far
		restored int // lines saying it is restored so far
	}{
		{"fsync on each write", nil, false, true, 0, 0},
		{"appendfsync everysec", []string{"appendfsync", "everysec"}, false, false, 1, 0},
		{"appendonly no as well", []string{"appendonly", "no"}, false, false, 1, 0},
		{"Redis not answering", nil, true, false, 1, 0},
		{"restored", []string{"appendonly", "yes", "appendfsync", "always"}, false, true, 1, 1},
		{"restored, Redis not answering", nil, true, true, 1, 1},
	} {
		if step.set != nil {
			if _, err := admin.Do(t.Context(), append([]string{"CONFIG", "SET"}, step.set...)...); err != nil {
				t.Fatal(err)
			}
		}
		if step.stop {
			srv.Pause()
		}
		for range 3 {
			rs.checkDurability(t.Context())
		}
		if step.stop {
			srv.Resume()
		}
		err := rs.writable()
		if step.writable && err != nil || !step.writable && !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: writable() = %v; want writable %v, else ErrUnavailable (a 503 with Retry-After: the root's TestAStoreThatCannotBeReachedAnswers503)", step.name, err, step.writable)
		}
		if n := strings.Count(logs.String(), "level=ERROR"); n != step.errors {
			t.Errorf("%s: %d lines at error level; want %d:\n%s", step.name, n, step.errors, logs)
		}
		if n := strings.Count(logs.String(), "writes are accepted"); n != step.restored {
			t.Errorf("%s: %d lines saying writes are accepted; want %d:\n%s", step.name, n, step.restored, logs)
		}
	}
}

// TestRedisScaleFigures measures what a user and a token take in Redis:
// WXLOGIN_REDIS_SCALE users (skipped when unset; scripts/scale runs it)
// log in, with a unionid and a claim each, through the store, and
// used_memory is read before, after the users with one token each, and
// after a second token each.
func TestRedisScaleFigures(t *testing.T) {
	n := testkit.Setting(t, "WXLOGIN_REDIS_SCALE", 0, strconv.Atoi)
	if n == 0 {
		t.Skip("set WXLOGIN_REDIS_SCALE=<users> (scripts/scale does) to measure")
	}
	srv := testkit.StartRedis(t)
	rc := redis.NewClient(redis.Config{Addrs: []string{srv.Addr}, PoolSize: 64, Timeout: 10 * time.Second})
	defer rc.Close()
	s, err := Open(t.Context(), rc, Options{Durability: Unchecked, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, Now: time.Now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	used := func() int64 {
		t.Helper()
		info, err := s.rc.Do(t.Context(), "INFO", "memory")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(fmt.Sprint(info), "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("INFO memory has no used_memory")
		return 0
	}
	key := strings.Repeat("k", 24) // a session_key's length, base64 of 16 bytes
	each := func(do func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Go(func() {
				for i := w; i < n; i += 64 {
					if err := do(i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	ids := make([]int64, n)
	start := used()
	each(func(i int) error {
		name := fmt.Sprintf("user-%d", i)
		u, _, err := s.Login(t.Context(), "wxapp", openIDOf("wxapp", name), unionIDOf(name))
		if err == nil {
			ids[i] = u.ID
			_, _, err = s.Claim(t.Context(), u.ID, "welcome-gift")
		}
		if err == nil {
			_, err = s.Issue(t.Context(), account.Identity{AppID: "wxapp", OpenID: u.OpenID, UserID: u.ID}, key)
		}
		return err
	})
	withUsers := used()
	each(func(i int) error {
		_, err := s.Issue(t.Context(), account.Identity{AppID: "wxapp", UserID: ids[i]}, key)
		return err
	})
	withTokens := used()
	t.Logf("redis bytes per user (record, openid key, person with a claim, session_key, one token): %d", (withUsers-start)/int64(n))
	t.Logf("redis bytes per further token: %d", (withTokens-withUsers)/int64(n))
}

// FuzzRedisStoredValues sends any value a damaged or hostile Redis could
// hold through each reader of what the Redis store keeps: a user's hash,
// a claim, a person's list, an exchange's answer and a shared
// access_token. None panics; what one accepts is whole, and what is
// written again reads back the same.
func FuzzRedisStoredValues(f *testing.F) {
	f.Add("id", "7", "appid", "wxapp", "1700000000000 7 wxapp")
	f.Add("created_at", "2026-11-24T10:00:00Z", "gender", "x", "3:wxa,4:wxb")
	f.Add("openid", "", "m", "5|1:wxa", `{"openid":"o","session_key":"k"}`)
	f.Add("last_login_at", "never", "errcode", "40029", `{"errcode":40163}`)
	f.Fuzz(func(t *testing.T, f1, v1, f2, v2, value string) {
		hash := []any{"id", "3", "appid", "wxapp", "openid", "o-x", f1, v1, f2, v2}
		if u, err := readRecord(hash); err == nil {
			if u.ID < 1 || u.AppID == "" || u.OpenID == "" {
				t.Errorf("recordFromRedis accepted %q as %+v: not a whole record", hash, u)
			}
			again := []any{"id", strconv.FormatInt(u.ID, 10), "appid", u.AppID, "openid", u.OpenID,
				"created_at", formatTime(u.CreatedAt), "updated_at", formatTime(u.UpdatedAt), "last_login_at", formatTime(u.LastLoginAt)}
			fields := fieldsOf(&u)
			for i := 0; i < len(fields); i += 2 {
				if fields[i+1] != "" { // a field not set is not in the hash
					again = append(again, fields[i], fields[i+1])
				}
			}
			if back, err := readRecord(again); err != nil || back != u {
				t.Errorf("a record written again reads back as %+v, %v; want %+v", back, err, u)
			}
		}
		if c, err := parseClaim("gift", value); err == nil {
			if back, err := parseClaim("gift", formatClaim(c)); err != nil || !back.ClaimedAt.Equal(c.ClaimedAt) || back.UserID != c.UserID || back.AppID != c.AppID {
				t.Errorf("claim %q reads as %+v, written again as %+v (%v)", value, c, back, err)
			}
		}
		members := parseMembers(value)
		if back := parseMembers(formatMembers(members)); len(members) > 0 && !slices.Equal(back, members) && !strings.ContainsAny(value, ",") {
			t.Errorf("members %q read as %v, written again as %v", value, members, back)
		}
		if res, err := readExchangeAnswer(value); err == nil && (res.OpenID == "" || res.SessionKey == "") {
			t.Errorf("exchange answer %q accepted as %+v: no openid or session_key", value, res)
		}
		if token, _, ok := parseSharedToken(value, time.UnixMilli(0)); ok && token == "" {
			t.Errorf("shared token %q accepted with no token", value)
		}
	})
}

// A join of a person cut short between its steps (Redis lost, the process
// killed) is finished at the user's next login; an erased user left in a
// person by an erasure cut short is taken out by the person's next spread,
// which any change of it makes.
func TestACutShortJoinIsFinishedLater(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	ctx := t.Context()
	login := func(appID string) account.User {
		t.Helper()
		u, _, err := rs.Login(ctx, appID, openIDOf(appID, "alice"), unionIDOf("alice"))
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// appsOf is the apps of Shop's person as GET /user shows them: from
	// the copy of the person's list the user's hash keeps, if it is a
	// good one.
	appsOf := func(shop account.User) []string {
		t.Helper()
		_, members, ok, err := rs.Person(ctx, shop.ID)
		if err != nil || !ok {
			t.Fatalf("person of user %d = %v, %v", shop.ID, ok, err)
		}
		var apps []string
		for _, m := range members {
			apps = append(apps, m.AppID)
		}
		return apps
	}
	shop := login("wxshop")
	login("wxgame")
	game, _, _ := rs.Get(ctx, 2)
	_, person, _, _ := rs.record(ctx, game.ID)
	// Game's join cut short: not in the person, its copy of the list stale.
	for _, cmd := range [][]string{
		{"HDEL", personHashKey(person), "u:2"}, {"HDEL", userKey(game.ID), "joined"}, {"HSET", userKey(1), "m", personTag(person) + "@1|1:wxshop"},
	} {
		if _, err := rs.rc.Do(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if apps := appsOf(shop); slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Fatal("the join was not cut short: the test shows nothing")
	}
	login("wxgame")
	if apps := appsOf(shop); !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Errorf("after Game's next login, Shop's person has apps %v; want wxshop and wxgame", apps)
	}

	// An erased user 9 left in the person: the next spread drops it.
	for _, cmd := range [][]string{{"HSET", userKey(9), "erased", "2026-11-24T10:00:00Z"}, {"HSET", personHashKey(person), "u:9", "wxsolo"}} {
		if _, err := rs.rc.Do(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.spreadMembers(ctx, person, 0); err != nil {
		t.Fatal(err)
	}
	if left, _ := rs.rc.Do(ctx, "HEXISTS", personHashKey(person), "u:9"); left != int64(0) {
		t.Error("the erased user is still in the person after it changed")
	}
	if apps := appsOf(shop); !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Errorf("Shop's person has apps %v; want wxshop and wxgame", apps)
	}
}

// A new user's login gives its hash the copy of its person's list, and a
// join made once its user is erased (a login's join cut short, finished
// after the account was deleted) is undone: the erased user is taken out
// of the person again. On one server the joiner alone in its person is
// given its copy by the script that changes the person; on a Cluster, one
// copy at a time.
func TestAJoinOfAnErasedUserIsUndone(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			u, _, err := rs.Login(ctx, "wxsolo", openIDOf("wxsolo", "bob"), "")
			if err != nil {
				t.Fatal(err)
			}
			person := rs.PersonHash(u.AppID, u.OpenID, "")
			member := "u:" + strconv.FormatInt(u.ID, 10)
			// The copy of the person's list a new user's login gave it, and
			// its join, alike both ways.
			hash, err := rs.rc.Do(ctx, "HGETALL", userKey(u.ID))
			if err != nil {
				t.Fatal(err)
			}
			if m, want := hashField(hash, "m"), personTag(person)+"@1|"+strconv.FormatInt(u.ID, 10)+":wxsolo"; m != want || hashField(hash, "joined") != person {
				t.Errorf("a new user's hash holds m %q and joined %q; want %q and its person", m, hashField(hash, "joined"), want)
			}
			if _, err := rs.Erase(ctx, u.ID); err != nil {
				t.Fatal(err)
			}
			if err := rs.spreadMembers(ctx, person, u.ID, "add", member, u.AppID); err != nil {
				t.Fatal(err)
			}
			if left, err := rs.rc.Do(ctx, "HEXISTS", personHashKey(person), member); err != nil || left != int64(0) {
				t.Errorf("the erased user's join left it in its person (%v, %v); want it taken out", left, err)
			}
		})
	}
}

// On Redis a token's last use is written at most once a minute (at a
// 2 h idle lifetime), so its idle lifetime is exact to that minute: a use
// 59 s after the last write does not move it, one 61 s after does.
func TestRedisWritesATokensUseOnceAMinute(t *testing.T) {
	clock := testkit.NewFakeClock()
	rs := openStore(t, startRedis(t, onRedis), clock.Now)
	ctx := t.Context()
	u, _, err := rs.Login(ctx, "wxapp", "o-alice", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		usedAfter time.Duration
		alive     bool
	}{{59 * time.Second, false}, {61 * time.Second, true}} {
		token, err := rs.Issue(ctx, account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: u.ID}, "key")
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(tt.usedAfter)
		if _, ok, _ := rs.Lookup(ctx, token); !ok {
			t.Fatal("a fresh token is not alive")
		}
		clock.Advance(2*time.Hour - tt.usedAfter + 30*time.Second) // 2 h 30 s after the issue
		if _, ok, _ := rs.Lookup(ctx, token); ok != tt.alive {
			t.Errorf("used %v after its issue, the token is alive %v at 2 h 30 s; want %v", tt.usedAfter, ok, tt.alive)
		}
	}
	if every := touchEvery(2 * time.Hour); every != time.Minute {
		t.Errorf("at a 2 h idle lifetime a use is written every %v; want a minute", every)
	}
}

// A returning login within account.LastLoginEvery of the one recorded,
// which changes nothing else, writes nothing to Redis, so Redis appends
// and fsyncs nothing for it; one after that is written.
func TestRedisWritesALoginOnceAMinute(t *testing.T) {
	clock := testkit.NewFakeClock()
	rs := openStore(t, startRedis(t, onRedis), clock.Now)
	ctx := t.Context()
	changes := func() string { return infoField(t, rs, "persistence", "rdb_changes_since_last_save") }
	if _, _, err := rs.Login(ctx, "wxapp", "o-alice", "u-alice"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		after   time.Duration
		written bool
	}{{59 * time.Second, false}, {2 * time.Second, true}, {0, false}} {
		clock.Advance(tt.after)
		before := changes()
		if _, _, err := rs.Login(ctx, "wxapp", "o-alice", "u-alice"); err != nil {
			t.Fatal(err)
		}
		if written := changes() != before; written != tt.written {
			t.Errorf("a login %v later: written %v; want %v", tt.after, written, tt.written)
		}
	}
}

// A user who logs in again and again, every token alive, costs each login
// a few Redis commands, not one per token they hold (the set of their
// tokens is pruned when it has doubled, not at every login past 32); and
// the tokens that have expired are pruned from it.
func TestRedisIssueCostsTheSameForManyTokens(t *testing.T) {
	cfg := startRedis(t, onRedis)
	rs := openStore(t, cfg, time.Now)
	ctx := t.Context()
	u, _, err := rs.Login(ctx, "wxapp", "o-alice", "")
	if err != nil {
		t.Fatal(err)
	}
	alice := account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: u.ID}
	commands := func() int64 { // those scripts run counted
		n, err := strconv.ParseInt(infoField(t, rs, "stats", "total_commands_processed"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	issue := func(rs *Store, logins int) {
		t.Helper()
		for range logins {
			if _, err := rs.Issue(ctx, alice, "key"); err != nil {
				t.Fatal(err)
			}
		}
	}
	issue(rs, 200)
	const n = 400
	before := commands()
	issue(rs, n)
	if per := float64(commands()-before) / n; per > 20 {
		t.Errorf("a login of a user with hundreds of live tokens costs %.1f Redis commands; want at most 20", per)
	}

	// With a lifetime of 100 ms, 32 tokens die; the login after them
	// prunes them, and leaves its own in the set.
	short := openStore(t, cfg, time.Now)
	short.ttl = 100 * time.Millisecond
	if _, err := rs.RevokeUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	issue(short, 32)
	testkit.WaitWithin(t, 10*time.Second, "the tokens of 100 ms to expire", func() bool {
		keys, err := rs.rc.Do(ctx, "KEYS", userKey(u.ID)+":t:*")
		if err != nil {
			t.Fatal(err)
		}
		ks, _ := keys.([]any)
		return len(ks) == 0
	})
	issue(rs, 1)
	if n, err := rs.rc.Do(ctx, "SCARD", tokenSetKey(u.ID)); err != nil || n != int64(1) {
		t.Errorf("after 33 logins, 32 of whose tokens expired, the set of tokens holds %v (%v); want 1", n, err)
	}
	if ttl, err := rs.rc.Do(ctx, "PTTL", tokenSetKey(u.ID)); err != nil || ttl.(int64) <= 0 {
		t.Errorf("the set of tokens expires in %v ms (%v); want it to expire", ttl, err)
	}
}

// infoField is field of section of the INFO of rs's Redis.
func infoField(t *testing.T, rs *Store, section, field string) string {
	t.Helper()
	info, err := rs.rc.Do(t.Context(), "INFO", section)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(fmt.Sprint(info), "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return ""
}

// redisKind is a Redis the store's tests run on.
type redisKind string

const (
	onRedis        redisKind = "redis"         // one redis-server
	onRedisCluster redisKind = "redis-cluster" // a Redis Cluster of three masters
)

// startRedis starts a Redis of kind, appending and fsyncing each write, as
// -redis-durability=fsync needs, and returns how to reach it.
func startRedis(t testing.TB, kind redisKind) redis.Config {
	t.Helper()
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	switch kind {
	case onRedis:
		srv := testkit.StartRedis(t, aof...)
		return redis.Config{Addrs: []string{srv.Addr}, PoolSize: 16, Timeout: 5 * time.Second}
	case onRedisCluster:
		cl := testkit.StartRedisCluster(t, 3, aof...)
		return redis.Config{Addrs: []string{cl.Nodes[0].Addr}, Cluster: true, PoolSize: 16, Timeout: 5 * time.Second}
	}
	t.Fatalf("startRedis(%q): not a Redis", kind)
	return redis.Config{}
}

// openStore opens a store on a client of its own of cfg, as one wxlogin
// does, in real mode with wxlogin's default lifetimes, on the clock now.
func openStore(t *testing.T, cfg redis.Config, now func() time.Time) *Store {
	t.Helper()
	rc := redis.NewClient(cfg)
	t.Cleanup(rc.Close)
	s, err := Open(t.Context(), rc, Options{Durability: Fsync, Meta: account.Meta{Mode: account.ModeReal},
		TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, PreviousKeyWindow: 2 * time.Minute, Now: now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openRedisStoresOn starts a Redis of kind (one server, or a cluster of
// three masters), appending and fsyncing each write, and opens n stores on
// it, as n wxlogins would; admin is a client of it for the test's own
// commands.
func openRedisStoresOn(t *testing.T, kind redisKind, n int) (stores []*Store, admin *redis.Client) {
	t.Helper()
	cfg := startRedis(t, kind)
	for range n {
		stores = append(stores, openStore(t, cfg, time.Now))
	}
	admin = redis.NewClient(cfg)
	t.Cleanup(admin.Close)
	return stores, admin
}

// setIDsBack takes n from wx:ids, as a failover to a replica that missed
// the last n INCRs does.
func setIDsBack(t *testing.T, admin *redis.Client, n int) {
	t.Helper()
	if _, err := admin.Do(t.Context(), "DECRBY", idsKey, strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
}

// checkIDOwners checks that every id of owners is still held as it was: a
// record of the openid it names, whose openid's key names it back, or an
// erasure ("" for an erased id).
func checkIDOwners(t *testing.T, s *Store, admin *redis.Client, owners map[int64]string) {
	t.Helper()
	ctx := t.Context()
	for id, openID := range owners {
		u, ok, err := s.Get(ctx, id)
		switch {
		case err != nil:
			t.Errorf("user %d: %v", id, err)
		case openID == "" && ok:
			t.Errorf("erased id %d holds %s now; want it erased still", id, u.OpenID)
		case openID != "" && (!ok || u.OpenID != openID):
			t.Errorf("id %d holds %q (found %v); want %s's record: an id changed owner", id, u.OpenID, ok, openID)
		case openID != "":
			if v, err := admin.Do(ctx, "GET", openIDKey("wxapp", openID)); err != nil || v != strconv.FormatInt(id, 10) {
				t.Errorf("%s's key names %v (%v); want %d", openID, v, err, id)
			}
		}
	}
}

// With wx:ids 20 behind the records (a Cluster failover to a replica that
// missed the last INCRs), the next new users log in at once, each with an
// id no record or erasure held: the counter moves past the ids held, and
// no id changes owner. An openid whose key names another user's id, as
// wxlogin left it before ids healed, logs in as the new user it is.
func TestRedisIDsHealWhenTheCounterFallsBehind(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			stores, admin := openRedisStoresOn(t, kind, 2)
			ctx := t.Context()
			owners := map[int64]string{}
			for i := range 30 {
				u, _, err := stores[i%2].Login(ctx, "wxapp", fmt.Sprint("old-", i), "")
				if err != nil {
					t.Fatal(err)
				}
				owners[u.ID] = u.OpenID
			}
			for _, id := range []int64{27, 30} { // erasures among the ids the counter gives again
				if _, err := stores[0].Erase(ctx, id); err != nil {
					t.Fatal(err)
				}
				owners[id] = ""
			}
			if _, err := admin.Do(ctx, "SET", openIDKey("wxapp", "stale"), "25"); err != nil {
				t.Fatal(err)
			}
			setIDsBack(t, admin, 20)

			given := map[string]int64{}
			for i := range 25 {
				openID := fmt.Sprint("new-", i)
				u, created, err := stores[i%2].Login(ctx, "wxapp", openID, "")
				if err != nil || !created {
					t.Fatalf("new user %d's login = %v, new %v; want a new user", i, err, created)
				}
				if was, held := owners[u.ID]; held {
					t.Errorf("new user %d got id %d, which %q held", i, u.ID, was)
				}
				owners[u.ID], given[openID] = openID, u.ID
			}
			u, created, err := stores[1].Login(ctx, "wxapp", "stale", "")
			if err != nil || !created || u.ID == 25 {
				t.Errorf("login of the openid whose key named user 25 = %d, new %v, %v; want a new user with an id of its own", u.ID, created, err)
			} else {
				owners[u.ID], given["stale"] = "stale", u.ID
			}
			checkIDOwners(t, stores[0], admin, owners)
			if last, err := stores[0].lastID(ctx); err != nil || last < slices.Max(slices.Collect(maps.Keys(owners))) {
				t.Errorf("wx:ids = %d (%v); want it past every id held", last, err)
			}
			for openID, id := range given {
				if u, created, err := stores[0].Login(ctx, "wxapp", openID, ""); err != nil || created || u.ID != id {
					t.Errorf("%s again = %d, new %v, %v; want user %d", openID, u.ID, created, err, id)
				}
			}
		})
	}
}

// Concurrent first logins of one user, on two stores, give it one id and
// create its record once: on one server the id is asked for and given in
// one script; on a Cluster, or where a script may not touch two slots (a
// proxy in front of a cluster), the first login to set the openid's key
// decides.
func TestRedisConcurrentFirstLoginsGiveOneID(t *testing.T) {
	for _, tt := range []struct {
		name    string
		kind    redisKind
		perSlot bool // as behind a proxy that refuses scripts of two slots
	}{{"redis", onRedis, false}, {"redis-cluster", onRedisCluster, false}, {"redis-per-slot", onRedis, true}} {
		t.Run(tt.name, func(t *testing.T) {
			stores, _ := openRedisStoresOn(t, tt.kind, 2)
			for _, s := range stores {
				if s.crossSlot != (tt.kind == onRedis) {
					t.Fatalf("on %s, a script may touch two slots: %v", tt.kind, s.crossSlot)
				}
				s.crossSlot = s.crossSlot && !tt.perSlot
			}
			const logins = 16
			ids := make(chan int64, logins)
			var created atomic.Int64
			var wg sync.WaitGroup
			for i := range logins {
				wg.Go(func() {
					u, fresh, err := stores[i%2].Login(t.Context(), "wxapp", "first", "")
					if err != nil {
						t.Error(err)
					}
					if fresh {
						created.Add(1)
					}
					ids <- u.ID
				})
			}
			wg.Wait()
			close(ids)
			seen := map[int64]bool{}
			for id := range ids {
				seen[id] = true
			}
			if len(seen) != 1 || created.Load() != 1 {
				t.Errorf("%d concurrent first logins of one user got ids %v and created %d records; want one id, one record", logins, seen, created.Load())
			}
		})
	}
}

// The counter set back again and again while new users log in, on two
// stores at once: every one gets in, each with an id no one else holds.
func TestRedisIDsHealUnderLoad(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			stores, admin := openRedisStoresOn(t, kind, 2)
			ctx := t.Context()
			owners := map[int64]string{}
			for i := range 40 {
				u, _, err := stores[i%2].Login(ctx, "wxapp", fmt.Sprint("old-", i), "")
				if err != nil {
					t.Fatal(err)
				}
				owners[u.ID] = u.OpenID
			}
			setIDsBack(t, admin, 20)

			const newUsers, setBackEvery = 200, 25
			type result struct {
				u       account.User
				created bool
				err     error
			}
			results := make([]result, newUsers)
			done := make(chan struct{}, newUsers)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < newUsers; i = next.Add(1) - 1 {
						u, created, err := stores[i%2].Login(ctx, "wxapp", fmt.Sprint("new-", i), "")
						results[i] = result{u, created, err}
						done <- struct{}{}
					}
				})
			}
			for n := 1; n < newUsers; n++ {
				<-done
				if n%setBackEvery == 0 {
					setIDsBack(t, admin, 20)
				}
			}
			wg.Wait()

			for i, r := range results {
				openID := fmt.Sprint("new-", i)
				if r.err != nil || !r.created {
					t.Errorf("%s's login = %v, new %v; want a new user", openID, r.err, r.created)
					continue
				}
				if was, held := owners[r.u.ID]; held {
					t.Errorf("%s got id %d, which %q holds", openID, r.u.ID, was)
					continue
				}
				owners[r.u.ID] = openID
			}
			checkIDOwners(t, stores[1], admin, owners)
		})
	}
}

// openIDOf and unionIDOf are a user's ids as WeChat shapes them: 28
// characters, "o" and base64url.
func openIDOf(appID, user string) string { return wechatLikeID("openid\x00" + appID + "\x00" + user) }
func unionIDOf(user string) string       { return wechatLikeID("unionid\x00" + user) }

func wechatLikeID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
