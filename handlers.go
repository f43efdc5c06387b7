package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Envelope statuses: the "status" field of every response. 1 and 2, with
// their messages, are those of the classic Django implementation of this
// flow, so mini programs written against it work unchanged.
const (
	statusOK          = 0
	statusBadRequest  = 1 // missing or malformed parameter; also unknown route, wrong method, body too large
	statusInvalidCode = 2 // WeChat rejected the code: get a new one from wx.login
	statusWechatDown  = 3 // WeChat unavailable: try again later
	statusNotLoggedIn = 4 // token missing, unknown, revoked or expired: run wx.login again
	statusDataCheck   = 5 // signed or encrypted user data failed verification
	statusClaimed     = 6 // a one-time benefit the person has already claimed
	statusRateLimited = 7 // too many logins from this address: wait Retry-After seconds
	statusInternal    = -1
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
	msgInternal         = "服务器内部错误"
	// A status 5 message is msgDataCheck, the check that failed, and
	// msgDataCheckHint: the usual cause is a session_key that a later wx.login
	// replaced after the data was fetched (WECHAT.md §2).
	msgClaimed       = "已领取过"
	msgDataCheck     = "用户数据校验失败："
	msgDataCheckHint = "。session_key 可能已更新：请重新调用 wx.login 登录，再重新获取数据"
)

// maxBodyBytes caps every request body; a login is a few dozen bytes.
const maxBodyBytes = 64 << 10

// miniApp is one mini program wxlogin serves, with its WeChat client (and
// so its own access_token).
type miniApp struct {
	ID   string // the AppID
	Name string
	wx   *wechatClient
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

// of returns the app of a session. A token outlives a restart, and its app
// may since have been removed from the configuration: it is then no login.
func (apps appSet) of(sess session) (*miniApp, error) {
	app, ok := apps[sess.AppID]
	if !ok {
		return nil, notLoggedIn(fmt.Errorf("token of app %q, which is no longer configured", sess.AppID))
	}
	return app, nil
}

// newServer builds wxlogin's HTTP handler. fake is nil in real mode, and
// limit nil when logins are not limited.
func newServer(log *slog.Logger, apps appSet, users *userStore, tokens *tokenStore, limit *loginLimiter, proxies trustedProxies, fake *fakeWechat) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, apps, users, tokens, limit, proxies, fake)
	return withAccessLog(log, mux)
}

// addRoutes lists every route wxlogin serves.
func addRoutes(mux *http.ServeMux, apps appSet, users *userStore, tokens *tokenStore, limit *loginLimiter, proxies trustedProxies, fake *fakeWechat) {
	login := limitLogins(limit, proxies, handleLogin(apps, users, tokens))
	mux.Handle("POST /login", login)
	mux.Handle("POST /login/{$}", login)
	user := requireLogin(tokens, handleUser(apps, users))
	mux.Handle("GET /user", user)
	mux.Handle("GET /user/{$}", user)
	patchUser := requireLogin(tokens, handlePatchUser(apps, users))
	mux.Handle("PATCH /user", patchUser)
	mux.Handle("PATCH /user/{$}", patchUser)
	mux.Handle("POST /user/userinfo", requireLogin(tokens, handleUserInfo(apps, users)))
	mux.Handle("POST /user/phone", requireLogin(tokens, handlePhone(apps, users)))
	mux.Handle("POST /user/werun", requireLogin(tokens, handleWeRun()))
	mux.Handle("GET /session/check", requireLogin(tokens, handleSessionCheck(apps)))
	mux.Handle("POST /claims/{name}", requireLogin(tokens, handleClaim(users)))
	mux.Handle("GET /claims", requireLogin(tokens, handleClaims(users)))
	mux.Handle("POST /logout", requireLogin(tokens, handleLogout(tokens)))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /scopes", handleScopes())
	mux.Handle("GET /{$}", handleHome(apps, fake != nil))
	if fake != nil {
		mux.Handle("GET /demo/demo.js", handleAsset("demo.js", "text/javascript; charset=utf-8"))
		mux.Handle("GET /demo/demo.css", handleAsset("demo.css", "text/css; charset=utf-8"))
		mux.Handle("/mock/", fake.routes())
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

// wechatFailure maps an error of the WeChat client to what the client is
// told: status 2 when WeChat rejected the code, otherwise status 3 (504 when
// time ran out), with WeChat's errcode whenever it sent one.
func wechatFailure(err error) *apiError {
	e := &apiError{status: statusWechatDown, httpCode: http.StatusBadGateway, msg: msgWechatDown, cause: err}
	var we *wechatError
	switch {
	case errors.As(err, &we):
		e.errcode = we.Code
		if we.codeRejected() {
			e.status, e.httpCode, e.msg = statusInvalidCode, http.StatusUnauthorized, msgInvalidCode
		}
	case errors.Is(err, context.DeadlineExceeded):
		e.httpCode = http.StatusGatewayTimeout
	}
	return e
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
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body)
}

// writeOK writes a success envelope; data may be nil.
func writeOK(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Status: statusOK, Msg: msgOK, Data: data})
}

