package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the built-in fake WeChat. In mock mode wxlogin serves it under
// /mock/ and its own WeChat client calls it over HTTP, exactly as it would
// call api.weixin.qq.com, so mock mode runs the real code path end to end.
// It plays both sides WeChat plays: the client API a mini program calls
// (wx.login) and the server API wxlogin calls (jscode2session).

// fakeCodeLifetime is how long a wx.login code may be exchanged (WECHAT.md §1).
const fakeCodeLifetime = 5 * time.Minute

// fakeWechat imitates WeChat for a fixed set of apps.
type fakeWechat struct {
	apps map[string]string // appid → AppSecret, fixed at construction
	now  func() time.Time

	mu    sync.Mutex // guards codes and queue
	codes map[string]*fakeCode
	queue []*fakeCode // codes in the order they were issued, so expired ones are dropped cheaply
}

// fakeCode is one code handed out by wx.login.
type fakeCode struct {
	code       string
	appID      string
	user       string
	sessionKey string
	expires    time.Time
	used       bool
}

func newFakeWechat(apps map[string]string, now func() time.Time) *fakeWechat {
	return &fakeWechat{apps: apps, now: now, codes: map[string]*fakeCode{}}
}

// routes serves the fake under /mock/.
func (f *fakeWechat) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /mock/wx.login", f.handleLogin())
	mux.Handle("GET /mock/api/sns/jscode2session", f.handleCode2Session())
	return mux
}

// fakeOpenID is the openid the fake gives a user name in an app: the same
// name always yields the same openid for an app, across restarts too, and a
// different one in another app, as WeChat's openids are per app.
func fakeOpenID(appID, user string) string { return fakeID("openid\x00" + appID + "\x00" + user) }

// fakeUnionID is the unionid of a user name: one person across all apps.
func fakeUnionID(user string) string { return fakeID("unionid\x00" + user) }

// fakeID derives a 28-character id shaped like WeChat's ("o" and base64url).
func fakeID(seed string) string {
	sum := sha256.Sum256([]byte("wxlogin fake wechat\x00" + seed))
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

// handleLogin serves POST /mock/wx.login: what wx.login() gives a mini program.
// The body names the user, {"user": "alice"}, and optionally the app; the
// reply is wx.login's success result, {"errMsg": "login:ok", "code": "..."}.
// Each login also gives the user a fresh session_key, as wx.login may.
func (f *fakeWechat) handleLogin() http.Handler {
	type request struct {
		User  string `json:"user"`
		AppID string `json:"appid"`
	}
	type response struct {
		ErrMsg string `json:"errMsg"`
		Code   string `json:"code,omitempty"`
	}
	fail := func(w http.ResponseWriter, code int, reason string) {
		writeJSON(w, code, response{ErrMsg: "login:fail " + reason})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				fail(w, http.StatusRequestEntityTooLarge, "body too large")
				return
			}
			fail(w, http.StatusBadRequest, `body must be JSON like {"user": "alice"}`)
			return
		}
		if req.User == "" || !utf8.ValidString(req.User) || utf8.RuneCountInString(req.User) > 64 {
			fail(w, http.StatusBadRequest, "user must be a name of 1 to 64 characters")
			return
		}
		if req.AppID == "" && len(f.apps) == 1 {
			for appID := range f.apps {
				req.AppID = appID
			}
		}
		if _, ok := f.apps[req.AppID]; !ok {
			fail(w, http.StatusBadRequest, "unknown appid")
			return
		}
		writeJSON(w, http.StatusOK, response{ErrMsg: "login:ok", Code: f.issueCode(req.AppID, req.User)})
	})
}

// issueCode creates a single-use code for user in appID.
func (f *fakeWechat) issueCode(appID, user string) string {
	var raw [24]byte
	rand.Read(raw[:]) // Never fails; see tokenStore.issue.
	var key [16]byte
	rand.Read(key[:])
	now := f.now()
	c := &fakeCode{
		code:       base64.RawURLEncoding.EncodeToString(raw[:]),
		appID:      appID,
		user:       user,
		sessionKey: base64.StdEncoding.EncodeToString(key[:]),
		expires:    now.Add(fakeCodeLifetime),
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.queue) > 0 && !now.Before(f.queue[0].expires) {
		delete(f.codes, f.queue[0].code)
		f.queue = f.queue[1:]
	}
	f.codes[c.code] = c
	f.queue = append(f.queue, c)
	return c.code
}

// handleCode2Session serves GET /mock/api/sns/jscode2session like WeChat:
// HTTP 200 with a text/plain JSON body, errcode absent on success. The checks
// and their errcodes follow WECHAT.md §1; 41002/41004/41008 for missing
// parameters come from WeChat's global code list.
func (f *fakeWechat) handleCode2Session() http.Handler {
	type reply struct {
		OpenID     string `json:"openid,omitempty"`
		SessionKey string `json:"session_key,omitempty"`
		UnionID    string `json:"unionid,omitempty"`
		Errcode    int    `json:"errcode,omitempty"`
		Errmsg     string `json:"errmsg,omitempty"`
	}
	answer := func(w http.ResponseWriter, v reply) {
		body, _ := json.Marshal(v) // Cannot fail: reply is plain data.
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}
	fail := func(w http.ResponseWriter, errcode int, errmsg string) {
		answer(w, reply{Errcode: errcode, Errmsg: errmsg + ", rid: fake"})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		appID, secret, code := q.Get("appid"), q.Get("secret"), q.Get("js_code")
		switch {
		case appID == "":
			fail(w, 41002, "appid missing")
			return
		case secret == "":
			fail(w, 41004, "appsecret missing")
			return
		case code == "":
			fail(w, errcodeMissingCode, "missing code")
			return
		case q.Get("grant_type") != "authorization_code":
			fail(w, 40002, "invalid grant_type")
			return
		}
		want, ok := f.apps[appID]
		if !ok {
			fail(w, errcodeInvalidAppID, "invalid appid")
			return
		}
		if subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			fail(w, errcodeBadSecret, "invalid appsecret")
			return
		}

		f.mu.Lock()
		c, ok := f.codes[code]
		valid := ok && c.appID == appID && f.now().Before(c.expires)
		used := valid && c.used
		if valid {
			c.used = true
		}
		f.mu.Unlock()
		switch {
		case !valid:
			fail(w, errcodeInvalidCode, "invalid code")
		case used:
			fail(w, errcodeCodeUsed, "code been used")
		default:
			answer(w, reply{OpenID: fakeOpenID(appID, c.user), SessionKey: c.sessionKey, UnionID: fakeUnionID(c.user)})
		}
	})
}
