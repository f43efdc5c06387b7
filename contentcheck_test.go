package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/fakewechat"
)

func TestParseContentVerdict(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    contentVerdict
		errcode int  // of the *wechatError wanted, if any
		bad     bool // errBadReply wanted
	}{
		{"pass", `{"errcode":0,"errmsg":"ok","result":{"suggest":"pass","label":100}}`, contentVerdict{suggestPass, 100}, 0, false},
		{"risky, as WeChat sends it", `{"errcode":0,"errmsg":"ok","detail":[{"strategy":"content_model","errcode":0,"suggest":"risky","label":20003,"prob":90},{"strategy":"keyword","errcode":0}],"trace_id":"63576133-0b1a7344-7e107045","result":{"suggest":"risky","label":20003}}`, contentVerdict{suggestRisky, 20003}, 0, false},
		{"review", `{"errcode":0,"result":{"suggest":"review","label":21000}}`, contentVerdict{suggestReview, 21000}, 0, false},
		{"openid not seen for two hours", `{"errcode":61010,"errmsg":"user access record timeout"}`, contentVerdict{}, 61010, false},
		{"busy", `{"errcode":-1,"errmsg":"system error"}`, contentVerdict{}, -1, false},
		{"no result", `{"errcode":0,"errmsg":"ok"}`, contentVerdict{}, 0, true},
		{"an unknown verdict", `{"errcode":0,"result":{"suggest":"maybe","label":100}}`, contentVerdict{}, 0, true},
		{"the verdict misspelt as in the old docs", `{"errcode":0,"result":{"suggust":"risky","label":20003}}`, contentVerdict{}, 0, true},
		{"not JSON", `<html>502</html>`, contentVerdict{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseContentVerdict([]byte(tt.body))
			var we *wechatError
			switch {
			case tt.errcode != 0:
				if !errors.As(err, &we) || we.Code != tt.errcode {
					t.Errorf("parseContentVerdict = %+v, %v; want errcode %d", got, err, tt.errcode)
				}
			case tt.bad:
				if !errors.Is(err, errBadReply) {
					t.Errorf("parseContentVerdict = %+v, %v; want errBadReply", got, err)
				}
			case err != nil || got != tt.want:
				t.Errorf("parseContentVerdict = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzParseContentVerdict checks that no reply panics the parser, and that
// whatever it accepts is one of the three verdicts.
func FuzzParseContentVerdict(f *testing.F) {
	f.Add([]byte(`{"errcode":0,"errmsg":"ok","result":{"suggest":"risky","label":20003}}`))
	f.Add([]byte(`{"errcode":0,"result":{"suggest":"pass","label":100}}`))
	f.Add([]byte(`{"errcode":0,"result":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := parseContentVerdict(body)
		if err == nil && v.Suggest != suggestPass && v.Suggest != suggestReview && v.Suggest != suggestRisky {
			t.Fatalf("parseContentVerdict(%q) = %+v with no error", body, v)
		}
	})
}

// patchNickname sends PATCH /user with a nickname.
func patchNickname(t *testing.T, a *testApp, token, nickname string) reply {
	t.Helper()
	return send(t, a.handler, http.MethodPatch, "/user", token, map[string]any{"nickname": nickname, "city": "深圳"})
}

const msgSecCheckPath = "/mock/api/wxa/msg_sec_check"

// A changed nickname goes to msgSecCheck: risky is refused with status 9
// and nothing of the patch is saved; review and pass are saved. The fake's
// word list stands in for WeChat's.
func TestNicknameIsCheckedLikeWeChatChecksIt(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		tests := []struct {
			nickname   string
			wantStatus int
			wantHTTP   int
		}{
			{"小明", statusOK, http.StatusOK},
			{"小明待审", statusOK, http.StatusOK}, // review: WeChat's own input lets it through
			{"赌博小王", statusContentRisky, http.StatusUnprocessableEntity},
			{"I am risky", statusContentRisky, http.StatusUnprocessableEntity},
		}
		for _, tt := range tests {
			t.Run(tt.nickname, func(t *testing.T) {
				a, token := loggedInOn(t, store)
				got := patchNickname(t, a, token, tt.nickname)
				if got.env.Status != tt.wantStatus || got.code != tt.wantHTTP {
					t.Fatalf("PATCH /user %q = %d %s; want HTTP %d, status %d", tt.nickname, got.code, got.raw, tt.wantHTTP, tt.wantStatus)
				}
				if n := a.calls.count(msgSecCheckPath); n != 1 {
					t.Errorf("msg_sec_check called %d times; want 1", n)
				}
				user := dataOf[userData](t, call(t, a.handler, http.MethodGet, "/user", "", "Authorization", "Bearer "+token))
				saved := tt.wantStatus == statusOK
				if (user.Nickname == tt.nickname) != saved || (user.City == "深圳") != saved {
					t.Errorf("after the patch GET /user = %+v; want the patch saved: %v", user, saved)
				}
				if tt.wantStatus == statusContentRisky && got.env.Msg != msgContentRisky {
					t.Errorf("msg = %q; want %q", got.env.Msg, msgContentRisky)
				}
				if strings.Contains(a.logs.String(), tt.nickname) {
					t.Errorf("the log holds the nickname typed: %s", a.logs)
				}
			})
		}
	})
}

// Only a new, non-empty nickname is checked; with -content-check=false none is.
func TestNicknameIsCheckedOnlyWhenItChanges(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		patchNickname(t, a, token, "小明")
		patchNickname(t, a, token, "小明") // unchanged
		patchNickname(t, a, token, "")   // cleared
		send(t, a.handler, http.MethodPatch, "/user", token, map[string]any{"city": "广州"})
		if n := a.calls.count(msgSecCheckPath); n != 1 {
			t.Errorf("msg_sec_check called %d times for one new nickname; want 1", n)
		}

		off := newTestApp(t, appOptions{store: store, noContentCheck: true})
		offToken := off.login(t, "wxapp", "alice")
		if got := patchNickname(t, off, offToken, "risky"); got.env.Status != statusOK {
			t.Errorf("with the check off, PATCH /user = %s; want it saved", got.raw)
		}
		if n := off.calls.count(msgSecCheckPath); n != 0 {
			t.Errorf("with the check off, msg_sec_check called %d times", n)
		}
	})
}

// What msg_sec_check is sent: version 2, scene 1 (profile), the user's
// openid and the nickname, with the access_token in the URL only.
func TestMsgSecCheckRequest(t *testing.T) {
	var mu sync.Mutex
	var query, body string
	a := newTestApp(t, appOptions{})
	fakeAPI := a.fake.Handler()
	a.calls.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == msgSecCheckPath {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			query, body = r.URL.RawQuery, string(b)
			mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		fakeAPI.ServeHTTP(w, r)
	})
	token := a.login(t, "wxapp", "alice")
	if got := patchNickname(t, a, token, "小明"); got.env.Status != statusOK {
		t.Fatalf("PATCH /user = %s", got.raw)
	}
	mu.Lock()
	defer mu.Unlock()
	var sent map[string]any
	if err := json.Unmarshal([]byte(body), &sent); err != nil {
		t.Fatalf("msg_sec_check body %q: %v", body, err)
	}
	want := map[string]any{"content": "小明", "version": 2.0, "scene": 1.0, "openid": fakewechat.OpenID("wxapp", "alice")}
	if len(sent) != len(want) {
		t.Errorf("msg_sec_check body = %v; want %v", sent, want)
	}
	for k, v := range want {
		if sent[k] != v {
			t.Errorf("msg_sec_check body %s = %v; want %v", k, sent[k], v)
		}
	}
	if !strings.HasPrefix(query, "access_token=") || strings.Contains(body, "access_token") {
		t.Errorf("msg_sec_check query %q, body %q; want the access_token in the query only", query, body)
	}
}

// When the check cannot be made, the nickname is refused with status 3:
// WeChat failing in each way it can, and 61010 for a user WeChat has not
// seen in two hours.
func TestNicknameIsRefusedWhenWeChatCannotCheckIt(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		for _, kind := range fakewechat.FaultKinds() {
			t.Run(kind, func(t *testing.T) {
				a, token := loggedInOn(t, store)
				a.wx.http.Timeout = 200 * time.Millisecond
				a.wx.requestTimeout = time.Second
				if got := call(t, a.fake.Handler(), "POST", "/mock/faults", `{"rate":1,"kinds":["`+kind+`"]}`, "Content-Type", jsonCT); got.env.Status != 0 {
					t.Fatalf("POST /mock/faults = %s", got.raw)
				}
				got := patchNickname(t, a, token, "小明")
				if got.env.Status != statusWechatDown || (got.code != http.StatusBadGateway && got.code != http.StatusGatewayTimeout) {
					t.Errorf("PATCH /user with WeChat failing = %d %s; want 502 or 504, status 3", got.code, got.raw)
				}
				call(t, a.fake.Handler(), "POST", "/mock/faults", `{"rate":0}`, "Content-Type", jsonCT)
				if user := dataOf[userData](t, call(t, a.handler, http.MethodGet, "/user", "", "Authorization", "Bearer "+token)); user.Nickname != "" || user.City != "" {
					t.Errorf("after a refused patch GET /user = %+v; want nothing saved", user)
				}
			})
		}
		t.Run("user not seen for two hours", func(t *testing.T) {
			a, token := loggedInOn(t, store)
			// The token is used in between, so it stays valid; WeChat sees
			// none of that.
			for range 3 {
				a.clock.Advance(fakewechat.VisitWindow/3 + time.Minute)
				call(t, a.handler, http.MethodGet, "/user", "", "Authorization", "Bearer "+token)
			}
			got := patchNickname(t, a, token, "小明")
			if got.env.Status != statusWechatDown || got.env.Errcode != 61010 {
				t.Errorf("PATCH /user = %d %s; want status 3 with errcode 61010", got.code, got.raw)
			}
		})
	})
}
