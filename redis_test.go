package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/testkit"
)

// This file runs wxlogin, or its handlers and WeChat client, on real
// Redis servers: what the store in Redis (internal/redisstore) gives the
// story, and what wxlogin does when Redis fails, is stalled, is weakened,
// is killed, is resharded or fails over.

// A token dies its idle lifetime after its last use and its age after it
// was issued, and the session_key a login replaced is kept for its window
// only, never stretched by the same key again: on each store.
func TestTokenLifetimesOnEachStore(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store})
		ctx := t.Context()
		u, _, err := a.userBackend.Login(ctx, "wxapp", "o-alice", "")
		if err != nil {
			t.Fatal(err)
		}
		who := account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: u.ID}
		issue := func(key string) string {
			t.Helper()
			token, err := a.tokenBackend.Issue(ctx, who, key)
			if err != nil {
				t.Fatal(err)
			}
			return token
		}
		lookup := func(token string) (account.Caller, bool) {
			t.Helper()
			c, ok, err := a.tokenBackend.Lookup(ctx, token)
			if err != nil {
				t.Fatal(err)
			}
			return c, ok
		}

		first := issue("key-1")
		a.clock.Advance(time.Minute)
		issue("key-2")
		replaced := a.clock.Now()
		if c, ok := lookup(first); !ok || c.SessionKey != "key-2" || c.PreviousKey != "key-1" || !c.ReplacedAt.Equal(replaced) || c.UserID != u.ID {
			t.Errorf("after a second login: %v, key %q, previous %q replaced at %v; want key-2, key-1 at %v", ok, c.SessionKey, c.PreviousKey, c.ReplacedAt, replaced)
		}
		for range 3 { // the same key again does not stretch the window
			a.clock.Advance(opendata.PreviousKeyWindow / 3)
			issue("key-2")
		}
		a.clock.Advance(time.Second)
		if c, _ := lookup(first); c.PreviousKey != "" {
			t.Errorf("past the window, previous = %q; want none", c.PreviousKey)
		}

		// Idle: used every 110 minutes it lives on; 2 h unused, it is gone.
		idle := issue("key-2")
		for range 3 {
			a.clock.Advance(110 * time.Minute)
			if _, ok := lookup(idle); !ok {
				t.Fatal("a token used every 110 min died; its idle lifetime is 2 h")
			}
		}
		a.clock.Advance(2 * time.Hour)
		if _, ok := lookup(idle); ok {
			t.Error("a token unused for 2 h is alive")
		}
		// Age: however much it is used, 720 h after it was issued it is gone.
		aged := issue("key-2")
		var age time.Duration
		for age+119*time.Minute < 720*time.Hour {
			a.clock.Advance(119 * time.Minute)
			age += 119 * time.Minute
			if _, ok := lookup(aged); !ok {
				t.Fatalf("a token used every 119 min died at %v; its age is 720 h", age)
			}
		}
		a.clock.Advance(720*time.Hour - age)
		if _, ok := lookup(aged); ok {
			t.Error("a token issued 720 h ago is alive")
		}
		if _, ok := lookup("garbage"); ok {
			t.Error("a made-up token is alive")
		}
	})
}

// The whole store on a Redis Cluster of three masters: a user's keys, the
// key of their openid, and their person's are on different masters, and
// every route still answers as on one Redis.
func TestRedisStoreOnACluster(t *testing.T) {
	a := newTestApp(t, appOptions{apps: companyApps, store: onRedisCluster})
	shop, game := a.login(t, "wxshop", "alice"), a.login(t, "wxgame", "alice")
	if id, apps := personOf(t, a.handler, game); id != 1 || !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Errorf("on the cluster, alice is person %v with apps %v; want 1 with wxshop and wxgame", id, apps)
	}
	if got := send(t, a.handler, http.MethodPatch, "/user", shop, map[string]any{"city": "深圳"}); got.env.Status != 0 {
		t.Errorf("PATCH /user = %s", got.raw)
	}
	for i, token := range []string{shop, game} {
		got := call(t, a.handler, http.MethodPost, "/claims/welcome-gift", "", "token", token)
		if want := []int{201, 409}[i]; got.code != want {
			t.Errorf("claim %d = HTTP %d, %s; want %d", i, got.code, got.raw, want)
		}
	}
	if got := call(t, a.handler, http.MethodDelete, "/user", "", "token", shop); got.env.Status != 0 {
		t.Fatalf("DELETE /user = %s", got.raw)
	}
	again := a.login(t, "wxshop", "alice")
	if got := call(t, a.handler, http.MethodPost, "/claims/welcome-gift", "", "token", again); got.code != 409 {
		t.Errorf("claim after deletion and a new login = %s; want 409: the gift stays taken", got.raw)
	}
	if got := call(t, a.handler, http.MethodPost, "/logout", "", "token", game); got.env.Status != 0 {
		t.Errorf("logout = %s", got.raw)
	}
	if got := call(t, a.handler, http.MethodGet, "/user", "", "token", game); got.env.Status != statusNotLoggedIn {
		t.Errorf("GET /user after logout = %s; want status 4", got.raw)
	}
}

