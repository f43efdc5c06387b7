// Package fakewechat is the built-in fake WeChat. In mock mode wxlogin
// serves it under /mock/ and its own WeChat client calls it over HTTP,
// exactly as it would call api.weixin.qq.com, so mock mode runs the real
// code path end to end; with -fake-only it is served alone, for other
// servers' tests (Standalone). It plays both sides WeChat plays: the
// client API a mini program calls (wx.login, wx.getUserInfo,
// wx.getPhoneNumber, wx.getWeRunData; client.go) and the server API
// wxlogin calls (jscode2session, stable_token, checksession,
// getuserphonenumber, msg_sec_check); with users fixed by a fixtures file
// (fixtures.go) and failures made on purpose (faults.go). It signs and
// encrypts open data as WeChat does (internal/opendata), and records the
// server API calls it is made, secrets replaced, for the teaching page.
//
// It keeps its own table of WeChat's errcodes, each with where WECHAT.md
// has it, rather than sharing the client's: a test of wxlogin's client
// against the fake then checks the client's reading of WeChat, not the
// client against itself.
package fakewechat

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redact"
)

// codeLifetime is how long a wx.login or phone code may be exchanged
// (WECHAT.md §1, §3).
const codeLifetime = 5 * time.Minute

// APIPrefix is where the fake serves WeChat's server API: wxlogin's
// client in mock mode has it as its base URL.
const APIPrefix = "/mock/api"

// accessTokenLifetime is the expires_in of a fresh access_token, and
// tokenRenewal how long before its end the next one is issued, during
// which both are valid (WECHAT.md §4).
const (
	accessTokenLifetime = 7200 * time.Second
	tokenRenewal        = 5 * time.Minute
)

// WeChat's errcodes the fake answers with, with where WECHAT.md has each.
// They are the fake's own, not the client's (see the package comment).
const (
	errcodeInvalidCredential = 40001 // an access_token unknown, replaced or of no app (§4); getAccessToken's wrong AppSecret (§4)
	errcodeInvalidGrantType  = 40002 // grant_type not the API's (§4)
	errcodeInvalidOpenID     = 40003 // the global "invalid openid": checksession, getuserphonenumber (§3), msg_sec_check (§9)
	errcodeInvalidAppID      = 40013 // §1, §4
	errcodeInvalidCode       = 40029 // a code wrong, expired or of another app (§1); getuserphonenumber's too (§3)
	errcodeInvalidURL        = 40066 // a path WeChat does not serve (§1)
	errcodeBadSecret         = 40125 // jscode2session's and stable_token's wrong AppSecret (§1)
	errcodeInvalidScene      = 40129 // msg_sec_check: a scene not 1 to 4 (§9)
	errcodeCodeUsed          = 40163 // a code exchanged before (§1)
	errcodeUserBlocked       = 40226 // risk control blocks the user's logins (§1, §8)
	errcodeAppIDMissing      = 41002 // the global code list (§1)
	errcodeSecretMissing     = 41004 // the global code list (§1)
	errcodeCodeMissing       = 41008 // the global code list (§1)
	errcodeTokenExpired      = 42001 // §4
	errcodeRequireGET        = 43001 // the global code list: a known path, the wrong method (§1's note, "Things I could not confirm")
	errcodeRequirePOST       = 43002 // likewise
	errcodeEmptyData         = 44002 // msg_sec_check: no content or openid (§9)
	errcodeDataFormat        = 47001 // a body that is not the JSON the API reads (§9)
	errcodeUserNotSeen       = 61010 // msg_sec_check: the user has not used the mini program for two hours (§9)
	errcodeInvalidSigMethod  = 87008 // resetusersessionkey's and checksession's sig_method (§4)
	errcodeInvalidSignature  = 87009 // checksession: not the user's current session_key (§4)
)

// VisitWindow is how recently a user must have used the mini program
// for msgSecCheck to accept their openid (WECHAT.md §9: 61010 past it).
const VisitWindow = 2 * time.Hour

// App is one mini program the fake knows.
type App struct {
	Name   string // for the privacy guide's title
	Secret string
	// Unbound is an app not bound to an Open Platform account: WeChat gives
	// its users no unionid (WECHAT.md §7).
	Unbound bool
}

