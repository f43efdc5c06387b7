package main

import (
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
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

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
			a.clock.Advance(previousKeyWindow / 3)
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

// redisOptions opens a store on srv as -redis-durability says, in real
// mode.
func redisOptions(t *testing.T, addr, userinfo, durability string) error {
	t.Helper()
	cfg := redis.Config{Addrs: []string{addr}, PoolSize: 4, Timeout: 5 * time.Second}
	if userinfo != "" {
		cfg.User, cfg.Password, _ = strings.Cut(userinfo, ":")
	}
	s, err := openRedisStore(t.Context(), cfg, durability, account.Meta{Mode: account.ModeReal}, time.Hour, time.Hour, time.Now, discardLogger())
	if err == nil {
		s.close()
	}
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
		{"no AOF", nil, redisFsync, "appendonly no and appendfsync everysec"},
		{"AOF fsynced each second", []string{"--appendonly", "yes"}, redisFsync, "appendonly yes and appendfsync everysec"},
		{"AOF fsynced on each write", []string{"--appendonly", "yes", "--appendfsync", "always"}, redisFsync, ""},
		{"no AOF, the operator's word", nil, redisUnchecked, ""},
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
			case tt.want != "" && tt.durability == redisFsync && !strings.Contains(err.Error(), "-redis-durability=unchecked"):
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
		err := redisOptions(t, srv.Addr, "app:app-pass", redisFsync)
		if err == nil || !strings.Contains(err.Error(), "refuses CONFIG GET") || !strings.Contains(err.Error(), "-redis-durability=unchecked") {
			t.Errorf("open with CONFIG refused = %v; want it to say so and name -redis-durability=unchecked", err)
		}
		if err := redisOptions(t, srv.Addr, "app:app-pass", redisUnchecked); err != nil {
			t.Errorf("open with CONFIG refused, unchecked = %v; want it open", err)
		}
	})
}

// A Redis used in mock mode is refused in real mode, as a data directory is.
func TestRedisStoreKeepsMockAndRealApart(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 5 * time.Second}
	open := func(mode string) error {
		s, err := openRedisStore(t.Context(), cfg, redisFsync, account.Meta{Mode: mode}, time.Hour, time.Hour, time.Now, discardLogger())
		if err == nil {
			s.close()
		}
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
	writeFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
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
	resp, err := client.Post(fake.url+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"erin","appid":"wxshop"}`))
	if err != nil {
		t.Fatal(err)
	}
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
// the call's bound and /healthz says 503; once it is back, wxlogin serves
// again without a restart, and what it acknowledged before Redis was
// killed is there: AOF fsynced on each write.
func TestRedisDownAnswers503AndRecovers(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	env := map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr + "?timeout=500ms"}
	s := startServer(t, env, "-login-rate", "0") // so that a login reaches the store, not only the limiter's bucket
	got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	token := dataOf[loginData](t, got).Token
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusCreated {
		t.Fatalf("claim = %s", got.raw)
	}
	wantDown := func(why string) {
		t.Helper()
		for _, r := range []struct{ method, path, body string }{
			{http.MethodGet, "/user", ""}, {http.MethodGet, "/healthz", ""},
			{http.MethodPost, "/login", `{"code":"` + mockCode(t, s.url, "bob") + `"}`},
		} {
			start := time.Now()
			got := post(t, r.method, s.url+r.path, jsonCT, r.body, "token", token)
			if took := time.Since(start); got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.header.Get("Retry-After") == "" || took > 5*time.Second {
				t.Errorf("%s: %s %s = HTTP %d, %s (Retry-After %q) after %v; want 503, status -1, Retry-After, within the call's bound", why, r.method, r.path, got.code, got.raw, got.header.Get("Retry-After"), took)
			}
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
	fake := newFakeWechat(map[string]fakeApp{"wxapp": {Name: "Test app", Secret: testSecret}}, time.Now)
	var stallOnExchange atomic.Bool
	routes := fake.routes()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sns/jscode2session") && stallOnExchange.CompareAndSwap(true, false) {
			srv.Pause()
		}
		routes.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	env := map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr + "?timeout=" + bound.String(), "WX_APPID": "wxapp", "WX_APPSECRET": testSecret}
	s := startServer(t, env, "-wechat-api", upstream.URL+fakeAPIPrefix, "-login-rate", "0")
	login := func() (reply, time.Duration) {
		start := time.Now()
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+fake.issueCode("wxapp", "bob")+`"}`)
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
	waitWithin(t, 10*time.Second, "/healthz to answer 503", func() bool { return health() == http.StatusServiceUnavailable })
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
	waitWithin(t, 10*time.Second, "/healthz to answer 200 again", func() bool { return health() == http.StatusOK })
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusCreated {
		t.Errorf("claim once appendfsync is always again = %s; want 201", got.raw)
	}
	if got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "bob")+`"}`); got.env.Status != 0 {
		t.Errorf("login once appendfsync is always again = %s", got.raw)
	}
}