// Two wxlogins on one Redis are one service: a token of one works on the
// other, a logout on one ends it on both, first logins of one user split
// between them make one user, and a gift claimed from both at once, in two
// apps, is taken once.
func TestTwoInstancesShareOneRedis(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	apps := filepath.Join(t.TempDir(), "apps.json")
	testkit.WriteFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxgame", "name": "Game", "secret_env": "GAME_SECRET"}]}`)
	env := map[string]string{"SHOP_SECRET": "shop-secret", "GAME_SECRET": "game-secret"}
	fake := startServer(t, env, "-fake-only", "-apps", apps)
	env = maps.Clone(env)
	env["WXLOGIN_REDIS"] = "redis://" + srv.Addr
	a := startServer(t, env, "-apps", apps, "-wechat-api", fake.url, "-login-rate", "0")
	b := startServer(t, env, "-apps", apps, "-wechat-api", fake.url, "-login-rate", "0")
	login := func(s *server, app, user string) loginData {
		t.Helper()
		resp, err := client.Post(fake.url+"/mock/wx.login", jsonCT, strings.NewReader(fmt.Sprintf(`{"user":%q,"appid":%q}`, user, app)))
		if err != nil {
			t.Fatal(err)
		}
		var code struct{ Code string }
		jsonDecode(resp.Body, &code)
		resp.Body.Close()
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, fmt.Sprintf(`{"code":%q,"appid":%q}`, code.Code, app))
		if got.env.Status != 0 {
			t.Errorf("login of %s to %s = %s", user, app, got.raw)
		}
		return dataOf[loginData](t, got)
	}

	alice := login(a, "wxshop", "alice")
	if got := post(t, http.MethodGet, b.url+"/user", "", "", "token", alice.Token); got.env.Status != 0 || dataOf[userData](t, got).ID != alice.UserID {
		t.Errorf("GET /user on B with A's token = %s", got.raw)
	}
	if got := post(t, http.MethodPost, b.url+"/logout", "", "", "token", alice.Token); got.env.Status != 0 {
		t.Errorf("logout on B = %s", got.raw)
	}
	if got := post(t, http.MethodGet, a.url+"/user", "", "", "token", alice.Token); got.env.Status != statusNotLoggedIn {
		t.Errorf("GET /user on A after logout on B = %s; want status 4", got.raw)
	}

	// Alice deletes her account on B; A, which knew her id, logs her in
	// as the new user she is.
	again := login(a, "wxshop", "alice")
	if got := post(t, http.MethodDelete, b.url+"/user", "", "", "token", again.Token); got.env.Status != 0 {
		t.Fatalf("DELETE /user on B = %s", got.raw)
	}
	if back := login(a, "wxshop", "alice"); !back.NewUser || back.UserID == alice.UserID {
		t.Errorf("after deleting her account on B, alice logs in on A as %+v; want a new user", back)
	}

	// A double tap: one code, sent to A and to B at once; both log in.
	// WeChat answers slowly meanwhile, as it does over the internet, so
	// that the two logins overlap however busy the machine: a login that
	// comes after the exchange has finished goes to WeChat itself, which
	// refuses the spent code, by design.
	slow := func(faults string) {
		t.Helper()
		if got := post(t, http.MethodPost, fake.url+"/mock/faults", jsonCT, faults); got.env.Status != 0 {
			t.Fatalf("faults %s = %s", faults, got.raw)
		}
	}
	resp, err := client.Post(fake.url+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"erin","appid":"wxshop"}`))
	if err != nil {
		t.Fatal(err)
	}
	slow(`{"rate": 1, "kinds": ["slow"]}`)
	var code struct{ Code string }
	jsonDecode(resp.Body, &code)
	resp.Body.Close()
	taps := make([]reply, 2)
	var wg sync.WaitGroup
	for i, s := range []*server{a, b} {
		wg.Go(func() {
			taps[i] = post(t, http.MethodPost, s.url+"/login", jsonCT, fmt.Sprintf(`{"code":%q,"appid":"wxshop"}`, code.Code))
		})
	}
	wg.Wait()
	slow(`{"rate": 0}`)
	if taps[0].env.Status != 0 || taps[1].env.Status != 0 || dataOf[loginData](t, taps[0]).UserID != dataOf[loginData](t, taps[1]).UserID {
		t.Errorf("one code on A and B at once = %s / %s; want both logged in as erin", taps[0].raw, taps[1].raw)
	}

	// 100 first logins of carol at once, every other one on B.
	results := make([]loginData, 100)
	for i := range results {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() { results[i] = login(s, "wxshop", "carol") })
	}
	wg.Wait()
	created := 0
	for _, r := range results {
		if r.UserID != results[0].UserID {
			t.Fatalf("carol's logins got users %d and %d; want one user", results[0].UserID, r.UserID)
		}
		if r.NewUser {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d of carol's logins answered new_user; want 1", created)
	}

	// One gift, claimed from Shop on A and from Game on B at once.
	shop, game := login(a, "wxshop", "dave").Token, login(b, "wxgame", "dave").Token
	for round := range 200 {
		name := fmt.Sprintf("gift-%d", round)
		codes := make([]int, 2)
		wg.Go(func() { codes[0] = post(t, http.MethodPost, a.url+"/claims/"+name, "", "", "token", shop).code })
		wg.Go(func() { codes[1] = post(t, http.MethodPost, b.url+"/claims/"+name, "", "", "token", game).code })
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{201, 409}) {
			t.Fatalf("round %d: claims on A and B answered %v; want one 201 and one 409", round, codes)
		}
	}
}

// While Redis is down or hung, requests answer status -1 with 503 within
// the call's bound and /healthz says 503, while -jwt's key set is still
// served, from memory; once it is back, wxlogin serves
// again without a restart, and what it acknowledged before Redis was
// killed is there: AOF fsynced on each write.
func TestRedisDownAnswers503AndRecovers(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	env := map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr + "?timeout=500ms"}
	// -login-rate 0, so that a login reaches the store, not only the
	// limiter's bucket; -jwt, whose key set is served from memory.
	s := startServer(t, env, "-login-rate", "0", "-jwt")
	got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	token := dataOf[jwtLoginData](t, got).Token
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusCreated {
		t.Fatalf("claim = %s", got.raw)
	}
	wantDown := func(why string) {
		t.Helper()
		for _, r := range []struct{ method, path, body string }{
			{http.MethodGet, "/user", ""}, {http.MethodGet, "/healthz", ""},
			{http.MethodPost, "/login", `{"code":"` + mockCode(t, s.url, "bob") + `"}`},
			{http.MethodPost, "/token", ""},
		} {
			start := time.Now()
			got := post(t, r.method, s.url+r.path, jsonCT, r.body, "token", token)
			if took := time.Since(start); got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.header.Get("Retry-After") == "" || took > 5*time.Second {
				t.Errorf("%s: %s %s = HTTP %d, %s (Retry-After %q) after %v; want 503, status -1, Retry-After, within the call's bound", why, r.method, r.path, got.code, got.raw, got.header.Get("Retry-After"), took)
			}
		}
		// The services that verify JWTs still get the keys.
		resp, err := http.Get(s.url + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET /.well-known/jwks.json = HTTP %d; want 200, from memory", why, resp.StatusCode)
		}
	}

	srv.Kill()
	wantDown("Redis killed")
	srv.Start(t)
	waitHealthy(t, s.url)
	if got := post(t, http.MethodGet, s.url+"/user", "", "", "token", token); got.env.Status != 0 {
		t.Errorf("GET /user once Redis is back = %s; want the token and the user, acknowledged before the kill", got.raw)
	}
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusConflict {
		t.Errorf("claim again once Redis is back = %s; want 409: the claim survived", got.raw)
	}

	srv.Pause() // hung: the connection is open, nothing answers
	wantDown("Redis hung")
	srv.Resume()
	waitHealthy(t, s.url)
}

// A Redis that stops answering (SIGSTOP) costs a login the Redis URL's
// timeout once in all, not once for each call that meets it: the login
// answers 503, status -1 with Retry-After, within the bound and well
// under twice it, whether Redis stops before the login or while WeChat
// answers its code, after which the exchange's answer for other instances
// and the store's calls would each have waited the bound.
func TestAStalledRedisCostsALoginItsBoundOnce(t *testing.T) {
	const bound = time.Second
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	t.Cleanup(srv.Resume)
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Name: "Test app", Secret: testSecret}}, fakewechat.Fixtures{}, time.Now)
	var stallOnExchange atomic.Bool
	routes := fake.Handler()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sns/jscode2session") && stallOnExchange.CompareAndSwap(true, false) {
			srv.Pause()
		}
		routes.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	env := map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr + "?timeout=" + bound.String(), "WX_APPID": "wxapp", "WX_APPSECRET": testSecret}
	s := startServer(t, env, "-wechat-api", upstream.URL+fakewechat.APIPrefix, "-login-rate", "0")
	login := func() (reply, time.Duration) {
		start := time.Now()
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+fake.IssueCode("wxapp", "bob")+`"}`)
		return got, time.Since(start)
	}
	if got, _ := login(); got.env.Status != 0 {
		t.Fatalf("login with Redis up = %s", got.raw)
	}
	for _, tt := range []struct {
		name       string
		onExchange bool // stop Redis once the code's exchange is marked in it, as WeChat answers
	}{
		{"Redis stopped before the login", false},
		{"Redis stopped while WeChat answers the code", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.onExchange {
				stallOnExchange.Store(true)
			} else {
				srv.Pause()
			}
			got, took := login()
			srv.Resume()
			if got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.header.Get("Retry-After") == "" {
				t.Errorf("login = HTTP %d, %s (Retry-After %q); want 503, status -1, Retry-After", got.code, got.raw, got.header.Get("Retry-After"))
			}
			if took >= 2*bound {
				t.Errorf("login answered after %v; want the bound, %v, once: well under %v", took, bound, 2*bound)
			}
			waitHealthy(t, s.url)
		})
	}
}

