package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/jwt"
	"wxlogin/internal/limits"
	"wxlogin/internal/metrics"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/request"
	"wxlogin/internal/testkit"
)

func TestLoginResponses(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
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
			{"stray brace", ok, "/login", `{"code":"c1"}}`, jsonCT, 400, 1, "参数格式错误：请求体在 JSON 对象之后还有内容", 0, 0},
			{"second object", ok, "/login", `{"code":"c1"} {}`, jsonCT, 400, 1, "参数格式错误：请求体在 JSON 对象之后还有内容", 0, 0},
			{"code with spaces", ok, "/login", `{"code":"a b"}`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
			{"code too long", ok, "/login", `{"code":"` + strings.Repeat("a", 129) + `"}`, jsonCT, 400, 1, "参数格式错误：", 0, 0},
			{"unknown appid", ok, "/login", `{"code":"c1","appid":"wxsomeoneelse"}`, jsonCT, 400, 1, "未知的 appid", 0, 0},
			{"unsupported content type", ok, "/login", `<code>c1</code>`, "text/xml", 400, 1, "参数格式错误：", 0, 0},
			{"unparseable content type", ok, "/login", `{"code":"c1"}`, "application/", 400, 1, "参数格式错误：", 0, 0},

			{"invalid code", `{"errcode":40029,"errmsg":"invalid code, rid: 1"}`, "/login", `{"code":"c1"}`, jsonCT, 401, 2, "无效的code", 40029, 1},
			{"used code", `{"errcode":40163,"errmsg":"code been used, rid: 1"}`, "/login", `{"code":"c1"}`, jsonCT, 401, 2, "无效的code", 40163, 1},
			{"high-risk user", `{"errcode":40226,"errmsg":"code blocked"}`, "/login", `{"code":"c1"}`, jsonCT, 403, 8, msgUserBlocked, 40226, 1},
			{"code missing at WeChat", `{"errcode":41008,"errmsg":"missing code"}`, "/login", `{"code":"c1"}`, jsonCT, 502, 3, msgWechatDown, 41008, 1},
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
				a := newTestApp(t, appOptions{store: store, wechat: replies(&calls, tt.wechat)})
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
					if got.hasData() {
						t.Errorf("error response %s carries data", got.raw)
					}
					return
				}
				d := dataOf[loginData](t, got)
				// On Redis a token starts with its user's id, so that the
				// slot of its keys is known from the token (internal/redisstore).
				random := d.Token
				if store == onRedis {
					random, _ = strings.CutPrefix(d.Token, "1.")
				}
				if len(random) != 43 || strings.Trim(random, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
					t.Errorf("token %v: want 43 base64url characters", d.Token)
				}
				if d.ExpiresIn != 7200 || d.OpenID != "o-alice" || d.UserID != 1 || !d.NewUser {
					t.Errorf("data = %+v; want expires_in 7200, openid o-alice, user_id 1, new_user true", d)
				}
				if got.header.Get("Cache-Control") != "no-store" {
					t.Error("a response carrying a token may be cached: want Cache-Control: no-store")
				}
			})
		}
	})
}

func TestLoginWithHangingWeChatAnswersInTime(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, wechat: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})})
		a.wx.http.Timeout = 100 * time.Millisecond
		a.wx.requestTimeout = 300 * time.Millisecond
		start := time.Now()
		got := call(t, a.handler, http.MethodPost, "/login", `{"code":"c1"}`, "Content-Type", jsonCT)
		if elapsed := time.Since(start); elapsed > a.wx.requestTimeout+2*time.Second {
			t.Errorf("login took %v; the bound is %v", elapsed, a.wx.requestTimeout)
		}
		if got.code != http.StatusGatewayTimeout || got.env.Status != statusWechatDown {
			t.Errorf("login = HTTP %d, %s; want 504 with status 3", got.code, got.raw)
		}
	})
}

func TestAuthenticatedRoutes(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
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
					a, token := loggedInOn(t, store)
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
					if got.env.Status != statusNotLoggedIn || got.env.Msg != msgNotLoggedIn || got.hasData() {
						t.Errorf("envelope %s; want status 4 with no data", got.raw)
					}
					if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("WWW-Authenticate = %q; want a Bearer challenge", got.header.Get("WWW-Authenticate"))
					}
				})
			}
		}
	})
}

func TestUserShowsTheWholeRecord(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+token)
		want := []string{"id", "appid", "openid", "unionid", "nickname", "avatar_url", "gender", "language", "city",
			"province", "country", "phone_number", "pure_phone_number", "country_code", "created_at", "updated_at", "last_login_at",
			"person_id", "apps"}
		keys := testkit.JSONKeys(t, got.env.Data)
		slices.Sort(keys)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("GET /user data keys = %v; want %v", keys, want)
		}
		d := dataOf[userData](t, got)
		if d.ID != 1 || d.AppID != "wxapp" || d.OpenID != fakewechat.OpenID("wxapp", "alice") || d.UnionID != fakewechat.UnionID("alice") {
			t.Errorf("GET /user = %+v; want alice's ids", d)
		}
		for _, f := range []struct{ name, value string }{{"created_at", d.CreatedAt}, {"updated_at", d.UpdatedAt}, {"last_login_at", d.LastLoginAt}} {
			if _, err := time.Parse(time.RFC3339, f.value); err != nil {
				t.Errorf("%s = %v; want RFC 3339", f.name, f.value)
			}
		}
	})
}

func TestLogoutRevokesOnlyThatToken(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, phone := loggedInOn(t, store)
		laptop := a.login(t, "wxapp", "alice")
		if got := call(t, a.handler, "POST", "/logout", "", "Authorization", "Bearer "+phone); got.code != 200 || got.raw != `{"status":0,"msg":"ok"}`+"\n" {
			t.Fatalf("logout = HTTP %d, %s; want 200 {\"status\":0,\"msg\":\"ok\"}", got.code, got.raw)
		}
		if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+phone); got.env.Status != statusNotLoggedIn {
			t.Errorf("logged-out token: %s; want status 4", got.raw)
		}
		if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+laptop); got.env.Status != 0 {
			t.Errorf("the user's other token: %s; want it still valid", got.raw)
		}
	})
}

func TestSecondLoginOfAUser(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, _ := loggedInOn(t, store)
		got := call(t, a.handler, "POST", "/login", `{"code":"`+a.fake.IssueCode("wxapp", "alice")+`"}`, "Content-Type", jsonCT)
		if d := dataOf[loginData](t, got); d.NewUser || d.UserID != 1 {
			t.Errorf("second login = %s; want user 1, new_user false", got.raw)
		}
		code := a.fake.IssueCode("wxapp", "alice")
		call(t, a.handler, "POST", "/login", "code="+code, "Content-Type", "application/x-www-form-urlencoded")
		again := call(t, a.handler, "POST", "/login", "code="+code, "Content-Type", "application/x-www-form-urlencoded")
		if again.code != 401 || again.env.Status != statusInvalidCode || again.env.Errcode != errcodeCodeUsed {
			t.Errorf("a code sent again after its login finished = HTTP %d, %s; want 401, status 2, errcode 40163", again.code, again.raw)
		}
	})
}

// TestLastLoginIsRecordedOnceAMinute: a returning login within a minute
// of the login recorded, which changes nothing else, leaves last_login_at
// as it was (and so writes nothing: the stores' own tests count the
// writes); one a minute after, or one that brings a new unionid, records
// itself.
func TestLastLoginIsRecordedOnceAMinute(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store})
		first := a.clock.Now().UTC().Truncate(time.Second)
		a.login(t, "wxapp", "alice")
		for _, tt := range []struct {
			after time.Duration // since the first login
			want  time.Duration // last_login_at, after the first login
		}{{30 * time.Second, 0}, {59 * time.Second, 0}, {60 * time.Second, 60 * time.Second}, {61 * time.Second, 60 * time.Second}, {125 * time.Second, 125 * time.Second}} {
			a.clock.Advance(first.Add(tt.after).Sub(a.clock.Now()))
			a.login(t, "wxapp", "alice")
			if got := a.record(t, 1).LastLoginAt; !got.Equal(first.Add(tt.want)) {
				t.Errorf("a login %v after the first: last_login_at %v after it; want %v", tt.after, got.Sub(first), tt.want)
			}
		}
	})
}

func TestHealthz(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, _ := loggedInOn(t, store)
		got := call(t, a.handler, "GET", "/healthz", "")
		if got.code != 200 || got.raw != `{"status":0,"msg":"ok"}`+"\n" {
			t.Errorf("GET /healthz = %d %s", got.code, got.raw)
		}
	})
}

func TestConcurrentFirstLoginsOverHTTPCreateOneUser(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store})
		srv := httptest.NewServer(a.handler)
		t.Cleanup(srv.Close)

		const n = 100
		codes := make([]string, n)
		for i := range codes {
			codes[i] = a.fake.IssueCode("wxapp", "carol") // one new user, logging in from many taps at once
		}
		var wg sync.WaitGroup
		var created atomic.Int32
		ids := make(chan int64, n)
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
				d := dataOf[loginData](t, got)
				if d.NewUser {
					created.Add(1)
				}
				ids <- d.UserID
			})
		}
		wg.Wait()
		close(ids)
		// On Redis, ids taken by the logins that lost the race are not
		// used again: the one user's id need not be 1 (internal/redisstore).
		first := <-ids
		for id := range ids {
			if id != first {
				t.Errorf("logins got user_id %v and %v; want one user", first, id)
			}
		}
		if c := created.Load(); c != 1 {
			t.Errorf("%d logins answered new_user true; want exactly 1", c)
		}
		if store == onFiles && first != 1 {
			t.Errorf("the user's id is %d; want 1, the first", first)
		}
		for id := int64(1); id < first+5; id++ {
			if _, ok, err := a.userBackend.Get(t.Context(), id); ok != (id == first) || err != nil {
				t.Errorf("user %d stored: %v (%v); want carol alone, as user %d", id, ok, err, first)
			}
		}
	})
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
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, request.MaxBodyBytes)
		req, err := decodeLoginRequest(r)
		if err != nil {
			switch err.(type) {
			case *apiError, *request.Error: // what the client is told
			default:
				t.Fatalf("decodeLoginRequest returned %T; want *apiError or *request.Error", err)
			}
			return
		}
		if req.Code == "" || len(req.Code) > maxCodeBytes || !request.IsPrintableASCII(req.Code) || !request.IsPrintableASCII(req.AppID) {
			t.Fatalf("decodeLoginRequest accepted %+v", req)
		}
	})
}