// writeUserOK writes a success envelope holding v, as writeOK would, but
// without reflection: GET /user is the route every page of a mini program
// calls, and encoding/json was a fifth of its cost. TestUserViewJSON checks
// that the bytes are writeOK's.
func writeUserOK(w http.ResponseWriter, v userView) {
	body := make([]byte, 0, 1024)
	body = strconv.AppendInt(append(body, `{"status":`...), statusOK, 10)
	body = appendField(body, `,"msg":`, msgOK)
	body = v.appendJSON(append(body, `,"data":`...))
	writeBody(w, http.StatusOK, append(body, "}\n"...))
}

// writeError is the one place an error becomes a response. An *apiError says
// what the client may see, and so does a *dataCheckError (status 5); any
// other error is an internal one, answered with a bare 500. The cause is
// handed to the access log, which logs it once.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var dce *dataCheckError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &dce):
		ae = &apiError{status: statusDataCheck, httpCode: http.StatusBadRequest, msg: msgDataCheck + dce.check + msgDataCheckHint, cause: err}
	default:
		ae = &apiError{status: statusInternal, httpCode: http.StatusInternalServerError, msg: msgInternal, cause: err}
	}
	if n, ok := w.(interface{ noteError(error) }); ok {
		n.noteError(ae)
	}
	if ae.status == statusNotLoggedIn {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wxlogin"`)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.retryAfter)))
	}
	writeJSON(w, ae.httpCode, envelope{Status: ae.status, Msg: ae.msg, Errcode: ae.errcode})
}

// handleLogin serves POST /login: it exchanges a wx.login code for the
// user's identity, creates the user on first sight, and answers with a new
// token. The session_key stays on the server.
func handleLogin(apps appSet, users *userStore, tokens *tokenStore) http.Handler {
	type response struct {
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
		OpenID    string `json:"openid"`
		UserID    int64  `json:"user_id"`
		NewUser   bool   `json:"new_user"`
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
		cs, err := app.wx.code2Session(r.Context(), req.Code)
		if err != nil {
			writeError(w, wechatFailure(err))
			return
		}
		u, created, err := users.login(app.ID, cs.OpenID, cs.UnionID)
		if err != nil {
			writeError(w, err)
			return
		}
		token := tokens.issue(identity{AppID: u.AppID, OpenID: u.OpenID, UserID: u.ID}, cs.SessionKey)
		writeOK(w, response{
			Token:     token,
			ExpiresIn: int64(tokens.lifetime() / time.Second),
			OpenID:    u.OpenID,
			UserID:    u.ID,
			NewUser:   created,
		})
	})
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
	if err := readStringFields(r, map[string]*string{"code": &req.Code, "appid": &req.AppID}); err != nil {
		return req, err
	}
	if req.Code == "" {
		return req, badRequest(msgMissingParam, errors.New("no code"))
	}
	if !isPrintableASCII(req.Code) || len(req.Code) > maxCodeBytes {
		return req, badRequest(msgMalformed+"：code 无效", nil)
	}
	if !isPrintableASCII(req.AppID) || len(req.AppID) > 64 {
		return req, badRequest(msgMalformed+"：appid 无效", nil)
	}
	return req, nil
}

