package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/datadir"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/testkit"
	"wxlogin/internal/users"
)

// A data directory moved into Redis and back out is the store it was,
// line for line: users, a profile and phone, claims, an erased user and
// the claim kept of them; each move says the counts on both sides agree.
// A wxlogin on the Redis knows the users meanwhile: a returning user is
// not new, a gift taken stays taken, also for the person who was erased.
func TestMovingAStoreToRedisAndBack(t *testing.T) {
	dir := t.TempDir()
	files, err := users.Open(dir, account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID}}, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		if _, _, err := files.Login(config.MockAppID, fakewechat.OpenID(config.MockAppID, name), fakewechat.UnionID(name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := files.Update(1, func(u *account.User) { u.Nickname, u.PhoneNumber, u.Gender = "阿丽", "13800000000", 2 }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   int64
		name string
	}{{1, "welcome-gift"}, {1, "coupon"}, {2, "welcome-gift"}, {3, "welcome-gift"}} {
		if _, _, err := files.Claim(c.id, c.name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := files.Erase(3); err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := tool(t, "export", "-data", dir)
	if n := strings.Count(before, "\n"); err != nil || n != 9 {
		t.Fatalf("export = %v, %d lines:\n%s\nwant 9: 3 users, an erasure, the person key, 3 claims and a kept one", err, n, before)
	}

	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + srv.Addr
	out, err := tool(t, "to-redis", "-data", dir, "-redis", url)
	if err != nil || !strings.Contains(out, "Redis: 3 users (3 persons) and 4 claims") || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("to-redis = %v:\n%s", err, out)
	}
	if out, err := tool(t, "to-redis", "-data", dir, "-redis", url); err == nil || !strings.Contains(out+err.Error(), "already holds users") {
		t.Errorf("to-redis into a Redis that holds users = %v:\n%s; want it refused", err, out)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := tool(t, "from-redis", "-data", back, "-redis", url); err != nil || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("from-redis = %v:\n%s", err, out)
	}
	after, err := tool(t, "export", "-data", back)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := sortedLines(before), sortedLines(after); !slices.Equal(b, a) {
		t.Errorf("moved to Redis and back, the store changed:\nbefore:\n%s\nafter:\n%s", strings.Join(b, "\n"), strings.Join(a, "\n"))
	}

	s := startServer(t, map[string]string{"WXLOGIN_REDIS": url})
	for _, tt := range []struct {
		user    string
		newUser bool
	}{{"alice", false}, {"carol", true}} {
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, tt.user)+`"}`)
		d := dataOf[loginData](t, got)
		if got.env.Status != 0 || d.NewUser != tt.newUser || (tt.user == "alice" && d.UserID != 1) {
			t.Errorf("login of %s on the Redis moved into = %s; want new_user %v", tt.user, got.raw, tt.newUser)
		}
		if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", d.Token); got.code != http.StatusConflict {
			t.Errorf("%s's welcome gift on the Redis moved into = %s; want 409, taken before the move", tt.user, got.raw)
		}
	}
}

// sortedLines is text's lines in order, for comparing stores whose lines
// may come in another order.
func sortedLines(text string) []string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	slices.Sort(lines)
	return lines
}