// wantDataCheck fails t unless got is status 5 with the check and the hint.
func wantDataCheck(t testing.TB, got reply, check string) {
	t.Helper()
	want := msgDataCheck + check + msgDataCheckHint
	if got.code != 400 || got.env.Status != statusDataCheck || (check != "" && got.env.Msg != want) ||
		!strings.HasPrefix(got.env.Msg, msgDataCheck) || !strings.HasSuffix(got.env.Msg, msgDataCheckHint) {
		t.Errorf("reply HTTP %d, %s; want 400 with status 5 and msg %q", got.code, got.raw, want)
	}
}

func TestUserInfoIsVerifiedAndSaved(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		tests := []struct {
			name string
			keep []string // the fields of e.detail that are sent
		}{
			{"whole e.detail", []string{"errMsg", "userInfo", "rawData", "signature", "encryptedData", "iv"}},
			{"signature only", []string{"rawData", "signature"}},
			{"encrypted only", []string{"encryptedData", "iv"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a, token := loggedInOn(t, store)
				detail := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
				body := map[string]any{}
				for _, k := range tt.keep {
					body[k] = detail[k]
				}
				got := send(t, a.handler, "POST", "/user/userinfo", token, body)
				if got.code != 200 || got.env.Status != 0 {
					t.Fatalf("POST /user/userinfo = HTTP %d, %s; want 200", got.code, got.raw)
				}
				d := dataOf[userData](t, got)
				if d.Nickname != "alice" || d.AvatarURL != fakewechat.AvatarURL("alice") || d.Language != "zh_CN" {
					t.Errorf("saved profile %+v; want alice's", d)
				}
				if user := call(t, a.handler, "GET", "/user", "", "token", token); dataOf[userData](t, user).Nickname != "alice" {
					t.Errorf("GET /user after saving = %s; want nickname alice", user.raw)
				}
			})
		}
	})
}

func TestUserInfoAsAForm(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
		form := url.Values{}
		for _, k := range []string{"rawData", "signature", "encryptedData", "iv"} {
			form.Set(k, detail[k].(string))
		}
		got := call(t, a.handler, "POST", "/user/userinfo", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "token", token)
		if got.env.Status != 0 || dataOf[userData](t, got).Nickname != "alice" {
			t.Errorf("form-encoded user info = %s; want it verified and saved", got.raw)
		}
	})
}

func TestUserInfoIgnoresTheUnverifiedUserInfo(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
		detail["userInfo"] = map[string]any{"nickName": "mallory"}
		got := send(t, a.handler, "POST", "/user/userinfo", token, detail)
		if nickname := dataOf[userData](t, got).Nickname; nickname != "alice" {
			t.Errorf("saved nickname %v; want the verified alice", nickname)
		}
	})
}

// tamperings returns s with one character changed, for every position:
// to another character of the alphabet a client could send in that field.
func tamperings(s, alphabet string) []string {
	var out []string
	for i := range len(s) {
		j := strings.IndexByte(alphabet, s[i])
		c := alphabet[(j+1)%len(alphabet)] // j is -1 for a character outside it: the first one then
		out = append(out, s[:i]+string(c)+s[i+1:])
	}
	return out
}

const (
	base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	hexAlphabet    = "0123456789abcdef"
)

func TestUserInfoTamperingIsRefused(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
		fields := []struct{ name, alphabet string }{
			{"rawData", ""}, // any other byte
			{"signature", hexAlphabet},
			{"encryptedData", base64Alphabet},
			{"iv", base64Alphabet},
		}
		for _, f := range fields {
			original := detail[f.name].(string)
			var variants []string
			if f.alphabet == "" {
				for i := range len(original) {
					b := []byte(original)
					b[i] ^= 0x01
					variants = append(variants, string(b))
				}
			} else {
				variants = tamperings(original, f.alphabet)
			}
			for i, v := range variants {
				body := map[string]any{"rawData": detail["rawData"], "signature": detail["signature"],
					"encryptedData": detail["encryptedData"], "iv": detail["iv"]}
				body[f.name] = v
				got := send(t, a.handler, "POST", "/user/userinfo", token, body)
				if got.env.Status != statusDataCheck {
					t.Errorf("%s changed at byte %d: HTTP %d, %s; want status 5", f.name, i, got.code, got.raw)
				}
			}
		}
		// The same for the encrypted pair alone, which has no signature to lean on.
		for _, f := range fields[2:] {
			for i, v := range tamperings(detail[f.name].(string), f.alphabet) {
				body := map[string]any{"encryptedData": detail["encryptedData"], "iv": detail["iv"]}
				body[f.name] = v
				if got := send(t, a.handler, "POST", "/user/userinfo", token, body); got.env.Status != statusDataCheck {
					t.Errorf("%s alone changed at byte %d: HTTP %d, %s; want status 5", f.name, i, got.code, got.raw)
				}
			}
		}
		if u := a.record(t, 1); u.Nickname != "" {
			t.Errorf("tampered data saved nickname %q", u.Nickname)
		}
	})
}

// Data fetched just before a new login, made with the session_key that
// login replaced, still verifies for opendata.PreviousKeyWindow after the
// login, if its watermark says it was fetched before the login and not long
// before; after the window it is status 5. Data fetched after the new login
// verifies with the user's older token too.
func TestUserInfoAfterTheSessionKeyRotated(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		old := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
		oldPlain := func(fetched time.Time) map[string]any {
			return encryptedFor(t, a.fake, fmt.Sprintf(`{"openId":%q,"nickName":"alice","watermark":{"timestamp":%d,"appid":"wxapp"}}`,
				fakewechat.OpenID("wxapp", "alice"), fetched.Unix()))
		}
		longBefore := oldPlain(a.clock.Now().Add(-10 * time.Minute))
		replacement := a.clock.Now().Add(time.Second)
		// Stamped after the login replaced the key, beyond WeChat's clock skew:
		// the key was no longer WeChat's when the data was made, so it is false.
		afterTheLogin := oldPlain(replacement.Add(opendata.WatermarkSkew + time.Second))
		withinTheSkew := oldPlain(replacement.Add(opendata.WatermarkSkew))
		a.clock.Advance(time.Second)
		a.login(t, "wxapp", "alice") // a newer login: a new session_key for all of alice's tokens

		for name, body := range map[string]map[string]any{
			"encrypted": {"encryptedData": old["encryptedData"], "iv": old["iv"]},
			"signed":    {"rawData": old["rawData"], "signature": old["signature"]},
		} {
			if got := send(t, a.handler, "POST", "/user/userinfo", token, body); got.env.Status != 0 {
				t.Errorf("%s data fetched just before the new login = %s; want it accepted within the window", name, got.raw)
			}
		}
		wantDataCheck(t, send(t, a.handler, "POST", "/user/userinfo", token, longBefore), msgUndecryptable)
		wantDataCheck(t, send(t, a.handler, "POST", "/user/userinfo", token, afterTheLogin), msgUndecryptable)
		if got := send(t, a.handler, "POST", "/user/userinfo", token, withinTheSkew); got.env.Status != 0 {
			t.Errorf("data stamped within the clock skew of the login = %s; want it accepted", got.raw)
		}

		a.clock.Advance(opendata.PreviousKeyWindow + time.Second)
		got := send(t, a.handler, "POST", "/user/userinfo", token, map[string]any{"encryptedData": old["encryptedData"], "iv": old["iv"]})
		wantDataCheck(t, got, msgUndecryptable)
		got = send(t, a.handler, "POST", "/user/userinfo", token, map[string]any{"rawData": old["rawData"], "signature": old["signature"]})
		wantDataCheck(t, got, "signature 与 rawData 不匹配")

		fresh := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
		if got := send(t, a.handler, "POST", "/user/userinfo", token, fresh); got.env.Status != 0 {
			t.Errorf("fresh data with the user's older token = %s; want status 0", got.raw)
		}
	})
}

// encryptedFor encrypts plain with alice's current session_key at the fake.
func encryptedFor(t *testing.T, fake *fakewechat.Fake, plain string) map[string]any {
	t.Helper()
	key, ok := fake.SessionKey("wxapp", "alice")
	if !ok {
		t.Fatal("alice has no session_key")
	}
	data, iv := encrypt(t, key, plain)
	return map[string]any{"encryptedData": data, "iv": iv}
}

func TestUserInfoOfAnotherAppOrUser(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		alice := fakewechat.OpenID("wxapp", "alice")
		tests := []struct{ name, plain, check string }{
			{"other app", `{"openId":"` + alice + `","watermark":{"timestamp":1,"appid":"wxother"}}`, "数据水印的 appid 不是本小程序"},
			{"other user", `{"openId":"` + fakewechat.OpenID("wxapp", "bob") + `","watermark":{"timestamp":1,"appid":"wxapp"}}`, "数据属于另一个用户（openId 不符）"},
			{"old watermark is fine", `{"openId":"` + alice + `","nickName":"A","watermark":{"timestamp":1,"appid":"wxapp"}}`, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := send(t, a.handler, "POST", "/user/userinfo", token, encryptedFor(t, a.fake, tt.plain))
				if tt.check == "" {
					if got.env.Status != 0 {
						t.Errorf("reply %s; want status 0", got.raw)
					}
					return
				}
				wantDataCheck(t, got, tt.check)
			})
		}
	})
}

func TestAnonymousUserInfoKeepsTheFilledProfile(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		if got := send(t, a.handler, "PATCH", "/user", token, map[string]any{"nickname": "爱丽丝", "avatar_url": "https://cdn.example.com/a.png"}); got.env.Status != 0 {
			t.Fatalf("PATCH /user = %s", got.raw)
		}
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getUserInfo", `{"user":"alice","anonymous":true}`)
		if detail["userInfo"].(map[string]any)["nickName"] != opendata.AnonymousNickname {
			t.Fatalf("anonymous getUserInfo = %v", detail)
		}
		got := send(t, a.handler, "POST", "/user/userinfo", token, detail)
		d := dataOf[userData](t, got)
		if got.env.Status != 0 || d.Nickname != "爱丽丝" || d.AvatarURL != "https://cdn.example.com/a.png" {
			t.Errorf("after anonymous user info: %s; want the filled nickname and avatar kept", got.raw)
		}
		if d.UnionID != fakewechat.UnionID("alice") {
			t.Errorf("unionid = %v; want the verified one", d.UnionID)
		}
	})
}

