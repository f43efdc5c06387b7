package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the built-in fake WeChat. In mock mode wxlogin serves it under
// /mock/ and its own WeChat client calls it over HTTP, exactly as it would
// call api.weixin.qq.com, so mock mode runs the real code path end to end.
// It plays both sides WeChat plays: the client API a mini program calls
// (wx.login, wx.getUserInfo, wx.getPhoneNumber, wx.getWeRunData) and the
// server API wxlogin calls (jscode2session, stable_token, checksession,
// getuserphonenumber).

// fakeCodeLifetime is how long a wx.login or phone code may be exchanged
// (WECHAT.md §1, §3).
const fakeCodeLifetime = 5 * time.Minute

// fakeAPIPrefix is where the fake serves WeChat's server API: wxlogin's
// client in mock mode has it as its base URL.
const fakeAPIPrefix = "/mock/api"

// fakeAccessTokenLifetime is the expires_in of a fresh access_token, and
// fakeTokenRenewal how long before its end the next one is issued, during
// which both are valid (WECHAT.md §4).
const (
	fakeAccessTokenLifetime = 7200 * time.Second
	fakeTokenRenewal        = 5 * time.Minute
)

// fakeApp is one mini program the fake knows.
type fakeApp struct {
	Secret string
	// Unbound is an app not bound to an Open Platform account: WeChat gives
	// its users no unionid (WECHAT.md §7).
	Unbound bool
}

// fakeWechat imitates WeChat for a fixed set of apps.
type fakeWechat struct {
	apps map[string]fakeApp // by appid, fixed at construction
	now  func() time.Time

	mu          sync.Mutex // guards every field below
	loginCodes  codeBook
	phoneCodes  codeBook
	sessionKeys map[fakeUser]string // the current session_key of each user who ran wx.login
	openIDs     map[userRef]string  // (appid, openid) → user name
	tokens      map[string]fakeAccessToken
	newestToken map[string]string // appid → its newest access_token

	exchanges exchangeLog   // the server API calls, for the teaching page
	faults    faultInjector // the calls made to fail on purpose (faults.go)
}

// fakeUser is a user name in one app.
type fakeUser struct {
	appID, name string
}

// fakeAccessToken is an access_token the fake issued.
type fakeAccessToken struct {
	appID   string
	expires time.Time
}

// fakeCode is one code handed out by wx.login or getPhoneNumber.
type fakeCode struct {
	code       string
	user       fakeUser
	sessionKey string // a login code's session_key
	expires    time.Time
	used       bool
}

// codeBook holds live codes. Codes are kept in the order they were issued,
// so expired ones are dropped cheaply.
type codeBook struct {
	codes map[string]*fakeCode
	queue []*fakeCode
}

func (b *codeBook) add(c *fakeCode, now time.Time) {
	for len(b.queue) > 0 && !now.Before(b.queue[0].expires) {
		delete(b.codes, b.queue[0].code)
		b.queue = b.queue[1:]
	}
	if b.codes == nil {
		b.codes = map[string]*fakeCode{}
	}
	b.codes[c.code] = c
	b.queue = append(b.queue, c)
}

// use spends code for appID. It returns the code if it is valid: issued for
// appID and not expired. used reports whether it had been spent before.
func (b *codeBook) use(code, appID string, now time.Time) (c *fakeCode, used bool) {
	c, ok := b.codes[code]
	if !ok || c.user.appID != appID || !now.Before(c.expires) {
		return nil, false
	}
	used, c.used = c.used, true
	return c, used
}

func newFakeWechat(apps map[string]fakeApp, now func() time.Time) *fakeWechat {
	return &fakeWechat{
		apps: apps, now: now,
		sessionKeys: map[fakeUser]string{},
		openIDs:     map[userRef]string{},
		tokens:      map[string]fakeAccessToken{},
		newestToken: map[string]string{},
	}
}