// requestMediaType is the media type of the request body; a request without
// a Content-Type is taken to be JSON, wx.request's default.
func requestMediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "application/json", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", badRequest(msgMalformed+"：无法解析 Content-Type", err)
	}
	return mt, nil
}

// readStringFields reads the named string fields of a request body sent as
// JSON (wx.request's default) or as a form, as older mini programs send
// them. Names match exactly, as WeChat spells them in e.detail; other
// fields are ignored, and a missing or null field reads as "".
func readStringFields(r *http.Request, fields map[string]*string) error {
	mediaType, err := requestMediaType(r)
	if err != nil {
		return err
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return bodyError(err)
		}
		for name, dst := range fields {
			if len(r.PostForm[name]) > 1 {
				return badRequest(msgMalformed+"："+name+" 出现了不止一次", nil)
			}
			*dst = r.PostForm.Get(name)
			if !utf8.ValidString(*dst) {
				return badRequest(msgMalformed+"：请求体不是合法的 UTF-8", nil)
			}
		}
	case "application/json":
		var members map[string]json.RawMessage
		if err := decodeJSONBody(r, &members, false); err != nil {
			return err
		}
		for name, dst := range fields {
			raw, ok := members[name]
			if !ok || string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return badRequest(msgMalformed+"："+name+" 应为字符串", err)
			}
		}
	default:
		return badRequest(msgMalformed+"：Content-Type 应为 application/json 或 application/x-www-form-urlencoded", nil)
	}
	return nil
}

// readJSON reads a JSON request body into v, which must be a pointer to a
// struct. A member v has no field for is an error: a misspelt name is
// refused rather than silently ignored.
func readJSON(r *http.Request, v any) error {
	mediaType, err := requestMediaType(r)
	if err != nil {
		return err
	}
	if mediaType != "application/json" {
		return badRequest(msgMalformed+"：Content-Type 应为 application/json", nil)
	}
	return decodeJSONBody(r, v, true)
}

// decodeJSONBody decodes the body as one JSON object. An empty body decodes
// as {}. The body must be valid UTF-8: encoding/json would silently replace
// invalid bytes, storing text the client never sent.
func decodeJSONBody(r *http.Request, v any, strict bool) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !utf8.Valid(body) {
		return badRequest(msgMalformed+"：请求体不是合法的 UTF-8", nil)
	}
	if name := duplicateMember(body); name != "" {
		return badRequest(msgMalformed+"：字段 "+quoteName(name)+" 出现了不止一次", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if !atEOF(dec) {
		return badRequest(msgMalformed+"：请求体在 JSON 对象之后还有内容", nil)
	}
	return nil
}

// duplicateMember returns a member name that appears twice in one object
// of the JSON text data, or "" if none does (or data is not JSON, which the
// decoder then reports). encoding/json keeps the last of two equal names,
// where other readers of the same body (a gateway, a log, a WAF) may keep
// the first: refusing the body leaves no room for the two to disagree. Names
// are compared as encoding/json matches them to struct fields, ignoring
// case, so {"nickname": …, "Nickname": …} is refused too.
func duplicateMember(data []byte) string {
	// Every member has a colon after its name, and colons in strings only
	// add to the count: with one colon at most, there is one member at most.
	// Most logins are {"code": "…"}, and skip the 4 µs of the full scan.
	if bytes.Count(data, []byte(":")) < 2 {
		return ""
	}
	// One frame per open object or array; an object's frame holds the
	// names seen and whether a name comes next.
	type frame struct {
		names    map[string]bool
		nameNext bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // Numbers are skipped; this keeps them from being parsed as floats.
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if n := len(stack); n > 0 && stack[n-1].nameNext {
			if name, ok := tok.(string); ok {
				top, folded := stack[n-1], foldName(name)
				if top.names[folded] {
					return name
				}
				top.names[folded], top.nameNext = true, false
				continue
			}
			// Otherwise the token is the object's '}'.
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, nameNext: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value has ended: in an object, a name comes next.
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].nameNext = true
		}
	}
}