// Fake imitates WeChat for a fixed set of apps.
type Fake struct {
	apps     map[string]App // by appid, fixed at construction
	fixtures Fixtures       // users fixed by name (fixtures.go), fixed at construction
	now      func() time.Time
	handler  http.Handler // the routes, made once

	mu          sync.Mutex // guards every field below
	loginCodes  codeBook
	phoneCodes  codeBook
	sessionKeys map[appUser]string     // the current session_key of each user who ran wx.login
	openIDs     map[account.Ref]string // (appid, openid) → user name
	lastVisit   map[appUser]time.Time  // when each user last called the client API
	privacy     map[appUser]bool       // the users who agreed to their app's privacy guide
	riskBlocked map[appUser]bool       // the users WeChat's risk control keeps from logging in
	phoneQuota  map[string]int         // appid → phone verifications left; absent: no limit
	tokens      map[string]issuedToken
	newestToken map[string]string // appid → its newest stable access_token
	// newestClassic is appid → its newest classic access_token
	// (cgi-bin/token): tokens of the two APIs never replace each other.
	newestClassic map[string]string
	// countryCodeText writes getuserphonenumber's countryCode as text,
	// "86", instead of the number 86 (SetCountryCodeText).
	countryCodeText bool

	exchanges exchangeLog   // the server API calls, for the teaching page
	faults    faultInjector // the calls made to fail on purpose (faults.go)

	platformMu sync.Mutex        // guards platforms
	platforms  map[string]string // appid → the Open Platform account it was moved to (MoveApp)
}

// MoveApp moves app appID to another Open Platform account, platform, as
// its owner can in WeChat's admin: from then on its users' unionids are
// that account's, their openids staying, as a unionid is one user's across
// the apps of one account and an openid one user's in one app (WECHAT.md
// §7). "" moves it back to the account every app starts in.
func (f *Fake) MoveApp(appID, platform string) {
	f.platformMu.Lock()
	defer f.platformMu.Unlock()
	if f.platforms == nil {
		f.platforms = map[string]string{}
	}
	f.platforms[appID] = platform
}

// platform is the Open Platform account app appID is bound to: "" for
// the one every app starts in.
func (f *Fake) platform(appID string) string {
	f.platformMu.Lock()
	defer f.platformMu.Unlock()
	return f.platforms[appID]
}

// appUser is a user name in one app.
type appUser struct {
	appID, name string
}

// issuedToken is an access_token the fake issued.
type issuedToken struct {
	appID   string
	expires time.Time
}

// issuedCode is one code handed out by wx.login or getPhoneNumber.
type issuedCode struct {
	code       string
	user       appUser
	sessionKey string // a login code's session_key
	expires    time.Time
	used       bool
}

// codeBook holds live codes. Codes are kept in the order they were issued,
// so expired ones are dropped cheaply.
type codeBook struct {
	codes map[string]*issuedCode
	queue []*issuedCode
}

func (b *codeBook) add(c *issuedCode, now time.Time) {
	for len(b.queue) > 0 && !now.Before(b.queue[0].expires) {
		delete(b.codes, b.queue[0].code)
		b.queue = b.queue[1:]
	}
	if b.codes == nil {
		b.codes = map[string]*issuedCode{}
	}
	b.codes[c.code] = c
	b.queue = append(b.queue, c)
}

// use spends code for appID. It returns the code if it is valid: issued for
// appID and not expired. used reports whether it had been spent before.
func (b *codeBook) use(code, appID string, now time.Time) (c *issuedCode, used bool) {
	c, ok := b.codes[code]
	if !ok || c.user.appID != appID || !now.Before(c.expires) {
		return nil, false
	}
	used, c.used = c.used, true
	return c, used
}

