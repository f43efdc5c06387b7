package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/accesslog"
	"wxlogin/internal/config"
	"wxlogin/internal/events"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/limits"
	"wxlogin/internal/request"
	"wxlogin/internal/testkit"
	"wxlogin/internal/tokenfile"
)

// The tests of this file run wxlogin whole, through run as main does or as
// a process of its own: a newcomer's first login, restarts and the token
// file, secrets, the fake on its own, the profiler, a hanging WeChat, the
// configuration, two apps, and hostile or slow clients.

func TestNewcomerFlowInMockMode(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir())
	if !strings.Contains(s.logs.String(), "MOCK MODE") {
		t.Errorf("start-up log does not say loudly that it runs on the fake WeChat:\n%s", s.logs.String())
	}
	code := mockCode(t, s.url, "alice")
	got := post(t, "POST", s.url+"/login", "application/x-www-form-urlencoded", "code="+code)
	d := dataOf[loginData](t, got)
	token := d.Token
	if got.env.Status != 0 || token == "" || !d.NewUser {
		t.Fatalf("login = %s; want a token for a new user", got.raw)
	}
	user := post(t, "GET", s.url+"/user", "", "", "Authorization", "Bearer "+token)
	if user.env.Status != 0 || dataOf[userData](t, user).OpenID != fakewechat.OpenID(config.MockAppID, "alice") {
		t.Errorf("GET /user = %s; want alice", user.raw)
	}
	if out := post(t, "POST", s.url+"/logout", "", "", "Authorization", "Bearer "+token); out.env.Status != 0 {
		t.Errorf("logout = %s", out.raw)
	}
	if after := post(t, "GET", s.url+"/user", "", "", "Authorization", "Bearer "+token); after.code != 401 || after.env.Status != 4 {
		t.Errorf("GET /user after logout = %d %s; want 401 status 4", after.code, after.raw)
	}
	if used := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+code+`"}`); used.env.Status != 2 || used.env.Errcode != 40163 {
		t.Errorf("login with a used code = %s; want status 2, errcode 40163", used.raw)
	}
}

// The README's authorization half in curl, against the binary in mock
// mode: the privacy agreement before the buttons, the phone code redeemed,
// a risky nickname refused.
func TestAuthorizationHalfInMockMode(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir())
	token := dataOf[loginData](t, post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)).Token
	tap := func(api string) map[string]any {
		t.Helper()
		got := post(t, "POST", s.url+"/mock/"+api, jsonCT, `{"user":"alice"}`)
		var detail map[string]any
		if err := json.Unmarshal([]byte(got.raw), &detail); err != nil {
			t.Fatalf("%s = %s", api, got.raw)
		}
		return detail
	}
	if d := tap("wx.getPhoneNumber"); d["errMsg"] != "getPhoneNumber:fail privacy permission is not authorized" || d["errno"] != 104.0 {
		t.Errorf("getPhoneNumber before the agreement = %v; want errno 104", d)
	}
	if d := tap("wx.agreePrivacyAuthorization"); d["errMsg"] != "agreePrivacyAuthorization:ok" {
		t.Errorf("agreePrivacyAuthorization = %v", d)
	}
	code, _ := tap("wx.getPhoneNumber")["code"].(string)
	phone := post(t, "POST", s.url+"/user/phone", jsonCT, `{"code":"`+code+`"}`, "Authorization", "Bearer "+token)
	if phone.env.Status != 0 {
		t.Errorf("POST /user/phone = %s", phone.raw)
	}
	risky := post(t, "PATCH", s.url+"/user", jsonCT, `{"nickname":"risky"}`, "Authorization", "Bearer "+token)
	if risky.code != http.StatusUnprocessableEntity || risky.env.Status != statusContentRisky {
		t.Errorf("PATCH /user with a risky nickname = %d %s; want 422, status 9", risky.code, risky.raw)
	}
}

func TestGracefulRestartKeepsTokens(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, nil, "-data", dir)
	token := dataOf[loginData](t, post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)).Token
	if err := s.stop(); err != nil {
		t.Fatalf("run = %v", err)
	}
	saved := filepath.Join(dir, tokenfile.Name)
	data, err := os.ReadFile(saved)
	if err != nil {
		t.Fatalf("graceful shutdown left no token file: %v", err)
	}
	testkit.AssertPrivate(t, saved)
	if bytes.Contains(data, []byte(token)) {
		t.Error("the token file holds the token itself")
	}

	// A start that fails (the address is taken) must not use up the saved tokens.
	busy := startServer(t, nil, "-data", t.TempDir())
	busyAddr := strings.TrimPrefix(busy.url, "http://")
	if err := run(t.Context(), []string{"wxlogin", "-addr", busyAddr, "-data", dir}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Fatal("run on a taken address succeeded")
	}

	s = startServer(t, nil, "-data", dir)
	if got := post(t, "GET", s.url+"/user", "", "", "token", token); got.env.Status != 0 {
		t.Errorf("GET /user after a graceful restart = %s; want the token still valid", got.raw)
	}
	if _, err := os.Stat(saved); !os.IsNotExist(err) {
		t.Errorf("token file still present after start-up (err %v)", err)
	}
}

