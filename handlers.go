package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/accesslog"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/fastjson"
	"wxlogin/internal/jwt"
	"wxlogin/internal/limits"
	"wxlogin/internal/metrics"
	"wxlogin/internal/opendata"
	"wxlogin/internal/pages"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/request"
	"wxlogin/internal/scopes"
)

// Envelope statuses: the "status" field of every response. 1 and 2, with
// their messages, are those of the classic Django implementation of this
// flow, so mini programs written against it work unchanged.
const (
	statusOK           = 0
	statusBadRequest   = 1 // missing or malformed parameter; also unknown route, wrong method, body too large
	statusInvalidCode  = 2 // WeChat rejected the code: get a new one from wx.login
	statusWechatDown   = 3 // WeChat unavailable: try again later
	statusNotLoggedIn  = 4 // token missing, unknown, revoked or expired: run wx.login again
	statusDataCheck    = 5 // signed or encrypted user data failed verification
	statusClaimed      = 6 // a one-time benefit the person has already claimed
	statusRateLimited  = 7 // too many logins from this address: wait Retry-After seconds
	statusUserBlocked  = 8 // WeChat's risk control blocks this user's logins: a new code will not help
	statusContentRisky = 9 // WeChat's content check refused what the user typed: change it
	statusInternal     = -1
)

// Client messages. The two contract messages are Chinese, so all are.
const (
	msgOK               = "ok"
	msgMissingParam     = "缺少参数"
	msgMalformed        = "参数格式错误"
	msgUnknownApp       = "未知的 appid"
	msgInvalidCode      = "无效的code"
	msgWechatDown       = "微信服务暂时不可用，请稍后重试"
	msgNotLoggedIn      = "未登录或登录已过期，请重新登录"
	msgNotFound         = "接口不存在"
	msgMethodNotAllowed = "请求方法不允许"
	msgTooLarge         = "请求体过大"
	msgRateLimited      = "登录过于频繁，请稍后重试"
	msgUserBlocked      = "微信判定当前账号存在风险，已拦截本次登录，请稍后再试或联系客服"
	msgContentRisky     = "昵称含有不适宜的内容，请修改后重试"
	msgInternal         = "服务器内部错误"
	msgStoreFailed      = "存储写入失败，服务暂停，请稍后重试"
	msgStoreUnavailable = "存储暂时不可用，请稍后重试" // Redis cannot be reached (redisstore.ErrUnavailable)
	// A status 5 message is msgDataCheck, the check that failed, and
	// msgDataCheckHint: the usual cause is a session_key that a later wx.login
	// replaced after the data was fetched (WECHAT.md §2).
	msgClaimed       = "已领取过"
	msgDataCheck     = "用户数据校验失败："
	msgDataCheckHint = "。session_key 可能已更新：请重新调用 wx.login 登录，再重新获取数据"
)

// miniApp is one mini program wxlogin serves, with its WeChat client (and
// so its own access_token).
type miniApp struct {
	ID   string // the AppID
	Name string
	wx   *wechatClient
	// checkContent is -content-check: a changed nickname is sent to
	// msgSecCheck before it is saved (checkNickname).
	checkContent bool
}

// appSet is the mini programs wxlogin serves, by AppID.
type appSet map[string]*miniApp

// forLogin picks the app a login is for: the one it names, or the only one.
func (apps appSet) forLogin(appID string) (*miniApp, error) {
	if appID == "" && len(apps) == 1 {
		for _, app := range apps {
			return app, nil
		}
	}
	if appID == "" {
		return nil, badRequest(msgMissingParam+"：服务多个小程序时须提供 appid", nil)
	}
	app, ok := apps[appID]
	if !ok {
		return nil, badRequest(msgUnknownApp, fmt.Errorf("appid %q is not configured", appID))
	}
	return app, nil
}

// of returns the app of a caller. A token outlives a restart, and its app
// may since have been removed from the configuration: it is then no login.
func (apps appSet) of(who account.Caller) (*miniApp, error) {
	app, ok := apps[who.AppID]
	if !ok {
		return nil, notLoggedIn(fmt.Errorf("token of app %q, which is no longer configured", who.AppID))
	}
	return app, nil
}

// newServer builds wxlogin's HTTP handler. fake is nil in real mode, limit
// nil when logins are not limited, and signer nil without -jwt.
func newServer(log *slog.Logger, m *metrics.Metrics, apps appSet, users userBackend, tokens tokenBackend, signer *jwt.Issuer, limit loginLimit, proxies limits.TrustedProxies, fake *fakewechat.Fake) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, apps, users, tokens, signer, limit, proxies, fake)
	return withAccessLog(log, proxies, m, mux)
}

// withAccessLog is the access log around next (accesslog.Handler), told
// how wxlogin answers: in the envelope (writeError), with request bodies
// capped at request.MaxBodyBytes, the client named behind trusted proxies, and
// each answer counted in m (countRequest).
func withAccessLog(log *slog.Logger, proxies limits.TrustedProxies, m *metrics.Metrics, next http.Handler) http.Handler {
	return accesslog.Handler(log, accesslog.Options{
		MaxBodyBytes: request.MaxBodyBytes,
		WriteError:   writeError,
		Forwarded:    proxies.Forwarded,
		Answered:     func(route string, code int, cause error) { countRequest(m, route, code, cause) },
	}, next)
}

