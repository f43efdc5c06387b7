package fakewechat

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"wxlogin/internal/request"
)

// This file is how the fake answers on its own endpoints, beside WeChat's
// APIs: /mock/wx.*, /mock/risk-control and /mock/phone-quota in plain JSON,
// and /mock/faults, /mock/exchanges and -fake-only's /healthz in wxlogin's
// envelope, as the server it is part of answers every route. The fake
// writes them itself, so that it needs nothing of the server's handlers;
// the server's tests check the two agree byte for byte.

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
	writeJSON(w, http.StatusBadRequest, envelope{Status: statusBadRequest, Msg: msgMalformed + "：" + what})
}

// writeRequestError answers a body that cannot be read (a *request.Error)
// as the server does: status 1, 413 for one over the cap.
func writeRequestError(w http.ResponseWriter, err error) {
	e, ok := err.(*request.Error)
	switch {
	case !ok:
		writeJSON(w, http.StatusInternalServerError, envelope{Status: statusInternal, Msg: msgInternal})
	case e.Kind == request.TooLarge:
		writeJSON(w, http.StatusRequestEntityTooLarge, envelope{Status: statusBadRequest, Msg: msgTooLarge})
	case e.What == "":
		writeJSON(w, http.StatusBadRequest, envelope{Status: statusBadRequest, Msg: msgMalformed})
	default:
		writeBadRequest(w, e.What)
	}
}

// randomText is n bytes from crypto/rand, as text in the given encoding
// (hex.EncodeToString, base64.RawURLEncoding.EncodeToString, …).
func randomText(n int, encode func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return encode(b)
}