// Tokens live in memory and, between a graceful stop and the next start,
// in the token file alone: removing it then logs everyone out, which is
// what an operator does after tokens have leaked.
func TestRemovingTheTokenFileLogsEveryoneOut(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, nil, "-data", dir)
	token := dataOf[loginData](t, post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)).Token
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, tokenfile.Name)); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, nil, "-data", dir)
	if got := post(t, "GET", s.url+"/user", "", "", "token", token); got.code != http.StatusUnauthorized || got.env.Status != statusNotLoggedIn {
		t.Errorf("GET /user with a token from before = %d %s; want 401, status 4", got.code, got.raw)
	}
	if got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`); dataOf[loginData](t, got).NewUser {
		t.Errorf("alice's login after = %s; want her, a returning user", got.raw)
	}
}

// A token file that cannot be read, an older wxlogin's, cut short in a
// session key, garbage or binary, does not stop the start: its logins are
// dropped, the file with them, and the log says so, naming the file but
// never quoting it. Users log in again, as the same users.
func TestStartDropsAnUnreadableTokenFileWithAWarning(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(saved, key string) string // the file, from what a stop saved and the session key in it
		says  string                         // what the warning says is wrong
	}{
		{"an older wxlogin's", func(string, string) string { return versionOneTokenFile }, "written by an older wxlogin"},
		{"cut short in a session key", func(saved, key string) string {
			return saved[:strings.Index(saved, key)+len(key)/2]
		}, ":2: cut short"},
		{"garbage", func(_, key string) string { return "not a token file, but " + key + "\n" }, ":1: not a wxlogin token file: not JSON"},
		{"binary", func(_, key string) string { return "\x00\xff\x13\x37" + key + "\x00\n" }, ":1: not a wxlogin token file"},
		{"a session key as a member's name", func(saved, key string) string {
			return strings.Replace(saved, `"session_key":"`+key+`"`, `"session_key":"k","`+key+`":1`, 1)
		}, ":2: not a session key line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, nil, "-data", dir)
			token := dataOf[loginData](t, post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)).Token
			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
			saved := filepath.Join(dir, tokenfile.Name)
			data := readFile(t, saved)
			key := regexp.MustCompile(`"session_key":"([^"]+)"`).FindStringSubmatch(data)
			if key == nil {
				t.Fatalf("no session key in the saved token file:\n%s", data)
			}
			testkit.WriteFile(t, saved, tt.spoil(data, key[1]))

			s = startServer(t, nil, "-data", dir)
			logs := s.logs.String()
			warning := regexp.MustCompile(`(?m)^.*level=WARN msg="tokens not reloaded".*$`).FindString(logs)
			if !strings.Contains(warning, saved) || !strings.Contains(warning, tt.says) {
				t.Errorf("the warning = %q; want it to name %s and say %q\n%s", warning, saved, tt.says, logs)
			}
			if strings.Contains(logs, key[1][:len(key[1])/2]) {
				t.Errorf("the log quotes the session key in the token file:\n%s", logs)
			}
			if _, err := os.Stat(saved); !os.IsNotExist(err) {
				t.Errorf("the token file is still there (stat err %v)", err)
			}
			if got := post(t, "GET", s.url+"/user", "", "", "token", token); got.code != http.StatusUnauthorized || got.env.Status != statusNotLoggedIn {
				t.Errorf("GET /user with a token from the dropped file = %d %s; want 401, status 4", got.code, got.raw)
			}
			if got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`); got.env.Status != statusOK || dataOf[loginData](t, got).NewUser {
				t.Errorf("alice's login after = %s; want her, a returning user", got.raw)
			}
		})
	}
}

func TestSIGTERMSavesTokensForTheNextStart(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir)
	token := dataOf[loginData](t, post(t, "POST", c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "alice")+`"}`)).Token
	c.stop(t)
	c = startChild(t, dir)
	if got := post(t, "GET", c.url+"/user", "", "", "Authorization", "Bearer "+token); got.env.Status != 0 {
		t.Errorf("after SIGTERM and restart GET /user = %s; want the token still valid", got.raw)
	}
}

func TestSecretsStayOutOfLogsAndResponses(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) { secretsStayOut(t, store) })
}