// addRoutes lists every route wxlogin serves.
func addRoutes(mux *http.ServeMux, apps appSet, users userBackend, tokens tokenBackend, signer *jwt.Issuer, limit loginLimit, proxies limits.TrustedProxies, fake *fakewechat.Fake) {
	login := limitLogins(limit, proxies, handleLogin(apps, users, tokens, signer))
	mux.Handle("POST /login", login)
	mux.Handle("POST /login/{$}", login)
	user := requireLogin(tokens, handleUser(apps, users))
	mux.Handle("GET /user", user)
	mux.Handle("GET /user/{$}", user)
	patchUser := requireLogin(tokens, handlePatchUser(apps, users))
	mux.Handle("PATCH /user", patchUser)
	mux.Handle("PATCH /user/{$}", patchUser)
	deleteUser := requireLogin(tokens, handleDeleteUser(users, tokens))
	mux.Handle("DELETE /user", deleteUser)
	mux.Handle("DELETE /user/{$}", deleteUser)
	mux.Handle("POST /user/userinfo", requireLogin(tokens, handleUserInfo(apps, users)))
	mux.Handle("POST /user/phone", requireLogin(tokens, handlePhone(apps, users)))
	mux.Handle("POST /user/werun", requireLogin(tokens, handleWeRun()))
	mux.Handle("GET /session/check", requireLogin(tokens, handleSessionCheck(apps)))
	mux.Handle("POST /claims/{name}", requireLogin(tokens, handleClaim(users)))
	mux.Handle("GET /claims", requireLogin(tokens, handleClaims(users)))
	mux.Handle("POST /logout", requireLogin(tokens, handleLogout(tokens)))
	mux.Handle("/auth", requireLogin(tokens, handleAuth(users))) // any method: the proxies' subrequests
	if signer != nil {
		// -jwt: access tokens the company's other services verify offline.
		mux.Handle("POST /token", requireLogin(tokens, handleToken(users, signer)))
		mux.Handle("GET /.well-known/jwks.json", handleJWKS(signer))
		mux.Handle("GET /.well-known/openid-configuration", handleDiscovery(signer))
	}
	mux.Handle("GET /healthz", handleHealthz(users))
	mux.Handle("GET /scopes", handleScopes())
	mux.Handle("GET /{$}", handleHome(apps, fake != nil))
	if fake != nil {
		mux.Handle("GET /demo/demo.js", pages.Asset("demo.js", "text/javascript; charset=utf-8"))
		mux.Handle("GET /demo/demo.css", pages.Asset("demo.css", "text/css; charset=utf-8"))
		mux.Handle("/mock/", fake.Handler())
	}
}

// envelope is the body of every response.
type envelope struct {
	Status int    `json:"status"`
	Msg    string `json:"msg"`
	// Errcode is WeChat's errcode when WeChat caused the failure, so that a
	// developer can tell 40029 from 40163. WeChat's errmsg is never passed on.
	Errcode int `json:"errcode,omitempty"`
	Data    any `json:"data,omitempty"`
}

// apiError is a failure together with what the client may be told about it.
// The cause goes to the access log only.
type apiError struct {
	status   int // envelope status
	httpCode int
	msg      string
	errcode  int // WeChat's, or 0
	// retryAfter, when set, is sent as Retry-After: when to try again.
	retryAfter time.Duration
	cause      error
}

func (e *apiError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *apiError) Unwrap() error { return e.cause }

func badRequest(msg string, cause error) *apiError {
	return &apiError{status: statusBadRequest, httpCode: http.StatusBadRequest, msg: msg, cause: cause}
}

func notLoggedIn(cause error) *apiError {
	return &apiError{status: statusNotLoggedIn, httpCode: http.StatusUnauthorized, msg: msgNotLoggedIn, cause: cause}
}

// storeUnavailable is what the client is told of a call the store in Redis
// could not make: status -1, 503, and when to try again.
func storeUnavailable(cause error) *apiError {
	return &apiError{status: statusInternal, httpCode: http.StatusServiceUnavailable, msg: msgStoreUnavailable,
		retryAfter: redisstore.RetryAfter, cause: cause}
}

// wechatFailure maps an error of the WeChat client to what the client is
// told: status 2 when WeChat rejected the code, 8 when it blocks the user,
// otherwise status 3 (504 when time ran out), with WeChat's errcode
// whenever it sent one; the store's answer when Redis, where instances
// share the exchanges and access_tokens, could not be reached.
func wechatFailure(err error) *apiError {
	if errors.Is(err, redisstore.ErrUnavailable) {
		return storeUnavailable(err) // Redis's, when the code's exchange is shared
	}
	e := &apiError{status: statusWechatDown, httpCode: http.StatusBadGateway, msg: msgWechatDown, cause: err}
	var we *wechatError
	switch {
	case errors.As(err, &we):
		e.errcode = we.Code
		switch {
		case we.codeRejected():
			e.status, e.httpCode, e.msg = statusInvalidCode, http.StatusUnauthorized, msgInvalidCode
		case we.Code == errcodeUserBlocked:
			e.status, e.httpCode, e.msg = statusUserBlocked, http.StatusForbidden, msgUserBlocked
		}
	case errors.Is(err, context.DeadlineExceeded):
		e.httpCode = http.StatusGatewayTimeout
	}
	return e
}

// requestFailure is what the client is told of a request that cannot be
// read: status 1, saying what is wrong; 413 for a body over the cap.
func requestFailure(e *request.Error) *apiError {
	if e.Kind == request.TooLarge {
		return &apiError{status: statusBadRequest, httpCode: http.StatusRequestEntityTooLarge, msg: msgTooLarge, cause: e.Err}
	}
	msg := msgMalformed
	if e.What != "" {
		msg += "：" + e.What
	}
	return badRequest(msg, e.Err)
}

// writeJSON writes v as a JSON response. Responses may carry tokens, so none
// may be cached.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error gets here: every response type is plain data.
		code, body = http.StatusInternalServerError, []byte(`{"status":-1,"msg":"`+msgInternal+`"}`)
	}
	writeBody(w, code, append(body, '\n'))
}

