package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/request"
	"wxlogin/internal/testkit"
)

// These are wxlogin's tests in mock mode that the fake WeChat alone cannot
// answer: the story (login, the phone number, the configuration and
// -fake-only) against the fake, and the client's reading of what the fake
// answers. The fake's own tests are in internal/fakewechat.

// A user WeChat's risk control blocks cannot log in with any code: the
// fake answers 40226, and wxlogin status 8 (HTTP 403), which a new code
// will not change.
func TestRiskBlockedUserGetsStatus8(t *testing.T) {
	a := newTestApp(t, appOptions{})
	testkit.WXCallAsIs(t, a.fake.Handler(), "risk-control", `{"user":"mallory","blocked":true}`)
	for range 2 {
		got := call(t, a.handler, http.MethodPost, "/login", `{"code":"`+a.fake.IssueCode("wxapp", "mallory")+`"}`, "Content-Type", jsonCT)
		if got.code != http.StatusForbidden || got.env.Status != statusUserBlocked || got.env.Errcode != errcodeUserBlocked || got.env.Msg != msgUserBlocked {
			t.Errorf("login of a blocked user = %d %s; want 403, status 8, errcode 40226", got.code, got.raw)
		}
	}
	testkit.WXCallAsIs(t, a.fake.Handler(), "risk-control", `{"user":"mallory","blocked":false}`)
	a.login(t, "wxapp", "mallory")
}

// The real-time phone button's code goes to the same server API as the
// quick one's, so POST /user/phone takes it alike; it carries no legacy
// encryptedData.
func TestRealtimePhoneNumber(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getRealtimePhoneNumber", `{"user":"alice"}`)
		if detail["errMsg"] != "getRealtimePhoneNumber:ok" || detail["code"] == "" || detail["encryptedData"] != nil {
			t.Fatalf("getRealtimePhoneNumber = %v; want a code only", detail)
		}
		got := send(t, a.handler, http.MethodPost, "/user/phone", token, map[string]any{"code": detail["code"]})
		if got.env.Status != 0 || dataOf[phoneData](t, got).PhoneNumber != fakewechat.PhoneNumber("alice") {
			t.Errorf("POST /user/phone with a real-time code = %s", got.raw)
		}
		if n := a.calls.count(phonePath); n != 1 {
			t.Errorf("getuserphonenumber called %d times; want 1", n)
		}
	})
}

// Every kind of WeChat failure turns a login into status 3 within the
// login's time bound, with only the retryable ones retried; once the fake
// is healthy, the very same code logs in, because a failed call never
// reached the code.
func TestLoginUnderEachFault(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		tests := []struct {
			kind    string
			calls   int // calls wxlogin makes for one login: 3 when it retries
			errcode int
		}{
			{"system-error", 3, -1},
			{"rate-limit", 1, 45011},
			{"http-500", 1, 0},
			{"html", 1, 0},
			{"truncated", 1, 0},
			{"hang", 3, 0},
			{"reset", 3, 0},
		}
		for _, tt := range tests {
			t.Run(tt.kind, func(t *testing.T) {
				a := newTestApp(t, appOptions{store: store})
				a.wx.http.Timeout = 200 * time.Millisecond // one call; a hang costs this
				a.wx.requestTimeout = 2 * time.Second      // the whole login, retries included
				code := a.fake.IssueCode("wxapp", "alice")
				if got := call(t, a.fake.Handler(), "POST", "/mock/faults", `{"rate":1,"kinds":["`+tt.kind+`"]}`, "Content-Type", jsonCT); got.env.Status != 0 {
					t.Fatalf("POST /mock/faults = %s", got.raw)
				}

				start := time.Now()
				got := call(t, a.handler, "POST", "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
				took := time.Since(start)
				if got.env.Status != statusWechatDown || got.env.Errcode != tt.errcode || (got.code != http.StatusBadGateway && got.code != http.StatusGatewayTimeout) {
					t.Errorf("login = %d %s; want 502 or 504, status 3, errcode %d", got.code, got.raw, tt.errcode)
				}
				if took > a.wx.requestTimeout+time.Second {
					t.Errorf("login answered after %v; the bound is %v", took, a.wx.requestTimeout)
				}
				faults := func() faultsData {
					return dataOf[faultsData](t, call(t, a.fake.Handler(), "GET", "/mock/faults", ""))
				}
				if r := faults(); r.Calls != tt.calls {
					t.Errorf("wxlogin called WeChat %d times for one login; want %d", r.Calls, tt.calls)
				}

				calls := faults().Calls
				call(t, a.fake.Handler(), "POST", "/mock/faults", `{"rate":0}`, "Content-Type", jsonCT)
				again := call(t, a.handler, "POST", "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
				if again.env.Status != statusOK {
					t.Errorf("the same code once the fake is healthy = %s; want a login", again.raw)
				}
				t.Logf("fault figures: %s: HTTP %d, status %d, errcode %d, %d calls to WeChat, answered in %v (bound %v); healthy again: status %d",
					tt.kind, got.code, got.env.Status, got.env.Errcode, calls, took.Round(time.Millisecond), a.wx.requestTimeout, again.env.Status)
			})
		}
	})
}

