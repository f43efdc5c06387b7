package fakewechat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/opendata"
	"wxlogin/internal/testkit"
)

func TestFakeCodesAreSingleUseAndExpire(t *testing.T) {
	f := newFakeSetup(t, map[string]string{"wxapp": testSecret, "wxother": "other-secret"})
	code := f.wxLogin(t, `{"user":"alice","appid":"wxapp"}`)
	first := f.code2Session(t, code)
	if first.Errcode != 0 {
		t.Fatalf("exchange = %+v; want a session", first)
	}
	if first.OpenID != OpenID("wxapp", "alice") || first.UnionID != UnionID("alice") || len(first.SessionKey) != 24 {
		t.Errorf("exchange = %+v; want alice's openid and unionid and a 16-byte base64 session_key", first)
	}
	if got := f.code2Session(t, code); got.Errcode != errcodeCodeUsed {
		t.Errorf("reused code: %+v; want errcode 40163", got)
	}
	if got := f.code2Session(t, "never-issued"); got.Errcode != errcodeInvalidCode {
		t.Errorf("unknown code: %+v; want errcode 40029", got)
	}
	otherApp := f.wxLogin(t, `{"user":"alice","appid":"wxother"}`)
	if got := f.code2Session(t, otherApp); got.Errcode != errcodeInvalidCode {
		t.Errorf("code of another app: %+v; want errcode 40029", got)
	}

	stale := f.wxLogin(t, `{"user":"alice","appid":"wxapp"}`)
	f.clock.Advance(codeLifetime)
	if got := f.code2Session(t, stale); got.Errcode != errcodeInvalidCode {
		t.Errorf("code older than 5 minutes: %+v; want errcode 40029", got)
	}
	f.wxLogin(t, `{"user":"bob","appid":"wxapp"}`) // issuing drops the expired codes
	f.fake.mu.Lock()
	remembered := len(f.fake.loginCodes.codes)
	f.fake.mu.Unlock()
	if remembered != 1 {
		t.Errorf("the fake remembers %d codes after the others expired; want 1", remembered)
	}
}

func TestFakeIdentities(t *testing.T) {
	f := newFakeSetup(t, map[string]string{"wxapp": testSecret, "wxother": "other-secret"})
	exchange := func(user string) session {
		s := f.code2Session(t, f.wxLogin(t, `{"user":"`+user+`","appid":"wxapp"}`))
		if s.Errcode != 0 {
			t.Fatalf("exchange = %+v; want a session", s)
		}
		return s
	}
	a1, a2, b := exchange("alice"), exchange("alice"), exchange("bob")
	if a1.OpenID != a2.OpenID || a1.UnionID != a2.UnionID {
		t.Errorf("one name gave two identities: %+v and %+v", a1, a2)
	}
	if a1.SessionKey == a2.SessionKey {
		t.Error("two wx.logins gave the same session_key; the fake refreshes it on each")
	}
	if a1.OpenID == b.OpenID || a1.UnionID == b.UnionID {
		t.Errorf("two names share an identity: %+v and %+v", a1, b)
	}
	if OpenID("wxapp", "alice") == OpenID("wxother", "alice") {
		t.Error("one name has the same openid in two apps; openids are per app")
	}
	if id := OpenID("wxapp", "alice"); len(id) != 28 || id[0] != 'o' {
		t.Errorf("openid %q is not shaped like WeChat's (28 characters starting with o)", id)
	}
}

func TestFakeCode2SessionChecksCredentials(t *testing.T) {
	f := newFakeSetup(t, map[string]string{"wxapp": testSecret})
	code := f.wxLogin(t, `{"user":"alice"}`)
	tests := []struct {
		name, appID, secret string
		want                int
	}{
		{"wrong secret", "wxapp", "not-the-secret", errcodeBadSecret},
		{"unknown app", "wxnobody", testSecret, errcodeInvalidAppID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := code2Session(t, f.url, tt.appID, tt.secret, code); got.Errcode != tt.want {
				t.Errorf("code2Session = %+v; want errcode %d", got, tt.want)
			}
		})
	}
	if got := f.code2Session(t, code); got.Errcode != 0 {
		t.Errorf("the code was spent by a call with bad credentials: %+v", got)
	}
}