// secretsStayOut is TestSecretsStayOutOfLogsAndResponses on one store.
// On Redis, the Redis password is a secret too, and the keys' content is
// TestALeakedRedisHoldsNoUsableToken's.
func secretsStayOut(t *testing.T, store storeKind) {
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Secret: testSecret}}, fakewechat.Fixtures{}, time.Now)
	wechat := httptest.NewServer(fake.Handler())
	t.Cleanup(wechat.Close)
	env := map[string]string{"WX_APPID": "wxapp", "WX_APPSECRET": testSecret}
	dataDir := t.TempDir()
	const redisPassword = "r3dis-pa55word-not-for-logs"
	if store == onRedis {
		srv := testkit.StartRedis(t, "--requirepass", redisPassword, "--appendonly", "yes", "--appendfsync", "always")
		env["WXLOGIN_REDIS"] = "redis://:" + redisPassword + "@" + srv.Addr
	}
	// Every event is posted to a receiver, signed with a secret of its own.
	hook := newReceiver(t)
	env["WXLOGIN_WEBHOOK_SECRET"] = hook.secret.Text()
	webhookKey := strings.TrimPrefix(hook.secret.Text(), "whsec_")
	s := startServer(t, env, "-data", dataDir, "-wechat-api", wechat.URL+"/mock/api", "-login-timeout", "2s", "-webhook", hook.srv.URL)
	if strings.Contains(s.logs.String(), "MOCK MODE") {
		t.Fatal("a server with an AppSecret started in mock mode")
	}

	var responses, tokens, codes, sessionKeys []string
	send := func(method, path, body string, header ...string) reply {
		got := post(t, method, s.url+path, jsonCT, body, header...)
		responses = append(responses, got.raw)
		return got
	}
	for _, user := range []string{"alice", "bob"} {
		code := fake.IssueCode("wxapp", user)
		codes = append(codes, code)
		key, _ := fake.SessionKey("wxapp", user) // the code's, until the next wx.login
		sessionKeys = append(sessionKeys, key)
		token := dataOf[loginData](t, send("POST", "/login", `{"code":"`+code+`"}`)).Token
		tokens = append(tokens, token)
		send("GET", "/user", "", "Authorization", "Bearer "+token)
		send("POST", "/login", `{"code":"`+code+`"}`) // used code: status 2
	}
	// The user-data routes, which use the session_key and the access_token.
	bearer := []string{"Authorization", "Bearer " + tokens[0]}
	info := testkit.WXCall(t, fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
	infoBody, _ := json.Marshal(info)
	send("POST", "/user/userinfo", string(infoBody), bearer...)
	info["signature"] = strings.Repeat("0", 40)
	infoBody, _ = json.Marshal(info)
	if got := send("POST", "/user/userinfo", string(infoBody), bearer...); got.env.Status != statusDataCheck {
		t.Errorf("forged user info = %s; want status 5", got.raw)
	}
	phoneCode := testkit.WXCall(t, fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"].(string)
	codes = append(codes, phoneCode)
	if got := send("POST", "/user/phone", `{"code":"`+phoneCode+`"}`, bearer...); got.env.Status != 0 {
		t.Errorf("phone = %s; want status 0", got.raw)
	}
	send("POST", "/user/phone", `{"code":"`+phoneCode+`"}`, bearer...) // spent: status 2
	if got := send("GET", "/session/check", "", bearer...); !dataOf[sessionData](t, got).Valid {
		t.Errorf("session check = %s; want valid", got.raw)
	}
	accessToken := fake.AccessToken("wxapp")
	if accessToken == "" {
		t.Fatal("no access_token was fetched")
	}

	send("DELETE", "/user", "", "Authorization", "Bearer "+tokens[1]) // bob deletes his account
	testkit.WaitFor(t, "bob's user.deleted posted", func() bool {
		for _, m := range hook.messages() {
			if m.event.Type == events.UserDeleted {
				return true
			}
		}
		return false
	})
	send("POST", "/logout", "", "token", tokens[0])
	send("GET", "/user", "", "token", tokens[0]) // revoked: status 4
	wechat.Close()                               // WeChat unreachable: the error names the URL
	if got := send("POST", "/login", `{"code":"unreachable-code"}`); got.env.Status != statusWechatDown {
		t.Errorf("login with WeChat down = %s; want status 3", got.raw)
	}
	codes = append(codes, "unreachable-code")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// What a stolen data directory gives away: users, and until the next
	// start the session keys of live tokens; never the AppSecret, the
	// access_token, a usable token or a code.
	files, _ := os.ReadDir(dataDir)
	if store == onRedis {
		files = nil // no data directory is used
	} else if len(files) < 2 {
		t.Fatalf("data directory holds %v; want the user store and the saved tokens", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dataDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range slices.Concat([]string{testSecret, accessToken, webhookKey}, tokens, codes) {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%s holds the AppSecret, the access_token, the webhook's secret, a token or a code", f.Name())
			}
		}
	}

	logs := s.logs.String()
	if !strings.Contains(logs, "REDACTED") {
		t.Errorf("no redacted URL in the log; the network failure path was not exercised:\n%s", logs)
	}
	for what, values := range map[string][]string{"AppSecret": {testSecret}, "session_key": sessionKeys, "token": tokens, "code": codes, "access_token": {accessToken}, "Redis password": {redisPassword}, "webhook secret": {webhookKey}} {
		for _, v := range values {
			if strings.Contains(logs, v) {
				t.Errorf("the log holds a %s", what)
			}
		}
	}
	for _, body := range responses {
		for _, v := range append([]string{testSecret, accessToken, redisPassword}, sessionKeys...) {
			if strings.Contains(body, v) {
				t.Errorf("response %s holds the AppSecret, the access_token, the Redis password or a session_key", body)
			}
		}
		if strings.Contains(body, `"session_key"`) || strings.Contains(body, "rid:") {
			t.Errorf("response %s mentions the session_key or passes on WeChat's errmsg", body)
		}
	}
	// The events carry ids, and a phone number bound; never a secret, a
	// token, a session_key or a unionid; a deleted user's, only ids.
	if len(hook.messages()) == 0 {
		t.Error("no event was posted")
	}
	for _, m := range hook.messages() {
		for _, v := range slices.Concat([]string{testSecret, accessToken, redisPassword, webhookKey, `"unionid"`, `"openid"`}, sessionKeys, tokens, codes) {
			if strings.Contains(m.body, v) {
				t.Errorf("event %s holds a secret, a token, a code, a session_key, an openid or a unionid", m.body)
			}
		}
		if d := m.event.Data; m.event.Type == events.UserDeleted && (d.PhoneNumber != "" || d.Claim != "" || d.PreviousPersonID != 0) {
			t.Errorf("a deleted user's event holds more than ids: %s", m.body)
		}
	}
	// In mock mode the teaching page shows these exchanges to anyone.
	drawn := call(t, fake.Handler(), http.MethodGet, "/mock/exchanges", "").raw
	for _, v := range append([]string{testSecret, accessToken}, sessionKeys...) {
		if strings.Contains(drawn, v) {
			t.Errorf("the exchanges kept for the teaching page hold the AppSecret, the access_token or a session_key: %s", drawn)
		}
	}
}

func TestFakeOnlyServesAnotherServersLogins(t *testing.T) {
	env := map[string]string{"WX_APPID": "wxload", "WX_APPSECRET": "shared-secret"}
	fake := startServer(t, env, "-fake-only")
	if !strings.Contains(fake.logs.String(), "fake_only=true") {
		t.Errorf("the fake's log does not say it is fake only:\n%s", fake.logs.String())
	}
	// wxlogin in real mode, its WeChat in another process's place.
	s := startServer(t, env, "-data", t.TempDir(), "-wechat-api", fake.url)

	got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, fake.url, "alice")+`"}`)
	if got.env.Status != 0 || !dataOf[loginData](t, got).NewUser {
		t.Fatalf("login through the standalone fake = %s; want a new user", got.raw)
	}
	// WeChat's own paths are at the root; the same code again is 40163.
	code := mockCode(t, fake.url, "bob")
	for _, tt := range []struct{ code, want string }{{code, `"openid":"`}, {code, `"errcode":40163`}} {
		resp, err := client.Get(fake.url + "/sns/jscode2session?appid=wxload&secret=shared-secret&grant_type=authorization_code&js_code=" + tt.code)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), tt.want) {
			t.Errorf("GET /sns/jscode2session = %s; want %s", body, tt.want)
		}
	}
	// It is only the fake: wxlogin's own routes are not there, and the
	// fake answers for them as WeChat answers a path it does not serve.
	resp, err := client.Get(fake.url + "/user")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"errcode":40066`) {
		t.Errorf("GET /user on the fake = HTTP %d, %s; want WeChat's 40066 invalid url", resp.StatusCode, body)
	}
}

func TestProfilerOnlyOnTheAdminAddress(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-admin-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`msg="admin listening" url=(\S+)`).FindStringSubmatch(s.logs.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logs.String())
	}
	resp, err := client.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Errorf("GET %s = %d; want pprof's index", m[1], resp.StatusCode)
	}
	if got := post(t, "GET", s.url+"/debug/pprof/", "", ""); got.code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on -addr = %d; want 404", got.code)
	}
}

func TestHangingWeChatThroughRun(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	env := map[string]string{"WX_APPID": "wxapp", "WX_APPSECRET": testSecret}
	s := startServer(t, env, "-data", t.TempDir(), "-wechat-api", hang.URL,
		"-wechat-timeout", "200ms", "-login-timeout", "500ms")
	start := time.Now()
	got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"c1"}`)
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond+2*time.Second {
		t.Errorf("login took %v with -login-timeout 500ms", elapsed)
	}
	if got.code != http.StatusGatewayTimeout || got.env.Status != statusWechatDown {
		t.Errorf("login = %d %s; want 504, status 3", got.code, got.raw)
	}
}

