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
	"runtime/debug"
	"strings"
	"time"
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
	msgInternal         = "服务器内部错误"
)

// maxBodyBytes caps every request body; a login is a few dozen bytes.
const maxBodyBytes = 64 << 10

// newServer builds wxlogin's HTTP handler. fake is nil in real mode.
func newServer(log *slog.Logger, wx *wechatClient, users *userStore, tokens *tokenStore, fake *fakeWechat) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, wx, users, tokens, fake)
	return withAccessLog(log, mux)
}

// addRoutes lists every route wxlogin serves.
func addRoutes(mux *http.ServeMux, wx *wechatClient, users *userStore, tokens *tokenStore, fake *fakeWechat) {
	login := handleLogin(wx, users, tokens)
	mux.Handle("POST /login", login)
	mux.Handle("POST /login/{$}", login)
	user := requireLogin(tokens, handleUser(users))
	mux.Handle("GET /user", user)
	mux.Handle("GET /user/{$}", user)
	mux.Handle("POST /logout", requireLogin(tokens, handleLogout(tokens)))
	mux.Handle("GET /healthz", handleHealthz())
	if fake != nil {
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
	cause    error
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
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// writeOK writes a success envelope; data may be nil.
func writeOK(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Status: statusOK, Msg: msgOK, Data: data})
}

// writeError is the one place an error becomes a response. An *apiError says
// what the client may see; any other error is an internal one, answered with
// a bare 500. The cause is handed to the access log, which logs it once.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: statusInternal, httpCode: http.StatusInternalServerError, msg: msgInternal, cause: err}
	}
	if n, ok := w.(interface{ noteError(error) }); ok {
		n.noteError(ae)
	}
	if ae.status == statusNotLoggedIn {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wxlogin"`)
	}
	writeJSON(w, ae.httpCode, envelope{Status: ae.status, Msg: ae.msg, Errcode: ae.errcode})
}

// handleLogin serves POST /login: it exchanges a wx.login code for the
// user's identity, creates the user on first sight, and answers with a new
// token. The session_key stays on the server.
func handleLogin(wx *wechatClient, users *userStore, tokens *tokenStore) http.Handler {
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
		if req.AppID != "" && req.AppID != wx.appID {
			writeError(w, badRequest(msgUnknownApp, fmt.Errorf("appid %q is not configured", req.AppID)))
			return
		}
		cs, err := wx.code2Session(r.Context(), req.Code)
		if err != nil {
			writeError(w, wechatFailure(err))
			return
		}
		u, created, err := users.login(wx.appID, cs.OpenID, cs.UnionID)
		if err != nil {
			writeError(w, err)
			return
		}
		token := tokens.issue(identity{AppID: u.AppID, OpenID: u.OpenID, UnionID: u.UnionID, UserID: u.ID}, cs.SessionKey)
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
	Code  string `json:"code"`
	AppID string `json:"appid"`
}

// maxCodeBytes bounds a login code; WeChat's are 32 characters.
const maxCodeBytes = 128

// decodeLoginRequest reads a login request sent as JSON (wx.request's
// default) or as a form. A body with no Content-Type is read as JSON.
func decodeLoginRequest(r *http.Request) (loginRequest, error) {
	var req loginRequest
	mediaType := "application/json"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return req, badRequest(msgMalformed+"：无法解析 Content-Type", err)
		}
		mediaType = mt
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return req, bodyError(err)
		}
		req.Code, req.AppID = r.PostForm.Get("code"), r.PostForm.Get("appid")
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return req, bodyError(err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return req, jsonError(err)
			}
		}
	default:
		return req, badRequest(msgMalformed+"：Content-Type 应为 application/json 或 application/x-www-form-urlencoded", nil)
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

// bodyError explains a failure to read a request body.
func bodyError(err error) *apiError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{status: statusBadRequest, httpCode: http.StatusRequestEntityTooLarge, msg: msgTooLarge, cause: err}
	}
	return badRequest(msgMalformed, err)
}

// jsonError explains a JSON body that does not decode.
func jsonError(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return badRequest(msgMalformed+"："+typeErr.Field+" 应为字符串", err)
	}
	return badRequest(msgMalformed+"：请求体不是合法的 JSON 对象", err)
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
		token := tokenFromRequest(r.Header)
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
// as many mini programs send it, in a "token" header.
func tokenFromRequest(h http.Header) string {
	if scheme, token, ok := strings.Cut(h.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return strings.TrimSpace(h.Get("token"))
}

// userView is a user as GET /user shows it: every field always present.
type userView struct {
	ID          int64     `json:"id"`
	AppID       string    `json:"appid"`
	OpenID      string    `json:"openid"`
	UnionID     string    `json:"unionid"`
	Nickname    string    `json:"nickname"`
	AvatarURL   string    `json:"avatar_url"`
	Gender      int       `json:"gender"`
	Language    string    `json:"language"`
	City        string    `json:"city"`
	Province    string    `json:"province"`
	Country     string    `json:"country"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	LastLoginAt time.Time `json:"last_login_at"`
}

// handleUser serves GET /user: the logged-in user.
func handleUser(users *userStore) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, sess session) {
		u, ok := users.get(sess.UserID)
		if !ok {
			writeError(w, fmt.Errorf("token names user %d, who is not stored", sess.UserID))
			return
		}
		writeOK(w, userView(u))
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

// responseWriter records what the access log needs. When the mux found no
// route (the request's Pattern is empty) and answers 404 or 405 in plain
// text, it answers in the envelope instead, keeping the mux's Allow header.
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
	w.status = code
	if w.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.discard = true
		msg := msgNotFound
		if code == http.StatusMethodNotAllowed {
			msg = msgMethodNotAllowed
		}
		w.Header().Del("X-Content-Type-Options") // writeJSON sets it again, with its own Content-Type.
		writeJSON(w.ResponseWriter, code, envelope{Status: statusBadRequest, Msg: msg})
		return
	}
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