func TestUserInfoRequestErrors(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		tests := []struct{ name, body, contentType, wantMsg string }{
			{"nothing", `{}`, jsonCT, "缺少参数：需要 rawData 和 signature，或 encryptedData 和 iv"},
			{"a refusal's e.detail", `{"errMsg":"getUserInfo:fail auth deny"}`, jsonCT, "缺少参数：需要 rawData 和 signature，或 encryptedData 和 iv"},
			{"rawData alone", `{"rawData":"{}"}`, jsonCT, "缺少参数：rawData 和 signature 须一起提供"},
			{"iv alone", `{"iv":"AAAAAAAAAAAAAAAAAAAAAA=="}`, jsonCT, "缺少参数：encryptedData 和 iv 须一起提供"},
			{"not JSON", `rawData=x`, jsonCT, "参数格式错误：请求体不是合法的 JSON 对象"},
			{"half a form", `rawData=x`, "application/x-www-form-urlencoded", "缺少参数：rawData 和 signature 须一起提供"},
			{"text", `rawData=x`, "text/plain", "参数格式错误：Content-Type 应为 application/json 或 application/x-www-form-urlencoded"},
			{"form, invalid UTF-8", `rawData=%FF&signature=x`, "application/x-www-form-urlencoded", "参数格式错误：请求体不是合法的 UTF-8"},
			{"number", `{"rawData":1}`, jsonCT, "参数格式错误：rawData 应为字符串"},
			{"invalid UTF-8", "{\"rawData\":\"\xff\"}", jsonCT, "参数格式错误：请求体不是合法的 UTF-8"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := call(t, a.handler, "POST", "/user/userinfo", tt.body, "Content-Type", tt.contentType, "token", token)
				if got.code != 400 || got.env.Status != statusBadRequest || got.env.Msg != tt.wantMsg {
					t.Errorf("reply HTTP %d, %s; want 400, status 1, msg %q", got.code, got.raw, tt.wantMsg)
				}
			})
		}
	})
}

func TestPatchUser(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		tests := []struct {
			name, body string
			wantStatus int
			wantMsg    string         // for errors
			want       map[string]any // fields of the user afterwards
		}{
			{"nickname and avatar", `{"nickname":"小明 🐱","avatar_url":"https://cdn.example.com/u/1.png"}`, 0, "",
				map[string]any{"nickname": "小明 🐱", "avatar_url": "https://cdn.example.com/u/1.png"}},
			{"every field", `{"nickname":"n","avatar_url":"http://x.test/a","gender":2,"language":"zh_TW","city":"台北","province":"台湾","country":"中国"}`, 0, "",
				map[string]any{"gender": 2, "language": "zh_TW", "city": "台北"}},
			{"clear a field", `{"nickname":""}`, 0, "", map[string]any{"nickname": ""}},
			{"nothing", `{}`, 1, "缺少参数：至少提供 nickname、avatar_url、gender、language、city、province、country 之一", nil},
			{"only nulls", `{"nickname":null}`, 1, "缺少参数：至少提供 nickname、avatar_url、gender、language、city、province、country 之一", nil},
			{"camelCase from e.detail", `{"avatarUrl":"https://x.test/a"}`, 1, `参数格式错误：未知字段 "avatarUrl"`, nil},
			{"nickname too long", `{"nickname":"` + strings.Repeat("长", 65) + `"}`, 1, "参数格式错误：nickname 最多 64 个字符，实为 65 个", nil},
			{"control character", `{"nickname":"a\nb"}`, 1, "参数格式错误：nickname 含有控制字符", nil},
			{"gender 3", `{"gender":3}`, 1, "参数格式错误：gender 应为 0（未知）、1（男）或 2（女）", nil},
			{"gender as text", `{"gender":"1"}`, 1, "参数格式错误：gender 应为整数", nil},
			{"language", `{"language":"zh CN"}`, 1, "参数格式错误：language 应为 zh_CN 这样的语言代码", nil},
			{"avatar not http", `{"avatar_url":"wxfile://tmp_abc.jpg"}`, 1, "参数格式错误：avatar_url 应为 http 或 https 网址", nil},
			{"avatar javascript", `{"avatar_url":"javascript:alert(1)"}`, 1, "参数格式错误：avatar_url 应为 http 或 https 网址", nil},
			{"avatar relative", `{"avatar_url":"/a.png"}`, 1, "参数格式错误：avatar_url 应为 http 或 https 网址", nil},
			{"avatar with space", `{"avatar_url":"https://x.test/a b.png"}`, 1, "参数格式错误：avatar_url 应为 http 或 https 网址", nil},
			{"avatar with credentials", `{"avatar_url":"https://u:p@x.test/a.png"}`, 1, "参数格式错误：avatar_url 应为 http 或 https 网址", nil},
			{"avatar from DevTools", `{"avatar_url":"http://tmp/abc.jpeg"}`, 1, "参数格式错误：avatar_url 是 chooseAvatar 给出的本地临时文件：请先用 wx.uploadFile 上传，再保存上传后的网址", nil},
			{"avatar too long", `{"avatar_url":"https://x.test/` + strings.Repeat("a", 1024) + `"}`, 1, "参数格式错误：avatar_url 最长 1024 字节", nil},
			{"invalid UTF-8", "{\"nickname\":\"\xe4\xb8\"}", 1, "参数格式错误：请求体不是合法的 UTF-8", nil},
			{"array", `[]`, 1, "参数格式错误：请求体不是合法的 JSON 对象", nil},
			{"stray bracket", `{"nickname":"n"}]`, 1, "参数格式错误：请求体在 JSON 对象之后还有内容", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a, token := loggedInOn(t, store)
				got := call(t, a.handler, "PATCH", "/user", tt.body, "Content-Type", jsonCT, "token", token)
				if got.env.Status != tt.wantStatus {
					t.Fatalf("PATCH /user %s = HTTP %d, %s; want status %d", tt.body, got.code, got.raw, tt.wantStatus)
				}
				if tt.wantStatus != 0 {
					if got.code != 400 || got.env.Msg != tt.wantMsg {
						t.Errorf("PATCH /user %s = HTTP %d, msg %q; want 400, %q", tt.body, got.code, got.env.Msg, tt.wantMsg)
					}
					if u := a.record(t, 1); u.UpdatedAt != u.CreatedAt {
						t.Errorf("a refused PATCH changed the user: %+v", u)
					}
					return
				}
				replied, stored := dataOf[userData](t, got), dataOf[userData](t, call(t, a.handler, "GET", "/user", "", "token", token))
				for k, v := range tt.want {
					if memberOf(t, replied, k) != v || memberOf(t, stored, k) != v {
						t.Errorf("%s = %v in the reply, %v in GET /user; want %v", k, memberOf(t, replied, k), memberOf(t, stored, k), v)
					}
				}
			})
		}
	})
}

// memberOf is the field of u that holds its JSON member name.
func memberOf(t *testing.T, u userData, name string) any {
	t.Helper()
	v := reflect.ValueOf(u)
	for i := range v.NumField() {
		if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); tag == name {
			return v.Field(i).Interface()
		}
	}
	t.Fatalf("userData has no member %q", name)
	return nil
}

func TestPatchUserWritesOnlyChanges(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		send(t, a.handler, "PATCH", "/user", token, map[string]any{"nickname": "n"})
		first := a.record(t, 1)
		a.clock.Advance(time.Hour)
		send(t, a.handler, "PATCH", "/user", token, map[string]any{"nickname": "n"})
		if again := a.record(t, 1); again.UpdatedAt != first.UpdatedAt {
			t.Errorf("PATCH with the stored values moved updated_at from %v to %v", first.UpdatedAt, again.UpdatedAt)
		}
		send(t, a.handler, "PATCH", "/user", token, map[string]any{"nickname": "m"})
		if changed := a.record(t, 1); !changed.UpdatedAt.After(first.UpdatedAt) {
			t.Errorf("a change left updated_at at %v", changed.UpdatedAt)
		}
	})
}

