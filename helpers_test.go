package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/jwt"
	"wxlogin/internal/limits"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/testkit"
	"wxlogin/internal/users"
)

// This file holds what the test files share: the app a test builds
// (newTestApp) and logs in to, replies as a client reads them (call, post,
// dataOf and the data of each route), wxlogin run through run or as a child
// process, and the clocks, logs and files tests use.

// TestMain lets a test run the real server as a child process, so that it
// can be killed: the test binary re-executes itself with WXLOGIN_TEST_CHILD
// set, and then is wxlogin, with the rest of its arguments.
func TestMain(m *testing.M) {
	if os.Getenv("WXLOGIN_TEST_CHILD") == "1" {
		if err := run(context.Background(), append([]string{"wxlogin"}, os.Args[1:]...), os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "wxlogin: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testSecret is the AppSecret of the test apps.
const testSecret = "s3cr3t-app-secret-0123456789abcd"

// jsonCT is the Content-Type of a JSON request body.
const jsonCT = "application/json"

// testApp is wxlogin's handler as newServer builds it for a test: its
// stores on a fake clock, and WeChat in process, the fake WeChat unless
// appOptions.wechat stands in for it.
type testApp struct {
	handler http.Handler
	apps    appSet
	wx      *wechatClient     // the first app's client of WeChat
	fake    *fakewechat.Fake  // nil when appOptions.wechat is WeChat
	calls   *countingUpstream // every call wxlogin made to WeChat, by path
	// The stores as the handler holds them, on either kind of store; users
	// and tokens are the file store's, nil on Redis, and redis the client
	// of the store in Redis, nil on the files.
	userBackend  userBackend
	tokenBackend tokenBackend
	users        *users.Store
	tokens       *tokenStore
	redis        *redis.Client
	clock        *testkit.FakeClock
	logs         *testkit.SyncBuffer
	// signer signs the access tokens with appOptions.jwt, on jwtKeys (the
	// store's: a file, or Redis); nil without.
	signer  *jwt.Issuer
	jwtKeys jwt.Store
}

// appSpec is one mini program a test app serves.
type appSpec struct {
	id, name, secret string
	unbound          bool // no Open Platform account: WeChat gives its users no unionid
}

// companyApps are three mini programs of one company: Shop and Game are
// bound to its Open Platform account, Solo is not, so Solo's users get no
// unionid.
var companyApps = []appSpec{
	{"wxshop", "Shop", "shop-secret", false}, {"wxgame", "Game", "game-secret", false}, {"wxsolo", "Solo", "solo-secret", true},
}

// appOptions says how newTestApp wires wxlogin. The zero value is one app,
// "wxapp" ("Test app", with testSecret), in real mode, on the fake WeChat.
type appOptions struct {
	// wechat, when set, is WeChat's API, served at the root of a server of
	// its own, for tests of how wxlogin meets WeChat's answers. Otherwise
	// the fake WeChat of apps serves it, at /mock/api as mock mode does.
	wechat http.Handler
	apps   []appSpec // the mini programs served; if none, wxapp alone
	// mock is mock mode: the fake is mounted at /mock/ too, with the
	// teaching page.
	mock bool
	// loginBurst, when set, limits logins per client as -login-rate and
	// -login-burst do, on the app's clock, with proxies trusted.
	loginRate, loginBurst int
	proxies               limits.TrustedProxies
	quiet                 bool // discard the logs: a fuzz target's would fill memory
	// noContentCheck is -content-check=false: nicknames are not sent to
	// msgSecCheck.
	noContentCheck bool
	store          storeKind // where users and tokens live; "" is the data directory
	// jwt, when set, is -jwt with these options, on the app's clock.
	jwt *jwt.Options
	// alongside, when set, is another instance on Redis: this one shares
	// its Redis, its fake WeChat and its clock, as two wxlogins on one Redis
	// and one WeChat do; store is then ignored.
	alongside *testApp
}

// storeKind is a store the handler suites run on (onEachStore).
type storeKind string

const (
	onFiles storeKind = "file"  // the data directory and tokens in memory
	onRedis storeKind = "redis" // a real redis-server, started for the test
	// onRedisCluster is a Redis Cluster of three masters, started for the
	// test; slower to start, so only some tests run on it.
	onRedisCluster storeKind = "redis-cluster"
)

// onEachStore runs test on each kind of store, as subtests: the suites
// that hold for both run from this one table.
func onEachStore(t *testing.T, test func(t *testing.T, store storeKind)) {
	for _, store := range []storeKind{onFiles, onRedis} {
		t.Run(string(store), func(t *testing.T) { test(t, store) })
	}
}

// openTestRedisStore opens the store in Redis on rc, as run does for
// -redis-durability=fsync, on the clock now.
func openTestRedisStore(t testing.TB, rc *redis.Client, mode string, now func() time.Time) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(t.Context(), rc, redisstore.Options{Durability: redisstore.Fsync, Meta: account.Meta{Mode: mode},
		TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, PreviousKeyWindow: opendata.PreviousKeyWindow, Now: now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestApp builds wxlogin's handler as opts say, as run would for their
// configuration. Every app's client has retry pauses short enough for
// tests.
func newTestApp(t testing.TB, opts appOptions) *testApp {
	t.Helper()
	specs := opts.apps
	if len(specs) == 0 {
		specs = []appSpec{{id: "wxapp", name: "Test app", secret: testSecret}}
	}
	clock := testkit.NewFakeClock()
	if opts.alongside != nil {
		clock = opts.alongside.clock
	}
	a := &testApp{
		apps:  appSet{},
		clock: clock,
		logs:  &testkit.SyncBuffer{},
	}
	mode := account.ModeReal
	if opts.mock {
		mode = account.ModeMock
	}
	// On Redis, a server (or a cluster of three masters) that fsyncs every
	// write, as -redis-durability=fsync needs.
	var cfg redis.Config
	switch opts.store {
	case onRedis:
		srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
		cfg = redis.Config{Addrs: []string{srv.Addr}, PoolSize: 16, Timeout: 5 * time.Second}
	case onRedisCluster:
		cluster := testkit.StartRedisCluster(t, 3, "--appendonly", "yes", "--appendfsync", "always")
		cfg = redis.Config{Addrs: []string{cluster.Nodes[0].Addr}, Cluster: true, PoolSize: 16, Timeout: 5 * time.Second}
	}
	switch {
	case opts.alongside != nil:
		a.redis = opts.alongside.redis
		rs := openTestRedisStore(t, a.redis, mode, clock.Now)
		a.userBackend, a.tokenBackend = rs, rs
	case opts.store == onRedis, opts.store == onRedisCluster:
		a.redis = redis.NewClient(cfg)
		t.Cleanup(a.redis.Close)
		rs := openTestRedisStore(t, a.redis, mode, clock.Now)
		a.userBackend, a.tokenBackend = rs, rs
	default:
		a.users = openTestStore(t, t.TempDir(), clock.Now)
		a.tokens = newTokenStore(2*time.Hour, 720*time.Hour, clock.Clock())
		a.userBackend, a.tokenBackend = fileUsers{a.users}, memoryTokens{a.tokens, a.users}
	}
	upstream, apiPath := opts.wechat, ""
	if opts.alongside != nil {
		a.fake, upstream, apiPath = opts.alongside.fake, opts.alongside.fake.Handler(), "/mock/api"
	}
	if upstream == nil {
		fakeApps := map[string]fakewechat.App{}
		for _, s := range specs {
			fakeApps[s.id] = fakewechat.App{Name: s.name, Secret: s.secret, Unbound: s.unbound}
		}
		a.fake = fakewechat.New(fakeApps, fakewechat.Fixtures{}, clock.Now) // one clock, so that watermarks and the token store agree
		upstream, apiPath = a.fake.Handler(), "/mock/api"
	}
	a.calls = &countingUpstream{next: upstream}
	srv := httptest.NewServer(a.calls)
	t.Cleanup(srv.Close)
	onRedis := a.redis != nil
	for _, s := range specs {
		wx := newWechatClient(srv.URL+apiPath, s.id, s.secret, time.Second, 3*time.Second)
		wx.backoff = []time.Duration{time.Millisecond, time.Millisecond}
		if onRedis { // shared as run shares them
			wx.sharedTokens = redisstore.NewAccessTokens(a.redis, clock.Now, 5*time.Millisecond)
			wx.sharedExchanges = redisExchanges{redisstore.NewExchanges(a.redis, 5*time.Millisecond, 10*time.Second)}
		}
		a.apps[s.id] = &miniApp{ID: s.id, Name: s.name, wx: wx, checkContent: !opts.noContentCheck}
		if a.wx == nil {
			a.wx = wx
		}
	}
	var limit loginLimit
	switch {
	case opts.loginBurst == 0:
	case onRedis:
		limit = redisstore.NewLoginLimiter(a.redis, opts.loginRate, opts.loginBurst, clock.Now)
	default:
		limit = limits.NewLoginLimiter(opts.loginRate, opts.loginBurst, clock.Clock())
	}
	var mounted *fakewechat.Fake
	if opts.mock {
		if a.fake == nil {
			t.Fatal("mock mode needs the fake WeChat, not appOptions.wechat")
		}
		mounted = a.fake
	}
	log := textLogger(a.logs)
	if opts.quiet {
		log = discardLogger()
	}
	if opts.jwt != nil {
		a.jwtKeys = jwt.NewFile(filepath.Join(t.TempDir(), jwt.FileName))
		if a.redis != nil {
			a.jwtKeys = redisstore.NewJWTKeys(a.redis)
		}
		o := *opts.jwt
		o.Now = clock.Now
		var err error
		if a.signer, err = jwt.New(t.Context(), a.jwtKeys, o); err != nil {
			t.Fatal(err)
		}
	}
	a.handler = newServer(log, nil, a.apps, a.userBackend, a.tokenBackend, a.signer, limit, opts.proxies, mounted)
	return a
}

// record is user id's record, read through the store the handler holds.
func (a *testApp) record(t testing.TB, id int64) account.User {
	t.Helper()
	u, ok, err := a.userBackend.Get(t.Context(), id)
	if err != nil || !ok {
		t.Fatalf("user %d: found %v, %v", id, ok, err)
	}
	return u
}

// login logs user in to appID with a code from the fake, and returns the
// token. The body names the app only when the server has several, as a
// mini program of a server with one app need not.
func (a *testApp) login(t testing.TB, appID, user string) string {
	t.Helper()
	body := `{"code":"` + a.fake.IssueCode(appID, user) + `"}`
	if len(a.apps) > 1 {
		body = `{"appid":"` + appID + `",` + body[1:]
	}
	got := call(t, a.handler, http.MethodPost, "/login", body, "Content-Type", jsonCT)
	var token string
	if got.env.Status == 0 {
		token = dataOf[loginData](t, got).Token
	}
	if got.env.Status != 0 || token == "" {
		t.Fatalf("login of %s to %s = %s; want a token", user, appID, got.raw)
	}
	return token
}

// loggedIn returns a test app on the fake WeChat and a token of alice's.
func loggedIn(t testing.TB) (*testApp, string) {
	t.Helper()
	return loggedInOn(t, onFiles)
}

// loggedInOn is loggedIn on the given kind of store.
func loggedInOn(t testing.TB, store storeKind) (*testApp, string) {
	t.Helper()
	a := newTestApp(t, appOptions{store: store})
	return a, a.login(t, "wxapp", "alice")
}

// countingUpstream counts the calls of each path it passes to next.
type countingUpstream struct {
	next  http.Handler
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[r.URL.Path]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *countingUpstream) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path]
}

// The paths of the fake's server API that tests count the calls of.
const (
	stableTokenPath = "/mock/api/cgi-bin/stable_token"
	phonePath       = "/mock/api/wxa/business/getuserphonenumber"
)

// officialSessionKey is the session_key of WeChat's published example of
// open data (WECHAT.md §2): a key of the right shape, for tests that need
// one.
const officialSessionKey = "tiihtNczf5v6AKRyjwEUhQ=="

// msgUndecryptable is the check every data that does not decrypt fails,
// whatever went wrong after the AES step, as the client is told it.
const msgUndecryptable = "无法用当前 session_key 解密 encryptedData"

// encrypt encrypts plain with key for a test, as WeChat encrypts open
// data, with a fixed iv.
func encrypt(t testing.TB, key, plain string) (data, iv string) {
	t.Helper()
	ivBytes := bytes.Repeat([]byte{7}, 16)
	data, err := opendata.Encrypt(key, []byte(plain), ivBytes)
	if err != nil {
		t.Fatal(err)
	}
	return data, base64.StdEncoding.EncodeToString(ivBytes)
}

// wechatAPI calls the fake's server API at path, as on api.weixin.qq.com,
// as another backend of the same app would, and returns WeChat's reply.
func wechatAPI(t testing.TB, fake *fakewechat.Fake, method, path, body string) map[string]any {
	t.Helper()
	return testkit.ServeJSON(t, fake.Handler(), method, fakewechat.APIPrefix+path, body)
}

// reply is a response as a client sees it. Its data is read with dataOf,
// as the type of the route's data.
type reply struct {
	code   int
	header http.Header
	raw    string
	env    struct {
		Status  int             `json:"status"`
		Msg     string          `json:"msg"`
		Errcode int             `json:"errcode"`
		Data    json.RawMessage `json:"data"` // an object, or absent; parseReply sees to it
	}
}

// hasData reports whether the envelope carries data.
func (r reply) hasData() bool { return len(r.env.Data) > 0 && string(r.env.Data) != "null" }

// call sends a request through the handler. Header pairs follow the body.
func call(t testing.TB, h http.Handler, method, path, body string, header ...string) reply {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return parseReply(t, w.Result())
}

// send sends v as JSON with the token.
func send(t testing.TB, h http.Handler, method, path, token string, v any) reply {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return call(t, h, method, path, string(body), "Content-Type", jsonCT, "Authorization", "Bearer "+token)
}

// parseReply reads resp as the envelope, and checks the headers every
// response has. It fails the test with Errorf, so a goroutine may call it:
// a reply that is not the envelope comes back with status notAnEnvelope.
func parseReply(t testing.TB, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	rep := reply{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	switch {
	case err != nil:
		t.Errorf("reading the response: %v", err)
		rep.env.Status = notAnEnvelope
		return rep
	case json.Unmarshal(raw, &rep.env) != nil:
		t.Errorf("response %d %q is not the JSON envelope", resp.StatusCode, raw)
		rep.env.Status = notAnEnvelope
		return rep
	case rep.hasData() && !bytes.HasPrefix(rep.env.Data, []byte("{")):
		t.Errorf("response %d %q is not the JSON envelope: its data is not an object", resp.StatusCode, raw)
		rep.env.Status = notAnEnvelope
		return rep
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q; want application/json; charset=utf-8", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store on every response, as any may carry a token", cc)
	}
	return rep
}

// notAnEnvelope is the status parseReply gives a reply that is not the
// envelope. No route sends it, so no check of a status passes by mistake.
const notAnEnvelope = -1000

// dataOf reads r's data as a T, the type of its route's data. It reads
// exactly: the test fails if the data does not decode as a T, has a member
// T does not name, or lacks one T names (unless tagged omitempty), so that
// a typed field never reads a missing member as its zero value. It fails
// with Errorf, so a goroutine may call it, and then returns what it read.
func dataOf[T any](t testing.TB, r reply) T {
	t.Helper()
	var v T
	if !r.hasData() {
		t.Errorf("reply HTTP %d, %s has no data; want a %T", r.code, strings.TrimSpace(r.raw), v)
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(r.env.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Errorf("the data of %s is not a %T: %v", strings.TrimSpace(r.raw), v, err)
		return v
	}
	var tree any
	json.Unmarshal(r.env.Data, &tree) // Cannot fail: it decoded above.
	if missing := missingMembers(reflect.TypeFor[T](), tree, "data"); len(missing) > 0 {
		t.Errorf("the data of %s lacks %s", strings.TrimSpace(r.raw), strings.Join(missing, ", "))
	}
	return v
}

// missingMembers lists, by path, the members typ names that v, JSON decoded
// as any, lacks: in v itself, and in the objects and lists in it.
func missingMembers(typ reflect.Type, v any, path string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if reflect.PointerTo(typ).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil // A value that reads itself, such as a time: no members.
	}
	var missing []string
	switch typ.Kind() {
	case reflect.Struct:
		obj, _ := v.(map[string]any)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			member, ok := obj[name]
			if !ok {
				if optional := slices.Contains(strings.Split(opts, ","), "omitempty"); !optional && obj != nil {
					missing = append(missing, path+"."+name)
				}
				continue
			}
			missing = append(missing, missingMembers(f.Type, member, path+"."+name)...)
		}
	case reflect.Slice, reflect.Array:
		list, _ := v.([]any)
		for i, item := range list {
			missing = append(missing, missingMembers(typ.Elem(), item, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		obj, _ := v.(map[string]any)
		for k, item := range obj {
			missing = append(missing, missingMembers(typ.Elem(), item, path+"."+k)...)
		}
	}
	return missing
}

// The data of each route, as a client reads it: the members wxlogin sends,
// and times as the RFC 3339 text they are sent as.
type (
	// loginData is POST /login's.
	loginData struct {
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
		OpenID    string `json:"openid"`
		UserID    int64  `json:"user_id"`
		NewUser   bool   `json:"new_user"`
	}

	// userData is GET /user's, and that of the routes that change the
	// user: PATCH /user and POST /user/userinfo.
	userData struct {
		ID              int64     `json:"id"`
		AppID           string    `json:"appid"`
		OpenID          string    `json:"openid"`
		UnionID         string    `json:"unionid"`
		Nickname        string    `json:"nickname"`
		AvatarURL       string    `json:"avatar_url"`
		Gender          int       `json:"gender"`
		Language        string    `json:"language"`
		City            string    `json:"city"`
		Province        string    `json:"province"`
		Country         string    `json:"country"`
		PhoneNumber     string    `json:"phone_number"`
		PurePhoneNumber string    `json:"pure_phone_number"`
		CountryCode     string    `json:"country_code"`
		CreatedAt       string    `json:"created_at"`
		UpdatedAt       string    `json:"updated_at"`
		LastLoginAt     string    `json:"last_login_at"`
		PersonID        int64     `json:"person_id"`
		Apps            []userApp `json:"apps"`
	}

	// userApp is one record of the user's person, in GET /user's apps.
	userApp struct {
		AppID  string `json:"appid"`
		Name   string `json:"name"`
		UserID int64  `json:"user_id"`
	}

	// claimData is POST /claims/{name}'s: the claim made, or the one made
	// before.
	claimData struct {
		Name      string `json:"name"`
		AppID     string `json:"appid"`
		UserID    int64  `json:"user_id"`
		ClaimedAt string `json:"claimed_at"`
	}

	// claimsData is GET /claims'.
	claimsData struct {
		Claims []claimData `json:"claims"`
	}

	// sessionData is GET /session/check's.
	sessionData struct {
		Valid bool `json:"valid"`
	}

	// phoneData is POST /user/phone's.
	phoneData struct {
		PhoneNumber     string `json:"phone_number"`
		PurePhoneNumber string `json:"pure_phone_number"`
		CountryCode     string `json:"country_code"`
	}

	// weRunData is POST /user/werun's.
	weRunData struct {
		StepInfoList []stepData `json:"step_info_list"`
	}

	// stepData is one day of WeRun steps.
	stepData struct {
		Timestamp int64 `json:"timestamp"`
		Step      int64 `json:"step"`
	}

	// scopesData is GET /scopes'.
	scopesData struct {
		Privacy struct {
			EnforcedSince string            `json:"enforced_since"`
			Rule          string            `json:"rule"`
			Unscoped      []privacyItemData `json:"unscoped"`
			Source        string            `json:"source"`
		} `json:"privacy"`
		Scopes []scopeData `json:"scopes"`
		Source string      `json:"source"`
	}

	// privacyItemData is an item of the privacy guide in GET /scopes.
	privacyItemData struct {
		Privacy string   `json:"privacy"`
		Guards  []string `json:"guards"`
	}

	// scopeData is one scope of GET /scopes.
	scopeData struct {
		Scope   string   `json:"scope"`
		Guards  []string `json:"guards"`
		Purpose string   `json:"purpose"`
		Request string   `json:"request"`
		Note    string   `json:"note,omitempty"`
		Privacy string   `json:"privacy"`
	}

	// exchangesData is the fake's GET /mock/exchanges'.
	exchangesData struct {
		Exchanges []exchangeData `json:"exchanges"`
	}

	// exchangeData is one call wxlogin made to the fake's server API, as
	// the teaching page draws it.
	exchangeData struct {
		Seq      int64             `json:"seq"`
		Method   string            `json:"method"`
		Path     string            `json:"path"`
		Query    map[string]string `json:"query,omitempty"`
		Request  json.RawMessage   `json:"request,omitempty"`
		Status   int               `json:"status"`
		Response json.RawMessage   `json:"response,omitempty"`
	}

	// faultsData is the fake's /mock/faults': the settings, and what was
	// injected under them.
	faultsData struct {
		Rate     float64        `json:"rate"`
		Kinds    []string       `json:"kinds"`
		Calls    int            `json:"calls"`
		Injected map[string]int `json:"injected"`
	}
)

// client is the HTTP client of end-to-end tests; its timeout keeps a broken
// server from hanging the test run.
var client = &http.Client{Timeout: 30 * time.Second}

// listeningURL finds the URL a server logs, as text or as JSON.
var listeningURL = regexp.MustCompile(`msg="wxlogin listening" url=(http://\S+)|"msg":"wxlogin listening","url":"(http://[^"]+)"`)

// waitForURL polls a server's log for its URL until it appears, the server
// exits, or a deadline passes.
func waitForURL(t *testing.T, logs *testkit.SyncBuffer, exited <-chan error) string {
	t.Helper()
	// Generous: a start-up with a million users on disk must be given time
	// to be measured; a server that fails exits, which ends the wait at once.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := listeningURL.FindStringSubmatch(logs.String()); m != nil {
			return m[1] + m[2]
		}
		select {
		case err := <-exited:
			t.Fatalf("server exited before listening: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("server did not log its URL in time:\n%s", logs.String())
	return ""
}

// waitHealthy polls GET /healthz until it answers 200.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s/healthz never answered 200", base)
}

// server is wxlogin started through run, in this process.
type server struct {
	url  string
	logs *testkit.SyncBuffer
	stop func() error // ends run as a signal would, and returns its error
}

// startServer runs wxlogin on a free loopback port with the given
// environment and extra flags; it is stopped when the test ends.
func startServer(t *testing.T, env map[string]string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testkit.SyncBuffer{}
	exited := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	go func() {
		exited <- run(ctx, append([]string{"wxlogin", "-addr", "127.0.0.1:0"}, args...), getenv, io.Discard, logs)
	}()
	s := &server{logs: logs}
	s.url = waitForURL(t, logs, exited)
	waitHealthy(t, s.url)
	s.stop = sync.OnceValue(func() error {
		cancel()
		return <-exited
	})
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return s
}

// post sends a request to a live server and parses the envelope.
func post(t *testing.T, method, url, contentType, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return parseReply(t, resp)
}

// mockCode gets a wx.login code for user from a server in mock mode.
func mockCode(t *testing.T, base, user string) string {
	t.Helper()
	resp, err := client.Post(base+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"`+user+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Code string }
	if err := jsonDecode(resp.Body, &got); err != nil || got.Code == "" {
		t.Fatalf("wx.login: %v %+v", err, got)
	}
	return got.Code
}

// jsonDecode decodes the JSON value r starts with into v.
func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// child is wxlogin running as a separate process.
type child struct {
	cmd    *exec.Cmd
	url    string
	logs   *testkit.SyncBuffer
	exited chan error
}

// needTool is the path of a program a test needs from the Debian package
// pkg (promtool, nginx, caddy, systemd-analyze). .ci/run installs them and
// sets WXLOGIN_REQUIRE_TOOLS, so that in CI a missing one fails the test;
// elsewhere the test is skipped, saying so.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missingTool(t, name, pkg)
	}
	return path
}

// missingTool ends t for what is not installed, from the Debian package
// pkg: a failure where WXLOGIN_REQUIRE_TOOLS is set, a skip elsewhere.
func missingTool(t *testing.T, what, pkg string) {
	t.Helper()
	if os.Getenv("WXLOGIN_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s is not installed (Debian's %s package), and WXLOGIN_REQUIRE_TOOLS is set", what, pkg)
	}
	testkit.SkipMissingTool(t, fmt.Sprintf("%s is not installed (apt-get install %s)", what, pkg))
}

// childBinary is the program a child runs: this test binary, which is
// wxlogin when WXLOGIN_TEST_CHILD is set (TestMain), or the built wxlogin
// that WXLOGIN_BINARY names (scripts/crash and scripts/soak set it).
func childBinary() string {
	if path := os.Getenv("WXLOGIN_BINARY"); path != "" {
		return path
	}
	return os.Args[0]
}

// startChild runs wxlogin in mock mode on dataDir.
func startChild(t *testing.T, dataDir string) *child {
	t.Helper()
	// The children take logins by the hundred from one address, to test
	// durability, not the login limit (TestLoginRateLimit).
	return startProcess(t, nil, "-addr", "127.0.0.1:0", "-data", dataDir, "-login-rate", "0")
}

// startProcess runs wxlogin as a child process with args and env, and
// nothing inherited (no AppSecret from the developer's shell), and waits
// until it answers /healthz. It is killed when the test ends.
func startProcess(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	return startLimitedProcess(t, "", env, args...)
}

// startLimitedProcess is startProcess under the limits of bash's ulimit
// (such as "-n 256", open files, or "-f 16", KiB a file may hold), or none.
func startLimitedProcess(t *testing.T, limits string, env []string, args ...string) *child {
	t.Helper()
	c := &child{logs: &testkit.SyncBuffer{}, exited: make(chan error, 1)}
	c.cmd = exec.Command(childBinary(), args...)
	if limits != "" {
		c.cmd = exec.Command("bash", append([]string{"-c", "ulimit " + limits + ` && exec "$0" "$@"`, childBinary()}, args...)...)
	}
	c.cmd.Env = append([]string{"WXLOGIN_TEST_CHILD=1"}, env...)
	c.cmd.Stderr = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	c.url = waitForURL(t, c.logs, c.exited)
	waitHealthy(t, c.url)
	return c
}

// terminate sends SIGTERM, as a service manager would, and returns how
// wxlogin exited.
func (c *child) terminate(t *testing.T) error {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("wxlogin did not exit after SIGTERM")
		return nil
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if err := c.terminate(t); err != nil {
		t.Fatalf("wxlogin exited with %v after SIGTERM; want a clean exit\n%s", err, c.logs.String())
	}
}

// discardLogger logs nothing.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// textLogger logs to w as wxlogin does.
func textLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// testMeta is what the stores of tests record of their configuration:
// mock mode, as the servers tests start are in, with its one app.
var testMeta = account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID}}

// openTestStore opens a user store in dir, closing it when the test ends.
func openTestStore(t testing.TB, dir string, now func() time.Time) *users.Store {
	t.Helper()
	s, err := users.Open(dir, testMeta, now, discardLogger(), nil)
	if err != nil {
		t.Fatalf("users.Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seedUsers adds users 0 to n-1 of the benchmarks (benchOpenID) to s
// through its own logins, a thousand at a time: concurrent logins share an
// fsync (group commit), so that a test can start from a store of any size
// in seconds rather than hours. Their ids follow the order the logins
// arrive in.
func seedUsers(tb testing.TB, s *users.Store, n int) {
	tb.Helper()
	var next atomic.Int64
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(n, 1000) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if _, _, err := s.Login("wxbench", benchOpenID(i), fakewechat.UnionID(strconv.Itoa(i))); err != nil {
					select {
					case failed <- err:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-failed:
		tb.Fatalf("seeding %d users: %v", n, err)
	default:
	}
}