// A Redis whose durability is weakened after wxlogin started (CONFIG SET
// appendfsync everysec) is found within seconds, without a restart:
// writes answer 503, status -1 with Retry-After, as when Redis cannot be
// reached, and /healthz answers 503, while reads are still served; the
// log says why at error level, naming the setting. Restored, Redis is
// written to again.
func TestRedisWeakenedAfterStartRefusesWrites(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	admin := srv.Client(t, "", "")
	s := startServer(t, map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr}, "-login-rate", "0")
	got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	token := dataOf[loginData](t, got).Token
	appendfsync := func(v string) {
		t.Helper()
		if _, err := admin.Do(t.Context(), "CONFIG", "SET", "appendfsync", v); err != nil {
			t.Fatal(err)
		}
	}
	health := func() int { return post(t, http.MethodGet, s.url+"/healthz", "", "").code }

	appendfsync("everysec")
	testkit.WaitWithin(t, 10*time.Second, "/healthz to answer 503", func() bool { return health() == http.StatusServiceUnavailable })
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, "/login", `{"code":"` + mockCode(t, s.url, "bob") + `"}`},
		{http.MethodPost, "/claims/welcome-gift", ""},
		{http.MethodPatch, "/user", `{"city":"深圳"}`},
		{http.MethodPost, "/logout", ""},
	} {
		got := post(t, r.method, s.url+r.path, jsonCT, r.body, "token", token)
		if got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.header.Get("Retry-After") == "" {
			t.Errorf("%s %s with appendfsync everysec = HTTP %d, %s (Retry-After %q); want 503, status -1, Retry-After", r.method, r.path, got.code, got.raw, got.header.Get("Retry-After"))
		}
	}
	if got := post(t, http.MethodGet, s.url+"/user", "", "", "token", token); got.env.Status != 0 {
		t.Errorf("GET /user with appendfsync everysec = %s; want it read", got.raw)
	}
	if logs := s.logs.String(); !regexp.MustCompile(`level=ERROR msg="Redis no longer keeps each write safe[^"]*" err="[^"]*appendfsync everysec`).MatchString(logs) {
		t.Errorf("the log does not say at error level that appendfsync is everysec:\n%s", logs)
	}

	appendfsync("always")
	testkit.WaitWithin(t, 10*time.Second, "/healthz to answer 200 again", func() bool { return health() == http.StatusOK })
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusCreated {
		t.Errorf("claim once appendfsync is always again = %s; want 201", got.raw)
	}
	if got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "bob")+`"}`); got.env.Status != 0 {
		t.Errorf("login once appendfsync is always again = %s", got.raw)
	}
}