func TestHTTPServerLimits(t *testing.T) {
	const login = 10 * time.Second
	srv := newHTTPServer(http.NotFoundHandler(), login, discardLogger())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 10*time.Second {
		t.Errorf("ReadHeaderTimeout = %v; want set, at most 10s, so slow headers cannot hold connections", srv.ReadHeaderTimeout)
	}
	if srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("ReadTimeout %v, IdleTimeout %v, MaxHeaderBytes %d; want all set", srv.ReadTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	if srv.WriteTimeout <= login {
		t.Errorf("WriteTimeout = %v; want more than the login bound %v, or slow logins lose their reply", srv.WriteTimeout, login)
	}
}

func TestDialableAddr(t *testing.T) {
	for listen, want := range map[string]string{
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:8080":      "127.0.0.1:8080",
		"127.0.0.1:8080": "127.0.0.1:8080",
		"[::1]:8080":     "[::1]:8080",
		"10.1.2.3:80":    "10.1.2.3:80",
	} {
		addr, err := net.ResolveTCPAddr("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialableAddr(addr); got != want {
			t.Errorf("dialableAddr(%s) = %s; want %s", listen, got, want)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"wxlogin", "-h"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Errorf("run -h = %v; want nil", err)
	}
	for _, want := range []string{"-addr", "WXLOGIN_TOKEN_MAX_AGE", "-mock"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage does not mention %s:\n%s", want, out.String())
		}
	}
	_, err := config.Load([]string{"wxlogin", "-h"}, func(string) string { return "" }, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("config.Load -h = %v; want flag.ErrHelp", err)
	}
}

func TestTwoAppsInMockMode(t *testing.T) {
	apps := filepath.Join(t.TempDir(), "apps.json")
	testkit.WriteFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxgame", "name": "Game", "secret_env": "GAME_SECRET"}]}`)
	s := startServer(t, nil, "-data", t.TempDir(), "-apps", apps)
	if !strings.Contains(s.logs.String(), "appids=wxshop,wxgame") {
		t.Errorf("start-up log does not name both apps:\n%s", s.logs)
	}
	login := func(appID string) string {
		t.Helper()
		resp, err := client.Post(s.url+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"alice","appid":"`+appID+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var code struct{ Code string }
		jsonDecode(resp.Body, &code)
		resp.Body.Close()
		got := post(t, "POST", s.url+"/login", jsonCT, `{"appid":"`+appID+`","code":"`+code.Code+`"}`)
		token := dataOf[loginData](t, got).Token
		if token == "" {
			t.Fatalf("login to %s = %s", appID, got.raw)
		}
		return token
	}
	shop, game := login("wxshop"), login("wxgame")
	user := post(t, "GET", s.url+"/user", "", "", "token", game)
	if u := dataOf[userData](t, user); u.PersonID != 1 || len(u.Apps) != 2 {
		t.Errorf("GET /user in Game = %s; want person 1 with two apps", user.raw)
	}
	if got := post(t, "POST", s.url+"/claims/welcome-gift", "", "", "token", shop); got.code != 201 {
		t.Errorf("claim in Shop = HTTP %d, %s; want 201", got.code, got.raw)
	}
	if got := post(t, "POST", s.url+"/claims/welcome-gift", "", "", "token", game); got.code != 409 || dataOf[claimData](t, got).AppID != "wxshop" {
		t.Errorf("claim in Game = HTTP %d, %s; want 409 naming Shop", got.code, got.raw)
	}
}

// TestHostileRequests sends the real server, over TCP and byte for byte,
// requests meant to confuse it. Each must be answered at once, with the
// envelope and the status the README gives, and the connection must stay
// usable or be closed; none may reach a handler as something else.
// Requests net/http cannot parse at all (a control character in a header,
// a header block over the limit) are answered by net/http itself in plain
// text before any handler runs, which is what the README says.
func TestHostileRequests(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir())
	addr := strings.TrimPrefix(s.url, "http://")
	deep := `{"code":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
	var many strings.Builder // 5000 members the login does not know, and an empty code
	many.WriteString("{")
	for i := range 5000 {
		fmt.Fprintf(&many, `"m%d":%d,`, i, i)
	}
	many.WriteString(`"code":""}`)
	big := strings.Repeat("a", request.MaxBodyBytes+1)
	post := func(path, contentType, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + contentType +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	get := func(path string, headers ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(headers, "") + "\r\n"
	}
	const plain = -100 // net/http's own answer, not the envelope
	for _, tt := range []struct {
		name     string
		request  string
		code     int
		status   int
		inMsg    string // a part of msg that says what was wrong
		inLogNot string // text that must not start a log line
	}{
		{"path with ..", get("/user/../healthz"), 404, 1, "接口不存在", ""},
		{"path with //", get("//healthz"), 404, 1, "接口不存在", ""},
		{"escaped slash", get("/healthz%2f..%2flogin"), 404, 1, "接口不存在", ""},
		{"POST through ..", post("/user/../login", jsonCT, `{"code":"x"}`), 404, 1, "接口不存在", ""},
		{"NUL in path", get("/login%00"), 404, 1, "接口不存在", ""},
		{"newline in path, for the log", get("/x%0Aevil=1%20level=ERROR"), 404, 1, "接口不存在", "evil="},
		{"wrong method", get("/login"), 405, 1, "请求方法不允许", ""},
		{"TRACE", "TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, 1, "请求方法不允许", ""},
		{"deeply nested JSON", post("/login", jsonCT, deep), 400, 1, "不是合法的 JSON", ""},
		{"5000 members", post("/login", jsonCT, many.String()), 400, 1, "缺少参数", ""},
		{"oversized body", post("/login", jsonCT, big), 413, 1, "请求体过大", ""},
		{"oversized chunked body", "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(big)), 16) + "\r\n" + big + "\r\n0\r\n\r\n", 413, 1, "请求体过大", ""},
		{"invalid UTF-8", post("/login", jsonCT, "{\"code\":\"\xff\xfe\"}"), 400, 1, "UTF-8", ""},
		{"wrong type", post("/login", jsonCT, `{"code":123}`), 400, 1, "code 应为字符串", ""},
		{"duplicate key", post("/login", jsonCT, `{"code":"a","code":"b"}`), 400, 1, "不止一次", ""},
		{"duplicate key up to case", post("/login", jsonCT, `{"code":"a","CODE":"b"}`), 400, 1, "不止一次", ""},
		{"duplicate form field", post("/login", "application/x-www-form-urlencoded", "code=a&code=b"), 400, 1, "不止一次", ""},
		{"NUL in code", post("/login", jsonCT, `{"code":"a\u0000b"}`), 400, 1, "code 无效", ""},
		{"CRLF in code", post("/login", jsonCT, `{"code":"a\r\nX-Injected: 1"}`), 400, 1, "code 无效", ""},
		{"code in the query only", post("/login?code=abc", jsonCT, `{}`), 400, 1, "缺少参数", ""},
		{"text/plain body", post("/login", "text/plain", `{"code":"a"}`), 400, 1, "Content-Type", ""},
		{"garbled Content-Type", post("/login", ";;;", `{"code":"a"}`), 400, 1, "Content-Type", ""},
		{"trailing data", post("/login", jsonCT, `{"code":"a"} {"code":"b"}`), 400, 1, "之后还有内容", ""},
		{"two Authorization headers", get("/user", "Authorization: Bearer a\r\n", "Authorization: Bearer b\r\n"), 400, 1, "不止一次", ""},
		{"huge unknown token", get("/user", "token: "+strings.Repeat("t", 16<<10)+"\r\n"), 401, 4, "未登录", ""},
		{"control character in a header", get("/user", "Authorization: Bearer a\x01b\r\n"), 400, plain, "", ""},
		{"header block over 64 KiB", get("/healthz", "X-Big: "+strings.Repeat("a", 70<<10)+"\r\n"), 431, plain, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Answered at once: a generous bound, which only a hang or a
			// wait for more input than was sent would pass.
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			go conn.Write([]byte(tt.request)) // The server may answer and close before reading it all.
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("HTTP %d %q; want %d", resp.StatusCode, body, tt.code)
			}
			if tt.status == plain {
				return
			}
			var env envelope
			if err := json.Unmarshal(body, &env); err != nil || env.Status != tt.status || !strings.Contains(env.Msg, tt.inMsg) {
				t.Errorf("body %q; want the envelope with status %d and a msg saying %q", body, tt.status, tt.inMsg)
			}
			if tt.inLogNot != "" && regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(tt.inLogNot)).MatchString(s.logs.String()) {
				t.Errorf("a request's path started a log line of its own:\n%s", s.logs.String())
			}
		})
	}
}

// A client that sends its headers slowly, or never finishes them, is cut
// off by ReadHeaderTimeout (5 s), however it trickles: it cannot hold a
// connection, and a goroutine, for long.
func TestSlowHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "-data", t.TempDir())
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1024)) // Returns when the server closes (or answers).
		closed <- err
	}()
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(15 * time.Second)
	for i := 0; ; i++ {
		select {
		case err := <-closed:
			took := time.Since(start)
			if err == nil || took < 4*time.Second || took > 8*time.Second {
				t.Errorf("the connection ended after %v with %v; want it closed by the server after about 5 s", took, err)
			}
			return
		case <-tick.C:
			fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i) // A header now and then, never the blank line.
		case <-giveUp:
			t.Fatal("the server kept a connection whose headers never ended for 15 s")
		}
	}
}

// Mock and real mode never share a data directory: in mock mode anyone can
// log in as a user of any name, so a token of such a user must never reach
// real mode. Real mode refuses a directory mock mode created, saying how to
// start clean, and mock mode refuses a real one.
func TestMockAndRealModeNeverShareADataDirectory(t *testing.T) {
	dir := t.TempDir()
	mock := startServer(t, nil, "-data", dir)
	token := dataOf[loginData](t, post(t, "POST", mock.url+"/login", jsonCT, `{"code":"`+mockCode(t, mock.url, "anyone")+`"}`)).Token
	if err := mock.stop(); err != nil || token == "" {
		t.Fatalf("mock mode: token %q, run = %v", token, err)
	}
	real := map[string]string{"WX_APPID": "wxreal000000000001", "WX_APPSECRET": testSecret, "WXLOGIN_WECHAT_API": "http://127.0.0.1:1"}
	err := run(t.Context(), []string{"wxlogin", "-addr", "127.0.0.1:0", "-data", dir}, func(k string) string { return real[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "was created in mock mode") || !strings.Contains(err.Error(), "-data") {
		t.Errorf("real mode on a directory mock mode created: run = %v; want it refused, saying how to start clean", err)
	}

	realDir := t.TempDir()
	s := startServer(t, real, "-data", realDir)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"wxlogin", "-addr", "127.0.0.1:0", "-data", realDir}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "was created in real mode") {
		t.Errorf("mock mode on a directory real mode created: run = %v; want it refused", err)
	}
}

// Under a limit of 300 open files, 400 connections that send nothing leave
// a normal login answered within 1 s, and wxlogin never runs out of files.
func TestAFloodOfIdleConnectionsLeavesLoginsAnswered(t *testing.T) {
	c := startLimitedProcess(t, "-n 300", nil, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-login-rate", "0")
	host := strings.TrimPrefix(c.url, "http://")
	for range 400 {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatalf("dialling the flood: %v", err)
		}
		defer conn.Close()
	}
	start := time.Now()
	got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "alice")+`"}`)
	took := time.Since(start)
	if got.env.Status != 0 {
		t.Fatalf("a login behind 400 idle connections = %s", got.raw)
	}
	t.Logf("a login (two requests, and the call to the fake WeChat) behind 400 idle connections took %v", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a login behind 400 idle connections took %v; want at most 1 s", took)
	}
	if logs := c.logs.String(); strings.Contains(logs, "too many open files") {
		t.Errorf("wxlogin ran out of open files:\n%s", logs)
	}
	if !strings.Contains(c.logs.String(), "max_conns=172") {
		t.Errorf("the cap under 300 open files is not 300 - 64 - 64 for one app:\n%s", c.logs.String())
	}
}