// routes serves the fake under /mock/.
func (f *fakeWechat) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /mock/wx.login", f.handleLogin())
	mux.Handle("POST /mock/wx.getUserInfo", f.handleGetUserInfo())
	mux.Handle("POST /mock/wx.getPhoneNumber", f.handleGetPhoneNumber())
	mux.Handle("POST /mock/wx.getWeRunData", f.handleGetWeRunData())
	mux.Handle("GET /mock/api/sns/jscode2session", f.serverAPI(f.handleCode2Session()))
	mux.Handle("POST /mock/api/cgi-bin/stable_token", f.serverAPI(f.handleStableToken()))
	mux.Handle("GET /mock/api/wxa/checksession", f.serverAPI(f.handleCheckSession()))
	mux.Handle("POST /mock/api/wxa/business/getuserphonenumber", f.serverAPI(f.handlePhoneNumber()))
	mux.Handle("GET /mock/exchanges", f.exchanges.handle())
	mux.Handle("GET /mock/faults", f.faults.handleFaults())
	mux.Handle("POST /mock/faults", f.faults.handleFaults())
	return mux
}

// standalone serves the fake for -fake-only: WeChat's server API at the
// root (/sns/jscode2session, …) as well as under /mock/api, the client API
// under /mock/, and /healthz for a readiness check.
func (f *fakeWechat) standalone() http.Handler {
	routes := f.routes()
	mux := http.NewServeMux()
	mux.Handle("/mock/", routes)
	mux.Handle("GET /healthz", handleHealthz(nil))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = fakeAPIPrefix + r.URL.Path
		r2.URL.RawPath = ""
		routes.ServeHTTP(w, r2)
	}))
	return mux
}

// serverAPI wraps a handler of WeChat's server API: the calls that get
// through the faults set on purpose are recorded for the teaching page,
// which shows what passes between wxlogin and WeChat.
func (f *fakeWechat) serverAPI(h http.Handler) http.Handler {
	return f.faults.failing(f.exchanges.record(fakeAPIPrefix, h))
}

// fakeOpenID is the openid the fake gives a user name in an app: the same
// name always yields the same openid for an app, across restarts too, and a
// different one in another app, as WeChat's openids are per app.
func fakeOpenID(appID, user string) string { return fakeID("openid\x00" + appID + "\x00" + user) }

// fakeUnionID is the unionid of a user name: one person across all apps
// bound to the Open Platform account.
func fakeUnionID(user string) string { return fakeID("unionid\x00" + user) }

// unionID is u's unionid, or "" if u's app is not bound to the account.
func (f *fakeWechat) unionID(u fakeUser) string {
	if f.apps[u.appID].Unbound {
		return ""
	}
	return fakeUnionID(u.name)
}

// fakeID derives a 28-character id shaped like WeChat's ("o" and base64url).
func fakeID(seed string) string {
	sum := fakeHash(seed)
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

func fakeHash(seed string) [sha256.Size]byte {
	return sha256.Sum256([]byte("wxlogin fake wechat\x00" + seed))
}

// fakePhoneNumber is a user name's phone number: 11 digits starting with 1,
// shaped like a number in mainland China.
func fakePhoneNumber(user string) string {
	sum := fakeHash("phone\x00" + user)
	return fmt.Sprintf("1%010d", 3_000_000_000+binary.BigEndian.Uint64(sum[:8])%7_000_000_000)
}

// fakeAvatarURL is a user name's avatar, shaped like WeChat's.
func fakeAvatarURL(user string) string {
	return "https://thirdwx.qlogo.cn/mmopen/vi_32/" + fakeID("avatar\x00" + user)[1:] + "/132"
}

// anonymousAvatarURL is the grey avatar WeChat sends in place of the real one
// (WECHAT.md §5).
const anonymousAvatarURL = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132"

// clientRequest is the body of every fake client API call: who is using the
// mini program, and which one when the fake serves several.
type clientRequest struct {
	User      string `json:"user"`
	AppID     string `json:"appid"`
	Anonymous bool   `json:"anonymous"` // getUserInfo: answer as WeChat does since 2021
}

// clientFail answers a client API call with WeChat's "<api>:fail <reason>".
func clientFail(w http.ResponseWriter, code int, api, reason string) {
	writeJSON(w, code, map[string]string{"errMsg": api + ":fail " + reason})
}

// decodeClientRequest reads a client API call, filling in the app when the
// fake has only one. On failure it has answered, and returns false.
func (f *fakeWechat) decodeClientRequest(w http.ResponseWriter, r *http.Request, api string) (clientRequest, bool) {
	var req clientRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			clientFail(w, http.StatusRequestEntityTooLarge, api, "body too large")
			return req, false
		}
		clientFail(w, http.StatusBadRequest, api, `body must be JSON like {"user": "alice"}`)
		return req, false
	}
	if req.User == "" || !utf8.ValidString(req.User) || utf8.RuneCountInString(req.User) > 64 {
		clientFail(w, http.StatusBadRequest, api, "user must be a name of 1 to 64 characters")
		return req, false
	}
	if req.AppID == "" && len(f.apps) == 1 {
		for appID := range f.apps {
			req.AppID = appID
		}
	}
	if _, ok := f.apps[req.AppID]; !ok {
		reason := "unknown appid"
		if req.AppID == "" {
			reason = "appid required: the fake serves several apps"
		}
		clientFail(w, http.StatusBadRequest, api, reason)
		return req, false
	}
	return req, true
}