// New is a fake WeChat that knows apps, by AppID, with the users fixtures
// fix (the zero Fixtures for none), on the clock now. An app the fixtures
// unbind is unbound.
func New(apps map[string]App, fixtures Fixtures, now func() time.Time) *Fake {
	known := map[string]App{}
	for appID, a := range apps {
		a.Unbound = a.Unbound || slices.Contains(fixtures.unbound, appID)
		known[appID] = a
	}
	f := &Fake{
		apps: known, fixtures: fixtures, now: now,
		sessionKeys:   map[appUser]string{},
		openIDs:       map[account.Ref]string{},
		lastVisit:     map[appUser]time.Time{},
		privacy:       map[appUser]bool{},
		riskBlocked:   map[appUser]bool{},
		phoneQuota:    map[string]int{},
		tokens:        map[string]issuedToken{},
		newestToken:   map[string]string{},
		newestClassic: map[string]string{},
	}
	f.handler = f.routes()
	return f
}

// Handler serves the fake under /mock/: the client API, WeChat's server
// API under APIPrefix, and the fake's own controls.
func (f *Fake) Handler() http.Handler { return f.handler }

// routes is the fake's mux.
func (f *Fake) routes() http.Handler {
	mux := http.NewServeMux()
	f.clientRoutes(mux)
	api := f.serverAPIRoutes()
	for _, route := range api {
		mux.Handle(route.method+" "+APIPrefix+route.path, f.serverAPI(route.handler))
	}
	// Anything else under the API root is answered as WeChat answers, in
	// its JSON and never a plain-text 404: the global code list's 43001 or
	// 43002 for a known path with the wrong method, else 40066 invalid url
	// (WECHAT.md §1 has it for a misspelt path).
	mux.Handle(APIPrefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, APIPrefix)
		reply := apiFailure(errcodeInvalidURL, "invalid url")
		for _, route := range api {
			if route.path == path && route.method == http.MethodGet {
				reply = apiFailure(errcodeRequireGET, "require GET method")
			} else if route.path == path {
				reply = apiFailure(errcodeRequirePOST, "require POST method")
			}
		}
		jsonAnswer(w, reply)
	}))
	mux.Handle("POST /mock/risk-control", f.handleRiskControl())
	mux.Handle("GET /mock/exchanges", f.exchanges.handle())
	mux.Handle("GET /mock/faults", f.faults.handleFaults())
	mux.Handle("POST /mock/faults", f.faults.handleFaults())
	return mux
}

// apiRoute is one server API endpoint of the fake, at its path on
// api.weixin.qq.com.
type apiRoute struct {
	method, path string
	handler      http.Handler
}

// serverAPIRoutes are the server API endpoints the fake implements: those
// wxlogin calls, and the classic access_token, which other backends call.
func (f *Fake) serverAPIRoutes() []apiRoute {
	return []apiRoute{
		{http.MethodGet, "/sns/jscode2session", f.handleCode2Session()},
		{http.MethodPost, "/cgi-bin/stable_token", f.handleStableToken()},
		{http.MethodGet, "/cgi-bin/token", f.handleClassicToken()},
		{http.MethodGet, "/wxa/checksession", f.handleCheckSession()},
		{http.MethodPost, "/wxa/business/getuserphonenumber", f.handlePhoneNumber()},
		{http.MethodPost, "/wxa/msg_sec_check", f.handleMsgSecCheck()},
	}
}

// Standalone serves the fake for -fake-only: WeChat's server API at the
// root (/sns/jscode2session, …) as well as under /mock/api, the client API
// under /mock/, and /healthz for a readiness check.
func (f *Fake) Standalone() http.Handler {
	routes := f.handler
	mux := http.NewServeMux()
	mux.Handle("/mock/", routes)
	mux.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeOK(w, nil) }))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = APIPrefix + r.URL.Path
		r2.URL.RawPath = ""
		routes.ServeHTTP(w, r2)
	}))
	return mux
}

// serverAPI wraps a handler of WeChat's server API: the calls that get
// through the faults set on purpose are recorded for the teaching page,
// which shows what passes between wxlogin and WeChat.
func (f *Fake) serverAPI(h http.Handler) http.Handler {
	return f.faults.failing(f.exchanges.record(APIPrefix, h))
}

// OpenID is the openid the fake derives for a user name in an app: the same
// name always yields the same openid for an app, across restarts too, and a
// different one in another app, as WeChat's openids are per app.
func OpenID(appID, user string) string { return derivedID("openid\x00" + appID + "\x00" + user) }

// UnionID is the unionid the fake derives for a user name: one person across all apps
// bound to the Open Platform account.
func UnionID(user string) string { return derivedID("unionid\x00" + user) }

