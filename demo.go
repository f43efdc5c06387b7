package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// This file is the teaching page at GET /. In mock mode it is a simulated
// phone that runs the login and authorization flow against this very server,
// beside a sequence diagram of every HTTP exchange, including the ones
// between wxlogin and the fake WeChat, which the fake records for it. In real
// mode GET / is a short status page. Both are embedded in the binary and load
// nothing from anywhere else.

// webFiles holds the teaching page, its script and its style sheet.
//
//go:embed web
var webFiles embed.FS

// pagePolicy is the Content-Security-Policy of the pages: everything from
// this server, no inline script, nothing from a CDN, no framing.
const pagePolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// writePage sends an HTML page or one of its assets.
func writePage(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", pagePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store") // The demo changes with the binary; a stale script would confuse.
	w.Write(body)
}

// handleAsset serves one embedded file of the teaching page.
func handleAsset(name, contentType string) http.Handler {
	body, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		panic("wxlogin: missing embedded file " + name) // A build mistake, caught by every test run.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, contentType, body)
	})
}

// handleHome serves GET /: the teaching page in mock mode, a status page
// naming the mini programs served otherwise. Neither shows anything secret:
// an AppID is public, written into every copy of its mini program.
func handleHome(apps appSet, mock bool) http.Handler {
	if mock {
		return handleAsset("demo.html", "text/html; charset=utf-8")
	}
	status := template.Must(template.ParseFS(webFiles, "web/status.html"))
	type app struct{ ID, Name string }
	var list []app
	for _, a := range apps {
		list = append(list, app{a.ID, a.Name})
	}
	slices.SortFunc(list, func(a, b app) int { return strings.Compare(a.ID, b.ID) })
	var page bytes.Buffer
	if err := status.Execute(&page, list); err != nil {
		panic("wxlogin: status page: " + err.Error()) // A template mistake, caught by its test.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "text/html; charset=utf-8", page.Bytes())
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

// redacted says, in place of a secret, what it is and where it stays. The
// teaching page shows these, so that the session_key is seen to stay on the
// server.
var redacted = map[string]string{
	"secret":       "[AppSecret: hidden]",
	"session_key":  "[session_key: kept by wxlogin, never sent to the phone]",
	"access_token": "[access_token: hidden]",
	"signature":    "[signature: an HMAC made with the session_key]",
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

// redactValue replaces the value of a secret parameter.
func redactValue(key, value string) string {
	if label, ok := redacted[key]; ok {
		return label
	}
	return value
}

// redactJSON returns body with the secrets of a JSON object replaced, or
// nil if body is empty or not a JSON object: the fake's server API speaks
// JSON objects, and anything else is not worth drawing.
func redactJSON(body []byte) json.RawMessage {
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil
	}
	for k := range fields {
		if label, secret := redacted[k]; secret {
			fields[k] = label
		}
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return nil // Cannot happen: the values came from JSON.
	}
	return out
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