// handleLogin serves POST /mock/wx.login: what wx.login() gives a mini program.
// The body names the user, {"user": "alice"}, and optionally the app; the
// reply is wx.login's success result, {"errMsg": "login:ok", "code": "..."}.
// Each login also gives the user a fresh session_key, as wx.login may.
func (f *fakeWechat) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "login")
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"errMsg": "login:ok", "code": f.issueCode(req.AppID, req.User)})
	})
}

// issueCode creates a single-use login code for user in appID, with a new
// session_key that is the user's current one from now on.
func (f *fakeWechat) issueCode(appID, user string) string {
	u := fakeUser{appID, user}
	c := &fakeCode{
		code:       randomText(24, base64.RawURLEncoding.EncodeToString),
		user:       u,
		sessionKey: randomText(16, base64.StdEncoding.EncodeToString), // an AES-128 key
		expires:    f.now().Add(fakeCodeLifetime),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loginCodes.add(c, f.now())
	f.sessionKeys[u] = c.sessionKey
	f.openIDs[userRef{appID, fakeOpenID(appID, user)}] = user
	return c.code
}

// sessionKey returns the user's current session_key, if they ran wx.login.
func (f *fakeWechat) sessionKey(u fakeUser) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, ok := f.sessionKeys[u]
	return key, ok
}