func TestFakeWxLoginRejectsBadRequests(t *testing.T) {
	f := newFakeSetup(t, map[string]string{"wxapp": testSecret, "wxother": "x"})
	for name, body := range map[string]string{
		"not json":        `user=alice`,
		"no user":         `{}`,
		"user not string": `{"user": 7}`,
		"long user":       `{"user":"` + strings.Repeat("名", 65) + `","appid":"wxapp"}`,
		"unknown app":     `{"user":"alice","appid":"wxnobody"}`,
		"app needed":      `{"user":"alice"}`, // two apps: which one?
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Post(f.url+"/mock/wx.login", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct{ ErrMsg, Code string }
			json.NewDecoder(resp.Body).Decode(&got)
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(got.ErrMsg, "login:fail") || got.Code != "" {
				t.Errorf("wx.login(%s) = HTTP %d, %+v; want 400 with login:fail and no code", body, resp.StatusCode, got)
			}
		})
	}
}

// FuzzFakeWxLogin checks that no request body panics the fake's wx.login,
// and that every answer is wx.login's shape: a code, or login:fail.
func FuzzFakeWxLogin(f *testing.F) {
	f.Add([]byte(`{"user":"alice"}`))
	f.Add([]byte(`{"user":"alice","appid":"wxapp"}`))
	f.Add([]byte(`{"user":"\ud800"}`))
	f.Add([]byte(`{"user":null}`))
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	h := fake.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/mock/wx.login", strings.NewReader(string(body))))
		var got struct{ ErrMsg, Code string }
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("wx.login answered %d %q; want JSON", w.Code, w.Body)
		}
		ok := w.Code == 200 && got.ErrMsg == "login:ok" && got.Code != ""
		failed := w.Code == 400 && strings.HasPrefix(got.ErrMsg, "login:fail") && got.Code == ""
		if !ok && !failed {
			t.Fatalf("wx.login(%q) = %d %+v", body, w.Code, got)
		}
	})
}

// officialPlaintext is what WeChat's published example of open data
// decrypts to (WECHAT.md §2): the shape of user info, field by field.
const officialPlaintext = `{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}`