// Under a limit of 256 open files, a client on 127.0.0.3 that reopens every
// connection the cap closes, and sends nothing on any, leaves another
// address (127.0.0.2) logging in: every probe login succeeds, on a
// keep-alive client and on a fresh connection for each request, and the
// keep-alive client's one connection is kept throughout, even idle past
// the grace while the flood goes on. (Linux routes all of 127/8 to the
// loopback device, so the addresses are clients of their own to wxlogin;
// 127.0.0.1 is wxlogin's own, whose WeChat client calls the built-in fake
// WeChat on its listener in mock mode.)
func TestAConnectionFloodFromOneAddressLeavesOthersLoggingIn(t *testing.T) {
	c := startLimitedProcess(t, "-n 256", nil, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-login-rate", "0")
	host := strings.TrimPrefix(c.url, "http://")

	// The flooder: more connections than the cap (128 under 256 files), each
	// reopened as soon as wxlogin closes it.
	ctx, cancel := context.WithCancel(t.Context())
	var flooders sync.WaitGroup
	var closed atomic.Int64
	t.Cleanup(func() { cancel(); flooders.Wait() })
	flooder := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	for range 300 {
		flooders.Go(func() {
			for ctx.Err() == nil {
				conn, err := flooder.DialContext(ctx, "tcp", host)
				if err != nil {
					continue // The backlog was full, or the test is over.
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				conn.Read(make([]byte, 1)) // Returns once wxlogin closes it.
				stop()
				conn.Close()
				closed.Add(1)
			}
		})
	}
	// The flood is on once the cap has been filled and emptied a few times.
	testkit.WaitWithin(t, 30*time.Second, "the flood to fill the cap", func() bool { return closed.Load() >= 1000 })

	probe := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for _, tt := range []struct {
		name      string
		keepAlive bool
	}{
		{"keep-alive", true},
		{"a fresh connection a request", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var dials atomic.Int64
			phone := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					return probe.DialContext(ctx, network, addr)
				},
				DisableKeepAlives: !tt.keepAlive,
			}}
			const logins = 30
			floodBefore := closed.Load()
			var failed []string
			for i := range logins {
				if tt.keepAlive && i == logins/2 {
					// A phone whose user reads the screen for a while: its
					// connection is idle past the grace, the thing under
					// test, not a wait for something to happen.
					time.Sleep(limits.IdleGrace + limits.IdleGrace/2)
				}
				if err := probeLogin(phone, c.url, fmt.Sprintf("probe%d", i)); err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				t.Errorf("%d of %d logins from 127.0.0.2 failed during a flood from 127.0.0.3; the first: %s", len(failed), logins, failed[0])
			}
			if tt.keepAlive && dials.Load() != 1 {
				t.Errorf("the keep-alive client dialled %d times; want its one connection kept for every request", dials.Load())
			}
			if flood := closed.Load() - floodBefore; flood < 100 {
				t.Errorf("wxlogin closed %d of the flooder's connections during the logins; want the flood kept up throughout", flood)
			}
		})
	}
	if logs := c.logs.String(); strings.Contains(logs, "too many open files") {
		t.Errorf("wxlogin ran out of open files:\n%s", logs)
	}
}