func TestPhoneNumber(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		number := fakewechat.PhoneNumber("alice")
		want := phoneData{PhoneNumber: number, PurePhoneNumber: number, CountryCode: "86"}

		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)
		for name, body := range map[string]map[string]any{
			"code":                   {"code": detail["code"]},
			"legacy":                 {"encryptedData": detail["encryptedData"], "iv": detail["iv"]},
			"code wins over legacy":  {"code": testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"], "encryptedData": "AAAA", "iv": "AAAA"},
			"whole e.detail, legacy": {"errMsg": "getPhoneNumber:ok", "encryptedData": detail["encryptedData"], "iv": detail["iv"]},
		} {
			got := send(t, a.handler, "POST", "/user/phone", token, body)
			if got.code != 200 || dataOf[phoneData](t, got) != want {
				t.Errorf("%s: POST /user/phone = HTTP %d, %s; want %+v", name, got.code, got.raw, want)
			}
		}
		if user := call(t, a.handler, "GET", "/user", "", "token", token); dataOf[userData](t, user).PhoneNumber != number {
			t.Errorf("GET /user = %s; want phone_number %s", user.raw, number)
		}

		errs := []struct {
			name          string
			body          map[string]any
			wantHTTP      int
			wantStatus    int
			wantErrcode   int
			wantMsgPrefix string
		}{
			{"spent code", map[string]any{"code": detail["code"]}, 401, statusInvalidCode, errcodeInvalidCode, msgInvalidCode},
			{"unknown code", map[string]any{"code": "nope"}, 401, statusInvalidCode, errcodeInvalidCode, msgInvalidCode},
			// The session_key is not the cause: no hint to log in again.
			{"bob's code", map[string]any{"code": testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"bob"}`)["code"]}, 400, statusDataCheck, 0, msgDataCheck + "手机号 code 属于另一个用户$"},
			{"refused", map[string]any{"errMsg": "getPhoneNumber:fail user deny"}, 400, statusBadRequest, 0, "缺少参数：需要 code"},
			{"code with spaces", map[string]any{"code": "a b"}, 400, statusBadRequest, 0, "参数格式错误：code 无效"},
			{"legacy, tampered", map[string]any{"encryptedData": tamperings(detail["encryptedData"].(string), base64Alphabet)[20], "iv": detail["iv"]}, 400, statusDataCheck, 0, msgDataCheck},
			{"legacy, half", map[string]any{"encryptedData": detail["encryptedData"]}, 400, statusBadRequest, 0, "缺少参数：需要 encryptedData 和 iv"},
		}
		for _, tt := range errs {
			got := send(t, a.handler, "POST", "/user/phone", token, tt.body)
			msgOK := strings.HasPrefix(got.env.Msg, tt.wantMsgPrefix)
			if whole, ok := strings.CutSuffix(tt.wantMsgPrefix, "$"); ok { // the whole message
				msgOK = got.env.Msg == whole
			}
			if got.code != tt.wantHTTP || got.env.Status != tt.wantStatus || got.env.Errcode != tt.wantErrcode || !msgOK {
				t.Errorf("%s: POST /user/phone = HTTP %d, %s; want %d, status %d, errcode %d, msg %q…",
					tt.name, got.code, got.raw, tt.wantHTTP, tt.wantStatus, tt.wantErrcode, tt.wantMsgPrefix)
			}
		}
	})
}

func TestPhoneOfAnotherApp(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		plain := `{"phoneNumber":"13800000000","purePhoneNumber":"13800000000","countryCode":"86","watermark":{"timestamp":1,"appid":"wxother"}}`
		wantDataCheck(t, send(t, a.handler, "POST", "/user/phone", token, encryptedFor(t, a.fake, plain)), "数据水印的 appid 不是本小程序")
		if u := a.record(t, 1); u.PhoneNumber != "" {
			t.Errorf("refused data saved phone %q", u.PhoneNumber)
		}
	})
}

func TestAccessTokenIsFetchedOnceForConcurrentRequests(t *testing.T) {
	a, token := loggedIn(t)
	const n = 50
	codes := make([]any, n)
	for i := range codes {
		codes[i] = testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"]
	}
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"code": code})
			req, _ := http.NewRequest("POST", srv.URL+"/user/phone", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			if got := parseReply(t, resp); got.env.Status != 0 {
				t.Errorf("POST /user/phone = %s", got.raw)
			}
		})
	}
	wg.Wait()
	if got := a.calls.count(stableTokenPath); got != 1 {
		t.Errorf("%d concurrent phone requests fetched the access_token %d times; want 1", n, got)
	}
	if got := a.calls.count(phonePath); got != n {
		t.Errorf("getuserphonenumber called %d times; want %d", got, n)
	}
}

func TestRefusedAccessTokenIsFetchedAgainOnce(t *testing.T) {
	a, token := loggedIn(t)
	phoneCode := func() any {
		return testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"]
	}
	if got := send(t, a.handler, "POST", "/user/phone", token, map[string]any{"code": phoneCode()}); got.env.Status != 0 {
		t.Fatalf("first phone request = %s", got.raw)
	}
	// Another server sharing the AppSecret forces a new token: ours is dead.
	forced := wechatAPI(t, a.fake, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wxapp","secret":"`+testSecret+`","force_refresh":true}`)
	if forced["access_token"] == nil {
		t.Fatalf("forced refresh = %v; want a new access_token", forced)
	}

	const n = 20
	var wg sync.WaitGroup
	for range n {
		code := phoneCode()
		wg.Go(func() {
			if got := send(t, a.handler, "POST", "/user/phone", token, map[string]any{"code": code}); got.env.Status != 0 {
				t.Errorf("phone request after the token was replaced = %s; want status 0", got.raw)
			}
		})
	}
	wg.Wait()
	if got := a.calls.count(stableTokenPath); got != 2 {
		t.Errorf("access_token fetched %d times; want 2: the first, and one after 40001", got)
	}
	if got := a.calls.count(phonePath); got < n+1 || got > 2*n+1 {
		t.Errorf("getuserphonenumber called %d times; want each request to try at most twice", got)
	}
}

func TestAccessTokenRefusedTwiceIsAnError(t *testing.T) {
	var calls atomic.Int32
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/cgi-bin/stable_token" {
			fmt.Fprint(w, `{"access_token":"AT-never-logged","expires_in":7200}`)
			return
		}
		fmt.Fprint(w, `{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest"}`)
	})
	a := newTestApp(t, appOptions{wechat: upstream})
	a.users.Login("wxapp", "o1", "")
	token := a.tokens.issue(account.Identity{AppID: "wxapp", OpenID: "o1", UserID: 1}, officialSessionKey)
	got := send(t, a.handler, "POST", "/user/phone", token, map[string]any{"code": "c"})
	if got.code != 502 || got.env.Status != statusWechatDown || got.env.Errcode != errcodeInvalidCredential {
		t.Errorf("POST /user/phone = HTTP %d, %s; want 502, status 3, errcode 40001", got.code, got.raw)
	}
	if c := calls.Load(); c != 4 {
		t.Errorf("WeChat got %d calls; want 4: token, phone, token again, phone again", c)
	}
	if strings.Contains(a.logs.String(), "AT-never-logged") {
		t.Errorf("log names the access_token:\n%s", a.logs)
	}
}

func TestWeRun(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := testkit.WXCall(t, a.fake.Handler(), "wx.getWeRunData", `{"user":"alice"}`)
		got := send(t, a.handler, "POST", "/user/werun", token, detail)
		list := dataOf[weRunData](t, got).StepInfoList
		if got.env.Status != 0 || len(list) != 31 {
			t.Fatalf("POST /user/werun = %s; want 31 days of steps", got.raw)
		}
		prev := int64(0)
		for _, day := range list {
			ts, step := day.Timestamp, day.Step
			if ts <= prev || (ts+8*3600)%86400 != 0 || step < 0 {
				t.Errorf("step info %+v: want days in order, each at midnight in China, with steps", day)
			}
			prev = ts
		}
		wantDataCheck(t, send(t, a.handler, "POST", "/user/werun", token, map[string]any{
			"encryptedData": detail["encryptedData"], "iv": tamperings(detail["iv"].(string), base64Alphabet)[3]}), "")
		wantDataCheck(t, send(t, a.handler, "POST", "/user/werun", token,
			encryptedFor(t, a.fake, `{"stepInfoList":[],"watermark":{"appid":"wxother","timestamp":1}}`)), "数据水印的 appid 不是本小程序")
		if got := send(t, a.handler, "POST", "/user/werun", token, encryptedFor(t, a.fake, `{"stepInfoList":[{"timestamp":1,"step":2}]}`)); got.env.Status != 0 {
			t.Errorf("WeRun data without a watermark, as documented = %s; want status 0", got.raw)
		}
	})
}

func TestSessionCheck(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		check := func() reply { return call(t, a.handler, "GET", "/session/check", "", "token", token) }
		if got := check(); got.env.Status != 0 || !dataOf[sessionData](t, got).Valid {
			t.Errorf("GET /session/check right after login = %s; want valid true", got.raw)
		}
		a.fake.IssueCode("wxapp", "alice") // wx.login on the phone: WeChat has a new session_key, wxlogin not yet
		if got := check(); got.env.Status != 0 || dataOf[sessionData](t, got).Valid {
			t.Errorf("GET /session/check after the key rotated at WeChat = %s; want valid false", got.raw)
		}
	})
}

// fuzzBody fuzzes the body of one authenticated route: whatever arrives, the
// reply is the envelope with one of the statuses the route documents, at its
// HTTP code, and never an internal error. seeds are added to the committed
// corpus; a seed of e.detail from the fake WeChat makes it reach success.
func fuzzBody(f *testing.F, method, path string, allowed map[int][]int, seeds func(fake *fakewechat.Fake) []string) {
	a, token := loggedIn(f)
	for _, s := range seeds(a.fake) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := call(t, a.handler, method, path, string(body), "Content-Type", jsonCT, "token", token)
		if !slices.Contains(allowed[got.env.Status], got.code) {
			t.Fatalf("%s %s %q = HTTP %d, %s; want one of %v (status: HTTP codes)", method, path, body, got.code, got.raw, allowed)
		}
	})
}

// detailOf is the JSON of a fake client API result, as a seed.
func detailOf(t testing.TB, fake *fakewechat.Fake, api string) string {
	b, _ := json.Marshal(testkit.WXCall(t, fake.Handler(), api, `{"user":"alice"}`))
	return string(b)
}

var (
	okOrBadInput = map[int][]int{statusOK: {200}, statusBadRequest: {400, 413}}
	orDataCheck  = map[int][]int{statusOK: {200}, statusBadRequest: {400, 413}, statusDataCheck: {400}}
)

func FuzzUserInfoBody(f *testing.F) {
	fuzzBody(f, "POST", "/user/userinfo", orDataCheck, func(fake *fakewechat.Fake) []string {
		return []string{detailOf(f, fake, "wx.getUserInfo")}
	})
}

func FuzzPatchUserBody(f *testing.F) {
	fuzzBody(f, "PATCH", "/user", okOrBadInput, func(*fakewechat.Fake) []string { return nil })
}

func FuzzPhoneBody(f *testing.F) {
	allowed := map[int][]int{statusOK: {200}, statusBadRequest: {400, 413}, statusDataCheck: {400},
		statusInvalidCode: {401}, statusWechatDown: {502, 504}}
	fuzzBody(f, "POST", "/user/phone", allowed, func(fake *fakewechat.Fake) []string {
		d := testkit.WXCall(f, fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)
		legacy, _ := json.Marshal(map[string]any{"encryptedData": d["encryptedData"], "iv": d["iv"]})
		return []string{`{"code":"` + d["code"].(string) + `"}`, string(legacy)}
	})
}

func FuzzWeRunBody(f *testing.F) {
	fuzzBody(f, "POST", "/user/werun", orDataCheck, func(fake *fakewechat.Fake) []string {
		return []string{detailOf(f, fake, "wx.getWeRunData")}
	})
}

func TestLoginWithSeveralApps(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, apps: companyApps})
		tests := []struct {
			name, body string
			wantHTTP   int
			wantStatus int
			wantMsg    string
		}{
			{"no appid", `{"code":"` + a.fake.IssueCode("wxshop", "alice") + `"}`, 400, 1, "缺少参数：服务多个小程序时须提供 appid"},
			{"unknown appid", `{"appid":"wxnope","code":"` + a.fake.IssueCode("wxshop", "alice") + `"}`, 400, 1, msgUnknownApp},
			{"another app's code", `{"appid":"wxgame","code":"` + a.fake.IssueCode("wxshop", "alice") + `"}`, 401, 2, msgInvalidCode},
			{"right app", `{"appid":"wxshop","code":"` + a.fake.IssueCode("wxshop", "alice") + `"}`, 200, 0, msgOK},
		}
		for _, tt := range tests {
			got := call(t, a.handler, "POST", "/login", tt.body, "Content-Type", jsonCT)
			if got.code != tt.wantHTTP || got.env.Status != tt.wantStatus || got.env.Msg != tt.wantMsg {
				t.Errorf("%s: login = HTTP %d, %s; want %d, status %d, msg %q", tt.name, got.code, got.raw, tt.wantHTTP, tt.wantStatus, tt.wantMsg)
			}
		}
	})
}

// personOf returns GET /user's person_id and the appids of the person's apps.
func personOf(t *testing.T, h http.Handler, token string) (int64, []string) {
	t.Helper()
	user := dataOf[userData](t, call(t, h, "GET", "/user", "", "token", token))
	var appIDs []string
	for _, a := range user.Apps {
		appIDs = append(appIDs, a.AppID)
	}
	return user.PersonID, appIDs
}