// However often durability is found weak, the log says so once, and once
// when it is restored; a Redis that does not answer the check changes
// nothing.
func TestRedisWeakenedDurabilityIsLoggedOnce(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 300 * time.Millisecond}
	rs, err := openRedisStore(t.Context(), cfg, redisFsync, account.Meta{Mode: account.ModeReal}, time.Hour, time.Hour, time.Now, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.close)
	logs := &syncBuffer{}
	log := textLogger(logs)
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
			rs.checkDurability(t.Context(), log)
		}
		if step.stop {
			srv.Resume()
		}
		err := rs.writable()
		if step.writable && err != nil || !step.writable && !errors.Is(err, errUnavailable) {
			t.Errorf("%s: writable() = %v; want writable %v, else errUnavailable (a 503 with Retry-After: TestAStoreThatCannotBeReachedAnswers503)", step.name, err, step.writable)
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
	n := envSetting(t, "WXLOGIN_REDIS_SCALE", 0, strconv.Atoi)
	if n == 0 {
		t.Skip("set WXLOGIN_REDIS_SCALE=<users> (scripts/scale does) to measure")
	}
	srv := testkit.StartRedis(t)
	cfg := redis.Config{Addrs: []string{srv.Addr}, PoolSize: 64, Timeout: 10 * time.Second}
	s, err := openRedisStore(t.Context(), cfg, redisUnchecked, account.Meta{Mode: account.ModeReal}, 2*time.Hour, 720*time.Hour, time.Now, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
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
		u, _, err := s.Login(t.Context(), "wxapp", fakeOpenID("wxapp", name), fakeUnionID(name))
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

// The crash test on Redis: new users log in and claim a gift while, in
// turn, a wxlogin is killed with SIGKILL, and redis-server is (AOF,
// appendfsync always), at random moments, over and over. After each kill
// (and Redis's restart) every login that was answered is in Redis with the
// id it was given, its openid names that id, and every claim answered 201
// is there. WXLOGIN_CRASH_KILLS sets the kills of each (3).
func TestKill9OnRedisKeepsEveryAcknowledgedWrite(t *testing.T) {
	kills := envSetting(t, "WXLOGIN_CRASH_KILLS", 3, strconv.Atoi)
	const workers, meanUptime = 8, 300 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	env := []string{"WXLOGIN_REDIS=redis://" + srv.Addr}
	acked := map[string]int64{}
	claimed := map[int64]bool{}
	lost := 0
	for round := range 2 * kills {
		killRedis := round%2 == 1
		c := startProcess(t, env, "-addr", "127.0.0.1:0", "-login-rate", "0")
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range workers {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					if id, gift, ok := tryNewUserWithGift(c.url, name); ok {
						mu.Lock()
						acked[name], claimed[id] = id, gift
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(rng.Int64N(int64(2 * meanUptime)))) // the kill's random moment, under load
		if killRedis {
			srv.Kill()
		} else {
			c.cmd.Process.Kill()
		}
		close(stop)
		wg.Wait()
		if killRedis {
			srv.Start(t)
		}

		check, err := openRedisStore(t.Context(), redis.Config{Addrs: []string{srv.Addr}, PoolSize: 8, Timeout: 5 * time.Second},
			redisFsync, account.Meta{Mode: account.ModeMock}, time.Hour, time.Hour, time.Now, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		for name, id := range acked {
			u, ok, err := check.Get(t.Context(), id)
			v, _ := check.rc.Do(t.Context(), "GET", redisOpenIDKey(mockAppID, fakeOpenID(mockAppID, name)))
			if err != nil || !ok || u.OpenID != fakeOpenID(mockAppID, name) || v != strconv.FormatInt(id, 10) {
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
		check.close()
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
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if w == 0 { // the returning user, again and again
					id, _, _, ok := tryLogin(s.url, "returning")
					mu.Lock()
					if ok && id == returning {
						again++
					} else {
						failed++
					}
					mu.Unlock()
					continue
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
			}
		})
	}
	progress := func(what string, n int) {
		t.Helper()
		waitWithin(t, 30*time.Second, what, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= n })
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
	close(stop)
	wg.Wait()
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
		v, err := check.Do(ctx, "GET", redisOpenIDKey(mockAppID, fakeOpenID(mockAppID, name)))
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
// goes to (BENCHMARKS.md): GET /user reads the token and then the user's
// hash, however many apps the person has; a returning user's login runs
// the login script and the token's, and marks and answers the code's
// exchange for the other instances (the openid's id is known here); a new
// user's also asks for an id (GET, INCR, SET NX), and joins its person
// (the person changed, its list copied to the record, the join recorded).
func TestRedisRoundTripsPerRoute(t *testing.T) {
	a := newTestApp(t, appOptions{apps: companyApps, store: onRedis})
	rs := a.userBackend.(*redisStore)
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
			return call(t, a.handler, http.MethodPost, "/login", `{"appid":"wxshop","code":"`+a.fake.issueCode("wxshop", "alice")+`"}`, "Content-Type", jsonCT)
		}, 4},
		{"POST /login of a new user", func() reply {
			newUsers++
			return call(t, a.handler, http.MethodPost, "/login", `{"appid":"wxshop","code":"`+a.fake.issueCode("wxshop", fmt.Sprint("new-", newUsers))+`"}`, "Content-Type", jsonCT)
		}, 9},
	} {
		tt.do() // the first run of each script loads it (NOSCRIPT, then EVAL)
		before := rs.rc.RoundTrips()
		if got := tt.do(); got.env.Status != 0 {
			t.Fatalf("%s = %s", tt.name, got.raw)
		}
		if n := rs.rc.RoundTrips() - before; n != tt.want {
			t.Errorf("%s: %d round trips to Redis; want %d", tt.name, n, tt.want)
		}
	}
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
		if u, err := recordFromRedis(hash); err == nil {
			if u.ID < 1 || u.AppID == "" || u.OpenID == "" {
				t.Errorf("recordFromRedis accepted %q as %+v: not a whole record", hash, u)
			}
			again := []any{"id", strconv.FormatInt(u.ID, 10), "appid", u.AppID, "openid", u.OpenID,
				"created_at", formatRedisTime(u.CreatedAt), "updated_at", formatRedisTime(u.UpdatedAt), "last_login_at", formatRedisTime(u.LastLoginAt)}
			fields := redisFields(&u)
			for i := 0; i < len(fields); i += 2 {
				if fields[i+1] != "" { // a field not set is not in the hash
					again = append(again, fields[i], fields[i+1])
				}
			}
			if back, err := recordFromRedis(again); err != nil || back != u {
				t.Errorf("a record written again reads back as %+v, %v; want %+v", back, err, u)
			}
		}
		if c, err := parseRedisClaim("gift", value); err == nil {
			if back, err := parseRedisClaim("gift", formatRedisClaim(c)); err != nil || !back.ClaimedAt.Equal(c.ClaimedAt) || back.UserID != c.UserID || back.AppID != c.AppID {
				t.Errorf("claim %q reads as %+v, written again as %+v (%v)", value, c, back, err)
			}
		}
		members := parseRedisMembers(value)
		if back := parseRedisMembers(formatRedisMembers(members)); len(members) > 0 && !slices.Equal(back, members) && !strings.ContainsAny(value, ",") {
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
	a := newTestApp(t, appOptions{apps: companyApps, store: onRedis})
	rs := a.userBackend.(*redisStore)
	ctx := t.Context()
	shop := a.login(t, "wxshop", "alice")
	a.login(t, "wxgame", "alice")
	game, _, _ := rs.Get(ctx, 2)
	_, person, _, _ := rs.record(ctx, game.ID)
	// Game's join cut short: not in the person, its copy of the list stale.
	for _, cmd := range [][]string{
		{"HDEL", redisPersonKey(person), "u:2"}, {"HDEL", redisUserKey(game.ID), "joined"}, {"HSET", redisUserKey(1), "m", personTag(person) + "@1|1:wxshop"},
	} {
		if _, err := rs.rc.Do(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if _, apps := personOf(t, a.handler, shop); slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Fatal("the join was not cut short: the test shows nothing")
	}
	a.login(t, "wxgame", "alice")
	if _, apps := personOf(t, a.handler, shop); !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Errorf("after Game's next login, Shop's person has apps %v; want wxshop and wxgame", apps)
	}

	// An erased user 9 left in the person: the next spread drops it.
	for _, cmd := range [][]string{{"HSET", redisUserKey(9), "erased", "2026-11-24T10:00:00Z"}, {"HSET", redisPersonKey(person), "u:9", "wxsolo"}} {
		if _, err := rs.rc.Do(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.spreadMembers(ctx, person, 0); err != nil {
		t.Fatal(err)
	}
	if left, _ := rs.rc.Do(ctx, "HEXISTS", redisPersonKey(person), "u:9"); left != int64(0) {
		t.Error("the erased user is still in the person after it changed")
	}
	if _, apps := personOf(t, a.handler, shop); !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
		t.Errorf("Shop's person has apps %v; want wxshop and wxgame", apps)
	}
}

// What a leaked Redis (its memory, an AOF, a replica) holds: no usable
// token and no AppSecret anywhere; the session_key only under the user's
// :sk key, which expires, and for two seconds in a code's answer.
func TestALeakedRedisHoldsNoUsableToken(t *testing.T) {
	a := newTestApp(t, appOptions{store: onRedis})
	rs := a.userBackend.(*redisStore)
	ctx := t.Context()
	token := a.login(t, "wxapp", "alice")
	if got := call(t, a.handler, http.MethodPost, "/user/phone", `{"code":"`+wxCall(t, a.fake, "wx.getPhoneNumber", `{"user":"alice"}`)["code"].(string)+`"}`, "Content-Type", jsonCT, "token", token); got.env.Status != 0 {
		t.Fatalf("phone = %s", got.raw) // so that the access_token is in Redis too
	}
	key, ok := a.fake.sessionKey(fakeUser{"wxapp", "alice"})
	if !ok {
		t.Fatal("the fake has no session_key for alice")
	}
	keys, err := rs.rc.Scan(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	_, random, _ := strings.Cut(token, ".")
	for _, k := range keys {
		typ, _ := rs.rc.Do(ctx, "TYPE", k)
		var v any
		switch typ {
		case "string":
			v, err = rs.rc.Do(ctx, "GET", k)
		case "hash":
			v, err = rs.rc.Do(ctx, "HGETALL", k)
		case "set":
			v, err = rs.rc.Do(ctx, "SMEMBERS", k)
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
			if ttl, _ := rs.rc.Do(ctx, "PTTL", k); ttl.(int64) <= 0 {
				t.Errorf("%s, which holds the session_key, never expires", k)
			}
		}
	}
	if len(keys) < 6 {
		t.Errorf("Redis holds %d keys: %v; the test looked at too little", len(keys), keys)
	}
}

// On Redis a token's last use is written at most once a minute (at a
// 2 h idle lifetime), so its idle lifetime is exact to that minute: a use
// 59 s after the last write does not move it, one 61 s after does.
func TestRedisWritesATokensUseOnceAMinute(t *testing.T) {
	a := newTestApp(t, appOptions{store: onRedis})
	for _, tt := range []struct {
		usedAfter time.Duration
		alive     bool
	}{{59 * time.Second, false}, {61 * time.Second, true}} {
		token := a.login(t, "wxapp", "alice")
		a.clock.Advance(tt.usedAfter)
		if _, ok, _ := a.tokenBackend.Lookup(t.Context(), token); !ok {
			t.Fatal("a fresh token is not alive")
		}
		a.clock.Advance(2*time.Hour - tt.usedAfter + 30*time.Second) // 2 h 30 s after the issue
		if _, ok, _ := a.tokenBackend.Lookup(t.Context(), token); ok != tt.alive {
			t.Errorf("used %v after its issue, the token is alive %v at 2 h 30 s; want %v", tt.usedAfter, ok, tt.alive)
		}
	}
	if every := redisTouchEvery(2 * time.Hour); every != time.Minute {
		t.Errorf("at a 2 h idle lifetime a use is written every %v; want a minute", every)
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
		waitWithin(t, 30*time.Second, "the replica to know its master", func() bool {
			_, err := replica.Do(ctx, "CLUSTER", "REPLICATE", master)
			return err == nil
		})
		waitWithin(t, 30*time.Second, "the replica in sync", func() bool {
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
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
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
			}
		})
	}
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return ok, failed }
	waitFor(t, "logins under way", func() bool { n, _ := count(); return n >= 50 })

	cl.Nodes[0].Kill()
	// The replica is elected after the node timeout (2 s) and a moment more.
	// Every node that is left must have heard of it: until then, one that
	// has not may give wxlogin the map with the dead master still in it.
	left := append([]*redis.Client{cl.Direct(t, 1), cl.Direct(t, 2)}, replicas...)
	waitWithin(t, 30*time.Second, "the replica to take over", func() bool {
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
	waitWithin(t, 30*time.Second, "a login after the failover", func() bool { n, _ := count(); return n > okAt })
	_, failedAt := count()
	okAt, _ = count()
	waitWithin(t, 30*time.Second, "logins after the failover", func() bool { n, _ := count(); return n >= okAt+50 })
	if _, f := count(); f > failedAt+len(replicas)+1 {
		t.Errorf("%d logins failed after the replica took over and logins were answered again; want none but those in flight", f-failedAt)
	}
	close(stop)
	wg.Wait()
	n, f := count()
	if slowest > 5*time.Second {
		t.Errorf("the slowest login took %v; want every one answered within its bound (3 s and a moment)", slowest)
	}
	t.Logf("failover: %d logins answered, %d failed while the master was gone; slowest %v", n, f, slowest.Round(time.Millisecond))
}

// openRedisStoresOn starts a Redis of kind (one server, or a cluster of
// three masters), appending and fsyncing each write, and opens n stores on
// it, as n wxlogins would; admin is a client of it for the test's own
// commands.
func openRedisStoresOn(t *testing.T, kind storeKind, n int) (stores []*redisStore, admin *redis.Client) {
	t.Helper()
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	var cfg redis.Config
	switch kind {
	case onRedis:
		srv := testkit.StartRedis(t, aof...)
		cfg = redis.Config{Addrs: []string{srv.Addr}, PoolSize: 16, Timeout: 5 * time.Second}
	case onRedisCluster:
		cl := testkit.StartRedisCluster(t, 3, aof...)
		cfg = redis.Config{Addrs: []string{cl.Nodes[0].Addr}, Cluster: true, PoolSize: 16, Timeout: 5 * time.Second}
	default:
		t.Fatalf("openRedisStoresOn(%q): not a Redis", kind)
	}
	for range n {
		s, err := openRedisStore(t.Context(), cfg, redisFsync, account.Meta{Mode: account.ModeReal}, 2*time.Hour, 720*time.Hour, time.Now, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.close)
		stores = append(stores, s)
	}
	admin = redis.NewClient(cfg)
	t.Cleanup(admin.Close)
	return stores, admin
}

// setIDsBack takes n from wx:ids, as a failover to a replica that missed
// the last n INCRs does.
func setIDsBack(t *testing.T, admin *redis.Client, n int) {
	t.Helper()
	if _, err := admin.Do(t.Context(), "DECRBY", redisIDsKey, strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
}

// checkIDOwners checks that every id of owners is still held as it was: a
// record of the openid it names, whose openid's key names it back, or an
// erasure ("" for an erased id).
func checkIDOwners(t *testing.T, s *redisStore, admin *redis.Client, owners map[int64]string) {
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
			if v, err := admin.Do(ctx, "GET", redisOpenIDKey("wxapp", openID)); err != nil || v != strconv.FormatInt(id, 10) {
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
	for _, kind := range []storeKind{onRedis, onRedisCluster} {
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
			if _, err := admin.Do(ctx, "SET", redisOpenIDKey("wxapp", "stale"), "25"); err != nil {
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

// The counter set back again and again while new users log in, on two
// stores at once: every one gets in, each with an id no one else holds.
func TestRedisIDsHealUnderLoad(t *testing.T) {
	for _, kind := range []storeKind{onRedis, onRedisCluster} {
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