// writeBody writes a JSON response body, with the headers every response has.
func writeBody(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Content-Type-Options"] = jsonContentType, noStore, noSniff
	w.WriteHeader(code)
	w.Write(body)
}

// The values of the headers every JSON response has, shared by all: set
// from them, a header allocates nothing. net/http only reads them, and an
// Add to one appends to a copy, since their capacity is their length.
var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	noStore         = []string{"no-store"}
	noSniff         = []string{"nosniff"}
)

// writeOK writes a success envelope; data may be nil.
func writeOK(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Status: statusOK, Msg: msgOK, Data: data})
}

// writeUserOK writes what writeOK(w, v) writes, without reflection
// (appendUserOK): GET /user is the route every page of a mini program calls.
func writeUserOK(w http.ResponseWriter, v userView) {
	buf := userBuffers.Get().(*[]byte)
	*buf = appendUserOK((*buf)[:0], v)
	writeBody(w, http.StatusOK, *buf) // w copies it
	if cap(*buf) <= 4096 {
		userBuffers.Put(buf) // kept for the next, unless a rare big one
	}
}

// userBuffers are writeUserOK's buffers, reused.
var userBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendUserOK appends, and a newline, the success envelope holding v, as
// writeOK writes it.
func appendUserOK(buf []byte, v userView) []byte {
	buf = strconv.AppendInt(append(buf, `{"status":`...), statusOK, 10)
	buf = fastjson.AppendString(buf, `,"msg":`, msgOK)
	buf = v.appendJSON(append(buf, `,"data":`...))
	return append(buf, "}\n"...)
}

// appendJSON appends v as encoding/json writes it: every field of the
// record, always, then the person.
func (v userView) appendJSON(buf []byte) []byte {
	r := &v.recordView
	buf = strconv.AppendInt(append(buf, `{"id":`...), r.ID, 10)
	buf = fastjson.AppendString(buf, `,"appid":`, r.AppID)
	buf = fastjson.AppendString(buf, `,"openid":`, r.OpenID)
	buf = fastjson.AppendString(buf, `,"unionid":`, r.UnionID)
	buf = fastjson.AppendString(buf, `,"nickname":`, r.Nickname)
	buf = fastjson.AppendString(buf, `,"avatar_url":`, r.AvatarURL)
	buf = strconv.AppendInt(append(buf, `,"gender":`...), int64(r.Gender), 10)
	buf = fastjson.AppendString(buf, `,"language":`, r.Language)
	buf = fastjson.AppendString(buf, `,"city":`, r.City)
	buf = fastjson.AppendString(buf, `,"province":`, r.Province)
	buf = fastjson.AppendString(buf, `,"country":`, r.Country)
	buf = fastjson.AppendString(buf, `,"phone_number":`, r.PhoneNumber)
	buf = fastjson.AppendString(buf, `,"pure_phone_number":`, r.PurePhoneNumber)
	buf = fastjson.AppendString(buf, `,"country_code":`, r.CountryCode)
	buf = fastjson.AppendTime(buf, `,"created_at":`, r.CreatedAt)
	buf = fastjson.AppendTime(buf, `,"updated_at":`, r.UpdatedAt)
	buf = fastjson.AppendTime(buf, `,"last_login_at":`, r.LastLoginAt)
	buf = strconv.AppendInt(append(buf, `,"person_id":`...), v.PersonID, 10)
	if v.Apps == nil {
		return append(buf, `,"apps":null}`...)
	}
	buf = append(buf, `,"apps":[`...)
	for i, a := range v.Apps {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = fastjson.AppendString(buf, `{"appid":`, a.AppID)
		buf = fastjson.AppendString(buf, `,"name":`, a.Name)
		buf = strconv.AppendInt(append(buf, `,"user_id":`...), a.UserID, 10)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}

// writeError is the one place an error becomes a response. An *apiError says
// what the client may see, and so do a *request.Error (status 1), an
// *opendata.CheckError (status 5), the access log's accesslog.ErrNotFound and
// accesslog.ErrMethodNotAllowed (status 1, with 404 and 405), and a store
// in Redis that cannot be reached (status -1, 503); any other error is an
// internal one, answered with a bare 500. The cause is handed to the
// access log, which logs it once.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var re *request.Error
	var dce *opendata.CheckError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &re):
		ae = requestFailure(re)
	case errors.Is(err, account.ErrNoUser):
		// The token outlived its user: the account was deleted meanwhile.
		ae = notLoggedIn(err)
	case errors.Is(err, accesslog.ErrNotFound):
		// The mux's own 404, or a path not written as its route is.
		ae = &apiError{status: statusBadRequest, httpCode: http.StatusNotFound, msg: msgNotFound, cause: err}
	case errors.Is(err, accesslog.ErrMethodNotAllowed):
		ae = &apiError{status: statusBadRequest, httpCode: http.StatusMethodNotAllowed, msg: msgMethodNotAllowed, cause: err}
	case errors.Is(err, redisstore.ErrUnavailable):
		ae = storeUnavailable(err)
	case errors.As(err, &dce):
		ae = &apiError{status: statusDataCheck, httpCode: http.StatusBadRequest, msg: msgDataCheck + dce.Check, cause: err}
		if !dce.NotTheKey {
			ae.msg += msgDataCheckHint
		}
	default:
		ae = &apiError{status: statusInternal, httpCode: http.StatusInternalServerError, msg: msgInternal, cause: err}
	}
	accesslog.NoteError(w, ae)
	if ae.status == statusNotLoggedIn {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wxlogin"`)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.retryAfter)))
	}
	writeJSON(w, ae.httpCode, envelope{Status: ae.status, Msg: ae.msg, Errcode: ae.errcode})
}