// foldName maps every rune of name to the smallest rune it is equal to
// under Unicode simple case folding, so that two names are equal after
// foldName exactly when strings.EqualFold says so, as encoding/json compares
// member names with field names.
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, name)
}

// quoteName quotes a member name from a request for an error message,
// cut to 64 runes: the name is the client's, of any length.
func quoteName(name string) string {
	if utf8.RuneCountInString(name) > 64 {
		name = string([]rune(name)[:64]) + "…"
	}
	return strconv.Quote(name)
}

// bodyError explains a failure to read a request body.
func bodyError(err error) *apiError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{status: statusBadRequest, httpCode: http.StatusRequestEntityTooLarge, msg: msgTooLarge, cause: err}
	}
	return badRequest(msgMalformed, err)
}

// jsonError explains a JSON body that does not decode, naming the field.
func jsonError(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return badRequest(msgMalformed+"："+typeErr.Field+" 应为"+jsonKind(typeErr.Type), err)
	}
	// DisallowUnknownFields reports with this text only; Go has no error type for it.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if len(name) > 66 {
			name = name[:64] + `…"`
		}
		return badRequest(msgMalformed+"：未知字段 "+name, err)
	}
	return badRequest(msgMalformed+"：请求体不是合法的 JSON 对象", err)
}

// jsonKind names a Go type as the JSON a client should send for it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "字符串"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "整数"
	case reflect.Bool:
		return "布尔值"
	case reflect.Slice, reflect.Array:
		return "数组"
	default:
		return "对象"
	}
}

// isPrintableASCII reports whether s has only visible ASCII characters.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// sessionHandler is a handler for a route that needs a login.
type sessionHandler func(w http.ResponseWriter, r *http.Request, sess session)

// requireLogin resolves the request's token and calls next with its session,
// or answers status 4.
func requireLogin(tokens *tokenStore, next sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := tokenFromRequest(r.Header)
		if err != nil {
			writeError(w, err)
			return
		}
		if token == "" {
			writeError(w, notLoggedIn(errors.New("no token")))
			return
		}
		sess, ok := tokens.lookup(token)
		if !ok {
			writeError(w, notLoggedIn(errors.New("unknown, revoked or expired token")))
			return
		}
		next(w, r, sess)
	})
}

// tokenFromRequest finds the token in "Authorization: Bearer <token>" or,
// as many mini programs send it, in a "token" header; "" if there is none.
// Either header sent twice is refused: two tokens in one request leave it
// open which one speaks (a reverse proxy that adds its own must replace the
// client's).
func tokenFromRequest(h http.Header) (string, error) {
	auth, token := h.Values("Authorization"), h.Values("Token")
	if len(auth) > 1 || len(token) > 1 {
		return "", badRequest(msgMalformed+"：Authorization 或 token 请求头出现了不止一次", nil)
	}
	if len(auth) == 1 {
		if scheme, t, ok := strings.Cut(auth[0], " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t), nil
		}
	}
	if len(token) == 1 {
		return strings.TrimSpace(token[0]), nil
	}
	return "", nil
}

