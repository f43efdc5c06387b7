package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

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

const testSecret = "s3cr3t-app-secret-0123456789abcd"

const jsonCT = "application/json"

// testApp is wxlogin's handler as newServer builds it for a test: its
// stores on a fake clock, and WeChat in process, the fake WeChat unless
// appOptions.wechat stands in for it.
type testApp struct {
	handler http.Handler
	apps    appSet
	wx      *wechatClient     // the first app's client of WeChat
	fake    *fakeWechat       // nil when appOptions.wechat is WeChat
	calls   *countingUpstream // every call wxlogin made to WeChat, by path
	users   *userStore
	tokens  *tokenStore
	clock   *fakeClock
	logs    *syncBuffer
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
	apps   []appSpec // the mini programs served; none is wxapp alone
	// mock is mock mode: the fake is mounted at /mock/ too, with the
	// teaching page.
	mock bool
	// loginBurst, when set, limits logins per client as -login-rate and
	// -login-burst do, on the app's clock, with proxies trusted.
	loginRate, loginBurst int
	proxies               trustedProxies
	quiet                 bool // discard the logs: a fuzz target's would fill memory
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
	clock := newFakeClock()
	a := &testApp{
		apps:   appSet{},
		users:  openTestStore(t, t.TempDir(), clock.Now),
		tokens: newTokenStore(2*time.Hour, 720*time.Hour, clock.Now),
		clock:  clock,
		logs:   &syncBuffer{},
	}
	upstream, apiPath := opts.wechat, ""
	if upstream == nil {
		fakeApps := map[string]fakeApp{}
		for _, s := range specs {
			fakeApps[s.id] = fakeApp{Secret: s.secret, Unbound: s.unbound}
		}
		a.fake = newFakeWechat(fakeApps, time.Now)
		upstream, apiPath = a.fake.routes(), "/mock/api"
	}
	a.calls = &countingUpstream{next: upstream}
	srv := httptest.NewServer(a.calls)
	t.Cleanup(srv.Close)
	for _, s := range specs {
		wx := newWechatClient(srv.URL+apiPath, s.id, s.secret, time.Second, 3*time.Second)
		wx.backoff = []time.Duration{time.Millisecond, time.Millisecond}
		a.apps[s.id] = &miniApp{ID: s.id, Name: s.name, wx: wx}
		if a.wx == nil {
			a.wx = wx
		}
	}
	var limit *loginLimiter
	if opts.loginBurst > 0 {
		limit = newLoginLimiter(opts.loginRate, opts.loginBurst, clock.Now)
	}
	var mounted *fakeWechat
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
	a.handler = newServer(log, a.apps, a.users, a.tokens, limit, opts.proxies, mounted)
	return a
}

// login logs user in to appID with a code from the fake, and returns the
// token. The body names the app only when the server has several, as a
// mini program of a server with one app need not.
func (a *testApp) login(t testing.TB, appID, user string) string {
	t.Helper()
	body := `{"code":"` + a.fake.issueCode(appID, user) + `"}`
	if len(a.apps) > 1 {
		body = `{"appid":"` + appID + `",` + body[1:]
	}
	got := call(t, a.handler, http.MethodPost, "/login", body, "Content-Type", jsonCT)
	token, _ := got.env.Data["token"].(string)
	if got.env.Status != 0 || token == "" {
		t.Fatalf("login of %s to %s = %s; want a token", user, appID, got.raw)
	}
	return token
}

// loggedIn returns a test app on the fake WeChat and a token of alice's.
func loggedIn(t testing.TB) (*testApp, string) {
	t.Helper()
	a := newTestApp(t, appOptions{})
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

const (
	stableTokenPath = "/mock/api/cgi-bin/stable_token"
	phonePath       = "/mock/api/wxa/business/getuserphonenumber"
)

// reply is a response as a client sees it.
type reply struct {
	code   int
	header http.Header
	raw    string
	env    struct {
		Status  int            `json:"status"`
		Msg     string         `json:"msg"`
		Errcode int            `json:"errcode"`
		Data    map[string]any `json:"data"`
	}
}

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

func parseReply(t testing.TB, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	rep := reply{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &rep.env); err != nil {
		t.Fatalf("response %d %q is not the JSON envelope: %v", resp.StatusCode, raw, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q; want application/json; charset=utf-8", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store on every response, as any may carry a token", cc)
	}
	return rep
}

// wxCall calls one of the fake's client APIs, as a mini program would call
// wx.getUserInfo and friends, and returns its result.
func wxCall(t testing.TB, fake *fakeWechat, api, body string) map[string]any {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), "POST", "/mock/"+api, strings.NewReader(body))
	w := httptest.NewRecorder()
	fake.routes().ServeHTTP(w, r)
	var detail map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &detail); err != nil || w.Code != 200 {
		t.Fatalf("%s(%s) = HTTP %d, %s", api, body, w.Code, w.Body)
	}
	return detail
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

// client is the HTTP client of end-to-end tests; its timeout keeps a broken
// server from hanging the test run.
var client = &http.Client{Timeout: 30 * time.Second}

var listeningURL = regexp.MustCompile(`msg="wxlogin listening" url=(http://\S+)`)

// waitForURL polls a server's log for its URL until it appears, the server
// exits, or a deadline passes.
func waitForURL(t *testing.T, logs *syncBuffer, exited <-chan error) string {
	t.Helper()
	// Generous: a start-up with a million users on disk must be given time
	// to be measured; a server that fails exits, which ends the wait at once.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := listeningURL.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
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
	logs *syncBuffer
	stop func() error // ends run as a signal would, and returns its error
}

// startServer runs wxlogin on a free loopback port with the given
// environment and extra flags; it is stopped when the test ends.
func startServer(t *testing.T, env map[string]string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
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

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// child is wxlogin running as a separate process, in mock mode.
type child struct {
	cmd    *exec.Cmd
	url    string
	logs   *syncBuffer
	exited chan error
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
	c := &child{logs: &syncBuffer{}, exited: make(chan error, 1)}
	c.cmd = exec.Command(childBinary(), args...)
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

// stop sends SIGTERM, as a service manager would, and waits for a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("wxlogin exited with %v after SIGTERM; want a clean exit\n%s", err, c.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wxlogin did not exit after SIGTERM")
	}
}

// envSetting reads a test setting from the environment with parse (such
// as strconv.Atoi or time.ParseDuration), or gives def when it is not set.
func envSetting[T any](t *testing.T, name string, def T, parse func(string) (T, error)) T {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	value, err := parse(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return value
}

// syncBuffer is a bytes.Buffer safe for a logger writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// textLogger logs to w as wxlogin does.
func textLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

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

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
