package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// A fixtures file fixes what another backend's tests expect of a user,
// through WeChat's own API on -fake-only: alice's openid and unionid in
// the shop, her profile and her Hong Kong phone number; the game, unbound
// by the file, gives her no unionid and the derived openid; bob, not in
// the file, is derived from his name.
func TestFakeFixtures(t *testing.T) {
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps.json")
	writeFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxgame", "name": "Game", "secret_env": "GAME_SECRET"}]}`)
	fixtures := filepath.Join(dir, "fixtures.json")
	writeFile(t, fixtures, `{
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
		{"alice in the unbound game", "wxgame", "game-secret", "alice", fakeOpenID("wxgame", "alice"), ""},
		{"bob, not in the file", "wxshop", "shop-secret", "bob", fakeOpenID("wxshop", "bob"), fakeUnionID("bob")},
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
		{"one openid for two", `{"users": {"alice": {"openids": {"` + mockAppID + `": "o"}}, "bob": {"openids": {"` + mockAppID + `": "o"}}}}`, `is alice's too`},
		{"one unionid for two", `{"users": {"alice": {"unionid": "u"}, "bob": {"unionid": "u"}}}`, `a unionid is one person`},
		{"phone with its country code", `{"users": {"alice": {"phone": "+8613800138000"}}}`, `5 to 20 digits`},
		{"avatar not a URL", `{"users": {"alice": {"avatar_url": "alice.png"}}}`, `an http(s) URL`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fixtures.json")
			writeFile(t, path, tt.file)
			_, err := loadConfig([]string{"wxlogin", "-fake-fixtures", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loading %s = %v; want an error with %q", tt.file, err, tt.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "fixtures.json")
	writeFile(t, path, `{}`)
	env := map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "real"}
	if _, err := loadConfig([]string{"wxlogin", "-fake-fixtures", path}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "only the fake WeChat") {
		t.Errorf("fixtures in real mode = %v; want them refused", err)
	}
}