// countRequest counts an answered request in m: its route and HTTP status,
// and for POST /login the envelope's status and WeChat's errcode, from
// cause, the error it was answered with (nil for a success; an error that
// is no *apiError is a panic after the answer began, status -1). A login
// refused by the login limit (status 7) is counted as that too.
func countRequest(m *metrics.Metrics, route string, code int, cause error) {
	m.Request(route, code)
	if !strings.HasPrefix(route, "POST /login") {
		return
	}
	status, errcode := statusOK, 0
	var ae *apiError
	switch {
	case errors.As(cause, &ae):
		status, errcode = ae.status, ae.errcode
	case cause != nil:
		status = statusInternal
	}
	m.Login(status, errcode)
	if status == statusRateLimited {
		m.LoginLimited()
	}
}

// retryAfterSeconds is wait as Retry-After says it: whole seconds, at
// least one.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// handleLogin serves POST /login: it exchanges a wx.login code for the
// user's identity, creates the user on first sight, and answers with a new
// token; with -jwt (signer not nil), with a signed access token too. The
// session_key stays on the server.
func handleLogin(apps appSet, users userBackend, tokens tokenBackend, signer *jwt.Issuer) http.Handler {
	type response struct {
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
		OpenID    string `json:"openid"`
		UserID    int64  `json:"user_id"`
		NewUser   bool   `json:"new_user"`
		signedToken
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeLoginRequest(r)
		if err != nil {
			writeError(w, err)
			return
		}
		app, err := apps.forLogin(req.AppID)
		if err != nil {
			writeError(w, err)
			return
		}
		exchanged, err := app.wx.code2Session(r.Context(), req.Code)
		if err != nil {
			writeError(w, wechatFailure(err))
			return
		}
		// A login that raced the deletion of the account (on another
		// device) may get account.ErrNoUser here: status 4, and logging in
		// again makes a new user.
		u, created, token, err := logIn(r.Context(), users, tokens, app.ID, exchanged)
		if err != nil {
			writeError(w, err)
			return
		}
		// A login whose access token cannot be signed leaves a token that
		// nobody was given, which expires unused.
		var signed signedToken
		if signer != nil {
			_, person, err := readPerson(r.Context(), users, u.ID)
			if err == nil {
				signed, err = signToken(r.Context(), signer, u, person)
			}
			if err != nil {
				writeError(w, err)
				return
			}
		}
		writeOK(w, response{
			Token:       token,
			ExpiresIn:   int64(tokens.Lifetime() / time.Second),
			OpenID:      u.OpenID,
			UserID:      u.ID,
			NewUser:     created,
			signedToken: signed,
		})
	})
}

// signedToken is the access token a login and POST /token answer with
// under -jwt, for the company's other services: an ES256 JWT they verify
// offline (docs/jwt.md). Without -jwt both fields are left out.
type signedToken struct {
	JWT          string `json:"jwt,omitempty"`
	JWTExpiresIn int64  `json:"jwt_expires_in,omitempty"`
}

// signToken is a new access token for user u, of person.
func signToken(ctx context.Context, signer *jwt.Issuer, u account.User, person []account.Member) (signedToken, error) {
	token, err := signer.Sign(ctx, jwt.Claims{UserID: u.ID, AppID: u.AppID, PersonID: person[0].ID, OpenID: u.OpenID})
	if err != nil {
		return signedToken{}, err
	}
	return signedToken{JWT: token, JWTExpiresIn: int64(signer.TTL() / time.Second)}, nil
}

// handleToken serves POST /token (-jwt): a new access token for the
// caller, whose JWT from the login (or the last POST /token) is about to
// expire. It takes wxlogin's own token, so a logged-out or deleted user
// gets none: status 4.
func handleToken(users userBackend, signer *jwt.Issuer) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		u, person, err := callerPerson(r.Context(), users, who)
		var signed signedToken
		if err == nil {
			signed, err = signToken(r.Context(), signer, u, person)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, signed)
	}
}

// handleJWKS serves GET /.well-known/jwks.json (-jwt): the public keys
// that verify the access tokens, as a JSON Web Key Set, outside the
// envelope as verifiers read it. Verifiers cache it; the next key is in it
// a rotation period before it signs.
func handleJWKS(signer *jwt.Issuer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set, err := signer.JWKS(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writePublic(w, "application/jwk-set+json", set)
	})
}

// handleDiscovery serves GET /.well-known/openid-configuration (-jwt): the
// issuer and where its keys are, outside the envelope as verifiers read it.
func handleDiscovery(signer *jwt.Issuer) http.Handler {
	doc := signer.Discovery()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePublic(w, "application/json", doc)
	})
}

// writePublic answers with a public document any cache may keep for five
// minutes.
func writePublic(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	Code, AppID string
}

// maxCodeBytes bounds a login code; WeChat's are 32 characters.
const maxCodeBytes = 128

// decodeLoginRequest reads a login request sent as JSON (wx.request's
// default) or as a form. A body with no Content-Type is read as JSON.
func decodeLoginRequest(r *http.Request) (loginRequest, error) {
	var req loginRequest
	if err := request.ReadStringFields(r, map[string]*string{"code": &req.Code, "appid": &req.AppID}); err != nil {
		return req, err
	}
	if req.Code == "" {
		return req, badRequest(msgMissingParam, errors.New("no code"))
	}
	if !request.IsPrintableASCII(req.Code) || len(req.Code) > maxCodeBytes {
		return req, badRequest(msgMalformed+"：code 无效", nil)
	}
	if !request.IsPrintableASCII(req.AppID) || len(req.AppID) > 64 {
		return req, badRequest(msgMalformed+"：appid 无效", nil)
	}
	return req, nil
}

// callerHandler is a handler for a route that needs a login: requireLogin
// calls it with the request's caller.
type callerHandler func(w http.ResponseWriter, r *http.Request, who account.Caller)