func TestFakeUserInfoIsShapedAsWeChat(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	fake.IssueCode("wxapp", "alice")
	detail := testkit.WXCall(t, fake.Handler(), "wx.getUserInfo", `{"user":"alice"}`)
	key, _ := fake.SessionKey("wxapp", "alice")
	plain, err := opendata.Decrypt(key, detail["encryptedData"].(string), detail["iv"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := testkit.JSONKeys(t, plain), testkit.JSONKeys(t, []byte(officialPlaintext)); !slices.Equal(got, want) {
		t.Errorf("decrypted keys %v; want the official example's %v", got, want)
	}
	rawData := detail["rawData"].(string)
	const officialRawData = `{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://x/0"}`
	if got, want := testkit.JSONKeys(t, []byte(rawData)), testkit.JSONKeys(t, []byte(officialRawData)); !slices.Equal(got, want) {
		t.Errorf("rawData keys %v; want the official example's %v", got, want)
	}
	if detail["signature"] != opendata.SignRawData(rawData, key) {
		t.Errorf("signature %v is not SHA-1 of rawData and the session_key", detail["signature"])
	}
}

func TestFakeUnionIDAcrossApps(t *testing.T) {
	fake := New(map[string]App{"wxshop": {Secret: "s1"}, "wxgame": {Secret: "s2"}, "wxsolo": {Secret: "s3", Unbound: true}}, Fixtures{}, time.Now)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	exchange := func(appID string) session {
		t.Helper()
		s := code2Session(t, srv.URL, appID, fake.apps[appID].Secret, fake.IssueCode(appID, "alice"))
		if s.Errcode != 0 {
			t.Fatalf("exchange = %+v; want a session", s)
		}
		return s
	}
	shop, game, solo := exchange("wxshop"), exchange("wxgame"), exchange("wxsolo")
	if shop.OpenID == game.OpenID || shop.UnionID != game.UnionID || shop.UnionID == "" {
		t.Errorf("alice in two bound apps: %+v and %+v; want two openids and one unionid", shop, game)
	}
	if solo.UnionID != "" {
		t.Errorf("alice in an unbound app got unionid %q; want none", solo.UnionID)
	}
	info := testkit.WXCall(t, fake.Handler(), "wx.getUserInfo", `{"user":"alice","appid":"wxsolo"}`)
	key, _ := fake.SessionKey("wxsolo", "alice")
	plain, _ := opendata.Decrypt(key, info["encryptedData"].(string), info["iv"].(string))
	if strings.Contains(string(plain), "unionId") {
		t.Errorf("user info in an unbound app carries a unionId: %s", plain)
	}
	resp, err := http.Post(srv.URL+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ ErrMsg string }
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(got.ErrMsg, "appid required") {
		t.Errorf("wx.login without appid on a fake of three apps = %d %q; want 400 asking for the appid", resp.StatusCode, got.ErrMsg)
	}
}

// callServerAPI calls the fake's server API at path (as on api.weixin.qq.com)
// and returns the reply, which must be WeChat's JSON with HTTP 200.
func callServerAPI(t *testing.T, fake *Fake, method, path, body string) map[string]any {
	t.Helper()
	return testkit.ServeJSON(t, fake.Handler(), method, APIPrefix+path, body)
}

// errcodeOf is a reply's errcode, 0 when absent.
func errcodeOf(reply map[string]any) int {
	code, _ := reply["errcode"].(float64)
	return int(code)
}

// Any path under the API root is answered in WeChat's JSON: 40066 for one
// the fake does not serve, 43001 or 43002 for a known one with the wrong
// method.
func TestFakeAnswersEveryPathInWeChatJSON(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/cgi-bin/nope", errcodeInvalidURL},
		{"GET", "/sns/jsCode2Session", errcodeInvalidURL}, // the path is case-sensitive (WECHAT.md §1)
		{"POST", "/", errcodeInvalidURL},
		{"POST", "/sns/jscode2session", 43001},
		{"GET", "/wxa/msg_sec_check", 43002},
		{"DELETE", "/cgi-bin/stable_token", 43002},
	}
	for _, tt := range tests {
		if got := errcodeOf(callServerAPI(t, fake, tt.method, tt.path, "")); got != tt.want {
			t.Errorf("%s %s: errcode %d; want %d", tt.method, tt.path, got, tt.want)
		}
	}
}

// The classic access_token: each call issues a new one, and the one it
// replaces works for 5 more minutes only; stable_token's are untouched.
func TestFakeClassicAccessToken(t *testing.T) {
	clock := testkit.NewFakeClock()
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, clock.Now)
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"grant_type=client_credential&appid=wxapp&secret=wrong", errcodeInvalidCredential}, // as getAccessToken documents
		{"grant_type=client_credential&appid=wxnope&secret=" + testSecret, errcodeInvalidAppID},
		{"grant_type=password&appid=wxapp&secret=" + testSecret, 40002},
	} {
		if got := errcodeOf(callServerAPI(t, fake, "GET", "/cgi-bin/token?"+tt.query, "")); got != tt.want {
			t.Errorf("GET /cgi-bin/token?%s: errcode %d; want %d", tt.query, got, tt.want)
		}
	}
	classic := func() string {
		t.Helper()
		reply := callServerAPI(t, fake, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxapp&secret="+testSecret, "")
		token, _ := reply["access_token"].(string)
		if token == "" || reply["expires_in"] != 7200.0 {
			t.Fatalf("GET /cgi-bin/token = %v; want a token for 7200 s", reply)
		}
		return token
	}
	works := func(token string) int {
		t.Helper()
		_, failure := fake.checkAccessToken(token)
		code, _ := failure["errcode"].(int) // as the fake holds it, before JSON
		return code
	}
	stable, _ := fake.stableToken("wxapp", false)
	first := classic()
	second := classic()
	if first == second || works(first) != 0 || works(second) != 0 {
		t.Fatalf("two classic tokens %q, %q: errcodes %d, %d; want two, both working for now", first, second, works(first), works(second))
	}
	clock.Advance(tokenRenewal + time.Second)
	if works(first) != errcodeTokenExpired || works(second) != 0 || works(stable) != 0 {
		t.Errorf("5 minutes after it was replaced, the first classic token: %d; the second: %d; the stable one: %d; want %d, 0, 0",
			works(first), works(second), works(stable), errcodeTokenExpired)
	}
	if again, _ := fake.stableToken("wxapp", false); again != stable {
		t.Error("getting classic tokens replaced the stable one")
	}
}

// RevokeAccessTokens ends every token of the app at once, stable and
// classic, and no other app's; the next stable_token call issues a new one.
func TestFakeRevokeAccessTokens(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}, "wxother": {Secret: "other"}}, Fixtures{}, time.Now)
	works := func(token string) bool {
		_, failure := fake.checkAccessToken(token)
		return failure == nil
	}
	stable, _ := fake.stableToken("wxapp", false)
	classic := fake.classicToken("wxapp")
	other, _ := fake.stableToken("wxother", false)
	fake.RevokeAccessTokens("wxapp")
	if works(stable) || works(classic) || !works(other) {
		t.Errorf("after RevokeAccessTokens(wxapp): stable works %v, classic %v, the other app's %v; want false, false, true", works(stable), works(classic), works(other))
	}
	if fresh, _ := fake.stableToken("wxapp", false); fresh == stable || !works(fresh) || fake.AccessToken("wxapp") != fresh {
		t.Errorf("stable_token after the revocation gave %q; want a new token that works", fresh)
	}
}