// recordView is a user record as the API shows it: every field always
// present.
type recordView struct {
	ID        int64  `json:"id"`
	AppID     string `json:"appid"`
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid"`
	Nickname  string `json:"nickname"`
	AvatarURL string `json:"avatar_url"`
	Gender    int    `json:"gender"`
	Language  string `json:"language"`
	City      string `json:"city"`
	Province  string `json:"province"`
	Country   string `json:"country"`
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

// appendJSON appends v as encoding/json writes it.
func (v userView) appendJSON(buf []byte) []byte {
	u := User(v.recordView)
	buf = appendUserFields(append(buf, '{'), &u, true)
	buf = strconv.AppendInt(append(buf, `,"person_id":`...), v.PersonID, 10)
	if v.Apps == nil {
		return append(buf, `,"apps":null}`...)
	}
	buf = append(buf, `,"apps":[`...)
	for i, a := range v.Apps {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendField(buf, `{"appid":`, a.AppID)
		buf = appendField(buf, `,"name":`, a.Name)
		buf = strconv.AppendInt(append(buf, `,"user_id":`...), a.UserID, 10)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
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
func viewUser(apps appSet, users *userStore, id int64) (userView, error) {
	person, ok := users.person(id)
	if !ok {
		return userView{}, fmt.Errorf("token names user %d, who is not stored", id)
	}
	v := userView{PersonID: person[0].ID}
	for _, u := range person {
		if u.ID == id {
			v.recordView = recordView(u)
		}
		var name string
		if app, ok := apps[u.AppID]; ok {
			name = app.Name
		}
		v.Apps = append(v.Apps, personApp{AppID: u.AppID, Name: name, UserID: u.ID})
	}
	return v, nil
}

// writeUser answers with user id as GET /user shows it.
func writeUser(w http.ResponseWriter, apps appSet, users *userStore, id int64) {
	v, err := viewUser(apps, users, id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeUserOK(w, v)
}

// handleUser serves GET /user: the logged-in user, with their person.
func handleUser(apps appSet, users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		writeUser(w, apps, users, sess.UserID)
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
// WeChat, so every field is validated; an empty string clears a field.
func handlePatchUser(apps appSet, users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		var p profilePatch
		if err := readJSON(r, &p); err != nil {
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
		if _, err := users.update(sess.UserID, p.apply); err != nil {
			writeError(w, err)
			return
		}
		writeUser(w, apps, users, sess.UserID)
	}
}

// validate checks every field that is set. Its error messages are for the
// client.
func (p profilePatch) validate() error {
	err := checkProfileFields(
		profileField{"nickname", p.Nickname, checkName}, profileField{"city", p.City, checkName},
		profileField{"province", p.Province, checkName}, profileField{"country", p.Country, checkName},
		profileField{"language", p.Language, checkLanguage},
	)
	if err != nil {
		return err
	}
	if p.Gender != nil && (*p.Gender < 0 || *p.Gender > 2) {
		return errors.New("gender 应为 0（未知）、1（男）或 2（女）")
	}
	return checkProfileFields(profileField{"avatar_url", p.AvatarURL, checkAvatarURL})
}

// apply sets the patch's fields on u.
func (p profilePatch) apply(u *User) {
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

// profileField is a profile field to check, under the name its source gives
// it: PATCH /user's own names, or WeChat's in verified user info.
type profileField struct {
	name  string
	value *string // nil when the field was not sent
	check func(name, value string) error
}

// checkProfileFields checks every field that was sent. Its errors name the
// field and are for the client.
func checkProfileFields(fields ...profileField) error {
	for _, f := range fields {
		if f.value == nil {
			continue
		}
		if err := f.check(f.name, *f.value); err != nil {
			return err
		}
	}
	return nil
}

// Limits of profile fields. WeChat's own are smaller; these only keep
// nonsense out of the store.
const (
	maxNameRunes    = 64
	maxLanguageLen  = 16
	maxAvatarURLLen = 1024
)

// checkName accepts a name: a nickname, a place, a unionid.
func checkName(name, s string) error { return checkText(name, s, maxNameRunes) }

// checkText accepts text of at most maxRunes characters with no control
// characters (line breaks included).
func checkText(name, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s 不是合法的 UTF-8", name)
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return fmt.Errorf("%s 最多 %d 个字符，实为 %d 个", name, maxRunes, n)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s 含有控制字符", name)
	}
	return nil
}

// checkLanguage accepts a language tag such as zh_CN or en.
func checkLanguage(name, s string) error {
	if len(s) > maxLanguageLen || strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		return fmt.Errorf("%s 应为 zh_CN 这样的语言代码", name)
	}
	return nil
}

// checkAvatarURL accepts an absolute http or https URL, or "" for none.
// chooseAvatar gives a temporary local file, which WeChat DevTools shows as
// http://tmp/...: that is refused with a hint, as no one else can load it.
func checkAvatarURL(name, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case len(s) > maxAvatarURLLen:
		return fmt.Errorf("%s 最长 %d 字节", name, maxAvatarURLLen)
	case err != nil || !isPrintableASCII(s) || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
		return fmt.Errorf("%s 应为 http 或 https 网址", name)
	case u.Hostname() == "tmp" || u.Hostname() == "usr":
		return fmt.Errorf("%s 是 chooseAvatar 给出的本地临时文件：请先用 wx.uploadFile 上传，再保存上传后的网址", name)
	}
	return nil
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

// handleUserInfo serves POST /user/userinfo: it verifies the signature of
// rawData and/or decrypts encryptedData with the session's session_key
// (both must pass when both are sent), and saves the verified profile and
// unionId. WeChat's anonymous placeholder ("微信用户" with a grey avatar)
// never overwrites a nickname or avatar, and empty fields are not saved.
func handleUserInfo(apps appSet, users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		var req userInfoRequest
		if err := readStringFields(r, req.fields()); err != nil {
			writeError(w, err)
			return
		}
		info, err := verifyUserInfo(req, sess)
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := users.update(sess.UserID, info.apply); err != nil {
			writeError(w, err)
			return
		}
		writeUser(w, apps, users, sess.UserID)
	}
}

// verifyUserInfo checks a user info request against the session.
func verifyUserInfo(req userInfoRequest, sess session) (userInfo, error) {
	signed := req.RawData != "" || req.Signature != ""
	encrypted := req.EncryptedData != "" || req.IV != ""
	switch {
	case !signed && !encrypted:
		return userInfo{}, badRequest(msgMissingParam+"：需要 rawData 和 signature，或 encryptedData 和 iv", nil)
	case signed && (req.RawData == "" || req.Signature == ""):
		return userInfo{}, badRequest(msgMissingParam+"：rawData 和 signature 须一起提供", nil)
	case encrypted && (req.EncryptedData == "" || req.IV == ""):
		return userInfo{}, badRequest(msgMissingParam+"：encryptedData 和 iv 须一起提供", nil)
	}
	var info userInfo
	if signed {
		if err := verifySignature(req.RawData, req.Signature, sess.SessionKey); err != nil {
			return info, err
		}
		p, err := parseRawData(req.RawData)
		if err != nil {
			return info, err
		}
		info.profile = p
	}
	if encrypted {
		plain, err := decryptOpenData(sess.SessionKey, req.EncryptedData, req.IV)
		if err != nil {
			return info, err
		}
		// The decrypted data is what WeChat vouches for most: it names the
		// user and the app, and may carry the unionId.
		if info, err = parseUserInfo(plain, sess.AppID, sess.OpenID, signed); err != nil {
			return info, err
		}
	}
	if err := info.check(); err != nil {
		return info, err
	}
	return info, nil
}

// check applies the limits of PATCH /user to verified data too: a record is
// never stored that PATCH would refuse.
func (info userInfo) check() error {
	p := info.profile
	err := checkProfileFields(
		profileField{"nickName", &p.Nickname, checkName}, profileField{"city", &p.City, checkName},
		profileField{"province", &p.Province, checkName}, profileField{"country", &p.Country, checkName},
		profileField{"language", &p.Language, checkLanguage}, profileField{"avatarUrl", &p.AvatarURL, checkAvatarURL},
		profileField{"unionId", &info.UnionID, checkName},
	)
	if err != nil {
		return checkFailed("%v", err)
	}
	return nil
}

// apply saves the verified profile on u: the fields WeChat filled, except
// the anonymous placeholder's nickname and avatar.
func (info userInfo) apply(u *User) {
	p := info.profile
	setIfSent := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if !p.anonymous() {
		setIfSent(&u.Nickname, p.Nickname)
		setIfSent(&u.AvatarURL, p.AvatarURL)
	}
	setIfSent(&u.Language, p.Language)
	setIfSent(&u.City, p.City)
	setIfSent(&u.Province, p.Province)
	setIfSent(&u.Country, p.Country)
	setIfSent(&u.UnionID, info.UnionID)
	if p.Gender != 0 {
		u.Gender = p.Gender
	}
}

// encryptedRequest is an encrypted pair of open data, as the client got it.
type encryptedRequest struct {
	EncryptedData, IV string
}

func (req *encryptedRequest) fields() map[string]*string {
	return map[string]*string{"encryptedData": &req.EncryptedData, "iv": &req.IV}
}

// decrypt decrypts the pair with the session's session_key.
func (req encryptedRequest) decrypt(sess session) ([]byte, error) {
	if req.EncryptedData == "" || req.IV == "" {
		return nil, badRequest(msgMissingParam+"：需要 encryptedData 和 iv", nil)
	}
	return decryptOpenData(sess.SessionKey, req.EncryptedData, req.IV)
}

// handlePhone serves POST /user/phone with the e.detail of <button
// open-type="getPhoneNumber">: its code goes to WeChat's getuserphonenumber
// (base library 2.21.2 and later); without a code, the legacy encryptedData
// and iv are decrypted. The number is saved on the user.
func handlePhone(apps appSet, users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		var req struct {
			Code string
			encryptedRequest
		}
		fields := req.encryptedRequest.fields()
		fields["code"] = &req.Code
		if err := readStringFields(r, fields); err != nil {
			writeError(w, err)
			return
		}
		var data openData
		switch {
		case req.Code != "":
			if !isPrintableASCII(req.Code) || len(req.Code) > maxCodeBytes {
				writeError(w, badRequest(msgMalformed+"：code 无效", nil))
				return
			}
			app, err := apps.of(sess)
			if err != nil {
				writeError(w, err)
				return
			}
			d, err := app.wx.phoneNumber(r.Context(), req.Code, sess.OpenID)
			if err != nil {
				writeError(w, wechatFailure(err))
				return
			}
			data = d
		case req.EncryptedData != "" || req.IV != "":
			plain, err := req.decrypt(sess)
			if err == nil {
				data, err = parseOpenData(plain)
			}
			if err != nil {
				writeError(w, err)
				return
			}
		default:
			// A user who refuses gets e.detail with only an errMsg.
			writeError(w, badRequest(msgMissingParam+"：需要 code，或 encryptedData 和 iv（用户拒绝授权时 e.detail 中没有它们）", nil))
			return
		}
		p, err := parsePhone(data, sess.AppID)
		if err == nil {
			err = p.check()
		}
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := users.update(sess.UserID, func(u *User) {
			u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = p.PhoneNumber, p.PurePhoneNumber, p.CountryCode
		}); err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, p)
	}
}

// check keeps a phone number to what phone numbers look like.
func (p phone) check() error {
	for _, f := range []struct{ name, value string }{
		{"phoneNumber", p.PhoneNumber}, {"purePhoneNumber", p.PurePhoneNumber}, {"countryCode", p.CountryCode},
	} {
		if len(f.value) > 32 || strings.ContainsFunc(f.value, func(r rune) bool {
			return !(r == '+' || r == '-' || r == ' ' || '0' <= r && r <= '9')
		}) {
			return checkFailed("%s 不像电话号码", f.name)
		}
	}
	return nil
}

// handleWeRun serves POST /user/werun: it decrypts wx.getWeRunData's result
// and answers with the steps. They are not stored: they change daily, and
// the mini program can fetch them whenever it needs them.
func handleWeRun() sessionHandler {
	type response struct {
		StepInfoList []stepInfo `json:"step_info_list"`
	}
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		var req encryptedRequest
		if err := readStringFields(r, req.fields()); err != nil {
			writeError(w, err)
			return
		}
		plain, err := req.decrypt(sess)
		if err != nil {
			writeError(w, err)
			return
		}
		steps, err := parseWeRun(plain, sess.AppID)
		if err != nil {
			writeError(w, err)
			return
		}
		writeOK(w, response{StepInfoList: steps})
	}
}