func TestOnePersonAcrossBoundApps(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, apps: companyApps})
		shop := a.login(t, "wxshop", "alice")
		game := a.login(t, "wxgame", "alice")
		solo := a.login(t, "wxsolo", "alice")
		a.login(t, "wxgame", "bob")

		shopReply := call(t, a.handler, "GET", "/user", "", "token", shop)
		shopUser := dataOf[userData](t, shopReply)
		gameUser := dataOf[userData](t, call(t, a.handler, "GET", "/user", "", "token", game))
		if shopUser.OpenID == gameUser.OpenID || shopUser.UnionID != gameUser.UnionID || shopUser.UnionID == "" {
			t.Errorf("alice in Shop and Game: openids %v and %v, unionids %v and %v; want two openids, one unionid",
				shopUser.OpenID, gameUser.OpenID, shopUser.UnionID, gameUser.UnionID)
		}
		for _, token := range []string{shop, game} {
			if id, apps := personOf(t, a.handler, token); id != 1 || !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
				t.Errorf("alice's person = %v with apps %v; want person 1 with wxshop and wxgame", id, apps)
			}
		}
		if list := shopUser.Apps; list[1].Name != "Game" || list[1].UserID != 2 {
			t.Errorf("apps = %+v; want Game's name and user id", list)
		}
		var entries struct {
			Apps []json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal(shopReply.env.Data, &entries); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(testkit.JSONKeys(t, entries.Apps[1]), "openid") {
			t.Error("the apps list shows another app's openid")
		}
		soloUser := dataOf[userData](t, call(t, a.handler, "GET", "/user", "", "token", solo))
		if id, apps := personOf(t, a.handler, solo); soloUser.UnionID != "" || id != 3 || !slices.Equal(apps, []string{"wxsolo"}) {
			t.Errorf("alice in the unbound app: unionid %v, person %v, apps %v; want no unionid, a person of her own", soloUser.UnionID, id, apps)
		}
	})
}

func TestUnionIDLearnedLaterJoinsThePerson(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, apps: companyApps})
		shop := a.login(t, "wxshop", "alice")
		// Alice's Game record was made before Game was bound to the Open
		// Platform account: no unionid, a person of its own, with a claim.
		openID := fakewechat.OpenID("wxgame", "alice")
		u, _, err := a.userBackend.Login(t.Context(), "wxgame", openID, "")
		if err != nil {
			t.Fatal(err)
		}
		key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))
		game, err := a.tokenBackend.Issue(t.Context(), account.Identity{AppID: "wxgame", OpenID: openID, UserID: u.ID}, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", game); got.code != 201 {
			t.Fatalf("claim before linking = %s", got.raw)
		}
		if id, _ := personOf(t, a.handler, game); id != u.ID {
			t.Fatalf("before linking, Game's person = %v; want its own %d", id, u.ID)
		}
		a.clock.Advance(time.Minute)
		if got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", shop); got.code != 201 {
			t.Fatalf("claim in Shop, still another person = %s; want 201", got.raw)
		}

		data, iv := encrypt(t, key, `{"openId":"`+openID+`","nickName":"alice","unionId":"`+fakewechat.UnionID("alice")+`","watermark":{"appid":"wxgame","timestamp":1}}`)
		if got := send(t, a.handler, "POST", "/user/userinfo", game, map[string]any{"encryptedData": data, "iv": iv}); got.env.Status != 0 {
			t.Fatalf("user info with a unionId = %s", got.raw)
		}
		// A later login of the Game record that brings no unionid (as
		// WeChat's answer may lack it) leaves the person as it is.
		if _, _, err := a.userBackend.Login(t.Context(), "wxgame", openID, ""); err != nil {
			t.Fatal(err)
		}
		for _, token := range []string{shop, game} {
			if id, apps := personOf(t, a.handler, token); id != 1 || !slices.Equal(apps, []string{"wxshop", "wxgame"}) {
				t.Errorf("after linking: person %v with apps %v; want person 1 with wxshop and wxgame", id, apps)
			}
		}
		// Both records claimed the gift while they were two persons; now they
		// are one, and the earlier claim is the one that counts.
		got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", shop)
		if got.code != 409 || dataOf[claimData](t, got).AppID != "wxgame" {
			t.Errorf("claim from Shop after linking = HTTP %d, %s; want 409 naming the earlier claim, made in Game", got.code, got.raw)
		}
		list := call(t, a.handler, "GET", "/claims", "", "token", shop)
		if claims := dataOf[claimsData](t, list).Claims; len(claims) != 1 || claims[0].AppID != "wxgame" {
			t.Errorf("GET /claims after linking = %s; want the one earlier claim", list.raw)
		}
	})
}

// TestPersonSurvivesAUnionIDChange moves a mini program to another Open
// Platform account, as its owner can, which gives every one of its users a
// new unionid (their openids stay): alice stays one person, with the gift
// she took in Game still taken in Shop, and an app of the new account that
// she opened before her next Shop login joins that person too (its person
// of her new unionid merged into hers). On both stores, and on Redis with
// two instances, each doing half the logins.
func TestPersonSurvivesAUnionIDChange(t *testing.T) {
	apps := append(slices.Clone(companyApps), appSpec{"wxnew", "New", "new-secret", false})
	for _, store := range []storeKind{onFiles, onRedis, "redis, two instances"} {
		t.Run(string(store), func(t *testing.T) {
			a := newTestApp(t, appOptions{store: store, apps: apps})
			b := a
			if store == "redis, two instances" {
				a = newTestApp(t, appOptions{store: onRedis, apps: apps})
				b = newTestApp(t, appOptions{alongside: a, apps: apps})
			}
			a.fake.MoveApp("wxnew", "another account")
			shop, game := a.login(t, "wxshop", "alice"), b.login(t, "wxgame", "alice")
			if got := call(t, b.handler, "POST", "/claims/welcome-gift", "", "token", game); got.code != 201 {
				t.Fatalf("claim in Game = %s", got.raw)
			}
			before := dataOf[userData](t, call(t, a.handler, "GET", "/user", "", "token", shop))

			newApp := a.login(t, "wxnew", "alice") // the new account's unionid: a person of its own, so far
			if id, _ := personOf(t, a.handler, newApp); id == before.PersonID {
				t.Fatalf("alice in New, before Shop moved: person %d, Shop's; want one of its own", id)
			}
			a.fake.MoveApp("wxshop", "another account")
			shop = b.login(t, "wxshop", "alice")
			after := dataOf[userData](t, call(t, a.handler, "GET", "/user", "", "token", shop))
			if after.ID != before.ID || after.UnionID == before.UnionID {
				t.Errorf("alice in Shop after the move: user %d, unionid %s; want user %d, a new unionid", after.ID, after.UnionID, before.ID)
			}
			for _, h := range []http.Handler{a.handler, b.handler} {
				for name, token := range map[string]string{"Shop": shop, "Game": game, "New": newApp} {
					if id, list := personOf(t, h, token); id != before.PersonID || !slices.Equal(list, []string{"wxshop", "wxgame", "wxnew"}) {
						t.Errorf("alice in %s after the move: person %d with %v; want person %d with Shop, Game and New", name, id, list, before.PersonID)
					}
					if got := call(t, h, "POST", "/claims/welcome-gift", "", "token", token); got.code != 409 || dataOf[claimData](t, got).AppID != "wxgame" {
						t.Errorf("the gift again in %s after the move = HTTP %d, %s; want 409, Game's claim", name, got.code, got.raw)
					}
				}
			}
			if got := call(t, a.handler, "POST", "/claims/second-gift", "", "token", newApp); got.code != 201 {
				t.Errorf("a new gift in New = %s; want 201", got.raw)
			}
			if got := call(t, b.handler, "POST", "/claims/second-gift", "", "token", game); got.code != 409 {
				t.Errorf("the new gift again in Game = %s; want 409", got.raw)
			}
			// Someone else who opens New now, with the new account's unionid,
			// is a person of their own, as before.
			if id, list := personOf(t, a.handler, a.login(t, "wxnew", "bob")); id == before.PersonID || len(list) != 1 {
				t.Errorf("bob in New = person %d with %v; want a person of his own", id, list)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, apps: companyApps})
		shop, game, solo := a.login(t, "wxshop", "alice"), a.login(t, "wxgame", "alice"), a.login(t, "wxsolo", "alice")
		bob := a.login(t, "wxshop", "bob")

		first := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", game)
		claim := dataOf[claimData](t, first)
		if first.code != 201 || first.env.Status != 0 || claim.Name != "welcome-gift" || claim.AppID != "wxgame" {
			t.Fatalf("first claim = HTTP %d, %s; want 201 with the claim", first.code, first.raw)
		}
		for name, token := range map[string]string{"same app": game, "other app": shop} {
			got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", token)
			again := dataOf[claimData](t, got)
			if got.code != 409 || got.env.Status != statusClaimed || got.env.Msg != msgClaimed ||
				again.AppID != "wxgame" || again.ClaimedAt != claim.ClaimedAt {
				t.Errorf("%s: second claim = HTTP %d, %s; want 409, status 6, when and where it was claimed", name, got.code, got.raw)
			}
		}
		if got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", bob); got.code != 201 {
			t.Errorf("another person's claim = HTTP %d, %s; want 201", got.code, got.raw)
		}
		// An app without an Open Platform account gives no unionid: WeChat cannot
		// say its user is alice, so wxlogin cannot either.
		if got := call(t, a.handler, "POST", "/claims/welcome-gift", "", "token", solo); got.code != 201 {
			t.Errorf("claim from the unbound app = HTTP %d, %s; want 201: a person of its own", got.code, got.raw)
		}
		a.clock.Advance(time.Minute)
		call(t, a.handler, "POST", "/claims/coupon-2026", "", "token", shop)
		list := call(t, a.handler, "GET", "/claims", "", "token", shop)
		claims := dataOf[claimsData](t, list).Claims
		if len(claims) != 2 || claims[0].Name != "welcome-gift" || claims[1].Name != "coupon-2026" {
			t.Errorf("GET /claims = %s; want welcome-gift then coupon-2026", list.raw)
		}
		if empty := call(t, a.handler, "GET", "/claims", "", "token", a.login(t, "wxgame", "carol")); empty.raw != `{"status":0,"msg":"ok","data":{"claims":[]}}`+"\n" {
			t.Errorf("GET /claims with none = %s; want an empty list", empty.raw)
		}

		for _, name := range []string{"Welcome", "gift_1", strings.Repeat("a", 33), "%E7%A4%BC"} {
			if got := call(t, a.handler, "POST", "/claims/"+name, "", "token", shop); got.code != 400 || got.env.Status != statusBadRequest {
				t.Errorf("claim %q = HTTP %d, %s; want 400, status 1", name, got.code, got.raw)
			}
		}
		if got := call(t, a.handler, "POST", "/claims/x", "", "token", "nope"); got.code != 401 {
			t.Errorf("claim without a login = HTTP %d; want 401", got.code)
		}
	})
}