// A from-redis whose count fails, because a wxlogin still writes between
// the read of Redis and its count, leaves no store where it was to go: a
// new directory is not there, an empty one is still empty, so neither
// wxlogin check nor a start-up takes it for a good store; and nothing of
// the move is left beside it. Run again with nothing writing, it moves.
func TestAFailedMoveFromRedisLeavesNoStore(t *testing.T) {
	for _, tt := range []struct {
		name  string
		empty bool // the target is an empty directory, not a new one
	}{{"into a new directory", false}, {"into an empty directory", true}} {
		t.Run(tt.name, func(t *testing.T) {
			srv, cfg, rs := durableRedisStore(t)
			login := func(name string) {
				t.Helper()
				if _, _, err := rs.Login(t.Context(), config.MockAppID, fakewechat.OpenID(config.MockAppID, name), fakewechat.UnionID(name)); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"alice", "bob", "carol"} {
				login(name)
			}
			parent := t.TempDir()
			back := filepath.Join(parent, "back")
			if tt.empty {
				if err := os.Mkdir(back, 0o700); err != nil {
					t.Fatal(err)
				}
			}

			var out strings.Builder
			err := moveFromRedisChecked(t.Context(), back, cfg, &out, func() { login("dave") })
			if err == nil || !strings.Contains(err.Error(), "the counts differ") {
				t.Fatalf("from-redis with a login between the read and the count = %v:\n%s\nwant the counts to differ", err, &out)
			}
			entries, _ := os.ReadDir(parent)
			switch names := dirNames(entries); {
			case tt.empty && !slices.Equal(names, []string{"back"}), !tt.empty && len(names) > 0:
				t.Errorf("after the failed move, %s holds %v; want only what was there", parent, names)
			}
			if inBack, _ := os.ReadDir(back); len(inBack) > 0 {
				t.Errorf("after the failed move, %s holds %v; want nothing", back, dirNames(inBack))
			}
			if out, err := tool(t, "check", "-data", back); err == nil && !strings.Contains(out, ": 0 users") {
				t.Errorf("wxlogin check after the failed move passes a store:\n%s", out)
			}

			// What a move killed midway leaves beside the target, and what a
			// move under way (its directory locked) has there.
			killed, underWay := filepath.Join(parent, ".back.from-redis-1"), filepath.Join(parent, ".back.from-redis-2")
			for _, path := range []string{killed, underWay} {
				d, err := datadir.Open(path, discardLogger())
				if err != nil {
					t.Fatal(err)
				}
				testkit.WriteFile(t, filepath.Join(path, "users.snapshot.jsonl"), "a store half written\n")
				if path == killed {
					d.Release()
				} else {
					t.Cleanup(func() { d.Release() })
				}
			}
			if out, err := tool(t, "from-redis", "-data", back, "-redis", "redis://"+srv.Addr); err != nil || !strings.Contains(out, "4 users") {
				t.Fatalf("from-redis again, nothing writing = %v:\n%s", err, out)
			}
			if out, err := tool(t, "check", "-data", back); err != nil || !strings.Contains(out, "4 users") {
				t.Errorf("wxlogin check after the move = %v:\n%s; want the 4 users", err, out)
			}
			entries, _ = os.ReadDir(parent)
			if names := dirNames(entries); !slices.Equal(names, []string{".back.from-redis-2", "back"}) {
				t.Errorf("after the move, %s holds %v; want the store, and the directory of the move under way, not the killed one's", parent, names)
			}
		})
	}
}

// dirNames is the names of entries.
func dirNames(entries []os.DirEntry) []string {
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Records past wx:ids (a failover that lost the last INCRs, before a new
// user's login moved the counter on) move out of Redis with the others:
// the move takes the highest id any user's key names, not the counter's.
func TestMovingOutOfRedisCarriesRecordsPastItsCounter(t *testing.T) {
	srv, _, rs := durableRedisStore(t)
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		if _, _, err := rs.Login(t.Context(), config.MockAppID, fakewechat.OpenID(config.MockAppID, name), fakewechat.UnionID(name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.Client(t, "", "").Do(t.Context(), "DECRBY", redisIDsKey, "3"); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := tool(t, "from-redis", "-data", back, "-redis", "redis://"+srv.Addr); err != nil || !strings.Contains(out, "Redis: 5 users") {
		t.Fatalf("from-redis with wx:ids 3 behind = %v:\n%s\nwant the 5 users", err, out)
	}
	if out, err := tool(t, "check", "-data", back); err != nil || !strings.Contains(out, "5 users") {
		t.Errorf("wxlogin check after the move = %v:\n%s; want the 5 users", err, out)
	}
}

// durableRedisStore is a store in mock mode on a redis-server of its own
// that fsyncs each write, with its address and the client's settings.
func durableRedisStore(t *testing.T) (*testkit.RedisServer, redis.Config, *redisstore.Store) {
	t.Helper()
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 5 * time.Second}
	rc := redis.NewClient(cfg)
	t.Cleanup(rc.Close)
	rs, err := redisstore.Open(t.Context(), rc, redisstore.Options{Durability: redisstore.Fsync, Meta: account.Meta{Mode: account.ModeMock},
		TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return srv, cfg, rs
}