// handleSessionCheck serves GET /session/check: whether the session's
// session_key is still the user's current one at WeChat (checksession). When
// it is not, data the client fetches now will not decrypt here: the client
// should run wx.login and log in again.
func handleSessionCheck(apps appSet) sessionHandler {
	type response struct {
		Valid bool `json:"valid"`
	}
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		app, err := apps.of(sess)
		if err != nil {
			writeError(w, err)
			return
		}
		valid, err := app.wx.checkSessionKey(r.Context(), sess.OpenID, sess.SessionKey)
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
func handleClaim(users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		name := r.PathValue("name")
		if !validClaimName(name) {
			writeError(w, badRequest(msgMalformed+"：名称应为 1 到 32 个 a-z、0-9 或 -", nil))
			return
		}
		c, taken, err := users.claim(sess.UserID, name)
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
func handleClaims(users *userStore) sessionHandler {
	type response struct {
		Claims []Claim `json:"claims"`
	}
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		writeOK(w, response{Claims: users.claimsOf(sess.UserID)})
	}
}

// handleLogout serves POST /logout: the token is revoked at once.
func handleLogout(tokens *tokenStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		tokens.revoke(sess)
		writeOK(w, nil)
	}
}

// handleHealthz serves GET /healthz for load balancers and start-up polls.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOK(w, nil)
	})
}

