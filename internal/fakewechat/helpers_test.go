package fakewechat

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"wxlogin/internal/testkit"
)

// This file holds what the fake's tests share: the fake on a real HTTP
// server (newFakeSetup), calls of its client and server APIs as a mini
// program and a backend make them, replies as a client reads them (call,
// dataOf), and a clock that moves when told.

// testSecret is the AppSecret of the tests' app "wxapp".
const testSecret = "s3cr3t-app-secret-0123456789abcd"

const jsonCT = "application/json"

// fakeSetup is the fake WeChat on a real HTTP server, called as wxlogin's
// client in mock mode calls it, as app "wxapp".
type fakeSetup struct {
	fake  *Fake
	clock *testkit.FakeClock
	url   string
	// secrets are the apps' AppSecrets, by AppID.
	secrets map[string]string
}

func newFakeSetup(t *testing.T, apps map[string]string) *fakeSetup {
	t.Helper()
	clock := testkit.NewFakeClock()
	fakeApps := map[string]App{}
	for appID, secret := range apps {
		fakeApps[appID] = App{Secret: secret}
	}
	fake := New(fakeApps, Fixtures{}, clock.Now)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	return &fakeSetup{fake: fake, clock: clock, url: srv.URL, secrets: apps}
}

// wxLogin calls the fake's wx.login and returns the code.
func (f *fakeSetup) wxLogin(t *testing.T, body string) string {
	t.Helper()
	resp, err := http.Post(f.url+"/mock/wx.login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		ErrMsg string `json:"errMsg"`
		Code   string `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got.ErrMsg != "login:ok" || got.Code == "" {
		t.Fatalf("wx.login(%s) = HTTP %d, %+v, %v; want login:ok with a code", body, resp.StatusCode, got, err)
	}
	return got.Code
}

// session is a jscode2session reply, as WeChat documents it (WECHAT.md §1).
type session struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid"`
	Errcode    int    `json:"errcode"` // 0 when absent: a session
}

// code2Session exchanges code at the fake's jscode2session as app "wxapp"
// does, with its secret.
func (f *fakeSetup) code2Session(t *testing.T, code string) session {
	t.Helper()
	return code2Session(t, f.url, "wxapp", f.secrets["wxapp"], code)
}

// code2Session exchanges code at jscode2session of the fake at base, as
// appID with secret, the way wxlogin's client calls it: GET, HTTP 200
// whatever the errcode.
func code2Session(t *testing.T, base, appID, secret, code string) session {
	t.Helper()
	q := url.Values{"appid": {appID}, "secret": {secret}, "js_code": {code}, "grant_type": {"authorization_code"}}
	resp, err := http.Get(base + APIPrefix + "/sns/jscode2session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s session
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jscode2session = HTTP %d, %v; want WeChat's JSON with HTTP 200", resp.StatusCode, err)
	}
	if s.Errcode == 0 && (s.OpenID == "" || s.SessionKey == "") {
		t.Fatalf("jscode2session = %+v; want an errcode, or an openid and a session_key", s)
	}
	return s
}

// reply is a response in wxlogin's envelope, as a client sees it. Its data
// is read with dataOf.
type reply struct {
	code int
	raw  string
	env  struct {
		Status int             `json:"status"`
		Msg    string          `json:"msg"`
		Data   json.RawMessage `json:"data"`
	}
}

// call sends a request through the handler. Header pairs follow the body.
// The reply must be JSON, with the headers every reply of wxlogin's has.
func call(t testing.TB, h http.Handler, method, path, body string, header ...string) reply {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	resp := w.Result()
	raw, _ := io.ReadAll(resp.Body)
	rep := reply{code: resp.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &rep.env); err != nil {
		t.Fatalf("%s %s = %d %q; want JSON", method, path, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s %s: Content-Type = %q; want application/json; charset=utf-8", method, path, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s %s: Cache-Control = %q; want no-store", method, path, cc)
	}
	return rep
}

// dataOf reads r's data as a T, exactly: the test fails if the data does
// not decode as a T, has a member T does not name, or lacks one T names.
func dataOf[T any](t testing.TB, r reply) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.env.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("the data of %s is not a %T: %v", strings.TrimSpace(r.raw), v, err)
	}
	var members map[string]json.RawMessage
	json.Unmarshal(r.env.Data, &members) // Cannot fail: it decoded above.
	typ := reflect.TypeFor[T]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if _, ok := members[name]; !ok {
			t.Errorf("the data of %s lacks %s", strings.TrimSpace(r.raw), name)
		}
	}
	return v
}

// faultsData is /mock/faults' data: the settings, and what was injected
// under them.
type faultsData struct {
	Rate     float64        `json:"rate"`
	Kinds    []string       `json:"kinds"`
	Calls    int            `json:"calls"`
	Injected map[string]int `json:"injected"`
}