// probeLogin is a mini program's login (a code from the fake's wx.login,
// then POST /login) through client, or why it failed.
func probeLogin(client *http.Client, base, user string) error {
	resp, err := client.Post(base+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"`+user+`"}`))
	if err != nil {
		return err
	}
	var code struct{ Code string }
	err = jsonDecode(resp.Body, &code)
	resp.Body.Close()
	if err != nil || code.Code == "" {
		return fmt.Errorf("wx.login: %d %v", resp.StatusCode, err)
	}
	resp, err = client.Post(base+"/login", jsonCT, strings.NewReader(`{"code":"`+code.Code+`"}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct{ Status int }
	if err := jsonDecode(resp.Body, &env); err != nil || env.Status != statusOK {
		return fmt.Errorf("POST /login: %d, status %d, %v", resp.StatusCode, env.Status, err)
	}
	return nil
}

// GET /metrics on the admin address of a running wxlogin: what a login, a
// refused code and a profile read did is counted, Prometheus's own parser
// (promtool check metrics) accepts the page, and no label holds a token,
// an openid or an address. It is not served on -addr.
func TestMetricsOnTheAdminAddress(t *testing.T) {
	hook := newReceiver(t)
	s := startServer(t, map[string]string{"WXLOGIN_WEBHOOK_SECRET": hook.secret.Text()},
		"-data", t.TempDir(), "-admin-addr", "127.0.0.1:0", "-webhook", hook.srv.URL)
	admin := regexp.MustCompile(`msg="admin listening" url=(\S+)/debug/pprof/`).FindStringSubmatch(s.logs.String())
	if admin == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logs.String())
	}
	login := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	testkit.WaitFor(t, "alice's user.created posted", func() bool { return len(hook.messages()) == 1 })
	token, openID := dataOf[loginData](t, login).Token, fakewechat.OpenID(config.MockAppID, "alice")
	post(t, "GET", s.url+"/user", "", "", "Authorization", "Bearer "+token)
	if got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"not-a-code"}`); got.env.Status != statusInvalidCode {
		t.Fatalf("a made-up code = %+v; want status 2", got.env)
	}
	var text string
	// The sender counts its post once the receiver has answered it, which
	// may be after the receiver has it.
	testkit.WaitFor(t, "the webhook's post counted", func() bool {
		resp, err := client.Get(admin[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
			t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		text = string(body)
		return strings.Contains(text, "\nwxlogin_webhook_delivered_seq 1\n")
	})
	for _, want := range []string{
		`wxlogin_logins_total{status="0",errcode="0"} 1`,
		`wxlogin_logins_total{status="2",errcode="40029"} 1`,
		`wxlogin_http_requests_total{route="GET /user",code="200"} 1`,
		`wxlogin_wechat_calls_total{api="jscode2session",outcome="ok",errcode="0"} 1`,
		`wxlogin_wechat_calls_total{api="jscode2session",outcome="errcode",errcode="40029"} 1`,
		`wxlogin_users 1`,
		`wxlogin_store_fsync_failures_total 0`,
		`wxlogin_webhook_posts_total{outcome="taken"} 1`,
		`wxlogin_webhook_delivered_seq 1`,
		`wxlogin_webhook_oldest_undelivered_seconds 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	// The first sweep runs as the server starts, before or after the login.
	if !regexp.MustCompile(`(?m)^wxlogin_tokens_live [01]$`).MatchString(text) {
		t.Errorf("metrics lack the live tokens of the last sweep:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^wxlogin_store_fsync_duration_seconds_count [1-9]`).MatchString(text) {
		t.Errorf("metrics count no fsync of the login's write:\n%s", text)
	}
	for _, secret := range []string{token, openID, "127.0.0.1"} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics hold %q", secret)
		}
	}
	if got := post(t, "GET", s.url+"/metrics", "", ""); got.code != http.StatusNotFound {
		t.Errorf("GET /metrics on -addr = %d; want 404", got.code)
	}
	checkWithPromtool(t, text)
}

