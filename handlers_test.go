package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testApp is wxlogin's handler wired to a fake WeChat, with a fake clock.
type testApp struct {
	handler http.Handler
	wx      *wechatClient
	users   *userStore
	tokens  *tokenStore
	clock   *fakeClock
	logs    *syncBuffer
}

// newTestApp serves wxlogin for app "wxapp" with WeChat's API at
// upstream's apiPath.
func newTestApp(t *testing.T, upstream http.Handler, apiPath string) *testApp {
	t.Helper()
	srv := httptest.NewServer(upstream)
	t.Cleanup(srv.Close)
	clock := newFakeClock()
	wx := newWechatClient(srv.URL+apiPath, "wxapp", testSecret, time.Second, 3*time.Second)
	wx.backoff = []time.Duration{time.Millisecond, time.Millisecond}
	a := &testApp{
		wx:     wx,
		users:  openTestStore(t, t.TempDir(), clock.Now),
		tokens: newTokenStore(2*time.Hour, 720*time.Hour, clock.Now),
		clock:  clock,
		logs:   &syncBuffer{},
	}
	a.handler = newServer(slog.New(slog.NewTextHandler(a.logs, nil)), a.wx, a.users, a.tokens, nil)
	return a
}

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
func call(t *testing.T, h http.Handler, method, path, body string, header ...string) reply {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return parseReply(t, w.Result())
}