// msg_sec_check's documented refusals, each as WeChat answers it.
func TestFakeMsgSecCheckRefusals(t *testing.T) {
	clock := testkit.NewFakeClock()
	fake := New(map[string]App{"wxapp": {Secret: testSecret}, "wxother": {Secret: "other"}}, Fixtures{}, clock.Now)
	fake.IssueCode("wxapp", "alice")
	fake.IssueCode("wxother", "bob")
	token, _ := fake.stableToken("wxapp", false)
	alice := OpenID("wxapp", "alice")
	body := func(content string, version, scene int, openID string) string {
		b, _ := json.Marshal(map[string]any{"content": content, "version": version, "scene": scene, "openid": openID})
		return string(b)
	}
	tests := []struct {
		name, token, body string
		want              int
		suggest           string
	}{
		{"pass", token, body("小明", 2, 1, alice), 0, suggestPass},
		{"risky", token, body("违禁品", 2, 1, alice), 0, suggestRisky},
		{"review", token, body("待审的名字", 2, 1, alice), 0, suggestReview},
		{"risky wins over review", token, body("待审 risky", 2, 1, alice), 0, suggestRisky},
		{"bad token", "nope", body("小明", 2, 1, alice), errcodeInvalidCredential, ""},
		{"version 1", token, body("小明", 1, 1, alice), 47001, ""},
		{"not JSON", token, "content=小明", 47001, ""},
		{"empty content", token, body("", 2, 1, alice), 44002, ""},
		{"no openid", token, body("小明", 2, 1, ""), 44002, ""},
		{"scene out of range", token, body("小明", 2, 5, alice), 40129, ""},
		{"another app's user", token, body("小明", 2, 1, OpenID("wxother", "bob")), errcodeInvalidOpenID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := callServerAPI(t, fake, "POST", "/wxa/msg_sec_check?access_token="+tt.token, tt.body)
			if got := errcodeOf(reply); got != tt.want {
				t.Fatalf("msg_sec_check = %v; want errcode %d", reply, tt.want)
			}
			if tt.suggest == "" {
				return
			}
			if result, _ := reply["result"].(map[string]any); result["suggest"] != tt.suggest {
				t.Errorf("msg_sec_check = %v; want result.suggest %q", reply, tt.suggest)
			}
		})
	}
	clock.Advance(VisitWindow + time.Second)
	token, _ = fake.stableToken("wxapp", false)
	if got := errcodeOf(callServerAPI(t, fake, "POST", "/wxa/msg_sec_check?access_token="+token, body("小明", 2, 1, alice))); got != 61010 {
		t.Errorf("msg_sec_check of a user not seen for two hours: errcode %d; want 61010", got)
	}
}

func TestExchangeLogKeepsTheLatest(t *testing.T) {
	var l exchangeLog
	for i := range maxExchanges + 50 {
		l.add(exchange{Path: fmt.Sprint(i)})
	}
	all := l.since(0)
	if len(all) != maxExchanges || all[0].Seq != 51 || all[len(all)-1].Seq != maxExchanges+50 {
		t.Fatalf("kept %d exchanges, %d to %d; want the latest %d", len(all), all[0].Seq, all[len(all)-1].Seq, maxExchanges)
	}
	if got := l.since(maxExchanges + 40); len(got) != 10 || got[0].Path != fmt.Sprint(maxExchanges+40) {
		t.Errorf("since(%d) = %d exchanges from %q; want the last 10", maxExchanges+40, len(got), got[0].Path)
	}
}

// getuserphonenumber writes countryCode as the number 86 unless told to
// write it as text, "86": WeChat's page shows both (WECHAT.md §3).
func TestFakePhoneCountryCodeForms(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	token, _ := fake.stableToken("wxapp", false)
	countryCode := func() any {
		t.Helper()
		call(t, fake.Handler(), "POST", "/mock/wx.agreePrivacyAuthorization", `{"user": "alice"}`)
		var detail struct{ Code string }
		if err := json.Unmarshal([]byte(call(t, fake.Handler(), "POST", "/mock/wx.getPhoneNumber", `{"user": "alice"}`).raw), &detail); err != nil {
			t.Fatal(err)
		}
		reply := callServerAPI(t, fake, "POST", "/wxa/business/getuserphonenumber?access_token="+token, `{"code": "`+detail.Code+`"}`)
		info, _ := reply["phone_info"].(map[string]any)
		return info["countryCode"]
	}
	if got := countryCode(); got != 86.0 {
		t.Errorf("countryCode = %#v; want the number 86", got)
	}
	fake.SetCountryCodeText(true)
	if got := countryCode(); got != "86" {
		t.Errorf("countryCode after SetCountryCodeText(true) = %#v; want \"86\"", got)
	}
}