// requireLogin resolves the request's token and calls next with its caller,
// or answers status 4.
func requireLogin(tokens tokenBackend, next callerHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := request.Token(r.Header)
		if err != nil {
			writeError(w, err)
			return
		}
		if token == "" {
			writeError(w, notLoggedIn(errors.New("no token")))
			return
		}
		who, ok, err := tokens.Lookup(r.Context(), token)
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			writeError(w, notLoggedIn(errors.New("unknown, revoked or expired token")))
			return
		}
		next(w, r, who)
	})
}

// loginLimit decides whether a client may log in now: this instance's
// buckets (limits.LoginLimiter), or those every instance on one Redis shares
// (redisstore.LoginLimiter). A nil loginLimit allows everything.
type loginLimit interface {
	AllowLogin(ctx context.Context, addr netip.Addr) (ok bool, retryAfter time.Duration, err error)
}

// limitLogins answers 429 with status 7 and a Retry-After to a client
// over its rate, before next reads the request.
func limitLogins(l loginLimit, proxies limits.TrustedProxies, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := proxies.ClientAddr(r)
		ok, wait, err := l.AllowLogin(r.Context(), limits.Key(client))
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			writeError(w, &apiError{
				status: statusRateLimited, httpCode: http.StatusTooManyRequests, msg: msgRateLimited,
				retryAfter: wait, cause: fmt.Errorf("login rate exceeded by %s", client),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recordView is a user record as the API shows it: every field always
// present.
type recordView struct {
	ID      int64  `json:"id"`
	AppID   string `json:"appid"`
	OpenID  string `json:"openid"`
	UnionID string `json:"unionid"`
	// PreviousUnionIDs are not shown: they only keep the user in their
	// person after a unionid changed.
	PreviousUnionIDs string `json:"-"`
	Nickname         string `json:"nickname"`
	AvatarURL        string `json:"avatar_url"`
	Gender           int    `json:"gender"`
	Language         string `json:"language"`
	City             string `json:"city"`
	Province         string `json:"province"`
	Country          string `json:"country"`
	// The phone fields are shown only here, to the user's own token.
	PhoneNumber     string    `json:"phone_number"`
	PurePhoneNumber string    `json:"pure_phone_number"`
	CountryCode     string    `json:"country_code"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	LastLoginAt     time.Time `json:"last_login_at"`
}

// userView is a user as GET /user shows it: the record, and the person it
// belongs to. Records that share a unionid are one person across the mini
// programs of one Open Platform account; a record without one is a person
// of its own.
type userView struct {
	recordView
	PersonID int64       `json:"person_id"` // the id of the person's earliest record
	Apps     []personApp `json:"apps"`      // the person's records, one per app, this one included
}

// personApp is one record of a person: in which app, under which user id.
// Other apps' openids are not shown: openids are per app so that apps
// cannot match users without the unionid.
type personApp struct {
	AppID  string `json:"appid"`
	Name   string `json:"name"`
	UserID int64  `json:"user_id"`
}

// viewUser shows user id with its person.
func viewUser(ctx context.Context, apps appSet, users userBackend, id int64) (userView, error) {
	u, person, err := readPerson(ctx, users, id)
	if err != nil {
		return userView{}, err
	}
	return showUser(apps, u, person), nil
}

// readPerson is user id's record and its person; account.ErrNoUser if the
// user is gone (erased since the token was read).
func readPerson(ctx context.Context, users userBackend, id int64) (account.User, []account.Member, error) {
	u, person, ok, err := users.Person(ctx, id)
	if err == nil && !ok {
		err = fmt.Errorf("token names user %d: %w", id, account.ErrNoUser)
	}
	return u, person, err
}

// callerPerson is the caller's record and person: as the token's store
// read them with the token where it did (on Redis, no second round trip),
// else read now.
func callerPerson(ctx context.Context, users userBackend, who account.Caller) (account.User, []account.Member, error) {
	if u := who.ReadWithToken; u != nil {
		return u.Record, u.Person, nil
	}
	return readPerson(ctx, users, who.UserID)
}

// showUser is user u, of person, as GET /user shows it.
func showUser(apps appSet, u account.User, person []account.Member) userView {
	v := userView{recordView: recordView(u), PersonID: person[0].ID, Apps: make([]personApp, 0, len(person))}
	for _, m := range person {
		var name string
		if app, ok := apps[m.AppID]; ok {
			name = app.Name
		}
		v.Apps = append(v.Apps, personApp{AppID: m.AppID, Name: name, UserID: m.ID})
	}
	return v
}

// writeUser answers with user id as GET /user shows it.
func writeUser(w http.ResponseWriter, r *http.Request, apps appSet, users userBackend, id int64) {
	v, err := viewUser(r.Context(), apps, users, id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeUserOK(w, v)
}

// handleUser serves GET /user: the logged-in user, with their person.
func handleUser(apps appSet, users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		u, person, err := callerPerson(r.Context(), users, who)
		if err != nil {
			writeError(w, err)
			return
		}
		writeUserOK(w, showUser(apps, u, person))
	}
}

// The headers /auth answers a live token with, which a reverse proxy
// passes on to the service it guards (deploy/nginx.conf, deploy/Caddyfile).
const (
	headerUser    = "X-Wxlogin-User"
	headerPerson  = "X-Wxlogin-Person"
	headerAppID   = "X-Wxlogin-Appid"
	headerOpenID  = "X-Wxlogin-Openid"
	headerUnionID = "X-Wxlogin-Unionid"
)

// handleAuth serves /auth, whatever the method: forward authentication for
// a reverse proxy in front of the company's other services (nginx
// auth_request, Caddy forward_auth), which asks with the client's own
// headers. A live token is answered 200 with no body and the caller's
// identity in headers; anything else is 401 (requireLogin). The unionid's
// header is sent empty for a user who has none, rather than left out, so
// that a proxy that copies it (Caddy's copy_headers) overwrites whatever
// the client sent. It costs what GET /user does, less the body: a token
// lookup and the user's record, never WeChat.
func handleAuth(users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		u, person, err := callerPerson(r.Context(), users, who)
		if err != nil {
			writeError(w, err)
			return
		}
		h := w.Header()
		h.Set(headerUser, strconv.FormatInt(u.ID, 10))
		h.Set(headerPerson, strconv.FormatInt(person[0].ID, 10))
		h.Set(headerAppID, u.AppID)
		h.Set(headerOpenID, u.OpenID)
		h.Set(headerUnionID, u.UnionID)
		w.WriteHeader(http.StatusOK)
	}
}

// profilePatch is the body of PATCH /user: the fields to set, nil where
// absent. The JSON names are those GET /user shows.
type profilePatch struct {
	Nickname  *string `json:"nickname"`
	AvatarURL *string `json:"avatar_url"`
	Gender    *int    `json:"gender"`
	Language  *string `json:"language"`
	City      *string `json:"city"`
	Province  *string `json:"province"`
	Country   *string `json:"country"`
}

// handlePatchUser serves PATCH /user: the profile a user fills in with
// <button open-type="chooseAvatar"> and <input type="nickname">, the way
// WeChat has offered since it stopped giving real nicknames and avatars to
// getUserProfile (WECHAT.md §5). It is the user's own input, not signed by
// WeChat, so every field is validated, and a new nickname is checked by
// WeChat's content check; an empty string clears a field.
func handlePatchUser(apps appSet, users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		var p profilePatch
		if err := request.ReadJSON(r, &p); err != nil {
			writeError(w, err)
			return
		}
		if p == (profilePatch{}) {
			writeError(w, badRequest(msgMissingParam+"：至少提供 nickname、avatar_url、gender、language、city、province、country 之一", nil))
			return
		}
		if err := p.validate(); err != nil {
			writeError(w, badRequest(msgMalformed+"："+err.Error(), nil))
			return
		}
		if p.Nickname != nil {
			app, err := apps.of(who)
			if err != nil {
				writeError(w, err)
				return
			}
			before, _, err := users.Get(r.Context(), who.UserID)
			if err != nil {
				writeError(w, err)
				return
			}
			if err := checkNickname(r.Context(), app, who, before.Nickname, *p.Nickname); err != nil {
				writeError(w, err)
				return
			}
		}
		if _, err := users.Update(r.Context(), who.UserID, p.apply); err != nil {
			writeError(w, err)
			return
		}
		writeUser(w, r, apps, users, who.UserID)
	}
}

// validate checks every field that is set. Its error messages are for the
// client.
func (p profilePatch) validate() error {
	err := request.CheckFields(
		request.NameField("nickname", p.Nickname), request.NameField("city", p.City),
		request.NameField("province", p.Province), request.NameField("country", p.Country),
		request.LanguageField("language", p.Language),
	)
	if err != nil {
		return err
	}
	if p.Gender != nil && (*p.Gender < 0 || *p.Gender > 2) {
		return errors.New("gender 应为 0（未知）、1（男）或 2（女）")
	}
	return request.CheckFields(request.AvatarURLField("avatar_url", p.AvatarURL))
}

// checkNickname refuses a nickname msgSecCheck finds risky, when the app
// checks content and the nickname is a new, non-empty one. current is the
// user's nickname before the change: an unchanged one is not sent again.
//
// The nickname input (<input type="nickname">) runs WeChat's content check
// in the client, but PATCH /user is an HTTP route anyone with a token can
// call directly, so a changed nickname is checked again here before it is
// saved. A nickname is shown to other users, and a mini program that shows
// unchecked user text is the one WeChat holds responsible. The verdicts:
// "risky" is refused with status 9; "review" (WeChat is not sure) is
// accepted, as WeChat's own nickname input accepts it; "pass" is accepted.
// When the check cannot be made (WeChat down, the access_token
// unobtainable, 61010 for a user WeChat has not seen in two hours), the
// change is refused with status 3: a nickname can wait for WeChat, and
// accepting it unchecked would make the check worthless whenever WeChat is
// slow. The setting -content-check turns it off, for deployments that
// check content elsewhere.
func checkNickname(ctx context.Context, app *miniApp, who account.Caller, current, nickname string) error {
	if !app.checkContent || nickname == "" || nickname == current {
		return nil
	}
	verdict, err := app.wx.msgSecCheck(ctx, who.OpenID, nickname)
	if err != nil {
		return wechatFailure(err)
	}
	if verdict.Suggest == suggestRisky {
		return &apiError{status: statusContentRisky, httpCode: http.StatusUnprocessableEntity, msg: msgContentRisky,
			cause: fmt.Errorf("msg_sec_check: nickname refused, label %d", verdict.Label)}
	}
	return nil
}

// apply sets the patch's fields on u.
func (p profilePatch) apply(u *account.User) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&u.Nickname, p.Nickname)
	set(&u.AvatarURL, p.AvatarURL)
	set(&u.Language, p.Language)
	set(&u.City, p.City)
	set(&u.Province, p.Province)
	set(&u.Country, p.Country)
	if p.Gender != nil {
		u.Gender = *p.Gender
	}
}

// userInfoRequest is the body of POST /user/userinfo: the e.detail of
// <button open-type="getUserInfo">, or the result of wx.getUserInfo or
// wx.getUserProfile. Its userInfo, errMsg and cloudID are ignored: only
// what the session_key verifies is used.
type userInfoRequest struct {
	RawData, Signature string
	encryptedRequest
}

func (req *userInfoRequest) fields() map[string]*string {
	return map[string]*string{"rawData": &req.RawData, "signature": &req.Signature,
		"encryptedData": &req.EncryptedData, "iv": &req.IV}
}

// complete refuses a request with neither pair of user info, or half of
// one.
func (req *userInfoRequest) complete() error {
	signed := req.RawData != "" || req.Signature != ""
	encrypted := req.EncryptedData != "" || req.IV != ""
	switch {
	case !signed && !encrypted:
		return badRequest(msgMissingParam+"：需要 rawData 和 signature，或 encryptedData 和 iv", nil)
	case signed && (req.RawData == "" || req.Signature == ""):
		return badRequest(msgMissingParam+"：rawData 和 signature 须一起提供", nil)
	case encrypted && (req.EncryptedData == "" || req.IV == ""):
		return badRequest(msgMissingParam+"：encryptedData 和 iv 须一起提供", nil)
	}
	return nil
}

// handleUserInfo serves POST /user/userinfo: it verifies the signature of
// rawData and/or decrypts encryptedData with the caller's session_key
// (both must pass when both are sent), and saves the verified profile and
// unionId. WeChat's anonymous placeholder ("微信用户" with a grey avatar)
// never overwrites a nickname or avatar, and empty fields are not saved.
func handleUserInfo(apps appSet, users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		var req userInfoRequest
		if err := request.ReadStringFields(r, req.fields()); err != nil {
			writeError(w, err)
			return
		}
		if err := req.complete(); err != nil {
			writeError(w, err)
			return
		}
		info, err := opendata.VerifyUserInfo(who, req.RawData, req.Signature, req.EncryptedData, req.IV)
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := users.Update(r.Context(), who.UserID, info.Apply); err != nil {
			writeError(w, err)
			return
		}
		writeUser(w, r, apps, users, who.UserID)
	}
}

// encryptedRequest is an encrypted pair of open data, as the client got it.
type encryptedRequest struct {
	EncryptedData, IV string
}

func (req *encryptedRequest) fields() map[string]*string {
	return map[string]*string{"encryptedData": &req.EncryptedData, "iv": &req.IV}
}

// decrypt decrypts the pair with the caller's session_key, or the one a
// login has just replaced (opendata.DecryptFor), and reads it with read.
func decrypt[T any](req encryptedRequest, who account.Caller, read func(plain []byte) (T, error)) (T, error) {
	if req.EncryptedData == "" || req.IV == "" {
		var zero T
		return zero, badRequest(msgMissingParam+"：需要 encryptedData 和 iv", nil)
	}
	return opendata.DecryptFor(who, req.EncryptedData, req.IV, read)
}

// handlePhone serves POST /user/phone with the e.detail of <button
// open-type="getPhoneNumber">: its code goes to WeChat's getuserphonenumber
// (base library 2.21.2 and later); without a code, the legacy encryptedData
// and iv are decrypted. The number is saved on the user.
func handlePhone(apps appSet, users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		var req struct {
			Code string
			encryptedRequest
		}
		fields := req.encryptedRequest.fields()
		fields["code"] = &req.Code
		if err := request.ReadStringFields(r, fields); err != nil {
			writeError(w, err)
			return
		}
		var data opendata.Data
		switch {
		case req.Code != "":
			if !request.IsPrintableASCII(req.Code) || len(req.Code) > maxCodeBytes {
				writeError(w, badRequest(msgMalformed+"：code 无效", nil))
				return
			}
			app, err := apps.of(who)
			if err != nil {
				writeError(w, err)
				return
			}
			d, err := app.wx.phoneNumber(r.Context(), req.Code, who.OpenID)
			var we *wechatError
			switch {
			case errors.As(err, &we) && we.Code == errcodeInvalidOpenID:
				// WeChat checked the code against the caller's openid (WECHAT.md §3).
				writeError(w, &opendata.CheckError{Check: "手机号 code 属于另一个用户", NotTheKey: true})
				return
			case err != nil:
				writeError(w, wechatFailure(err))
				return
			}
			data = d
		case req.EncryptedData != "" || req.IV != "":
			d, err := decrypt(req.encryptedRequest, who, func(plain []byte) (opendata.Data, error) {
				d, err := opendata.Parse(plain)
				if err == nil {
					_, err = opendata.ParsePhone(d, who.AppID) // so that data of another app fails with either key
				}
				return d, err
			})
			if err != nil {
				writeError(w, err)
				return
			}
			data = d
		default:
			// A user who refuses gets e.detail with only an errMsg.
			writeError(w, badRequest(msgMissingParam+"：需要 code，或 encryptedData 和 iv（用户拒绝授权时 e.detail 中没有它们）", nil))
			return
		}
		p, err := opendata.ParsePhone(data, who.AppID)
		if err == nil {
			err = p.Check()
		}
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := users.Update(r.Context(), who.UserID, func(u *account.User) {
			u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = p.PhoneNumber, p.PurePhoneNumber, p.CountryCode
		}); err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, p)
	}
}

// handleDeleteUser serves DELETE /user: account deletion (注销账号). The
// user is erased (users.Store.Erase): their record and personal data go from memory
// now and from the disk by the compaction this starts; every token of theirs
// dies, also when the erasure fails (erase); the names of their one-time
// claims are kept under a keyed hash, so that a returning person does not
// take them twice. The answer says what went and what was kept; an erasure
// once made is answered so, what is left of it finished later on Redis
// (redisstore.Store.EraseWithTokens). A later login by the same person is
// a new user.
func handleDeleteUser(users userBackend, tokens tokenBackend) callerHandler {
	type response struct {
		UserID        int64    `json:"user_id"`
		TokensRevoked int      `json:"tokens_revoked"`
		ClaimsKept    []string `json:"claims_kept"` // names only
	}
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		gone, revoked, err := erase(r.Context(), users, tokens, who.UserID)
		if err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, response{UserID: gone.UserID, TokensRevoked: revoked, ClaimsKept: gone.ClaimsKept})
	}
}

// handleWeRun serves POST /user/werun: it decrypts wx.getWeRunData's result
// and answers with the steps. They are not stored: they change daily, and
// the mini program can fetch them whenever it needs them.
func handleWeRun() callerHandler {
	type response struct {
		StepInfoList []opendata.StepInfo `json:"step_info_list"`
	}
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		var req encryptedRequest
		if err := request.ReadStringFields(r, req.fields()); err != nil {
			writeError(w, err)
			return
		}
		steps, err := decrypt(req, who, func(plain []byte) ([]opendata.StepInfo, error) { return opendata.ParseWeRun(plain, who.AppID) })
		if err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, response{StepInfoList: steps})
	}
}

// handleSessionCheck serves GET /session/check: whether the caller's
// session_key is still the user's current one at WeChat (checksession). When
// it is not, data the client fetches now will not decrypt here: the client
// should run wx.login and log in again.
func handleSessionCheck(apps appSet) callerHandler {
	type response struct {
		Valid bool `json:"valid"`
	}
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		app, err := apps.of(who)
		if err != nil {
			writeError(w, err)
			return
		}
		valid, err := app.wx.checkSessionKey(r.Context(), who.OpenID, who.SessionKey)
		if err != nil {
			writeError(w, wechatFailure(err))
			return
		}
		writeOK(w, response{Valid: valid})
	}
}

// handleClaim serves POST /claims/{name}: it claims a one-time benefit for
// the token's person. The first claim of a name by a person answers 201
// with the claim, once it is durable; any later one, from any of the
// person's apps, answers status 6 (409) with the claim that was made.
func handleClaim(users userBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		name := r.PathValue("name")
		if !account.ValidClaimName(name) {
			writeError(w, badRequest(msgMalformed+"：名称应为 1 到 32 个 a-z、0-9 或 -", nil))
			return
		}
		c, taken, err := users.Claim(r.Context(), who.UserID, name)
		switch {
		case err != nil:
			writeError(w, err)
		case taken:
			writeJSON(w, http.StatusConflict, envelope{Status: statusClaimed, Msg: msgClaimed, Data: c})
		default:
			writeJSON(w, http.StatusCreated, envelope{Status: statusOK, Msg: msgOK, Data: c})
		}
	}
}

// handleClaims serves GET /claims: the person's claims, oldest first.
func handleClaims(users userBackend) callerHandler {
	type response struct {
		Claims []account.Claim `json:"claims"`
	}
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		claims, err := users.ClaimsOf(r.Context(), who.UserID)
		if err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, response{Claims: claims})
	}
}

// handleEvents serves GET /events?after=N&limit=M on the admin address:
// the events after seq N, oldest first, M of them at most (100 unless
// said, 1000 at most), and next, the N of the page that follows. A
// receiver replays from the last seq it took (docs/events.md).
func handleEvents(log eventLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, limit, err := pageOf(r.URL.Query())
		if err != nil {
			writeError(w, err)
			return
		}
		list, err := log.Events(r.Context(), after, limit)
		if err != nil {
			writeError(w, err)
			return
		}
		page := events.Page{Events: list, Next: after}
		if len(list) > 0 {
			page.Next = list[len(list)-1].Seq
		} else {
			page.Events = []events.Event{}
		}
		writeOK(w, page)
	})
}

// pageOf reads GET /events's after and limit.
func pageOf(q url.Values) (after int64, limit int, err error) {
	limit = 100
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return 0, 0, badRequest(msgMalformed+"：after 应为不小于 0 的整数", nil)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return 0, 0, badRequest(msgMalformed+"：limit 应为 1 到 1000 的整数", nil)
		}
	}
	return after, limit, nil
}

// handleLogout serves POST /logout: the token is revoked at once.
func handleLogout(tokens tokenBackend) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, who account.Caller) {
		if err := tokens.Revoke(r.Context(), who); err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, nil)
	}
}

// handleHealthz serves GET /healthz for load balancers and start-up polls:
// 503 with status -1 once the user store refuses writes, as the file store
// does after a failed write until wxlogin restarts (the log said why, once,
// when it happened), or while Redis cannot be reached, so that traffic
// moves elsewhere. (The fake WeChat alone, -fake-only, has its own.)
func handleHealthz(users userBackend) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := users.Health(r.Context()); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) && !errors.Is(err, redisstore.ErrUnavailable) {
				err = &apiError{status: statusInternal, httpCode: http.StatusServiceUnavailable, msg: msgStoreFailed, cause: err}
			}
			writeError(w, err)
			return
		}
		writeOK(w, nil)
	})
}

// handleHome serves GET /: the teaching page in mock mode, a status page
// naming the mini programs served otherwise.
func handleHome(apps appSet, mock bool) http.Handler {
	if mock {
		return pages.Teaching()
	}
	var list []pages.App
	for _, a := range apps {
		list = append(list, pages.App{ID: a.ID, Name: a.Name})
	}
	return pages.Status(list)
}

// handleScopes serves GET /scopes: the privacy layer, then the scope table,
// with the page it follows. The phone number is not a scope: only a tap on
// <button open-type="getPhoneNumber"> gives one (WECHAT.md §3), so it is
// among the privacy layer's unscoped interfaces.
func handleScopes() http.Handler {
	type response struct {
		Privacy scopes.PrivacyGate `json:"privacy"`
		Scopes  []scopes.Scope     `json:"scopes"`
		Source  string             `json:"source"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOK(w, response{Privacy: scopes.Privacy(), Scopes: scopes.Table(), Source: scopes.Source})
	})
}