func parseReply(t *testing.T, resp *http.Response) reply {
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

const jsonCT = "application/json"

func TestLoginResponses(t *testing.T) {
	const ok = `{"session_key":"tiihtNczf5v6AKRyjwEUhQ==","openid":"o-alice","unionid":"u-alice"}`
	tests := []struct {
		name        string
		wechat      string // what WeChat answers
		path, body  string
		contentType string
		wantHTTP    int
		wantStatus  int
		wantMsg     string // exact, or a prefix when it ends in "："
		wantErrcode int
		wantCalls   int32
	}{
		{"json", ok, "/login", `{"code":"c1"}`, jsonCT, 200, 0, "ok", 0, 1},
		{"json with charset", ok, "/login", `{"code":"c1"}`, "application/json; charset=utf-8", 200, 0, "ok", 0, 1},
		{"form", ok, "/login", "code=c1", "application/x-www-form-urlencoded", 200, 0, "ok", 0, 1},
		{"trailing slash", ok, "/login/", `{"code":"c1"}`, jsonCT, 200, 0, "ok", 0, 1},
		{"no content type", ok, "/login", `{"code":"c1"}`, "", 200, 0, "ok", 0, 1},
		{"configured appid", ok, "/login", `{"code":"c1","appid":"wxapp"}`, jsonCT, 200, 0, "ok", 0, 1},
		{"extra fields ignored", ok, "/login", `{"code":"c1","userInfo":{"nickName":"x"}}`, jsonCT, 200, 0, "ok", 0, 1},

		{"no code", ok, "/login", `{}`, jsonCT, 400, 1, "缺少参数", 0, 0},
		{"empty code", ok, "/login", `{"code":""}`, jsonCT, 400, 1, "缺少参数", 0, 0},
		{"null body", ok, "/login", `null`, jsonCT, 400, 1, "缺少参数", 0, 0},
		{"empty body", ok, "/login", ``, jsonCT, 400, 1, "缺少参数", 0, 0},
		{"form without code", ok, "/login", "appid=wxapp", "application/x-www-form-urlencoded", 400, 1, "缺少参数", 0, 0},
		{"broken json", ok, "/login", `{"code":`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
		{"code not a string", ok, "/login", `{"code":123}`, jsonCT, 400, 1, "参数格式错误：code 应为字符串", 0, 0},
		{"array body", ok, "/login", `["c1"]`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
		{"code with spaces", ok, "/login", `{"code":"a b"}`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
		{"code too long", ok, "/login", `{"code":"` + strings.Repeat("a", 129) + `"}`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
		{"unknown appid", ok, "/login", `{"code":"c1","appid":"wxsomeoneelse"}`, jsonCT, 400, 1, "未知的 appid", 0, 0},
		{"unsupported content type", ok, "/login", `<code>c1</code>`, "text/xml", 400, 1, "参数格式错误：", 0, 0},
		{"unparseable content type", ok, "/login", `{"code":"c1"}`, "application/", 400, 1, "参数格式错误：", 0, 0},

		{"invalid code", `{"errcode":40029,"errmsg":"invalid code, rid: 1"}`, "/login", `{"code":"c1"}`, jsonCT, 401, 2, "无效的code", 40029, 1},
		{"used code", `{"errcode":40163,"errmsg":"code been used, rid: 1"}`, "/login", `{"code":"c1"}`, jsonCT, 401, 2, "无效的code", 40163, 1},
		{"high-risk user", `{"errcode":40226,"errmsg":"code blocked"}`, "/login", `{"code":"c1"}`, jsonCT, 401, 2, "无效的code", 40226, 1},
		{"system busy", `{"errcode":-1,"errmsg":"system error, rid: 1"}`, "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, -1, 3},
		{"rate limited", `{"errcode":45011,"errmsg":"api minute-quota reach limit"}`, "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 45011, 1},
		{"wrong secret", `{"errcode":40125,"errmsg":"invalid appsecret"}`, "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 40125, 1},
		{"server error", "HTTP 500", "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 0, 1},
		{"html", "<html>hello</html>", "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 0, 1},
		{"no openid", `{"session_key":"k"}`, "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			a := newTestApp(t, replies(&calls, tt.wechat), "")
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			got := call(t, a.handler, http.MethodPost, tt.path, tt.body, header...)

			if got.code != tt.wantHTTP || got.env.Status != tt.wantStatus || got.env.Errcode != tt.wantErrcode {
				t.Errorf("POST %s %s = HTTP %d, %s; want HTTP %d, status %d, errcode %d",
					tt.path, tt.body, got.code, got.raw, tt.wantHTTP, tt.wantStatus, tt.wantErrcode)
			}
			if prefix, ok := strings.CutSuffix(tt.wantMsg, "："); ok {
				if !strings.HasPrefix(got.env.Msg, prefix) {
					t.Errorf("msg = %q; want it to start with %q", got.env.Msg, prefix)
				}
			} else if got.env.Msg != tt.wantMsg {
				t.Errorf("msg = %q; want %q", got.env.Msg, tt.wantMsg)
			}
			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("WeChat was called %d times; want %d", n, tt.wantCalls)
			}
			if strings.Contains(got.raw, "rid:") || strings.Contains(got.raw, "tiihtNczf5v6AKRyjwEUhQ==") || strings.Contains(got.raw, "session_key") {
				t.Errorf("response %s passes on WeChat's errmsg or the session_key", got.raw)
			}
			if got.env.Status != 0 {
				if got.env.Data != nil {
					t.Errorf("error response %s carries data", got.raw)
				}
				return
			}
			d := got.env.Data
			if token, _ := d["token"].(string); len(token) != 43 {
				t.Errorf("token %v: want 43 base64url characters", d["token"])
			}
			if d["expires_in"] != 7200.0 || d["openid"] != "o-alice" || d["user_id"] != 1.0 || d["new_user"] != true {
				t.Errorf("data = %v; want expires_in 7200, openid o-alice, user_id 1, new_user true", d)
			}
			if got.header.Get("Cache-Control") != "no-store" {
				t.Error("a response carrying a token may be cached: want Cache-Control: no-store")
			}
		})
	}
}

func TestLoginWithHangingWeChatAnswersInTime(t *testing.T) {
	a := newTestApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}), "")
	a.wx.http.Timeout = 100 * time.Millisecond
	a.wx.loginTimeout = 300 * time.Millisecond
	start := time.Now()
	got := call(t, a.handler, http.MethodPost, "/login", `{"code":"c1"}`, "Content-Type", jsonCT)
	if elapsed := time.Since(start); elapsed > a.wx.loginTimeout+2*time.Second {
		t.Errorf("login took %v; the bound is %v", elapsed, a.wx.loginTimeout)
	}
	if got.code != http.StatusGatewayTimeout || got.env.Status != statusWechatDown {
		t.Errorf("login = HTTP %d, %s; want 504 with status 3", got.code, got.raw)
	}
}

// loggedIn returns a test app on the fake WeChat and a token of alice's.
func loggedIn(t *testing.T) (*testApp, *fakeWechat, string) {
	t.Helper()
	fake := newFakeWechat(map[string]string{"wxapp": testSecret}, time.Now)
	a := newTestApp(t, fake.routes(), "/mock/api")
	return a, fake, login(t, a.handler, fake.issueCode("wxapp", "alice"))
}

// login logs in with code and returns the token.
func login(t *testing.T, h http.Handler, code string) string {
	t.Helper()
	got := call(t, h, http.MethodPost, "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
	token, _ := got.env.Data["token"].(string)
	if got.env.Status != 0 || token == "" {
		t.Fatalf("login = %s; want a token", got.raw)
	}
	return token
}

func TestAuthenticatedRoutes(t *testing.T) {
	routes := []struct{ method, path string }{{"GET", "/user"}, {"GET", "/user/"}, {"POST", "/logout"}}
	tests := []struct {
		name     string
		header   func(token string) []string
		prepare  func(a *testApp, token string)
		wantHTTP int
	}{
		{"bearer", func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }, nil, 200},
		{"bearer, lower case", func(tok string) []string { return []string{"Authorization", "bearer " + tok} }, nil, 200},
		{"token header", func(tok string) []string { return []string{"token", tok} }, nil, 200},
		{"no token", func(string) []string { return nil }, nil, 401},
		{"empty bearer", func(string) []string { return []string{"Authorization", "Bearer "} }, nil, 401},
		{"other scheme", func(tok string) []string { return []string{"Authorization", "Basic " + tok} }, nil, 401},
		{"unknown token", func(string) []string { return []string{"Authorization", "Bearer " + strings.Repeat("A", 43)} }, nil, 401},
		{"idle too long", func(tok string) []string { return []string{"token", tok} },
			func(a *testApp, _ string) { a.clock.Advance(2 * time.Hour) }, 401},
		{"revoked", func(tok string) []string { return []string{"token", tok} },
			func(a *testApp, tok string) { call(t, a.handler, "POST", "/logout", "", "token", tok) }, 401},
	}
	for _, route := range routes {
		for _, tt := range tests {
			t.Run(route.method+" "+route.path+" "+tt.name, func(t *testing.T) {
				a, _, token := loggedIn(t)
				if tt.prepare != nil {
					tt.prepare(a, token)
				}
				got := call(t, a.handler, route.method, route.path, "", tt.header(token)...)
				if got.code != tt.wantHTTP {
					t.Fatalf("%s %s = HTTP %d, %s; want %d", route.method, route.path, got.code, got.raw, tt.wantHTTP)
				}
				if tt.wantHTTP == 200 {
					if got.env.Status != 0 || got.env.Msg != "ok" {
						t.Errorf("envelope %s; want status 0, msg ok", got.raw)
					}
					return
				}
				if got.env.Status != statusNotLoggedIn || got.env.Msg != msgNotLoggedIn || got.env.Data != nil {
					t.Errorf("envelope %s; want status 4 with no data", got.raw)
				}
				if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q; want a Bearer challenge", got.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
}

func TestUserShowsTheWholeRecord(t *testing.T) {
	a, _, token := loggedIn(t)
	got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+token)
	want := []string{"id", "appid", "openid", "unionid", "nickname", "avatar_url", "gender", "language", "city",
		"province", "country", "created_at", "updated_at", "last_login_at"}
	var keys []string
	for k := range got.env.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("GET /user data keys = %v; want %v", keys, want)
	}
	d := got.env.Data
	if d["id"] != 1.0 || d["appid"] != "wxapp" || d["openid"] != fakeOpenID("wxapp", "alice") || d["unionid"] != fakeUnionID("alice") {
		t.Errorf("GET /user = %v; want alice's ids", d)
	}
	for _, k := range []string{"created_at", "updated_at", "last_login_at"} {
		if _, err := time.Parse(time.RFC3339, fmt.Sprint(d[k])); err != nil {
			t.Errorf("%s = %v; want RFC 3339", k, d[k])
		}
	}
}

func TestLogoutRevokesOnlyThatToken(t *testing.T) {
	a, fake, phone := loggedIn(t)
	laptop := login(t, a.handler, fake.issueCode("wxapp", "alice"))
	if got := call(t, a.handler, "POST", "/logout", "", "Authorization", "Bearer "+phone); got.code != 200 || got.raw != `{"status":0,"msg":"ok"}`+"\n" {
		t.Fatalf("logout = HTTP %d, %s; want 200 {\"status\":0,\"msg\":\"ok\"}", got.code, got.raw)
	}
	if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+phone); got.env.Status != statusNotLoggedIn {
		t.Errorf("logged-out token: %s; want status 4", got.raw)
	}
	if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+laptop); got.env.Status != 0 {
		t.Errorf("the user's other token: %s; want it still valid", got.raw)
	}
}

func TestSecondLoginOfAUser(t *testing.T) {
	a, fake, _ := loggedIn(t)
	got := call(t, a.handler, "POST", "/login", `{"code":"`+fake.issueCode("wxapp", "alice")+`"}`, "Content-Type", jsonCT)
	if got.env.Data["new_user"] != false || got.env.Data["user_id"] != 1.0 {
		t.Errorf("second login = %s; want user 1, new_user false", got.raw)
	}
	code := fake.issueCode("wxapp", "alice")
	call(t, a.handler, "POST", "/login", "code="+code, "Content-Type", "application/x-www-form-urlencoded")
	again := call(t, a.handler, "POST", "/login", "code="+code, "Content-Type", "application/x-www-form-urlencoded")
	if again.code != 401 || again.env.Status != statusInvalidCode || again.env.Errcode != errcodeCodeUsed {
		t.Errorf("a code sent again after its login finished = HTTP %d, %s; want 401, status 2, errcode 40163", again.code, again.raw)
	}
}

func TestHealthz(t *testing.T) {
	a, _, _ := loggedIn(t)
	got := call(t, a.handler, "GET", "/healthz", "")
	if got.code != 200 || got.raw != `{"status":0,"msg":"ok"}`+"\n" {
		t.Errorf("GET /healthz = %d %s", got.code, got.raw)
	}
}

func TestRoutingErrorsUseTheEnvelope(t *testing.T) {
	a, _, _ := loggedIn(t)
	tests := []struct {
		method, path, body, contentType string
		wantHTTP                        int
		wantMsg, wantAllow              string
	}{
		{"GET", "/nope", "", "", 404, msgNotFound, ""},
		{"GET", "/login/extra", "", "", 404, msgNotFound, ""},
		{"POST", "/mock/wx.login", `{"user":"x"}`, jsonCT, 404, msgNotFound, ""}, // real mode: no fake
		{"GET", "/login", "", "", 405, msgMethodNotAllowed, "POST"},
		{"DELETE", "/user", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"POST", "/healthz", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"GET", "/logout", "", "", 405, msgMethodNotAllowed, "POST"},
		{"POST", "/login", `{"code":"` + strings.Repeat("x", maxBodyBytes) + `"}`, jsonCT, 413, msgTooLarge, ""},
		{"POST", "/login", "code=" + strings.Repeat("x", maxBodyBytes), "application/x-www-form-urlencoded", 413, msgTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %d", tt.method, tt.path, tt.wantHTTP), func(t *testing.T) {
			got := call(t, a.handler, tt.method, tt.path, tt.body, "Content-Type", tt.contentType)
			if got.code != tt.wantHTTP || got.env.Status != statusBadRequest || got.env.Msg != tt.wantMsg {
				t.Errorf("%s %s = HTTP %d, %s; want %d with status 1, msg %q", tt.method, tt.path, got.code, got.raw, tt.wantHTTP, tt.wantMsg)
			}
			if allow := got.header.Get("Allow"); allow != tt.wantAllow {
				t.Errorf("Allow = %q; want %q", allow, tt.wantAllow)
			}
		})
	}
}

func TestPanicBecomesInternalError(t *testing.T) {
	logs := &syncBuffer{}
	h := withAccessLog(slog.New(slog.NewTextHandler(logs, nil)), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}))
	got := call(t, h, "GET", "/x", "")
	if got.code != 500 || got.env.Status != statusInternal || got.env.Msg != msgInternal {
		t.Errorf("a panicking handler answered HTTP %d, %s; want 500 with status -1", got.code, got.raw)
	}
	if strings.Contains(got.raw, "goroutine") || strings.Contains(got.raw, "boom") {
		t.Errorf("response %s exposes the panic", got.raw)
	}
	if !strings.Contains(logs.String(), "panic: boom") {
		t.Errorf("log %q does not record the panic", logs.String())
	}
}

func TestConcurrentFirstLoginsOverHTTPCreateOneUser(t *testing.T) {
	fake := newFakeWechat(map[string]string{"wxapp": testSecret}, time.Now)
	a := newTestApp(t, fake.routes(), "/mock/api")
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)

	const n = 100
	codes := make([]string, n)
	for i := range codes {
		codes[i] = fake.issueCode("wxapp", "carol") // one new user, logging in from many taps at once
	}
	var wg sync.WaitGroup
	var created atomic.Int32
	ids := make(chan any, n)
	for _, code := range codes {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/login", jsonCT, strings.NewReader(`{"code":"`+code+`"}`))
			if err != nil {
				t.Error(err)
				return
			}
			got := parseReply(t, resp)
			if got.env.Status != 0 {
				t.Errorf("login = %s", got.raw)
			}
			if got.env.Data["new_user"] == true {
				created.Add(1)
			}
			ids <- got.env.Data["user_id"]
		})
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if id != 1.0 {
			t.Errorf("a login got user_id %v; want 1", id)
		}
	}
	if c := created.Load(); c != 1 {
		t.Errorf("%d logins answered new_user true; want exactly 1", c)
	}
	if c := a.users.count(); c != 1 {
		t.Errorf("the store holds %d users; want 1", c)
	}
}