func TestConcurrentCrossAppClaimsAreExactlyOnce(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store, apps: companyApps})
		srv := httptest.NewServer(a.handler)
		t.Cleanup(srv.Close)
		shop, game := a.login(t, "wxshop", "alice"), a.login(t, "wxgame", "alice")
		claim := func(token, name string) reply {
			req, _ := http.NewRequest("POST", srv.URL+"/claims/"+name, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return parseReply(t, resp)
		}
		const rounds = 200
		for i := range rounds {
			name := fmt.Sprintf("gift-%d", i)
			var replies [2]reply
			start := make(chan struct{})
			var wg sync.WaitGroup
			for j, token := range []string{shop, game} {
				wg.Go(func() {
					<-start
					replies[j] = claim(token, name)
				})
			}
			close(start)
			wg.Wait()
			codes := []int{replies[0].code, replies[1].code}
			slices.Sort(codes)
			if !slices.Equal(codes, []int{201, 409}) {
				t.Fatalf("round %d: claims from Shop and Game answered %v; want one 201 and one 409", i, codes)
			}
			if c0, c1 := dataOf[claimData](t, replies[0]), dataOf[claimData](t, replies[1]); c0.ClaimedAt != c1.ClaimedAt || c0.AppID != c1.AppID {
				t.Fatalf("round %d: the 409 names another claim than the 201: %s / %s", i, replies[0].raw, replies[1].raw)
			}
		}
		if claims, err := a.userBackend.ClaimsOf(t.Context(), 1); len(claims) != rounds || err != nil {
			t.Errorf("alice holds %d claims (%v); want %d", len(claims), err, rounds)
		}
	})
}

func TestVerifiedUserInfoKeepsTheProfileLimits(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		plain := `{"openId":"` + fakewechat.OpenID("wxapp", "alice") + `","nickName":"` + strings.Repeat("长", 65) + `","watermark":{"timestamp":1,"appid":"wxapp"}}`
		wantDataCheck(t, send(t, a.handler, "POST", "/user/userinfo", token, encryptedFor(t, a.fake, plain)), "nickName 最多 64 个字符，实为 65 个")
	})
}

func TestTokenOfARemovedAppIsNoLogin(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		// The server restarts with the token reloaded, but its app is gone.
		apps := appSet{"wxother": {ID: "wxother", Name: "Other", wx: a.wx}}
		h := newServer(textLogger(io.Discard), nil, apps, a.userBackend, a.tokenBackend, nil, nil, nil, nil)
		code := testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)["code"]
		for _, r := range []struct{ method, path, body string }{{"GET", "/session/check", ""}, {"POST", "/user/phone", `{"code":"` + code.(string) + `"}`}} {
			if got := call(t, h, r.method, r.path, r.body, "Content-Type", jsonCT, "token", token); got.code != 401 || got.env.Status != statusNotLoggedIn {
				t.Errorf("%s %s with a token of a removed app = HTTP %d, %s; want 401, status 4", r.method, r.path, got.code, got.raw)
			}
		}
	})
}

// TestAllocationsPerRequest pins the allocations wxlogin makes to answer
// the routes a mini program calls most, beyond what building the request
// costs (measured with a handler that answers nothing): a change that adds
// one fails here, and is either taken back or pinned anew on purpose. The
// logins count the fake WeChat's side too, in process here.
func TestAllocationsPerRequest(t *testing.T) {
	if raceDetector {
		t.Skip("-race allocates for itself; .ci/run runs this test without it")
	}
	a, token := loggedIn(t)
	for i := range 10 {
		a.login(t, "wxapp", "user"+strconv.Itoa(i))
	}
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	i := 0
	for _, tt := range []struct {
		name string
		req  func() *http.Request
		max  int
	}{
		{"GET /user", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/user", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}, 5},
		{"GET /auth", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/auth", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}, 10},
		{"POST /login, returning", func() *http.Request {
			i++
			body := `{"code":"` + a.fake.IssueCode("wxapp", "user"+strconv.Itoa(i%10)) + `"}`
			r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
			r.Header.Set("Content-Type", jsonCT)
			return r
		}, 159},
	} {
		serve := func(h http.Handler, want int) func() {
			return func() {
				w := &headerOnlyWriter{header: http.Header{}}
				h.ServeHTTP(w, tt.req())
				if w.code != want {
					t.Fatalf("%s answered %d; want %d", tt.name, w.code, want)
				}
			}
		}
		got := int(testing.AllocsPerRun(200, serve(a.handler, http.StatusOK)) - testing.AllocsPerRun(200, serve(noop, 0)))
		if got > tt.max {
			t.Errorf("%s: %d allocations; want at most %d", tt.name, got, tt.max)
		}
		t.Logf("%s: %d allocations (at most %d)", tt.name, got, tt.max)
	}
}

// headerOnlyWriter is a ResponseWriter that keeps the status and drops the
// body, costing no allocation of its own beyond its header map, as
// net/http's writer does.
type headerOnlyWriter struct {
	header http.Header
	code   int
}

func (w *headerOnlyWriter) Header() http.Header { return w.header }
func (w *headerOnlyWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *headerOnlyWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// BenchmarkLoginHandler is one POST /login through the whole handler, with
// the fake WeChat in process (over loopback HTTP, as httptest serves it):
// a returning user, and a new user, whose record is durable before the reply;
// and a returning user under -jwt, who also gets a signed access token.
func BenchmarkLoginHandler(b *testing.B) {
	returning := func(i int) string { return "user" + strconv.Itoa(i%1000) }
	for _, tt := range []struct {
		name string
		user func(i int) string
		jwt  *jwt.Options
	}{
		{"returning", returning, nil},
		{"new", func(i int) string { return "new" + strconv.Itoa(i) }, nil},
		{"returning-jwt", returning, jwtOptions()},
	} {
		b.Run(tt.name, func(b *testing.B) {
			a := newTestApp(b, appOptions{jwt: tt.jwt})
			for i := range 1000 {
				call(b, a.handler, http.MethodPost, "/login", `{"code":"`+a.fake.IssueCode("wxapp", "user"+strconv.Itoa(i))+`"}`, "Content-Type", jsonCT)
			}
			i := 0
			for b.Loop() {
				body := `{"code":"` + a.fake.IssueCode("wxapp", tt.user(i)) + `"}`
				r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/login", strings.NewReader(body))
				w := httptest.NewRecorder()
				a.handler.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("login = %d %s", w.Code, w.Body)
				}
				i++
			}
		})
	}
}

// BenchmarkGetUser is GET /user with a live token: the token lookup, the
// user's record and its person, and the JSON reply.
func BenchmarkGetUser(b *testing.B) { benchmarkGetWithToken(b, "/user") }

// benchmarkGetWithToken is GET path with a live token, in process.
func benchmarkGetWithToken(b *testing.B, path string) {
	a, token := loggedIn(b)
	for b.Loop() {
		r := httptest.NewRequestWithContext(b.Context(), http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s = %d %s", path, w.Code, w.Body)
		}
	}
}

// BenchmarkForwardAuth is GET /auth with a live token, as a proxy asks it:
// the token lookup, the user's record and its person, and the identity in
// headers with no body. It must cost no more than BenchmarkGetUser.
func BenchmarkForwardAuth(b *testing.B) { benchmarkGetWithToken(b, "/auth") }

// FuzzAnyRequest sends any method, target, Content-Type and body to wxlogin
// as mock mode serves it (its routes, the fake under /mock/ and the
// teaching page), with or without a live token. Whatever arrives, no reply
// is a 5xx other than status 3, and every reply outside the teaching page
// and the fake is the envelope. It covers the bodies of the routes that
// have no target of their own (claims, logout, /mock/faults and the fake's
// server API) and every path trick the mux has to handle.
func FuzzAnyRequest(f *testing.F) {
	a := newTestApp(f, appOptions{mock: true, quiet: true, jwt: jwtOptions()}) // every route, -jwt's too
	fake, h := a.fake, a.handler
	token := dataOf[jwtLoginData](f, call(f, h, "POST", "/login", `{"code":"`+fake.IssueCode("wxapp", "alice")+`"}`, "Content-Type", jsonCT)).Token
	for _, seed := range []struct {
		method, target, contentType, body string
	}{
		{"POST", "/login", jsonCT, `{"code":"` + fake.IssueCode("wxapp", "bob") + `"}`},
		{"POST", "/claims/welcome-gift", "", ""},
		{"POST", "/claims/..%2F..%2Fetc", "", ""},
		{"GET", "/claims", "", ""},
		{"POST", "/logout", jsonCT, `{"all":true}`},
		{"POST", "/mock/faults", jsonCT, `{"rate":0.5,"kinds":["html","truncated"]}`},
		{"GET", "/mock/api/sns/jscode2session?appid=wxapp&secret=" + testSecret + "&js_code=x&grant_type=authorization_code", "", ""},
		{"POST", "/mock/api/cgi-bin/stable_token", jsonCT, `{"grant_type":"client_credential","appid":"wxapp","secret":"` + testSecret + `"}`},
		{"POST", "/mock/api/wxa/business/getuserphonenumber?access_token=x", jsonCT, `{"code":"x"}`},
		{"GET", "/mock/api/wxa/checksession?access_token=x&openid=o&signature=s&sig_method=hmac_sha256", "", ""},
		{"POST", "/mock/wx.getUserInfo", jsonCT, `{"user":"alice"}`},
		{"GET", "/user/../healthz", "", ""},
		{"GET", "//scopes", "", ""},
		{"OPTIONS", "/user", "", ""},
		{"GET", "/", "", ""},
		{"PUT", "/auth", "", "a body no proxy sends"},
		{"POST", "/token", jsonCT, `{"ttl":"1y"}`},
		{"GET", "/.well-known/jwks.json", "", ""},
		{"GET", "/.well-known/openid-configuration?x=1", "", ""},
	} {
		f.Add(seed.method, seed.target, seed.contentType, []byte(seed.body), true)
	}
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte, withToken bool) {
		r, err := http.NewRequestWithContext(t.Context(), method, "http://wxlogin"+target, bytes.NewReader(body))
		if err != nil || !strings.HasPrefix(r.URL.Path, "/") {
			return // Not a request a client can send.
		}
		r.Header.Set("Content-Type", contentType)
		if withToken {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		// Faults set by one input must not slow the next.
		defer call(t, fake.Handler(), "POST", "/mock/faults", `{"rate":0}`, "Content-Type", jsonCT)
		w := httptest.NewRecorder()
		aborted := func() (aborted bool) {
			defer func() {
				// A "reset" fault aborts its handler, as net/http expects
				// when it cannot take over the connection of a recorder.
				if v := recover(); v != nil {
					if v != http.ErrAbortHandler {
						panic(v)
					}
					aborted = true
				}
			}()
			h.ServeHTTP(w, r)
			return false
		}()
		if aborted {
			return
		}
		resp := w.Result()
		raw, _ := io.ReadAll(resp.Body)
		var env envelope
		isEnvelope := json.Unmarshal(raw, &env) == nil && bytes.HasPrefix(raw, []byte(`{"status":`))
		page := r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/demo/") || strings.HasPrefix(r.URL.Path, "/mock/") ||
			(strings.HasPrefix(r.URL.Path, "/.well-known/") && resp.StatusCode == http.StatusOK) // -jwt's documents, for verifiers
		// /auth answers a live token with headers and no body, for a proxy.
		granted := r.URL.Path == "/auth" && resp.StatusCode == http.StatusOK && len(raw) == 0 && resp.Header.Get(headerUser) != ""
		switch {
		case !page && !granted && !isEnvelope:
			t.Fatalf("%s %q = HTTP %d %q; want the envelope", method, target, resp.StatusCode, raw)
		case resp.StatusCode >= 500 && !(isEnvelope && env.Status == statusWechatDown):
			t.Fatalf("%s %q = HTTP %d %q; want no 5xx but status 3", method, target, resp.StatusCode, raw)
		}
	})
}

// Over the limit, POST /login answers 429 with status 7 and a Retry-After,
// without reading the body: the code is not spent and WeChat is not called.
func TestLoginRateLimit(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		proxies, _ := limits.ParseTrustedProxies("10.0.0.1")
		a := newTestApp(t, appOptions{store: store, loginRate: 60, loginBurst: 2, proxies: proxies, quiet: true})
		h := a.handler

		login := func(from, code string, xff ...string) reply {
			r := httptest.NewRequestWithContext(t.Context(), "POST", "/login", strings.NewReader(`{"code":"`+code+`"}`))
			r.RemoteAddr = from
			r.Header.Set("Content-Type", jsonCT)
			for _, v := range xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return parseReply(t, w.Result())
		}
		for i := range 2 {
			if got := login("203.0.113.5:1000", a.fake.IssueCode("wxapp", "alice")); got.env.Status != statusOK {
				t.Fatalf("login %d = %s; want ok", i+1, got.raw)
			}
		}
		code := a.fake.IssueCode("wxapp", "alice")
		got := login("203.0.113.5:1000", code)
		if got.code != http.StatusTooManyRequests || got.env.Status != statusRateLimited || got.env.Msg != msgRateLimited {
			t.Fatalf("third login = %d %s; want 429, status 7", got.code, got.raw)
		}
		if s, err := strconv.Atoi(got.header.Get("Retry-After")); err != nil || s != 1 {
			t.Errorf("Retry-After = %q; want 1 (one login a second)", got.header.Get("Retry-After"))
		}
		if other := login("10.0.0.1:1000", a.fake.IssueCode("wxapp", "bob"), "198.51.100.9"); other.env.Status != statusOK {
			t.Errorf("login of another client through the trusted proxy = %s; want ok", other.raw)
		}
		if spoof := login("203.0.113.5:1000", a.fake.IssueCode("wxapp", "bob"), "198.51.100.10"); spoof.env.Status != statusRateLimited {
			t.Errorf("a limited client naming another address in X-Forwarded-For = %s; want status 7", spoof.raw)
		}
		a.clock.Advance(time.Second)
		if again := login("203.0.113.5:1000", code); again.env.Status != statusOK {
			t.Errorf("the refused code, a second later = %s; want ok: the refusal must not spend it", again.raw)
		}
	})
}