// A fixtures file fixes what another backend's tests expect of a user,
// through WeChat's own API on -fake-only: alice's openid and unionid in
// the shop, her profile and her Hong Kong phone number; the game, unbound
// by the file, gives her no unionid and the derived openid; bob, not in
// the file, is derived from his name.
func TestFakeFixtures(t *testing.T) {
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps.json")
	testkit.WriteFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxgame", "name": "Game", "secret_env": "GAME_SECRET"}]}`)
	fixtures := filepath.Join(dir, "fixtures.json")
	testkit.WriteFile(t, fixtures, `{
	"apps": {"wxgame": {"unbound": true}},
	"users": {
		"alice": {"openids": {"wxshop": "o-alice-in-shop"}, "unionid": "u-alice", "nickname": "爱丽丝",
			"avatar_url": "https://example.com/alice.png", "phone": "61234567", "country_code": "852"}
	}
}`)
	env := map[string]string{"SHOP_SECRET": "shop-secret", "GAME_SECRET": "game-secret"}
	fake := startServer(t, env, "-fake-only", "-apps", apps, "-fake-fixtures", fixtures)

	getJSON := func(method, path string, body string) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, fake.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", jsonCT)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s = %s", method, path, b)
		}
		return v
	}
	session := func(appID, secret, user string) map[string]any {
		t.Helper()
		code := getJSON("POST", "/mock/wx.login", `{"user":"`+user+`","appid":"`+appID+`"}`)["code"].(string)
		q := url.Values{"appid": {appID}, "secret": {secret}, "js_code": {code}, "grant_type": {"authorization_code"}}
		return getJSON("GET", "/sns/jscode2session?"+q.Encode(), "")
	}
	for _, tt := range []struct {
		name, appID, secret, user, openID, unionID string
	}{
		{"alice in the shop", "wxshop", "shop-secret", "alice", "o-alice-in-shop", "u-alice"},
		{"alice in the unbound game", "wxgame", "game-secret", "alice", fakewechat.OpenID("wxgame", "alice"), ""},
		{"bob, not in the file", "wxshop", "shop-secret", "bob", fakewechat.OpenID("wxshop", "bob"), fakewechat.UnionID("bob")},
	} {
		got := session(tt.appID, tt.secret, tt.user)
		unionID, _ := got["unionid"].(string)
		if got["openid"] != tt.openID || unionID != tt.unionID {
			t.Errorf("%s: jscode2session = %v; want openid %s, unionid %q", tt.name, got, tt.openID, tt.unionID)
		}
	}

	alice := `{"user":"alice","appid":"wxshop"}`
	getJSON("POST", "/mock/wx.agreePrivacyAuthorization", alice)
	info := getJSON("POST", "/mock/wx.getUserInfo", alice)["userInfo"].(map[string]any)
	if info["nickName"] != "爱丽丝" || info["avatarUrl"] != "https://example.com/alice.png" {
		t.Errorf("alice's getUserInfo = %v; want the file's nickname and avatar", info)
	}
	phoneCode := getJSON("POST", "/mock/wx.getPhoneNumber", alice)["code"].(string)
	token := getJSON("POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wxshop","secret":"shop-secret"}`)["access_token"].(string)
	phone := getJSON("POST", "/wxa/business/getuserphonenumber?access_token="+token, `{"code":"`+phoneCode+`"}`)["phone_info"].(map[string]any)
	if phone["purePhoneNumber"] != "61234567" || phone["phoneNumber"] != "+852 61234567" || phone["countryCode"] != float64(852) {
		t.Errorf("alice's phone = %v; want the file's, 61234567 in 852", phone)
	}
}

// A fixtures file that would fix something wrongly is refused at start,
// naming what is wrong; so is one outside the fake.
func TestFakeFixturesRefused(t *testing.T) {
	for _, tt := range []struct {
		name, file, want string
	}{
		{"misspelt field", `{"users": {"alice": {"unoinid": "u"}}}`, `unknown field "unoinid"`},
		{"unknown app", `{"users": {"alice": {"openids": {"wxnone": "o"}}}}`, `app "wxnone", which is not configured`},
		{"unknown app unbound", `{"apps": {"wxnone": {"unbound": true}}}`, `app "wxnone", which is not configured`},
		{"one openid for two", `{"users": {"alice": {"openids": {"` + config.MockAppID + `": "o"}}, "bob": {"openids": {"` + config.MockAppID + `": "o"}}}}`, `is alice's too`},
		{"one unionid for two", `{"users": {"alice": {"unionid": "u"}, "bob": {"unionid": "u"}}}`, `a unionid is one person`},
		{"phone with its country code", `{"users": {"alice": {"phone": "+8613800138000"}}}`, `5 to 20 digits`},
		{"avatar not a URL", `{"users": {"alice": {"avatar_url": "alice.png"}}}`, `an http(s) URL`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fixtures.json")
			testkit.WriteFile(t, path, tt.file)
			_, err := config.Load([]string{"wxlogin", "-fake-fixtures", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loading %s = %v; want an error with %q", tt.file, err, tt.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "fixtures.json")
	testkit.WriteFile(t, path, `{}`)
	env := map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "real"}
	if _, err := config.Load([]string{"wxlogin", "-fake-fixtures", path}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "only the fake WeChat") {
		t.Errorf("fixtures in real mode = %v; want them refused", err)
	}
}

// The fake answers its own endpoints (/mock/faults, /mock/exchanges,
// -fake-only's /healthz) in wxlogin's envelope with writers of its own, so
// that it needs nothing of the handlers: byte for byte and header for
// header, they write what writeOK and writeError write for the same answer,
// and the access log's line says of it what it says of theirs.
func TestTheFakesEnvelopeIsTheServers(t *testing.T) {
	loggedErr := regexp.MustCompile(` err=("(?:[^"\\]|\\.)*"|\S+)`)
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Secret: testSecret}}, fakewechat.Fixtures{}, time.Now)
	requestError := func(body string, limit int64) error {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
		var v struct{ Rate float64 }
		return request.DecodeJSONBody(r, &v)
	}
	big := `{"rate":0` + strings.Repeat(" ", request.MaxBodyBytes) + `}`
	tests := []struct {
		name               string
		h                  http.Handler
		method, path, body string
		want               func(w http.ResponseWriter)
	}{
		{"no exchanges", fake.Handler(), "GET", "/mock/exchanges", "",
			func(w http.ResponseWriter) { writeOK(w, map[string][]int{"exchanges": {}}) }},
		{"a bad after", fake.Handler(), "GET", "/mock/exchanges?after=x", "",
			func(w http.ResponseWriter) {
				writeError(w, badRequest(msgMalformed+"：after 须为非负整数", nil))
			}},
		{"a bad rate", fake.Handler(), "POST", "/mock/faults", `{"rate":2}`,
			func(w http.ResponseWriter) {
				writeError(w, badRequest(msgMalformed+"：rate 2 is not between 0 and 1", nil))
			}},
		{"a repeated member", fake.Handler(), "POST", "/mock/faults", `{"rate":0,"rate":1}`,
			func(w http.ResponseWriter) { writeError(w, requestError(`{"rate":0,"rate":1}`, request.MaxBodyBytes)) }},
		{"not JSON", fake.Handler(), "POST", "/mock/faults", `rate=1`,
			func(w http.ResponseWriter) { writeError(w, requestError(`rate=1`, request.MaxBodyBytes)) }},
		{"too large", fake.Handler(), "POST", "/mock/faults", big,
			func(w http.ResponseWriter) { writeError(w, requestError(big, request.MaxBodyBytes)) }},
		{"healthy", fake.Standalone(), "GET", "/healthz", "",
			func(w http.ResponseWriter) { writeOK(w, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each through the access log, which caps the body and logs the
			// cause noted for the answer.
			serve := func(h http.Handler) (*httptest.ResponseRecorder, string) {
				logs := &testkit.SyncBuffer{}
				w := httptest.NewRecorder()
				r := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, strings.NewReader(tt.body))
				withAccessLog(textLogger(logs), nil, nil, h).ServeHTTP(w, r)
				return w, loggedErr.FindString(logs.String())
			}
			got, gotErr := serve(tt.h)
			want, wantErr := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.want(w) }))
			if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
				t.Errorf("%s %s = %d %v %q; want the server's %d %v %q", tt.method, tt.path,
					got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
			if gotErr != wantErr {
				t.Errorf("%s %s: the access log says %q; want the server's %q", tt.method, tt.path, gotErr, wantErr)
			}
		})
	}
}