// FuzzDecodeLoginRequest checks that no login body, of any content type,
// panics the decoder, and that what it accepts is a usable code.
func FuzzDecodeLoginRequest(f *testing.F) {
	f.Add("application/json", []byte(`{"code":"0c3Xw1000LqPjP1xYx000QW2Cm2Xw10I"}`))
	f.Add("application/x-www-form-urlencoded", []byte("code=abc&appid=wx1"))
	f.Add("", []byte(`{"code":"a","code":"b"}`))
	f.Add("application/json; charset=gbk", []byte(`{"code":"\u00e9"}`))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\n"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", contentType)
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, maxBodyBytes)
		req, err := decodeLoginRequest(r)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("decodeLoginRequest returned %T; want *apiError", err)
			}
			return
		}
		if req.Code == "" || len(req.Code) > maxCodeBytes || !isPrintableASCII(req.Code) || !isPrintableASCII(req.AppID) {
			t.Fatalf("decodeLoginRequest accepted %+v", req)
		}
	})
}

// FuzzTokenFromRequest checks that no header values panic token extraction.
func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Bearer abc", "")
	f.Add("", "abc")
	f.Add("bearer", " ")
	f.Fuzz(func(t *testing.T, authorization, token string) {
		h := http.Header{}
		h.Set("Authorization", authorization)
		h.Set("token", token)
		got := tokenFromRequest(h)
		if got != strings.TrimSpace(got) {
			t.Fatalf("tokenFromRequest = %q; want no surrounding space", got)
		}
	})
}