// withAccessLog writes one log line per request (method, path, route,
// status, duration, and the cause of a failure; never a token, code or
// secret: bodies, queries and headers are not logged). It also caps request
// bodies, turns panics into a 500 envelope, and answers the mux's own 404
// and 405 in the envelope.
func withAccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// MaxBytesReader gets the server's own writer, so it can close the
		// connection after a 413.
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		rw := &responseWriter{ResponseWriter: w, req: r}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
				if rw.status == 0 {
					writeError(rw, err)
				} else {
					rw.noteError(err) // Too late for an error response; the log still says why.
				}
			}
			level := slog.LevelInfo
			if rw.status >= 500 {
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", r.Pattern),
				slog.Int("status", rw.status),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
			}
			if rw.cause != nil {
				attrs = append(attrs, slog.String("err", rw.cause.Error()))
			}
			log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK // The handler wrote nothing; net/http sends 200.
		}
	})
}

// responseWriter records what the access log needs. It also puts the mux's
// own answers in the envelope: a 404 or 405 in plain text where no route
// matched (the request's Pattern is empty), keeping the Allow header; and
// a redirect, which the mux sends for a path like /user/../login, //login or
// /mock, and which wxlogin's handlers never send. A path written otherwise
// than as a route is written is not that route: it gets 404 rather than a
// redirect a client might follow with its token.
type responseWriter struct {
	http.ResponseWriter
	req     *http.Request
	status  int
	cause   error
	discard bool // the mux's plain-text body is being replaced
}

func (w *responseWriter) noteError(err error) { w.cause = err }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	redirect := code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect
	if redirect || w.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.discard = true
		msg := msgNotFound
		switch {
		case redirect:
			code = http.StatusNotFound
			w.Header().Del("Location")
			// The mux matched the cleaned path, which is not the path sent:
			// the access log shows no route, as for any other 404.
			w.req.Pattern = ""
		case code == http.StatusMethodNotAllowed:
			msg = msgMethodNotAllowed
		}
		w.status = code
		w.Header().Del("X-Content-Type-Options") // writeJSON sets it again, with its own Content-Type.
		writeJSON(w.ResponseWriter, code, envelope{Status: statusBadRequest, Msg: msg})
		return
	}
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.discard {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
