package fakewechat

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"wxlogin/internal/accesslog"
	"wxlogin/internal/request"
)

// This file is how the fake answers on its own endpoints, beside WeChat's
// APIs: /mock/wx.*, /mock/risk-control and /mock/phone-quota in plain JSON,
// and /mock/faults, /mock/exchanges and -fake-only's /healthz in wxlogin's
// envelope, as the server it is part of answers every route. The fake
// writes them itself, so that it needs nothing of the server's handlers,
// and hands the access log what it refused, as they do; the server's
// tests check the two agree byte for byte.

// The envelope's statuses and messages the fake answers with: the
// server's (its handlers.go) for the same cases.
const (
	statusOK         = 0
	statusBadRequest = 1
	statusInternal   = -1
	msgOK            = "ok"
	msgMalformed     = "参数格式错误"
	msgTooLarge      = "请求体过大"
	msgInternal      = "服务器内部错误"
)

// envelope is the body of the fake's answers in wxlogin's envelope.
type envelope struct {
	Status int    `json:"status"`
	Msg    string `json:"msg"`
	Data   any    `json:"data,omitempty"`
}

// writeJSON writes v as a JSON response, with the headers every response
// of wxlogin's has: none may be cached.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error gets here: every reply is plain data.
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

// writeBadRequest answers status 1, saying what is wrong.
func writeBadRequest(w http.ResponseWriter, what string) {
	writeRefusal(w, http.StatusBadRequest, statusBadRequest, msgMalformed+"："+what, nil)
}

// writeRequestError answers a body that cannot be read (a *request.Error)
// as the server does: status 1, 413 for one over the cap.
func writeRequestError(w http.ResponseWriter, err error) {
	e, ok := err.(*request.Error)
	switch {
	case !ok:
		writeRefusal(w, http.StatusInternalServerError, statusInternal, msgInternal, err)
	case e.Kind == request.TooLarge:
		writeRefusal(w, http.StatusRequestEntityTooLarge, statusBadRequest, msgTooLarge, e.Err)
	case e.What == "":
		writeRefusal(w, http.StatusBadRequest, statusBadRequest, msgMalformed, e.Err)
	default:
		writeRefusal(w, http.StatusBadRequest, statusBadRequest, msgMalformed+"："+e.What, e.Err)
	}
}

// writeRefusal answers in the envelope with status and msg, and hands the
// access log what it answered, as the server's writeError does: the
// message, and the cause that only the log sees.
func writeRefusal(w http.ResponseWriter, code, status int, msg string, cause error) {
	accesslog.NoteError(w, refusal{msg, cause})
	writeJSON(w, code, envelope{Status: status, Msg: msg})
}

// refusal is an answer in the envelope as the access log shows it.
type refusal struct {
	msg   string
	cause error
}

func (r refusal) Error() string {
	if r.cause == nil {
		return r.msg
	}
	return r.msg + ": " + r.cause.Error()
}

func (r refusal) Unwrap() error { return r.cause }

// randomText is n bytes from crypto/rand, as text in the given encoding
// (hex.EncodeToString, base64.RawURLEncoding.EncodeToString, …).
func randomText(n int, encode func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return encode(b)
}