// derivedID derives a 28-character id shaped like WeChat's ("o" and base64url).
func derivedID(seed string) string {
	sum := seedHash(seed)
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

func seedHash(seed string) [sha256.Size]byte {
	return sha256.Sum256([]byte("wxlogin fake wechat\x00" + seed))
}

// PhoneNumber is the phone number the fake derives for a user name: 11 digits starting with 1,
// shaped like a number in mainland China.
func PhoneNumber(user string) string {
	sum := seedHash("phone\x00" + user)
	return fmt.Sprintf("1%010d", 3_000_000_000+binary.BigEndian.Uint64(sum[:8])%7_000_000_000)
}

// AvatarURL is the avatar the fake derives for a user name, shaped like WeChat's.
func AvatarURL(user string) string {
	return "https://thirdwx.qlogo.cn/mmopen/vi_32/" + derivedID("avatar\x00" + user)[1:] + "/132"
}

// SessionKey is user's current session_key in appID, as WeChat holds it,
// if they ran wx.login: what the data WeChat hands their mini program is
// signed and encrypted with now.
func (f *Fake) SessionKey(appID, user string) (string, bool) {
	return f.sessionKey(appUser{appID, user})
}

// AccessToken is the newest access_token the fake's stable_token has
// issued appID, "" if none: the one a server calling it holds now.
func (f *Fake) AccessToken(appID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newestToken[appID]
}

// sessionKey returns the user's current session_key, if they ran wx.login.
func (f *Fake) sessionKey(u appUser) (string, bool) {
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

// watermark is the watermark of open data (WECHAT.md §2).
type watermark struct {
	Timestamp int64  `json:"timestamp"`
	AppID     string `json:"appid"`
}

// apiReply is a server API reply: errcode and errmsg, and on success the
// API's own fields.
type apiReply map[string]any

// answerAPI writes a server API reply as WeChat does: HTTP 200 whatever the
// errcode. jscode2session alone answers text/plain (WECHAT.md §1).
func answerAPI(w http.ResponseWriter, contentType string, v apiReply) {
	w.Header().Set("Content-Type", contentType)
	w.Write(marshalAsWeChat(v))
}

// jsonAnswer writes a server API reply as every API but jscode2session
// answers: application/json.
func jsonAnswer(w http.ResponseWriter, v apiReply) {
	answerAPI(w, "application/json; encoding=utf-8", v)
}

// tokenChecked serves a server API called with an access_token in its
// query: a bad token is answered as WeChat answers it (checkAccessToken),
// and h runs with the app the token was issued to.
func (f *Fake) tokenChecked(h func(w http.ResponseWriter, r *http.Request, appID string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appID, failure := f.checkAccessToken(r.URL.Query().Get("access_token"))
		if failure != nil {
			jsonAnswer(w, failure)
			return
		}
		h(w, r, appID)
	})
}

// apiFailure is a server API error reply, its errmsg suffixed as WeChat's are.
func apiFailure(errcode int, errmsg string) apiReply {
	return apiReply{"errcode": errcode, "errmsg": errmsg + ", rid: fake"}
}

// handleCode2Session serves GET /mock/api/sns/jscode2session like WeChat:
// HTTP 200 with a text/plain JSON body, errcode absent on success. The checks
// and their errcodes follow WECHAT.md §1; 41002/41004/41008 for missing
// parameters come from WeChat's global code list.
func (f *Fake) handleCode2Session() http.Handler {
	answer := func(w http.ResponseWriter, v apiReply) { answerAPI(w, "text/plain", v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		appID, secret, code := q.Get("appid"), q.Get("secret"), q.Get("js_code")
		switch {
		case appID == "":
			answer(w, apiFailure(errcodeAppIDMissing, "appid missing"))
			return
		case secret == "":
			answer(w, apiFailure(errcodeSecretMissing, "appsecret missing"))
			return
		case code == "":
			answer(w, apiFailure(errcodeCodeMissing, "missing code"))
			return
		case q.Get("grant_type") != "authorization_code":
			answer(w, apiFailure(errcodeInvalidGrantType, "invalid grant_type"))
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
		case f.isRiskBlocked(c.user):
			answer(w, apiFailure(errcodeUserBlocked, "code blocked"))
		default:
			reply := apiReply{"openid": f.openID(appID, c.user.name), "session_key": c.sessionKey}
			if unionID := f.unionID(c.user); unionID != "" {
				reply["unionid"] = unionID
			}
			answer(w, reply)
		}
	})
}

// isRiskBlocked reports whether WeChat's risk control blocks u's logins.
func (f *Fake) isRiskBlocked(u appUser) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.riskBlocked[u]
}