// checkWithPromtool runs Prometheus's promtool check metrics on text.
func checkWithPromtool(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command(needTool(t, "promtool", "prometheus"), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, text)
	}
}

// -version prints the build: a binary built in this checkout names the
// commit it was built from (the go command stamps it in), and the Go
// release; it starts nothing.
func TestVersionNamesTheCommitBuilt(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"wxlogin", "-version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("run -version = %v", err)
	}
	if line := out.String(); !strings.HasPrefix(line, "wxlogin ") || !strings.HasSuffix(line, " "+runtime.Version()+"\n") {
		t.Errorf("run -version printed %q; want wxlogin, its version and revision, and %s", line, runtime.Version())
	}

	// -buildvcs is the go command's default, auto, in a checkout; this
	// machine's GOFLAGS turns it off, so the test says it.
	want, buildVCS := "revision (unknown)", "-buildvcs=false" // not built in a git checkout
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		want, buildVCS = "revision "+strings.TrimSpace(string(head)), "-buildvcs=true"
	}
	binary := filepath.Join(t.TempDir(), "wxlogin")
	if b, err := exec.Command("go", "build", buildVCS, "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command(binary, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), want) {
		t.Errorf("the built binary's -version is %q; want it to name %s", b, want)
	}
}

// -log-format json writes one JSON object a line, the access log's among
// them; -log-level warn leaves out the lines of requests that went well.
func TestLogFormatAndLevel(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-log-format", "json")
	post(t, "GET", s.url+"/healthz", "", "")
	testkit.WaitFor(t, "the access log line", func() bool { return strings.Contains(s.logs.String(), `"msg":"request"`) })
	for line := range strings.Lines(s.logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["level"] == nil || entry["msg"] == nil {
			t.Errorf("log line %q is not a JSON object with level and msg: %v", line, err)
		}
	}

	// At warn, a request that went well writes nothing, one that failed
	// its line.
	logs := &testkit.SyncBuffer{}
	h := withAccessLog(accesslog.NewLogger(logs, "text", slog.LevelWarn), nil, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fails" {
			writeError(w, errors.New("the disk is gone"))
		}
	}))
	for _, path := range []string{"/healthz", "/fails"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if got := logs.String(); strings.Contains(got, "path=/healthz") || !strings.Contains(got, "path=/fails") {
		t.Errorf("at -log-level warn the access log is %q; want the failed request alone", got)
	}
}

