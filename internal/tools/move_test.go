package tools

import (
	"log/slog"
	"maps"
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
)

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
			if out, err := runTool(t, "check", "-data", back); err == nil && !strings.Contains(out, ": 0 users") {
				t.Errorf("wxlogin check after the failed move passes a store:\n%s", out)
			}

			// What a move killed midway leaves beside the target, and what a
			// move under way (its directory locked) has there.
			killed, underWay := filepath.Join(parent, ".back.from-redis-1"), filepath.Join(parent, ".back.from-redis-2")
			for _, path := range []string{killed, underWay} {
				d, err := datadir.Open(path, slog.New(slog.DiscardHandler))
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
			if out, err := runTool(t, "from-redis", "-data", back, "-redis", "redis://"+srv.Addr); err != nil || !strings.Contains(out, "4 users") {
				t.Fatalf("from-redis again, nothing writing = %v:\n%s", err, out)
			}
			if out, err := runTool(t, "check", "-data", back); err != nil || !strings.Contains(out, "4 users") {
				t.Errorf("wxlogin check after the move = %v:\n%s; want the 4 users", err, out)
			}
			entries, _ = os.ReadDir(parent)
			if names := dirNames(entries); !slices.Equal(names, []string{".back.from-redis-2", "back"}) {
				t.Errorf("after the move, %s holds %v; want the store, and the directory of the move under way, not the killed one's", parent, names)
			}
		})
	}
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
	// wx:ids is the id counter, as the Redis store keeps it.
	if _, err := srv.Client(t, "", "").Do(t.Context(), "DECRBY", "wx:ids", "3"); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := runTool(t, "from-redis", "-data", back, "-redis", "redis://"+srv.Addr); err != nil || !strings.Contains(out, "Redis: 5 users") {
		t.Fatalf("from-redis with wx:ids 3 behind = %v:\n%s\nwant the 5 users", err, out)
	}
	if out, err := runTool(t, "check", "-data", back); err != nil || !strings.Contains(out, "5 users") {
		t.Errorf("wxlogin check after the move = %v:\n%s; want the 5 users", err, out)
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

// runTool runs a tool as the command line would, wxlogin <args…>, with no
// environment, and returns what it printed.
func runTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := Run(t.Context(), args, func(string) string { return "" }, &out, &out)
	return out.String(), err
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
		TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, cfg, rs
}

// Persons of kept claims whose hashes name each other, in a cycle of
// KeptAliases, are one person for Redis, which cannot make each an alias
// of the other: the person of the latest erased user among them holds
// every claim of the cycle, once, and the others, with every hash that
// led to one of them, are its aliases. A chain with no cycle is left as
// it is.
func TestKeptClaimsNamingEachOtherAreOnePerson(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	gift := account.Claim{Name: "welcome-gift", AppID: "wxgame", UserID: 1, ClaimedAt: at}
	other := account.Claim{Name: "second-gift", AppID: "wxapp", UserID: 3, ClaimedAt: at.Add(time.Hour)}
	third := account.Claim{Name: "third-gift", AppID: "wxapp", UserID: 2, ClaimedAt: at.Add(time.Minute)}
	c := redisstore.Contents{
		Kept: map[string][]account.Claim{"union": {gift}, "openid": {other, gift}, "before": {third}, "lone": {third}},
		KeptAliases: map[string]string{
			"union": "openid", "openid": "before", "before": "union", // a cycle
			"game": "union", // a way into it
			"old":  "lone",  // no cycle
		},
	}
	groupNamingEachOther(c)
	wantAliases := map[string]string{"union": "openid", "before": "openid", "game": "openid", "old": "lone"}
	if !maps.Equal(c.KeptAliases, wantAliases) {
		t.Errorf("KeptAliases = %v; want %v", c.KeptAliases, wantAliases)
	}
	names := func(list []account.Claim) []string {
		var names []string
		for _, cl := range list {
			names = append(names, cl.Name)
		}
		slices.Sort(names)
		return names
	}
	if got, want := names(c.Kept["openid"]), []string{"second-gift", "third-gift", "welcome-gift"}; !slices.Equal(got, want) {
		t.Errorf("Kept[openid] = %v; want %v, each once", got, want)
	}
	if got, want := names(c.Kept["lone"]), []string{"third-gift"}; !slices.Equal(got, want) {
		t.Errorf("Kept[lone] = %v; want %v", got, want)
	}
}