// handleRiskControl serves POST /mock/risk-control, {"user": "mallory",
// "blocked": true}: WeChat's risk control starts (or stops) blocking the
// user, so that jscode2session answers their codes with 40226 (WECHAT.md
// §1), whatever code they bring.
func (f *Fake) handleRiskControl() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := f.decodeClientRequest(w, r, "risk-control")
		if !ok {
			return
		}
		f.mu.Lock()
		f.riskBlocked[appUser{who.AppID, who.User}] = who.Blocked
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"user": who.User, "blocked": who.Blocked})
	})
}

// checkCredentials checks an AppID and AppSecret as WeChat does, returning
// the error reply, or nil if they are right.
func (f *Fake) checkCredentials(appID, secret string) apiReply {
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
func (f *Fake) handleStableToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			jsonAnswer(w, apiFailure(errcodeDataFormat, "data format error"))
			return
		}
		if req.GrantType != "client_credential" {
			jsonAnswer(w, apiFailure(errcodeInvalidGrantType, "invalid grant_type"))
			return
		}
		if failure := f.checkCredentials(req.AppID, req.Secret); failure != nil {
			jsonAnswer(w, failure)
			return
		}
		token, expires := f.stableToken(req.AppID, req.ForceRefresh)
		jsonAnswer(w, apiReply{"access_token": token, "expires_in": int64(expires.Sub(f.now()) / time.Second)})
	})
}

// handleClassicToken serves GET /mock/api/cgi-bin/token like
// getAccessToken (WECHAT.md §4): every call issues a new token, and the one
// it replaces stays valid for 5 more minutes at most. Its tokens and
// stable_token's never replace each other. A wrong AppSecret is 40001, as
// that page documents (stable_token and jscode2session answer 40125). The
// IP whitelist's 40164 is not imitated: the fake has no whitelist.
func (f *Fake) handleClassicToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("grant_type") != "client_credential" {
			jsonAnswer(w, apiFailure(errcodeInvalidGrantType, "invalid grant_type"))
			return
		}
		failure := f.checkCredentials(q.Get("appid"), q.Get("secret"))
		if failure != nil && failure["errcode"] == errcodeBadSecret {
			failure = apiFailure(errcodeInvalidCredential, "invalid credential")
		}
		if failure != nil {
			jsonAnswer(w, failure)
			return
		}
		token := f.classicToken(q.Get("appid"))
		jsonAnswer(w, apiReply{"access_token": token, "expires_in": int64(accessTokenLifetime / time.Second)})
	})
}

// classicToken issues appID a new classic access_token, cutting the life of
// the one it replaces to the 5 minutes WeChat leaves callers to switch.
func (f *Fake) classicToken(appID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if old, ok := f.newestClassic[appID]; ok {
		if t, live := f.tokens[old]; live && t.expires.After(now.Add(tokenRenewal)) {
			t.expires = now.Add(tokenRenewal)
			f.tokens[old] = t
		}
	}
	token := f.newToken(appID, now)
	f.newestClassic[appID] = token
	return token
}

// newToken issues an access_token to appID, dropping the expired ones.
// f.mu is held.
func (f *Fake) newToken(appID string, now time.Time) string {
	for token, t := range f.tokens {
		if !now.Before(t.expires) {
			delete(f.tokens, token)
		}
	}
	token := randomText(96, base64.RawURLEncoding.EncodeToString) // WeChat's are long; callers must store at least 512 characters.
	f.tokens[token] = issuedToken{appID: appID, expires: now.Add(accessTokenLifetime)}
	return token
}