// Through a real restart of a real server: a user with a profile, a phone
// number and a gift deletes their account; once wxlogin has stopped, no
// file of the data directory holds their openid, unionid, nickname or
// phone; started again, the person logs in as a new user, and their gift
// is taken.
func TestDeletedAccountIsGoneAfterARestart(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir)
	login := func(c *child) string {
		got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "alice")+`"}`)
		return dataOf[loginData](t, got).Token
	}
	token := login(c)
	auth := []string{"Authorization", "Bearer " + token}
	if got := post(t, http.MethodPatch, c.url+"/user", jsonCT, `{"nickname":"爱丽丝的昵称"}`, auth...); got.env.Status != 0 {
		t.Fatalf("PATCH /user = %s", got.raw)
	}
	post(t, http.MethodPost, c.url+"/mock/wx.agreePrivacyAuthorization", jsonCT, `{"user":"alice"}`)
	var tap struct{ Code string }
	if err := json.Unmarshal([]byte(post(t, http.MethodPost, c.url+"/mock/wx.getPhoneNumber", jsonCT, `{"user":"alice"}`).raw), &tap); err != nil || tap.Code == "" {
		t.Fatalf("getPhoneNumber: %v", err)
	}
	if got := post(t, http.MethodPost, c.url+"/user/phone", jsonCT, `{"code":"`+tap.Code+`"}`, auth...); got.env.Status != 0 {
		t.Fatalf("POST /user/phone = %s", got.raw)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", auth...); got.code != http.StatusCreated {
		t.Fatalf("claim = %s", got.raw)
	}
	user := dataOf[userData](t, post(t, http.MethodGet, c.url+"/user", "", "", auth...))
	if got := post(t, http.MethodDelete, c.url+"/user", "", "", auth...); got.env.Status != 0 {
		t.Fatalf("DELETE /user = %s", got.raw)
	}
	c.stop(t)
	if user.PhoneNumber == "" || user.UnionID == "" {
		t.Fatalf("alice before the deletion = %+v; want a phone number and a unionid to look for", user)
	}
	if found := testkit.FilesHolding(t, dir, user.OpenID, user.UnionID, "爱丽丝的昵称", user.PhoneNumber); len(found) > 0 {
		t.Errorf("after deletion and a graceful stop the data directory holds %v", found)
	}

	c = startChild(t, dir)
	token = login(c)
	again := dataOf[userData](t, post(t, http.MethodGet, c.url+"/user", "", "", "token", token))
	if again.ID == user.ID || again.Nickname != "" {
		t.Errorf("after a restart alice is %+v; want a new user with nothing of the old one", again)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusConflict {
		t.Errorf("the returning person's gift = HTTP %d %s; want 409", got.code, strings.TrimSpace(got.raw))
	}
}