// marshalAsWeChat encodes v as WeChat does: without escaping <, > and &.
func marshalAsWeChat(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // Cannot fail: the fake encodes plain data only.
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// fakeWatermark is the watermark of open data (WECHAT.md §2).
type fakeWatermark struct {
	Timestamp int64  `json:"timestamp"`
	AppID     string `json:"appid"`
}

// encryptForUser encrypts v's JSON with the user's current session_key and
// a random iv, as WeChat encrypts open data, and returns the key it used,
// so that a signature made alongside uses the same one even if a wx.login
// replaces it meanwhile. It reports false if the user has not run wx.login,
// which WeChat requires first.
func (f *fakeWechat) encryptForUser(u fakeUser, v any) (encryptedData, iv, key string, ok bool) {
	key, ok = f.sessionKey(u)
	if !ok {
		return "", "", "", false
	}
	ivBytes := make([]byte, 16)
	rand.Read(ivBytes)
	data, err := encryptOpenData(key, marshalAsWeChat(v), ivBytes)
	if err != nil {
		return "", "", "", false // Cannot happen: the fake's keys are 16 bytes.
	}
	return data, base64.StdEncoding.EncodeToString(ivBytes), key, true
}

// handleGetUserInfo serves POST /mock/wx.getUserInfo: the e.detail a
// <button open-type="getUserInfo"> handler gets, made with the user's current
// session_key. The profile is the user's name and a made-up avatar, or with
// "anonymous": true the placeholder WeChat has sent since 2021.
func (f *fakeWechat) handleGetUserInfo() http.Handler {
	// The field order is WeChat's (WECHAT.md §2).
	type userInfo struct {
		NickName  string `json:"nickName"`
		Gender    int    `json:"gender"`
		Language  string `json:"language"`
		City      string `json:"city"`
		Province  string `json:"province"`
		Country   string `json:"country"`
		AvatarURL string `json:"avatarUrl"`
	}
	type encrypted struct {
		OpenID string `json:"openId"`
		userInfo
		UnionID   string        `json:"unionId,omitempty"`
		Watermark fakeWatermark `json:"watermark"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getUserInfo")
		if !ok {
			return
		}
		u := fakeUser{req.AppID, req.User}
		info := userInfo{NickName: req.User, Language: "zh_CN", AvatarURL: fakeAvatarURL(req.User)}
		if req.Anonymous {
			info = userInfo{NickName: anonymousNickname, AvatarURL: anonymousAvatarURL}
		}
		plain := encrypted{
			OpenID: fakeOpenID(u.appID, u.name), userInfo: info, UnionID: f.unionID(u),
			Watermark: fakeWatermark{Timestamp: f.now().Unix(), AppID: u.appID},
		}
		data, iv, key, ok := f.encryptForUser(u, plain)
		if !ok {
			clientFail(w, http.StatusBadRequest, "getUserInfo", "call wx.login first")
			return
		}
		rawData := string(marshalAsWeChat(info))
		writeJSON(w, http.StatusOK, map[string]any{
			"errMsg":        "getUserInfo:ok",
			"userInfo":      info,
			"rawData":       rawData,
			"signature":     signRawData(rawData, key),
			"encryptedData": data,
			"iv":            iv,
		})
	})
}

// handleGetPhoneNumber serves POST /mock/wx.getPhoneNumber: the e.detail a
// <button open-type="getPhoneNumber"> handler gets since base library 2.21.2,
// a code for getuserphonenumber and, if the user has run wx.login, the
// legacy encryptedData and iv (WECHAT.md §3).
func (f *fakeWechat) handleGetPhoneNumber() http.Handler {
	type encrypted struct {
		PhoneNumber     string        `json:"phoneNumber"`
		PurePhoneNumber string        `json:"purePhoneNumber"`
		CountryCode     string        `json:"countryCode"`
		Watermark       fakeWatermark `json:"watermark"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getPhoneNumber")
		if !ok {
			return
		}
		u := fakeUser{req.AppID, req.User}
		now := f.now()
		code := &fakeCode{code: randomText(32, hex.EncodeToString), user: u, expires: now.Add(fakeCodeLifetime)}
		f.mu.Lock()
		f.phoneCodes.add(code, now)
		f.openIDs[userRef{u.appID, fakeOpenID(u.appID, u.name)}] = u.name
		f.mu.Unlock()

		reply := map[string]string{"errMsg": "getPhoneNumber:ok", "code": code.code}
		number := fakePhoneNumber(u.name)
		plain := encrypted{number, number, "86", fakeWatermark{now.Unix(), u.appID}}
		if data, iv, _, ok := f.encryptForUser(u, plain); ok {
			reply["encryptedData"], reply["iv"] = data, iv
		}
		writeJSON(w, http.StatusOK, reply)
	})
}