// stableToken returns appID's current access_token and its expiry, issuing
// a new one when forced or when the current one is in its last minutes.
func (f *Fake) stableToken(appID string, force bool) (string, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if token, ok := f.newestToken[appID]; ok {
		t := f.tokens[token]
		if !force && now.Before(t.expires.Add(-tokenRenewal)) {
			return token, t.expires
		}
		if force {
			delete(f.tokens, token)
		}
	}
	token := f.newToken(appID, now)
	f.newestToken[appID] = token
	return token, now.Add(accessTokenLifetime)
}

// checkAccessToken returns the app an access_token was issued to, or the
// error reply: 40001 for a token that is unknown or was replaced by a forced
// refresh, 42001 for one that expired (WECHAT.md §4).
func (f *Fake) checkAccessToken(token string) (string, apiReply) {
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
func (f *Fake) handleCheckSession() http.Handler {
	return f.tokenChecked(func(w http.ResponseWriter, r *http.Request, appID string) {
		q := r.URL.Query()
		if q.Get("sig_method") != "hmac_sha256" {
			jsonAnswer(w, apiFailure(errcodeInvalidSigMethod, "invalid sig_method"))
			return
		}
		f.mu.Lock()
		user, known := f.openIDs[account.Ref{AppID: appID, OpenID: q.Get("openid")}]
		key := f.sessionKeys[appUser{appID, user}]
		f.mu.Unlock()
		if !known {
			jsonAnswer(w, apiFailure(errcodeInvalidOpenID, "invalid openid"))
			return
		}
		if subtle.ConstantTimeCompare([]byte(q.Get("signature")), []byte(opendata.SessionKeySignature(key))) != 1 {
			jsonAnswer(w, apiFailure(errcodeInvalidSignature, "invalid signature"))
			return
		}
		jsonAnswer(w, apiReply{"errcode": 0, "errmsg": "ok"})
	})
}

// handlePhoneNumber serves POST /mock/api/wxa/business/getuserphonenumber
// (WECHAT.md §3): a phone code, single-use and valid 5 minutes, for the
// user's number. WeChat documents 40029 for an invalid code; the fake also
// answers it for a spent one. With openid in the body WeChat checks the code
// was issued to that user; the fake answers a mismatch with 40003, WeChat's
// global "invalid openid", as the documentation names no code for it.
func (f *Fake) handlePhoneNumber() http.Handler {
	return f.tokenChecked(func(w http.ResponseWriter, r *http.Request, appID string) {
		var req struct {
			Code   string `json:"code"`
			OpenID string `json:"openid"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			jsonAnswer(w, apiFailure(errcodeDataFormat, "data format error"))
			return
		}
		now := f.now()
		f.mu.Lock()
		c, used := f.phoneCodes.use(req.Code, appID, now)
		f.mu.Unlock()
		switch {
		case c == nil || used:
			jsonAnswer(w, apiFailure(errcodeInvalidCode, "invalid code"))
			return
		case req.OpenID != "" && req.OpenID != f.openID(appID, c.user.name):
			jsonAnswer(w, apiFailure(errcodeInvalidOpenID, "invalid openid"))
			return
		}
		number, pure, countryCode := f.phone(c.user.name)
		var code any = countryCode
		f.mu.Lock()
		if !f.countryCodeText {
			code, _ = strconv.Atoi(countryCode) // a number here, as in WeChat's example
		}
		f.mu.Unlock()
		jsonAnswer(w, apiReply{"errcode": 0, "errmsg": "ok", "phone_info": apiReply{
			"phoneNumber":     number,
			"purePhoneNumber": pure,
			"countryCode":     code,
			"watermark":       watermark{now.Unix(), appID},
		}})
	})
}

// The verdicts of msgSecCheck 2.0, its result.suggest (WECHAT.md §9).
const (
	suggestPass   = "pass"
	suggestReview = "review"
	suggestRisky  = "risky"
)

// verdict is msgSecCheck's overall result (WECHAT.md §9).
type verdict struct {
	Suggest string `json:"suggest"` // pass, review or risky
	Label   int    `json:"label"`   // what was found: 100 normal, 20001 politics, …
}

// judgeContent is the fake msgSecCheck's verdict on content: risky
// for one of a few words, with the label WeChat would give (WECHAT.md §9),
// review for a word that makes it unsure, pass otherwise. WeChat's own
// list is secret and large; these stand in for it so that mock mode and
// tests can be refused. The README lists them.
func judgeContent(content string) verdict {
	risky := []struct {
		word  string
		label int
	}{
		{"违禁", 20006}, // 违法犯罪
		{"赌博", 20006},
		{"色情", 20002},
		{"辱骂", 20003},
		{"广告位", 10001},   // 广告
		{"risky", 21000}, // 其他: an ASCII word for tests and curl
	}
	for _, r := range risky {
		if strings.Contains(content, r.word) {
			return verdict{Suggest: suggestRisky, Label: r.label}
		}
	}
	for _, unsure := range []string{"待审", "review"} {
		if strings.Contains(content, unsure) {
			return verdict{Suggest: suggestReview, Label: 21000}
		}
	}
	return verdict{Suggest: suggestPass, Label: 100}
}

// handleMsgSecCheck serves POST /mock/api/wxa/msg_sec_check, msgSecCheck
// 2.0 (WECHAT.md §9), with judgeContent's verdict. The checks and
// errcodes are the documented ones: version 2 only (1.0 stopped being
// updated in 2021), scene 1 to 4 (40129), an openid the fake knows for the
// token's app (40003) who used the mini program in the last two hours
// (61010).
func (f *Fake) handleMsgSecCheck() http.Handler {
	return f.tokenChecked(func(w http.ResponseWriter, r *http.Request, appID string) {
		var req struct {
			Content string `json:"content"`
			Version int    `json:"version"`
			Scene   int    `json:"scene"`
			OpenID  string `json:"openid"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Version != 2 {
			jsonAnswer(w, apiFailure(errcodeDataFormat, "data format error"))
			return
		}
		if req.Content == "" || req.OpenID == "" {
			jsonAnswer(w, apiFailure(errcodeEmptyData, "empty post data"))
			return
		}
		if req.Scene < 1 || req.Scene > 4 {
			jsonAnswer(w, apiFailure(errcodeInvalidScene, "invalid scene"))
			return
		}
		f.mu.Lock()
		user, known := f.openIDs[account.Ref{AppID: appID, OpenID: req.OpenID}]
		visited := f.lastVisit[appUser{appID, user}]
		f.mu.Unlock()
		switch {
		case !known:
			jsonAnswer(w, apiFailure(errcodeInvalidOpenID, "invalid openid"))
			return
		case f.now().Sub(visited) > VisitWindow:
			jsonAnswer(w, apiFailure(errcodeUserNotSeen, "user access record timeout"))
			return
		}
		verdict := judgeContent(req.Content)
		jsonAnswer(w, apiReply{
			"errcode": 0, "errmsg": "ok",
			"detail": []apiReply{
				{"strategy": "content_model", "errcode": 0, "suggest": verdict.Suggest, "label": verdict.Label, "prob": 90},
				{"strategy": "keyword", "errcode": 0},
			},
			"trace_id": randomText(12, hex.EncodeToString),
			"result":   verdict,
		})
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
			Request:  redact.JSON(body),
			Status:   rec.status,
			Response: redact.JSON(rec.body.Bytes()),
		}
		if q := r.URL.Query(); len(q) > 0 {
			e.Query = map[string]string{}
			for k, v := range q {
				e.Query[k] = redact.Value(k, v[0])
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
				writeBadRequest(w, "after 须为非负整数")
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

// RevokeAccessTokens ends every access_token issued to appID at once, as a
// forced refresh from elsewhere or a reset AppSecret does: the next call
// made with one is answered 40001 (WECHAT.md §4), and a server must fetch
// a new one. wxlogin conform uses it to see whether a backend does.
func (f *Fake) RevokeAccessTokens(appID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for token, t := range f.tokens {
		if t.appID == appID {
			delete(f.tokens, token)
		}
	}
	delete(f.newestToken, appID)
	delete(f.newestClassic, appID)
}

// SetCountryCodeText makes getuserphonenumber write countryCode as text,
// "86", as its page's field table types it, or (false, the default) as the
// number 86, as its page's example shows: WeChat documents both (WECHAT.md
// §3), and a server must read either.
func (f *Fake) SetCountryCodeText(text bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countryCodeText = text
}