// The crash test on Redis: new users log in and claim a gift while, in
// turn, a wxlogin is killed with SIGKILL, and redis-server is (AOF,
// appendfsync always), at random moments, over and over. After each kill
// (and Redis's restart) every login that was answered is in Redis with the
// id it was given, its openid names that id, and every claim answered 201
// is there. WXLOGIN_CRASH_KILLS sets the kills of each (3).
func TestKill9OnRedisKeepsEveryAcknowledgedWrite(t *testing.T) {
	kills := testkit.Setting(t, "WXLOGIN_CRASH_KILLS", 3, strconv.Atoi)
	const workers, meanUptime = 8, 300 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	env := []string{"WXLOGIN_REDIS=redis://" + srv.Addr}
	users := newNewUsers()
	acked, claimed := users.acked, users.claimed
	lost := 0
	for round := range 2 * kills {
		killRedis := round%2 == 1
		c := startProcess(t, env, "-addr", "127.0.0.1:0", "-login-rate", "0")
		stop := users.keepComing(c.url, workers, fmt.Sprintf("r%d", round))
		time.Sleep(time.Duration(rng.Int64N(int64(2 * meanUptime)))) // the kill's random moment, under load
		if killRedis {
			srv.Kill()
		} else {
			c.cmd.Process.Kill()
		}
		stop()
		if killRedis {
			srv.Start(t)
		}

		rc := redis.NewClient(redis.Config{Addrs: []string{srv.Addr}, PoolSize: 8, Timeout: 5 * time.Second})
		check, err := redisstore.Open(t.Context(), rc, redisstore.Options{Durability: redisstore.Fsync, Meta: account.Meta{Mode: account.ModeMock},
			TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		for name, id := range acked {
			u, ok, err := check.Get(t.Context(), id)
			v, _ := rc.Do(t.Context(), "GET", redisOpenIDKey(config.MockAppID, fakewechat.OpenID(config.MockAppID, name)))
			if err != nil || !ok || u.OpenID != fakewechat.OpenID(config.MockAppID, name) || v != strconv.FormatInt(id, 10) {
				t.Errorf("after kill %d (of %s): user %s, answered as %d, is %+v (%v, %v), openid names %v", round+1, map[bool]string{true: "Redis", false: "wxlogin"}[killRedis], name, id, u, ok, err, v)
				lost++
				continue
			}
			if claimed[id] {
				if claims, err := check.ClaimsOf(t.Context(), id); err != nil || len(claims) != 1 || claims[0].UserID != id {
					t.Errorf("after kill %d: user %d's acknowledged gift is %v (%v)", round+1, id, claims, err)
					lost++
				}
			}
		}
		rc.Close()
	}
	gifts := 0
	for _, c := range claimed {
		if c {
			gifts++
		}
	}
	t.Logf("crash figures on Redis: %d kills of wxlogin and %d of redis-server survived, %d logins and %d claims acknowledged, %d lost (seed %d)",
		kills, kills, len(acked), gifts, lost, seed)
	if len(acked) < kills {
		t.Errorf("only %d logins acknowledged: the kills did not land under load", len(acked))
	}
}

// The crash test of account deletion on Redis: as
// TestKill9OnRedisKeepsEveryAcknowledgedWrite, and the users of every
// other worker delete their account (DELETE /user) once their login and
// gift were answered. After each kill, on the instance started next, every
// deletion answered 200 is made: its token is dead, its person logs in as
// a new user with an id never given before and finds the gift claimed, and
// once that instance has finished the erasures cut short (RunErasures, at
// its start) nothing names the erased id but its tombstone: not the
// openid's key, not its person, not wx:erasing. A deletion cut short by
// the kill is made wholly or not at all: its user, with its token, is
// still there. On one server wxlogin and redis-server are killed in
// turn; on a Cluster, where an erasure's last steps are on other masters,
// wxlogin. WXLOGIN_CRASH_KILLS sets the kills of each (3).
func TestKill9OnRedisKeepsEveryAnsweredDeletion(t *testing.T) {
	kills := testkit.Setting(t, "WXLOGIN_CRASH_KILLS", 3, strconv.Atoi)
	t.Run("one server", func(t *testing.T) {
		srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
		crashDeletionsOnRedis(t, kills, "redis://"+srv.Addr, func(t testing.TB) *redis.Client { return srv.Client(t, "", "") }, srv)
	})
	t.Run("cluster", func(t *testing.T) {
		cl := testkit.StartRedisCluster(t, 3, "--appendonly", "yes", "--appendfsync", "always")
		crashDeletionsOnRedis(t, kills, "redis://"+cl.Nodes[0].Addr+"?cluster=true", cl.Client, nil)
	})
}

// crashDeletionsOnRedis is TestKill9OnRedisKeepsEveryAnsweredDeletion on
// the Redis at url, which newClient reaches: kills rounds, each killing
// wxlogin, or every other one srv if it is not nil.
func crashDeletionsOnRedis(t *testing.T, kills int, url string, newClient func(testing.TB) *redis.Client, srv *testkit.RedisServer) {
	const workers, meanUptime = 8, 300 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	env := []string{"WXLOGIN_REDIS=" + url}
	rounds := kills
	if srv != nil {
		rounds = 2 * kills
	}
	d := newDeletions()
	lost, cutShort := 0, 0
	for round := 0; round <= rounds; round++ {
		rc := newClient(t)
		cutShort += erasuresLeft(t, rc)
		c := startProcess(t, env, "-addr", "127.0.0.1:0", "-login-rate", "0")
		check, err := redisstore.Open(t.Context(), rc, redisstore.Options{Durability: redisstore.Fsync, Meta: account.Meta{Mode: account.ModeMock},
			TokenTTL: time.Hour, TokenMaxAge: time.Hour, Now: time.Now, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		erased := func(id int64) bool {
			v, err := rc.Do(t.Context(), "HEXISTS", redisUserKey(id), "erased")
			if err != nil {
				t.Fatal(err)
			}
			return v == int64(1)
		}
		d.checkDeletionsOverHTTP(t, c.url, erased, true)
		checkErasedOnRedis(t, rc, check, d)
		acked, claimed := d.acked()
		for name, id := range acked {
			u, ok, err := check.Get(t.Context(), id)
			v, _ := rc.Do(t.Context(), "GET", redisOpenIDKey(config.MockAppID, fakewechat.OpenID(config.MockAppID, name)))
			if err != nil || !ok || u.OpenID != fakewechat.OpenID(config.MockAppID, name) || v != strconv.FormatInt(id, 10) {
				t.Errorf("after round %d: user %s, answered as %d, is %+v (%v, %v), openid names %v", round, name, id, u, ok, err, v)
				lost++
				continue
			}
			if claims, err := check.ClaimsOf(t.Context(), id); claimed[id] && (err != nil || len(claims) != 1 || claims[0].UserID != id) {
				t.Errorf("after round %d: user %d's acknowledged gift is %v (%v)", round, id, claims, err)
				lost++
			}
		}
		if round == rounds {
			break
		}

		killRedis := srv != nil && round%2 == 1
		stop := d.keepComing(c.url, workers, fmt.Sprintf("r%d", round))
		time.Sleep(time.Duration(rng.Int64N(int64(2 * meanUptime)))) // the kill's random moment, under load
		if killRedis {
			srv.Kill()
		} else {
			c.cmd.Process.Kill()
		}
		stop()
		if killRedis {
			srv.Start(t)
		}
	}
	acked, _ := d.acked()
	t.Logf("crash figures of deletions on Redis: %d rounds survived, %d users live, %d deletions asked, %d made (%d cut short after their tombstone, finished by the next wxlogin), %d lost (seed %d)",
		rounds, len(acked), d.asked, len(d.gone), cutShort, lost, seed)
	if len(d.gone) < kills {
		t.Errorf("only %d deletions made in %d rounds: the kills did not land under deletions", len(d.gone), rounds)
	}
}

// erasuresLeft is how many erasures wx:erasing lists whose tombstone
// is made and whose last steps are not done: cut short.
func erasuresLeft(t *testing.T, rc *redis.Client) (n int) {
	t.Helper()
	listed, err := rc.Do(t.Context(), "ZRANGE", "wx:erasing", "0", "-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range listed.([]any) {
		v, err := rc.Do(t.Context(), "HEXISTS", "wx:{u:"+id.(string)+"}", "left_appid")
		if err != nil {
			t.Fatal(err)
		}
		if v == int64(1) {
			n++
		}
	}
	return n
}

// checkErasedOnRedis waits until nothing names any erased user of d but
// its tombstone, which holds only when it was erased: not its openid's
// key, not its person (nor its app's and openid's hash), not wx:erasing.
// It fails the test if any still is after 10 s.
func checkErasedOnRedis(t *testing.T, rc *redis.Client, check *redisstore.Store, d *deletions) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	named := func(id int64) string {
		name := d.given[id]
		openID := fakewechat.OpenID(config.MockAppID, name)
		ctx := t.Context()
		if v, err := rc.Do(ctx, "HGETALL", redisUserKey(id)); err != nil || len(v.([]any)) != 2 || v.([]any)[0] != "erased" {
			return fmt.Sprintf("its record is %v (%v), not a tombstone of one field", v, err)
		}
		if v, err := rc.Do(ctx, "GET", redisOpenIDKey(config.MockAppID, openID)); err != nil || v == strconv.FormatInt(id, 10) {
			return fmt.Sprintf("its openid's key names it (%v)", err)
		}
		if v, err := rc.Do(ctx, "ZSCORE", "wx:erasing", strconv.FormatInt(id, 10)); err != nil || v != nil {
			return fmt.Sprintf("wx:erasing lists it since %v (%v)", v, err)
		}
		for _, person := range []string{check.PersonHash(config.MockAppID, openID, fakewechat.UnionID(name)), check.PersonHash(config.MockAppID, openID, "")} {
			if v, err := rc.Do(ctx, "HEXISTS", redisPersonKey(person), "u:"+strconv.FormatInt(id, 10)); err != nil || v != int64(0) {
				return fmt.Sprintf("its person %s lists it (%v)", person, err)
			}
		}
		return ""
	}
	var why []string // of the last look
	defer func() {
		if t.Failed() {
			t.Log(strings.Join(why, "\n"))
		}
	}()
	testkit.WaitWithin(t, 10*time.Second, "nothing to name the erased users but their tombstones", func() bool {
		why = why[:0]
		for id := range d.gone {
			if reason := named(id); reason != "" {
				why = append(why, fmt.Sprintf("user %d (%s), erased, is still named: %s", id, d.given[id], reason))
			}
		}
		return len(why) == 0
	})
}

// On a Redis Cluster, two slots are resharded to other masters while
// users log in and claim a gift: the user-id counter's, which every new
// user's login writes, and a returning user's, whose every login writes a
// new token beside its record (a call of several keys, which Redis
// answers TRYAGAIN while the slot is half moved). The logins meet ASK,
// TRYAGAIN and then MOVED; none fails, and every acknowledged login and
// claim is there.
func TestReshardingUnderLoadLosesNothing(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + cl.Nodes[0].Addr + "?cluster=true"
	s := startServer(t, map[string]string{"WXLOGIN_REDIS": url}, "-login-rate", "0")
	returning, _, ok := tryNewUserLogin(s.url, "returning")
	if !ok {
		t.Fatal("the returning user's first login failed")
	}
	var mu sync.Mutex
	acked, claimed, failed, again := map[string]int64{}, map[int64]bool{}, 0, 0
	stop := testkit.KeepBusy(8, func(w, i int) {
		if w == 0 { // the returning user, again and again
			id, _, _, ok := tryLogin(s.url, "returning")
			mu.Lock()
			if ok && id == returning {
				again++
			} else {
				failed++
			}
			mu.Unlock()
			return
		}
		name := fmt.Sprintf("w%d-%d", w, i)
		id, gift, ok := tryNewUserWithGift(s.url, name)
		mu.Lock()
		if ok && gift {
			acked[name], claimed[id] = id, true
		} else {
			failed++
		}
		mu.Unlock()
	})
	progress := func(what string, n int) {
		t.Helper()
		testkit.WaitWithin(t, 30*time.Second, what, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= n })
	}
	progress("logins under way", 50)

	ctx := t.Context()
	mustDo := func(rc *redis.Client, args ...string) any {
		t.Helper()
		v, err := rc.Do(ctx, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	for round, key := range []string{redisIDsKey, redisUserKey(returning)} {
		from := cl.OwnerOf(key)
		to := (from + 1) % 3
		slot := strconv.Itoa(redis.Slot(key))
		source, target := cl.Direct(t, from), cl.Direct(t, to)
		mustDo(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.NodeID(t, from))
		mustDo(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.NodeID(t, to))
		host, port, _ := strings.Cut(cl.Nodes[to].Addr, ":")
		keys, _ := mustDo(source, "CLUSTER", "GETKEYSINSLOT", slot, "1000").([]any)
		for i, k := range keys {
			mustDo(source, "MIGRATE", host, port, k.(string), "0", "5000")
			if i == len(keys)/2 {
				progress("logins with the slot half moved", 100+100*round) // ASK, and TRYAGAIN for the returning user's
			}
		}
		// As redis-cli --cluster reshard does: the new owner first, then
		// the old, then the rest, which learn it meanwhile.
		for _, i := range []int{to, from, 3 - to - from} {
			mustDo(cl.Direct(t, i), "CLUSTER", "SETSLOT", slot, "NODE", cl.NodeID(t, to))
		}
		progress("logins after the move", 200+100*round)
		if v, _ := target.Do(ctx, "EXISTS", key); v != int64(1) {
			t.Errorf("%s is not on its new master", key)
		}
	}
	stop()
	if again < 10 {
		t.Errorf("%d logins of the returning user were answered; want them going on across the reshards", again)
	}
	if failed > 0 {
		var causes []string
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(line, "err=") {
				causes = append(causes, line)
			}
		}
		t.Errorf("%d logins or claims failed while slots moved; want none:\n%s", failed, strings.Join(causes, "\n"))
	}

	check := cl.Client(t)
	for name, id := range acked {
		v, err := check.Do(ctx, "GET", redisOpenIDKey(config.MockAppID, fakewechat.OpenID(config.MockAppID, name)))
		if err != nil || v != strconv.FormatInt(id, 10) {
			t.Errorf("user %s, answered as %d: the openid names %v (%v)", name, id, v, err)
		}
		if claimed[id] {
			f, err := check.Do(ctx, "HGET", redisUserKey(id), "person")
			person, _ := f.(string)
			c, err2 := check.Do(ctx, "HGET", redisPersonKey(person), "c:welcome-gift")
			if err != nil || err2 != nil || c == nil {
				t.Errorf("user %d's acknowledged gift is missing (%v, %v)", id, err, err2)
			}
		}
	}
	t.Logf("%d new users with a gift and %d returning logins acknowledged across two reshards", len(acked), again)
}

// What each route costs in round trips to Redis, which is what its CPU
// goes to (BENCHMARKS.md): GET /user reads the token and the user's hash
// in one script, however many apps the person has; a returning user's
// login marks the code's exchange for the other instances, then runs one
// script, the login and its token (the openid's id is known here), which
// carries the exchange's answer for them along; a new user's also asks
// for an id, and joins its person (the person changed, its list copied to
// the record, the join recorded): on one server, each in one script, the
// id's also saying whether the user's app's and openid's hash is a key,
// which holds the claims kept of the same user erased before: it is read
// only then (takeOwnClaims).
func TestRedisRoundTripsPerRoute(t *testing.T) {
	a := newTestApp(t, appOptions{apps: companyApps, store: onRedis})
	shop := a.login(t, "wxshop", "alice")
	a.login(t, "wxgame", "alice")
	newUsers := 0
	for _, tt := range []struct {
		name string
		do   func() reply
		want int64
	}{
		{"GET /user of a person in two apps", func() reply { return call(t, a.handler, http.MethodGet, "/user", "", "token", shop) }, 1},
		{"POST /login of a returning user", func() reply {
			return call(t, a.handler, http.MethodPost, "/login", `{"appid":"wxshop","code":"`+a.fake.IssueCode("wxshop", "alice")+`"}`, "Content-Type", jsonCT)
		}, 2},
		{"POST /login of a new user", func() reply {
			newUsers++
			return call(t, a.handler, http.MethodPost, "/login", `{"appid":"wxshop","code":"`+a.fake.IssueCode("wxshop", fmt.Sprint("new-", newUsers))+`"}`, "Content-Type", jsonCT)
		}, 4},
	} {
		tt.do() // the first run of each script loads it (NOSCRIPT, then EVAL)
		before := a.redis.RoundTrips()
		if got := tt.do(); got.env.Status != 0 {
			t.Fatalf("%s = %s", tt.name, got.raw)
		}
		if n := a.redis.RoundTrips() - before; n != tt.want {
			t.Errorf("%s: %d round trips to Redis; want %d", tt.name, n, tt.want)
		}
	}
	// A proxy's /auth is GET /user's one round trip, answered in headers.
	before := a.redis.RoundTrips()
	r := httptest.NewRequest(http.MethodGet, "/auth", nil)
	r.Header.Set("token", shop)
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	if n := a.redis.RoundTrips() - before; w.Code != http.StatusOK || n != 1 {
		t.Errorf("/auth = %d, %d round trips to Redis; want 200, 1", w.Code, n)
	}
}

// What a leaked Redis (its memory, an AOF, a replica) holds: no usable
// token and no AppSecret anywhere; the session_key only under the user's
// :sk key, which expires, and for two seconds in a code's answer.
func TestALeakedRedisHoldsNoUsableToken(t *testing.T) {
	a := newTestApp(t, appOptions{store: onRedis})
	rc := a.redis
	ctx := t.Context()
	token := a.login(t, "wxapp", "alice")
	if got := call(t, a.handler, http.MethodPost, "/user/phone", `{"code":"`+testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"].(string)+`"}`, "Content-Type", jsonCT, "token", token); got.env.Status != 0 {
		t.Fatalf("phone = %s", got.raw) // so that the access_token is in Redis too
	}
	key, ok := a.fake.SessionKey("wxapp", "alice")
	if !ok {
		t.Fatal("the fake has no session_key for alice")
	}
	keys, err := rc.Scan(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	_, random, _ := strings.Cut(token, ".")
	for _, k := range keys {
		typ, _ := rc.Do(ctx, "TYPE", k)
		var v any
		switch typ {
		case "string":
			v, err = rc.Do(ctx, "GET", k)
		case "hash":
			v, err = rc.Do(ctx, "HGETALL", k)
		case "set":
			v, err = rc.Do(ctx, "SMEMBERS", k)
		}
		if err != nil {
			t.Fatal(err)
		}
		text := k + " " + fmt.Sprint(v)
		if strings.Contains(text, random) || strings.Contains(text, testSecret) {
			t.Errorf("%s holds the token or the AppSecret: %s", k, text)
		}
		if strings.Contains(text, key) && !strings.HasSuffix(k, ":sk") && !strings.HasPrefix(k, "wx:{x:") {
			t.Errorf("%s holds the session_key", k)
		}
		if strings.HasSuffix(k, ":sk") {
			if ttl, _ := rc.Do(ctx, "PTTL", k); ttl.(int64) <= 0 {
				t.Errorf("%s, which holds the session_key, never expires", k)
			}
		}
	}
	if len(keys) < 6 {
		t.Errorf("Redis holds %d keys: %v; the test looked at too little", len(keys), keys)
	}
}

// A master of the cluster dies (SIGKILL) under logins: while its replica
// takes over, the logins whose keys it held answer 503 within their bound,
// never hang; once the replica is master, wxlogin, not restarted, serves
// every login again.
func TestAFailoverIsFollowedWithoutARestart(t *testing.T) {
	aof := []string{"--appendonly", "yes", "--appendfsync", "always", "--repl-diskless-sync-delay", "0"}
	cl := testkit.StartRedisCluster(t, 3, aof...)
	ctx := t.Context()
	var replicas []*redis.Client
	for i := range 3 { // a replica for each master
		r := testkit.StartRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}, aof...)...)
		host, port, _ := strings.Cut(r.Addr, ":")
		if _, err := cl.Direct(t, 0).Do(ctx, "CLUSTER", "MEET", host, port); err != nil {
			t.Fatal(err)
		}
		replica := r.Client(t, "", "")
		master := cl.NodeID(t, i)
		testkit.WaitWithin(t, 30*time.Second, "the replica to know its master", func() bool {
			_, err := replica.Do(ctx, "CLUSTER", "REPLICATE", master)
			return err == nil
		})
		testkit.WaitWithin(t, 30*time.Second, "the replica in sync", func() bool {
			info, _ := replica.Do(ctx, "INFO", "replication")
			return strings.Contains(fmt.Sprint(info), "master_link_status:up")
		})
		replicas = append(replicas, replica)
	}
	url := "redis://" + cl.Nodes[0].Addr + "?cluster=true&addr=" + cl.Nodes[1].Addr + "&addr=" + cl.Nodes[2].Addr + "&timeout=1s"
	s := startServer(t, map[string]string{"WXLOGIN_REDIS": url}, "-login-rate", "0", "-login-timeout", "3s")

	var mu sync.Mutex
	var ok, failed int
	var slowest time.Duration
	stop := testkit.KeepBusy(4, func(w, i int) {
		start := time.Now()
		_, _, _, answered := tryLogin(s.url, fmt.Sprintf("f%d-%d", w, i))
		took := time.Since(start)
		mu.Lock()
		slowest = max(slowest, took)
		if answered {
			ok++
		} else {
			failed++
		}
		mu.Unlock()
	})
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return ok, failed }
	testkit.WaitFor(t, "logins under way", func() bool { n, _ := count(); return n >= 50 })

	cl.Nodes[0].Kill()
	// The replica is elected after the node timeout (2 s) and a moment more.
	// Every node that is left must have heard of it: until then, one that
	// has not may give wxlogin the map with the dead master still in it.
	left := append([]*redis.Client{cl.Direct(t, 1), cl.Direct(t, 2)}, replicas...)
	testkit.WaitWithin(t, 30*time.Second, "the replica to take over", func() bool {
		role, _ := replicas[0].Do(ctx, "INFO", "replication")
		if !strings.Contains(fmt.Sprint(role), "role:master") {
			return false
		}
		for _, node := range left {
			state, _ := node.Do(ctx, "CLUSTER", "INFO")
			reply, _ := node.Do(ctx, "CLUSTER", "SLOTS")
			slots, err := redis.ParseClusterSlots(reply, "")
			if !strings.Contains(fmt.Sprint(state), "cluster_state:ok") || err != nil || slices.Contains(slots, cl.Nodes[0].Addr) {
				return false
			}
		}
		return true
	})
	// Logins in flight at the moment may still fail; from the next one
	// that succeeds on, none does.
	okAt, _ := count()
	testkit.WaitWithin(t, 30*time.Second, "a login after the failover", func() bool { n, _ := count(); return n > okAt })
	_, failedAt := count()
	okAt, _ = count()
	testkit.WaitWithin(t, 30*time.Second, "logins after the failover", func() bool { n, _ := count(); return n >= okAt+50 })
	if _, f := count(); f > failedAt+len(replicas)+1 {
		t.Errorf("%d logins failed after the replica took over and logins were answered again; want none but those in flight", f-failedAt)
	}
	stop()
	n, f := count()
	if slowest > 5*time.Second {
		t.Errorf("the slowest login took %v; want every one answered within its bound (3 s and a moment)", slowest)
	}
	t.Logf("failover: %d logins answered, %d failed while the master was gone; slowest %v", n, f, slowest.Round(time.Millisecond))
}

// Two instances on one Redis fetch one access_token between them, however
// many requests need it at once; when WeChat refuses it, one fetch replaces
// it for both.
func TestInstancesOnOneRedisFetchOneAccessToken(t *testing.T) {
	redisSrv := testkit.StartRedis(t)
	clock := testkit.NewFakeClock() // the fake's: wxlogin's clients run on the real one
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Name: "Test app", Secret: testSecret}}, fakewechat.Fixtures{}, clock.Now)
	calls := &countingUpstream{next: fake.Handler()}
	srv := httptest.NewServer(calls)
	t.Cleanup(srv.Close)
	var clients []*wechatClient
	for range 2 { // two instances: each its own client, its own pool, one Redis
		rc := redisSrv.Client(t, "", "")
		wx := newWechatClient(srv.URL+"/mock/api", "wxapp", testSecret, time.Second, 5*time.Second)
		wx.sharedTokens = redisstore.NewAccessTokens(rc, time.Now, 10*time.Millisecond)
		clients = append(clients, wx)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	use := func(wx *wechatClient, refuse string) {
		err := wx.withAccessToken(t.Context(), func(ctx context.Context, token string) error {
			mu.Lock()
			seen[token]++
			mu.Unlock()
			if token == refuse {
				return &wechatError{API: "test", Code: errcodeInvalidToken}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { use(clients[i%2], "") })
	}
	wg.Wait()
	if n := calls.count(stableTokenPath); n != 1 {
		t.Errorf("40 requests on two instances made %d stable_token calls; want 1", n)
	}
	if len(seen) != 1 {
		t.Fatalf("the instances used %d tokens; want one", len(seen))
	}
	var first string
	for token := range seen {
		first = token
	}

	// WeChat refuses the token (say, the AppSecret was reset): each
	// instance drops it and fetches, but the two fetches are one. (The
	// fake's clock moves on, so that it hands out another token.)
	clock.Advance(3 * time.Hour)
	for i := range 10 {
		wg.Go(func() { use(clients[i%2], first) })
	}
	wg.Wait()
	if n := calls.count(stableTokenPath); n != 2 {
		t.Errorf("after the token was refused, %d stable_token calls in all; want 2", n)
	}
}

// A code sent to two instances on one Redis at once, as a double tap whose
// logins a load balancer split, is exchanged once, and every login gets the
// answer: the user's, or WeChat's refusal. The answer does not outlive the
// moment: the same code later goes to WeChat, which refuses a spent code.
// (A login that comes after the exchange has finished does not get its
// answer: TestSecondLoginOfAUser, on both stores. How long the answer is
// kept for those who waited: internal/redisstore's
// TestInstancesOnOneRedisShareAnExchangesAnswer.)
func TestInstancesOnOneRedisExchangeACodeOnce(t *testing.T) {
	redisSrv := testkit.StartRedis(t)
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Name: "Test app", Secret: testSecret}}, fakewechat.Fixtures{}, time.Now)
	const path = "/mock/api/sns/jscode2session"
	routes := fake.Handler()
	calls := &countingUpstream{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			time.Sleep(300 * time.Millisecond) // WeChat's latency: every login below starts within it
		}
		routes.ServeHTTP(w, r)
	})}
	srv := httptest.NewServer(calls)
	t.Cleanup(srv.Close)
	var clients []*wechatClient
	for range 2 {
		wx := newWechatClient(srv.URL+"/mock/api", "wxapp", testSecret, time.Second, 5*time.Second)
		wx.sharedExchanges = redisExchanges{redisstore.NewExchanges(redisSrv.Client(t, "", ""), 5*time.Millisecond, 10*time.Second)}
		clients = append(clients, wx)
	}
	for round, code := range []string{fake.IssueCode("wxapp", "alice"), "made-up-code"} {
		results := make([]code2SessionResult, 20)
		errs := make([]error, 20)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				<-start // all at once, as a double tap's logins come
				results[i], errs[i] = clients[i%2].code2Session(t.Context(), code)
			})
		}
		close(start)
		wg.Wait()
		if n := calls.count(path); n != round+1 {
			t.Errorf("round %d: 20 logins with one code on two instances made %d calls in all; want %d", round, n, round+1)
		}
		for i := range results {
			var we *wechatError
			switch {
			case round == 0 && (errs[i] != nil || results[i] != results[0] || results[i].OpenID != fakewechat.OpenID("wxapp", "alice")):
				t.Errorf("login %d got %+v, %v; want alice, as login 0 got", i, results[i], errs[i])
			case round == 1 && (!errors.As(errs[i], &we) || we.Code != errcodeInvalidCode):
				t.Errorf("login %d with a made-up code got %v; want WeChat's 40029", i, errs[i])
			}
		}
	}
}

// A login waiting for another instance's exchange of its code ends within
// the request's bound, even when that instance never answers: it hangs
// with the code marked, as one that died with it marked does to the
// others (internal/redisstore's TestAMarkOfADeadInstanceIsWaitedForInTime
// leaves the mark of a dead one).
func TestWaitingForAnotherInstancesExchangeEndsInTime(t *testing.T) {
	srv := testkit.StartRedis(t)
	wx := newWechatClient("http://127.0.0.1:1", "wxapp", testSecret, time.Second, 300*time.Millisecond)
	wx.sharedExchanges = redisExchanges{redisstore.NewExchanges(srv.Client(t, "", ""), 5*time.Millisecond, 10*time.Second)}
	other := redisstore.NewExchanges(srv.Client(t, "", ""), 5*time.Millisecond, 10*time.Second)
	marked, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		other.Exchange(context.Background(), "wxapp", "marked", func(context.Context) (redisstore.Session, error) {
			close(marked)
			<-release
			return redisstore.Session{}, errors.New("the instance hung")
		})
	}()
	t.Cleanup(func() { close(release); <-done })
	<-marked
	start := time.Now()
	_, err := wx.code2Session(t.Context(), "marked")
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("a code marked by an instance that never answers = %v after %v; want the deadline, within the 300 ms bound", err, took)
	}
}

// The keys of the store in Redis that these tests read, or move between
// masters, as internal/redisstore's layout names them. They are spelled
// out here: a Redis written before must be served as it is, so a change
// of the layout is a change these tests see.
const redisIDsKey = "wx:ids"

func redisUserKey(id int64) string               { return "wx:{u:" + strconv.FormatInt(id, 10) + "}" }
func redisOpenIDKey(appID, openID string) string { return "wx:{o:" + appID + ":" + openID + "}" }
func redisPersonKey(person string) string        { return "wx:{p:" + person + "}" }