// handleGetWeRunData serves POST /mock/wx.getWeRunData: the user's steps of
// the last 31 days, encrypted as wx.getWeRunData returns them, each day
// stamped with its midnight in China and the data watermarked.
func (f *fakeWechat) handleGetWeRunData() http.Handler {
	type encrypted struct {
		StepInfoList []stepInfo    `json:"stepInfoList"`
		Watermark    fakeWatermark `json:"watermark"`
	}
	chinaTime := time.FixedZone("CST", 8*60*60) // WeRun's days begin at midnight in China.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getWeRunData")
		if !ok {
			return
		}
		now := f.now()
		y, m, d := now.In(chinaTime).Date()
		plain := encrypted{Watermark: fakeWatermark{now.Unix(), req.AppID}}
		for i := 30; i >= 0; i-- {
			day := time.Date(y, m, d-i, 0, 0, 0, 0, chinaTime)
			sum := fakeHash("werun\x00" + req.User + "\x00" + day.Format(time.DateOnly))
			plain.StepInfoList = append(plain.StepInfoList, stepInfo{
				Timestamp: day.Unix(),
				Step:      int64(binary.BigEndian.Uint32(sum[:4]) % 20000),
			})
		}
		data, iv, _, ok := f.encryptForUser(fakeUser{req.AppID, req.User}, plain)
		if !ok {
			clientFail(w, http.StatusBadRequest, "getWeRunData", "call wx.login first")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"errMsg": "getWeRunData:ok", "encryptedData": data, "iv": iv})
	})
}

// fakeReply is a server API reply: errcode and errmsg, and on success the
// API's own fields.
type fakeReply map[string]any

// answerAPI writes a server API reply as WeChat does: HTTP 200 whatever the
// errcode. jscode2session alone answers text/plain (WECHAT.md §1).
func answerAPI(w http.ResponseWriter, contentType string, v fakeReply) {
	w.Header().Set("Content-Type", contentType)
	w.Write(marshalAsWeChat(v))
}

// apiFailure is a server API error reply, its errmsg suffixed as WeChat's are.
func apiFailure(errcode int, errmsg string) fakeReply {
	return fakeReply{"errcode": errcode, "errmsg": errmsg + ", rid: fake"}
}

// handleCode2Session serves GET /mock/api/sns/jscode2session like WeChat:
// HTTP 200 with a text/plain JSON body, errcode absent on success. The checks
// and their errcodes follow WECHAT.md §1; 41002/41004/41008 for missing
// parameters come from WeChat's global code list.
func (f *fakeWechat) handleCode2Session() http.Handler {
	answer := func(w http.ResponseWriter, v fakeReply) { answerAPI(w, "text/plain", v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		appID, secret, code := q.Get("appid"), q.Get("secret"), q.Get("js_code")
		switch {
		case appID == "":
			answer(w, apiFailure(41002, "appid missing"))
			return
		case secret == "":
			answer(w, apiFailure(41004, "appsecret missing"))
			return
		case code == "":
			answer(w, apiFailure(errcodeMissingCode, "missing code"))
			return
		case q.Get("grant_type") != "authorization_code":
			answer(w, apiFailure(40002, "invalid grant_type"))
			return
		}
		if failure := f.checkCredentials(appID, secret); failure != nil {
			answer(w, failure)
			return
		}
		f.mu.Lock()
		c, used := f.loginCodes.use(code, appID, f.now())
		f.mu.Unlock()
		switch {
		case c == nil:
			answer(w, apiFailure(errcodeInvalidCode, "invalid code"))
		case used:
			answer(w, apiFailure(errcodeCodeUsed, "code been used"))
		default:
			reply := fakeReply{"openid": fakeOpenID(appID, c.user.name), "session_key": c.sessionKey}
			if unionID := f.unionID(c.user); unionID != "" {
				reply["unionid"] = unionID
			}
			answer(w, reply)
		}
	})
}

// checkCredentials checks an AppID and AppSecret as WeChat does, returning
// the error reply, or nil if they are right.
func (f *fakeWechat) checkCredentials(appID, secret string) fakeReply {
	app, ok := f.apps[appID]
	if !ok {
		return apiFailure(errcodeInvalidAppID, "invalid appid")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(app.Secret)) != 1 {
		return apiFailure(errcodeBadSecret, "invalid appsecret")
	}
	return nil
}