// Every answered request is counted by route and HTTP status; an answer to
// POST /login by its envelope status and WeChat's errcode too (a success
// as status 0, a panic after the answer began as -1), a refusal by the
// login limit as that as well; no other route's answer counts as a login.
func TestCountRequest(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	countRequest(m, "POST /login", 200, nil)
	countRequest(m, "POST /login", 401, &apiError{status: statusInvalidCode, errcode: 40029})
	countRequest(m, "POST /login", 429, &apiError{status: statusRateLimited})
	countRequest(m, "POST /login/{$}", 200, errors.New("panic: after the answer began"))
	countRequest(m, "", 404, &apiError{status: statusBadRequest})
	countRequest(m, "GET /user", 401, &apiError{status: statusNotLoggedIn})
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	text := w.Body.String()
	for _, want := range []string{
		`wxlogin_http_requests_total{route="POST /login",code="200"} 1`,
		`wxlogin_http_requests_total{route="unmatched",code="404"} 1`,
		`wxlogin_http_requests_total{route="GET /user",code="401"} 1`,
		`wxlogin_logins_total{status="0",errcode="0"} 1`,
		`wxlogin_logins_total{status="2",errcode="40029"} 1`,
		`wxlogin_logins_total{status="7",errcode="0"} 1`,
		`wxlogin_logins_total{status="-1",errcode="0"} 1`,
		`wxlogin_login_limited_total 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "\nwxlogin_logins_total{"); n != 4 {
		t.Errorf("%d series of logins; want 4, no other route's answers among them:\n%s", n, text)
	}
}

// The mux's own answers (404, 405 with its Allow header) and a body over
// the cap (413) are put in the envelope on the way out.
func TestRoutingErrorsUseTheEnvelope(t *testing.T) {
	a, _ := loggedIn(t)
	tests := []struct {
		method, path, body, contentType string
		wantHTTP                        int
		wantMsg, wantAllow              string
	}{
		{"GET", "/nope", "", "", 404, msgNotFound, ""},
		{"GET", "/login/extra", "", "", 404, msgNotFound, ""},
		{"POST", "/mock/wx.login", `{"user":"x"}`, jsonCT, 404, msgNotFound, ""}, // real mode: no fake
		{"GET", "/login", "", "", 405, msgMethodNotAllowed, "POST"},
		{"PUT", "/user", "", "", 405, msgMethodNotAllowed, "DELETE, GET, HEAD, PATCH"},
		{"GET", "/user/phone", "", "", 405, msgMethodNotAllowed, "POST"},
		{"POST", "/session/check", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"POST", "/healthz", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"GET", "/logout", "", "", 405, msgMethodNotAllowed, "POST"},
		{"POST", "/login", `{"code":"` + strings.Repeat("x", request.MaxBodyBytes) + `"}`, jsonCT, 413, msgTooLarge, ""},
		{"POST", "/login", "code=" + strings.Repeat("x", request.MaxBodyBytes), "application/x-www-form-urlencoded", 413, msgTooLarge, ""},
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

// A panicking handler is answered with a 500 envelope that does not show
// the panic; the access log records it.
func TestPanicBecomesInternalError(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	h := withAccessLog(textLogger(logs), nil, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
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

// Behind a trusted proxy the access log names the client the proxy
// forwarded for, and the proxy; from any other peer, X-Forwarded-For is
// not believed and the peer is the client.
func TestAccessLogNamesTheClientBehindATrustedProxy(t *testing.T) {
	proxies, err := limits.ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, peer, forwarded string
		want                  []string
	}{
		{"through the proxy", "10.1.2.3:4567", "203.0.113.7", []string{"remote=203.0.113.7", "proxy=10.1.2.3:4567"}},
		{"through two proxies", "10.1.2.3:4567", "198.51.100.9, 10.9.9.9", []string{"remote=198.51.100.9", "proxy=10.1.2.3:4567"}},
		{"straight from a client that writes the header", "192.0.2.1:1000", "203.0.113.7", []string{"remote=192.0.2.1:1000"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testkit.SyncBuffer{}
			h := withAccessLog(textLogger(logs), proxies, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest("GET", "/healthz", nil)
			req.RemoteAddr = tt.peer
			req.Header.Set("X-Forwarded-For", tt.forwarded)
			h.ServeHTTP(httptest.NewRecorder(), req)
			line := logs.String()
			for _, w := range tt.want {
				if !strings.Contains(line, " "+w) {
					t.Errorf("access log %q lacks %s", line, w)
				}
			}
			if len(tt.want) == 1 && strings.Contains(line, "proxy=") {
				t.Errorf("access log %q names a proxy for a peer that is not one", line)
			}
		})
	}
}

// An error the store in Redis marks as unavailable is answered 503 with
// status -1 and a Retry-After, wherever it comes from: a route's store
// call, /healthz, or the exchange of a code shared in Redis.
func TestAStoreThatCannotBeReachedAnswers503(t *testing.T) {
	down := fmt.Errorf("redis: dial tcp 127.0.0.1:6379: connection refused: %w", redisstore.ErrUnavailable)
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"a store call", down},
		{"a shared exchange", wechatFailure(down)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeError(w, tt.err)
			got := parseReply(t, w.Result())
			if got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.env.Msg != msgStoreUnavailable || got.header.Get("Retry-After") != "1" {
				t.Errorf("writeError(%v) = HTTP %d, %s (Retry-After %q); want 503, status -1, %q, Retry-After 1", tt.err, got.code, got.raw, got.header.Get("Retry-After"), msgStoreUnavailable)
			}
		})
	}
}

// A body that names a member twice is refused, whatever the route, in
// JSON and in forms: the handler must not pick one of two answers.
func TestDuplicateMembersAreRefused(t *testing.T) {
	a, token := loggedIn(t)
	for _, tt := range []struct {
		method, path, contentType, body string
	}{
		{"POST", "/login", jsonCT, `{"code":"a","code":"b"}`},
		{"POST", "/login", "application/x-www-form-urlencoded", "code=a&code=b"},
		{"PATCH", "/user", jsonCT, `{"nickname":"a","nickName":"b"}`},
		{"POST", "/user/userinfo", jsonCT, `{"rawData":"{}","signature":"x","rawData":"{}"}`},
		{"POST", "/user/phone", jsonCT, `{"code":"a","code":"b"}`},
	} {
		got := call(t, a.handler, tt.method, tt.path, tt.body, "Content-Type", tt.contentType, "token", token)
		if got.code != http.StatusBadRequest || got.env.Status != statusBadRequest || !strings.Contains(got.env.Msg, "不止一次") {
			t.Errorf("%s %s %s = %d %s; want 400, status 1, naming the repeated member", tt.method, tt.path, tt.body, got.code, got.raw)
		}
	}
	if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+token, "token", token); got.env.Status != statusOK {
		t.Errorf("GET /user with the token in both headers = %s; want it to pass, as the headers differ", got.raw)
	}
}

// DELETE /user answers what went and what was kept, and ends every token
// of the user, on every device.
func TestDeleteUserRoute(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		other := a.login(t, "wxapp", "alice") // a second device
		if got := call(t, a.handler, http.MethodPost, "/claims/welcome-gift", "", "token", token); got.code != http.StatusCreated {
			t.Fatalf("claim = %s", got.raw)
		}
		got := call(t, a.handler, http.MethodDelete, "/user", "", "token", token)
		type deleted struct {
			UserID        int64    `json:"user_id"`
			TokensRevoked int      `json:"tokens_revoked"`
			ClaimsKept    []string `json:"claims_kept"`
		}
		if d := dataOf[deleted](t, got); got.env.Status != 0 || d.UserID != 1 || d.TokensRevoked != 2 || !slices.Equal(d.ClaimsKept, []string{"welcome-gift"}) {
			t.Errorf("DELETE /user = %s; want user 1, 2 tokens revoked, welcome-gift kept", got.raw)
		}
		for _, tok := range []string{token, other} {
			if got := call(t, a.handler, http.MethodGet, "/user", "", "token", tok); got.env.Status != statusNotLoggedIn {
				t.Errorf("GET /user with a token of the deleted user = %s; want status 4", got.raw)
			}
		}
		again := a.login(t, "wxapp", "alice")
		if d := dataOf[userData](t, call(t, a.handler, http.MethodGet, "/user", "", "token", again)); d.ID == 1 || d.Nickname != "" {
			t.Errorf("after deletion alice logs in as %+v; want a new user", d)
		}
	})
}

// DELETE /user ends every token of the user whatever its erasure meets.
// On the data directory, a store that refuses the write (here closed, as
// after a failed write) answers 503 and the tokens are dead all the same:
// a token outliving the request would still decrypt with the user's
// session_key. On Redis, an erasure cut short after it was made (here its
// openid's key refusing the step that takes it away) is answered as made,
// the tokens ended with the record, and what is left is finished later.
func TestDeleteUserEndsEveryTokenWhateverTheErasureMeets(t *testing.T) {
	tests := []struct {
		store       storeKind
		fail        func(t *testing.T, a *testApp)
		wantCode    int
		wantRevoked int
	}{
		{onFiles, func(t *testing.T, a *testApp) { a.users.Close() }, http.StatusServiceUnavailable, 0},
		{onRedis, func(t *testing.T, a *testApp) {
			key := openIDKeyOf(t, a)
			for _, cmd := range [][]string{{"DEL", key}, {"HSET", key, "not", "a string"}} {
				if _, err := a.redis.Do(t.Context(), cmd...); err != nil {
					t.Fatal(err)
				}
			}
		}, http.StatusOK, 2},
	}
	for _, tt := range tests {
		t.Run(string(tt.store), func(t *testing.T) {
			a, token := loggedInOn(t, tt.store)
			other := a.login(t, "wxapp", "alice") // a second device
			key := openIDKeyOf(t, a)
			tt.fail(t, a)
			got := call(t, a.handler, http.MethodDelete, "/user", "", "token", token)
			if got.code != tt.wantCode {
				t.Fatalf("DELETE /user = %d %s; want %d", got.code, got.raw, tt.wantCode)
			}
			if tt.wantCode == http.StatusOK {
				if d := dataOf[struct {
					UserID        int64    `json:"user_id"`
					TokensRevoked int      `json:"tokens_revoked"`
					ClaimsKept    []string `json:"claims_kept"`
				}](t, got); d.UserID != 1 || d.TokensRevoked != tt.wantRevoked {
					t.Errorf("DELETE /user = %s; want user 1, %d tokens revoked", got.raw, tt.wantRevoked)
				}
			}
			for _, tok := range []string{token, other} {
				if who, ok, err := a.tokenBackend.Lookup(t.Context(), tok); ok || err != nil {
					t.Errorf("a token of alice after DELETE /user answered %d = %+v, %v, %v; want it dead", got.code, who.Identity, ok, err)
				}
			}
			if rs, onRedis := a.userBackend.(*redisstore.Store); onRedis {
				if _, err := a.redis.Do(t.Context(), "SET", key, "1"); err != nil { // naming the erased id, as it did
					t.Fatal(err)
				}
				if err := rs.FinishErasures(t.Context()); err != nil {
					t.Fatal(err)
				}
				if n, err := a.redis.Do(t.Context(), "EXISTS", key, "wx:erasing"); n != int64(0) || err != nil {
					t.Errorf("keys of the openid and of erasures to finish, once the openid's key is back: %v, %v; want none", n, err)
				}
			}
		})
	}
}

// openIDKeyOf is the key of user 1's openid, in the store in Redis.
func openIDKeyOf(t *testing.T, a *testApp) string {
	t.Helper()
	u, ok, err := a.userBackend.Get(t.Context(), 1)
	if !ok || err != nil {
		t.Fatalf("user 1 = %v, %v", ok, err)
	}
	return "wx:{o:" + u.AppID + ":" + u.OpenID + "}"
}

// A token the deletion has not revoked yet (the moment between the erasure
// and the revocation) is not logged in, on every route, never a 500.
func TestATokenOfAnErasedUserIsNotLoggedIn(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		if _, err := a.userBackend.Erase(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/user"}, {http.MethodPatch, "/user"}, {http.MethodDelete, "/user"}, {http.MethodPost, "/claims/welcome-gift"},
		} {
			got := send(t, a.handler, r.method, r.path, token, map[string]any{"city": "深圳"})
			if r.method == http.MethodGet || r.method == http.MethodDelete {
				got = call(t, a.handler, r.method, r.path, "", "Authorization", "Bearer "+token)
			}
			if got.code != http.StatusUnauthorized || got.env.Status != statusNotLoggedIn {
				t.Errorf("%s %s with a token of an erased user = %d %s; want 401, status 4", r.method, r.path, got.code, got.raw)
			}
		}
	})
}

// writeUserOK writes the bytes writeOK writes for the same user, without
// reflection (appendUserOK).
func TestUserViewJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		view userView
	}{
		{"a new user", userView{
			recordView: recordView{ID: 1, AppID: "wxapp", OpenID: "o-1", CreatedAt: at, UpdatedAt: at, LastLoginAt: at},
			PersonID:   1, Apps: []personApp{{AppID: "wxapp", Name: "Shop", UserID: 1}},
		}},
		{"every field, and strings that need escaping", userView{
			recordView: recordView{
				ID: 3, AppID: "wxgame", OpenID: "o-3", UnionID: "u-1", Nickname: "<张三> & \"co\"\n", AvatarURL: "https://example.com/a.png?x=1&y=2",
				Gender: 2, Language: "zh_CN", City: "广州", Province: "Guangdong", Country: "China\u2028",
				PhoneNumber: "+86 138 0013 8000", PurePhoneNumber: "13800138000", CountryCode: "86",
				CreatedAt: at, UpdatedAt: at.Add(time.Second + 5*time.Millisecond), LastLoginAt: at.In(time.FixedZone("CST", 8*3600)),
			},
			PersonID: 1,
			Apps:     []personApp{{AppID: "wxapp", Name: "Shop", UserID: 1}, {AppID: "wxgame", Name: "bad\xff", UserID: 3}},
		}},
		{"no apps", userView{recordView: recordView{ID: 4, AppID: "a", OpenID: "o"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeOK(want, tt.view)
			writeUserOK(got, tt.view)
			if got.Body.String() != want.Body.String() {
				t.Errorf("writeUserOK wrote %s\nwriteOK writes %s", got.Body, want.Body)
			}
			if !reflect.DeepEqual(got.Header(), want.Header()) || got.Code != want.Code {
				t.Errorf("writeUserOK answered %d %v; writeOK answers %d %v", got.Code, got.Header(), want.Code, want.Header())
			}
		})
	}
}

// /auth answers a live token, whatever the method a proxy asks with, 200
// with no body and the caller's identity in headers: user, person, appid,
// openid and unionid, sent empty where there is none (so that a proxy
// copying it overwrites a client's). A missing, made-up, logged-out or
// deleted user's token is 401, with nothing of anyone's.
func TestForwardAuth(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{apps: companyApps, store: store})
		shop := a.login(t, "wxshop", "alice")
		game := a.login(t, "wxgame", "alice")
		solo := a.login(t, "wxsolo", "bob")
		idOf := func(token string) string {
			t.Helper()
			return fmt.Sprint(dataOf[userData](t, call(t, a.handler, http.MethodGet, "/user", "", "token", token)).ID)
		}
		for _, tt := range []struct {
			name, method, token string
			want                map[string]string
		}{
			{"GET, a bound app", http.MethodGet, shop, map[string]string{
				headerUser: idOf(shop), headerPerson: idOf(shop), headerAppID: "wxshop",
				headerOpenID: fakewechat.OpenID("wxshop", "alice"), headerUnionID: fakewechat.UnionID("alice")}},
			{"POST, the person's second app", http.MethodPost, game, map[string]string{
				headerUser: idOf(game), headerPerson: idOf(shop), headerAppID: "wxgame",
				headerOpenID: fakewechat.OpenID("wxgame", "alice"), headerUnionID: fakewechat.UnionID("alice")}},
			{"HEAD, an unbound app", http.MethodHead, solo, map[string]string{
				headerUser: idOf(solo), headerPerson: idOf(solo), headerAppID: "wxsolo",
				headerOpenID: fakewechat.OpenID("wxsolo", "bob"), headerUnionID: ""}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := httptest.NewRequest(tt.method, "/auth", nil)
				r.Header.Set("Authorization", "Bearer "+tt.token)
				got := httptest.NewRecorder()
				a.handler.ServeHTTP(got, r)
				if got.Code != http.StatusOK || got.Body.Len() != 0 {
					t.Fatalf("%s /auth = %d %q; want 200 and no body", tt.method, got.Code, got.Body)
				}
				for name, want := range tt.want {
					if v, sent := got.Header()[name]; !sent || v[0] != want {
						t.Errorf("%s = %q, sent: %v; want %q", name, v, sent, want)
					}
				}
			})
		}
		out := a.login(t, "wxshop", "carol")
		call(t, a.handler, http.MethodPost, "/logout", "", "token", out)
		gone := a.login(t, "wxgame", "dave")
		call(t, a.handler, http.MethodDelete, "/user", "", "token", gone)
		for name, header := range map[string][]string{
			"no token":         nil,
			"a made-up token":  {"Authorization", "Bearer 1.made-up-token-made-up-token-made-up-tok"},
			"a logged-out one": {"token", out},
			"a deleted user's": {"Authorization", "Bearer " + gone},
		} {
			got := call(t, a.handler, http.MethodGet, "/auth", "", header...)
			if got.code != http.StatusUnauthorized || got.env.Status != statusNotLoggedIn || got.header.Get(headerUser) != "" || got.header.Get(headerOpenID) != "" {
				t.Errorf("/auth with %s = %d %s, %s %q; want 401, status 4, no identity", name, got.code, got.raw, headerUser, got.header.Get(headerUser))
			}
		}
	})
}