// handleStableToken serves POST /mock/api/cgi-bin/stable_token like
// getStableAccessToken (WECHAT.md §4): in normal mode the current token,
// until the last 5 minutes of its life, when a new one is issued and both are
// valid; with force_refresh a new token that ends the old one at once.
func (f *fakeWechat) handleStableToken() http.Handler {
	answer := func(w http.ResponseWriter, v fakeReply) { answerAPI(w, "application/json; encoding=utf-8", v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answer(w, apiFailure(47001, "data format error"))
			return
		}
		if req.GrantType != "client_credential" {
			answer(w, apiFailure(40002, "invalid grant_type"))
			return
		}
		if failure := f.checkCredentials(req.AppID, req.Secret); failure != nil {
			answer(w, failure)
			return
		}
		token, expires := f.stableToken(req.AppID, req.ForceRefresh)
		answer(w, fakeReply{"access_token": token, "expires_in": int64(expires.Sub(f.now()) / time.Second)})
	})
}

// stableToken returns appID's current access_token and its expiry, issuing
// a new one when forced or when the current one is in its last minutes.
func (f *fakeWechat) stableToken(appID string, force bool) (string, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if token, ok := f.newestToken[appID]; ok {
		t := f.tokens[token]
		if !force && now.Before(t.expires.Add(-fakeTokenRenewal)) {
			return token, t.expires
		}
		if force {
			delete(f.tokens, token)
		}
	}
	for token, t := range f.tokens {
		if !now.Before(t.expires) {
			delete(f.tokens, token)
		}
	}
	token := randomText(96, base64.RawURLEncoding.EncodeToString) // WeChat's are long; callers must store at least 512 characters.
	f.tokens[token] = fakeAccessToken{appID: appID, expires: now.Add(fakeAccessTokenLifetime)}
	f.newestToken[appID] = token
	return token, now.Add(fakeAccessTokenLifetime)
}

// checkAccessToken returns the app an access_token was issued to, or the
// error reply: 40001 for a token that is unknown or was replaced by a forced
// refresh, 42001 for one that expired (WECHAT.md §4).
func (f *fakeWechat) checkAccessToken(token string) (string, fakeReply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[token]
	switch {
	case !ok:
		return "", apiFailure(errcodeInvalidCredential, "invalid credential, access_token is invalid or not latest")
	case !f.now().Before(t.expires):
		return "", apiFailure(errcodeTokenExpired, "access_token expired")
	}
	return t.appID, nil
}

// handleCheckSession serves GET /mock/api/wxa/checksession: whether the
// signature is the HMAC-SHA256 of "" keyed by the user's current session_key
// (WECHAT.md §4). 87008 for another sig_method follows resetusersessionkey's
// documentation; 40003 for an openid the fake has not seen is WeChat's global
// "invalid openid".
func (f *fakeWechat) handleCheckSession() http.Handler {
	answer := func(w http.ResponseWriter, v fakeReply) { answerAPI(w, "application/json; encoding=utf-8", v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		appID, failure := f.checkAccessToken(q.Get("access_token"))
		if failure != nil {
			answer(w, failure)
			return
		}
		if q.Get("sig_method") != "hmac_sha256" {
			answer(w, apiFailure(87008, "invalid sig_method"))
			return
		}
		f.mu.Lock()
		user, known := f.openIDs[userRef{appID, q.Get("openid")}]
		key := f.sessionKeys[fakeUser{appID, user}]
		f.mu.Unlock()
		if !known {
			answer(w, apiFailure(40003, "invalid openid"))
			return
		}
		if subtle.ConstantTimeCompare([]byte(q.Get("signature")), []byte(sessionKeySignature(key))) != 1 {
			answer(w, apiFailure(errcodeInvalidSignature, "invalid signature"))
			return
		}
		answer(w, fakeReply{"errcode": 0, "errmsg": "ok"})
	})
}

// handlePhoneNumber serves POST /mock/api/wxa/business/getuserphonenumber
// (WECHAT.md §3): a phone code, single-use and valid 5 minutes, for the
// user's number. WeChat documents 40029 for an invalid code; the fake also
// answers it for a spent one. With openid in the body WeChat checks the code
// was issued to that user; the fake answers a mismatch with 40003, WeChat's
// global "invalid openid", as the documentation names no code for it.
func (f *fakeWechat) handlePhoneNumber() http.Handler {
	answer := func(w http.ResponseWriter, v fakeReply) { answerAPI(w, "application/json; encoding=utf-8", v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appID, failure := f.checkAccessToken(r.URL.Query().Get("access_token"))
		if failure != nil {
			answer(w, failure)
			return
		}
		var req struct {
			Code   string `json:"code"`
			OpenID string `json:"openid"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answer(w, apiFailure(47001, "data format error"))
			return
		}
		now := f.now()
		f.mu.Lock()
		c, used := f.phoneCodes.use(req.Code, appID, now)
		f.mu.Unlock()
		switch {
		case c == nil || used:
			answer(w, apiFailure(errcodeInvalidCode, "invalid code"))
			return
		case req.OpenID != "" && req.OpenID != fakeOpenID(appID, c.user.name):
			answer(w, apiFailure(40003, "invalid openid"))
			return
		}
		number := fakePhoneNumber(c.user.name)
		answer(w, fakeReply{"errcode": 0, "errmsg": "ok", "phone_info": fakeReply{
			"phoneNumber":     number,
			"purePhoneNumber": number,
			"countryCode":     86, // a number here, as in WeChat's example
			"watermark":       fakeWatermark{now.Unix(), appID},
		}})
	})
}

// exchange is one call wxlogin made to the fake WeChat's server API, as the
// teaching page draws it. Secrets are replaced before it is stored.
type exchange struct {
	Seq      int64             `json:"seq"`
	Method   string            `json:"method"`
	Path     string            `json:"path"` // as on api.weixin.qq.com: /sns/jscode2session
	Query    map[string]string `json:"query,omitempty"`
	Request  json.RawMessage   `json:"request,omitempty"`
	Status   int               `json:"status"`
	Response json.RawMessage   `json:"response,omitempty"`
}

// maxExchanges is how many exchanges the fake keeps: enough for a few runs
// of the teaching page, and a bound on memory however long it runs.
const maxExchanges = 200

// exchangeLog keeps the latest exchanges with the fake WeChat's server API.
type exchangeLog struct {
	mu   sync.Mutex // guards next and kept
	next int64
	kept []exchange
}

// record wraps a server API handler of the fake, logging each call with its
// secrets replaced. prefix is cut from the path, leaving WeChat's own.
func (l *exchangeLog) record(prefix string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest) // Over the server's body limit.
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)

		e := exchange{
			Method:   r.Method,
			Path:     strings.TrimPrefix(r.URL.Path, prefix),
			Request:  redactJSON(body),
			Status:   rec.status,
			Response: redactJSON(rec.body.Bytes()),
		}
		if q := r.URL.Query(); len(q) > 0 {
			e.Query = map[string]string{}
			for k, v := range q {
				e.Query[k] = redactValue(k, v[0])
			}
		}
		l.add(e)
	})
}

func (l *exchangeLog) add(e exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	e.Seq = l.next
	if len(l.kept) == maxExchanges {
		l.kept = slices.Delete(l.kept, 0, 1)
	}
	l.kept = append(l.kept, e)
}

// since returns the exchanges numbered above seq, oldest first.
func (l *exchangeLog) since(seq int64) []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.kept, seq+1, func(e exchange, seq int64) int { return int(e.Seq - seq) })
	return append([]exchange{}, l.kept[i:]...) // Never nil: the page reads a list.
}

// handle serves GET /mock/exchanges?after=N: the exchanges since the Nth.
func (l *exchangeLog) handle() http.Handler {
	type response struct {
		Exchanges []exchange `json:"exchanges"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var after int64
		if s := r.URL.Query().Get("after"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				writeError(w, badRequest(msgMalformed+"：after 须为非负整数", nil))
				return
			}
			after = n
		}
		writeOK(w, response{Exchanges: l.since(after)})
	})
}

// recordingWriter keeps a copy of what a handler writes.
type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}
