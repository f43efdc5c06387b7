package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/limits"
)

// The log writer keeps every line, in order, from concurrent writers, and
// has written all of them when close returns.
func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	var out bytes.Buffer // written only by the writer's goroutine, then read after close
	w := newLogWriter(&out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "writer=%d line=%d\n", g, i)
			}
		})
	}
	wg.Wait()
	w.close()
	next := make([]int, writers)
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(line, "writer=%d line=%d", &g, &i); err != nil {
			t.Fatalf("mangled line %q: %v", line, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d came where line %d was due", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines written; want %d", g, n, lines)
		}
	}
}

// blockedWriter is a stderr nobody reads: its writes wait for release.
type blockedWriter struct {
	release chan struct{}
	mu      sync.Mutex
	written int
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	b.written += len(p)
	return len(p), nil
}

// When stderr is not read, the log writer holds at most about
// maxPendingLog bytes and then makes writers wait, rather than grow.
func TestLogWriterWaitsForASlowReader(t *testing.T) {
	out := &blockedWriter{release: make(chan struct{})}
	w := newLogWriter(out)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	wrote := make(chan int, 1)
	go func() {
		n := 0
		for range 4 * maxPendingLog / len(line) {
			w.Write(line)
			n += len(line)
		}
		wrote <- n
	}()
	// The writer can get at most one batch out (blocked in out.Write) and
	// maxPendingLog more pending; a poll with a deadline finds it stuck there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		pending := len(w.pending)
		w.mu.Unlock()
		if pending >= maxPendingLog {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending log stayed at %d bytes; want it to fill to %d", pending, maxPendingLog)
		}
		runtime.Gosched()
	}
	select {
	case n := <-wrote:
		t.Fatalf("all %d bytes were accepted while nothing was read", n)
	default:
	}
	w.mu.Lock()
	if len(w.pending) > maxPendingLog+len(line) {
		t.Errorf("%d bytes pending; want at most %d", len(w.pending), maxPendingLog+len(line))
	}
	w.mu.Unlock()
	close(out.release)
	n := <-wrote
	w.close()
	if out.written != n {
		t.Errorf("%d bytes written; want %d", out.written, n)
	}
}

// The mux's own answers (404, 405 with its Allow header) and a body over
// the cap (413) are put in the envelope on the way out.
func TestRoutingErrorsUseTheEnvelope(t *testing.T) {
	a, _ := loggedIn(t)
	tests := []struct {
		method, path, body, contentType string
		wantHTTP                        int
		wantMsg, wantAllow              string
	}{
		{"GET", "/nope", "", "", 404, msgNotFound, ""},
		{"GET", "/login/extra", "", "", 404, msgNotFound, ""},
		{"POST", "/mock/wx.login", `{"user":"x"}`, jsonCT, 404, msgNotFound, ""}, // real mode: no fake
		{"GET", "/login", "", "", 405, msgMethodNotAllowed, "POST"},
		{"PUT", "/user", "", "", 405, msgMethodNotAllowed, "DELETE, GET, HEAD, PATCH"},
		{"GET", "/user/phone", "", "", 405, msgMethodNotAllowed, "POST"},
		{"POST", "/session/check", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"POST", "/healthz", "", "", 405, msgMethodNotAllowed, "GET, HEAD"},
		{"GET", "/logout", "", "", 405, msgMethodNotAllowed, "POST"},
		{"POST", "/login", `{"code":"` + strings.Repeat("x", maxBodyBytes) + `"}`, jsonCT, 413, msgTooLarge, ""},
		{"POST", "/login", "code=" + strings.Repeat("x", maxBodyBytes), "application/x-www-form-urlencoded", 413, msgTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %d", tt.method, tt.path, tt.wantHTTP), func(t *testing.T) {
			got := call(t, a.handler, tt.method, tt.path, tt.body, "Content-Type", tt.contentType)
			if got.code != tt.wantHTTP || got.env.Status != statusBadRequest || got.env.Msg != tt.wantMsg {
				t.Errorf("%s %s = HTTP %d, %s; want %d with status 1, msg %q", tt.method, tt.path, got.code, got.raw, tt.wantHTTP, tt.wantMsg)
			}
			if allow := got.header.Get("Allow"); allow != tt.wantAllow {
				t.Errorf("Allow = %q; want %q", allow, tt.wantAllow)
			}
		})
	}
}

// A panicking handler is answered with a 500 envelope that does not show
// the panic; the access log records it.
func TestPanicBecomesInternalError(t *testing.T) {
	logs := &syncBuffer{}
	h := withAccessLog(textLogger(logs), nil, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}))
	got := call(t, h, "GET", "/x", "")
	if got.code != 500 || got.env.Status != statusInternal || got.env.Msg != msgInternal {
		t.Errorf("a panicking handler answered HTTP %d, %s; want 500 with status -1", got.code, got.raw)
	}
	if strings.Contains(got.raw, "goroutine") || strings.Contains(got.raw, "boom") {
		t.Errorf("response %s exposes the panic", got.raw)
	}
	if !strings.Contains(logs.String(), "panic: boom") {
		t.Errorf("log %q does not record the panic", logs.String())
	}
}

// Behind a trusted proxy the access log names the client the proxy
// forwarded for, and the proxy; from any other peer, X-Forwarded-For is
// not believed and the peer is the client.
func TestAccessLogNamesTheClientBehindATrustedProxy(t *testing.T) {
	proxies, err := limits.ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, peer, forwarded string
		want                  []string
	}{
		{"through the proxy", "10.1.2.3:4567", "203.0.113.7", []string{"remote=203.0.113.7", "proxy=10.1.2.3:4567"}},
		{"through two proxies", "10.1.2.3:4567", "198.51.100.9, 10.9.9.9", []string{"remote=198.51.100.9", "proxy=10.1.2.3:4567"}},
		{"straight from a client that writes the header", "192.0.2.1:1000", "203.0.113.7", []string{"remote=192.0.2.1:1000"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			h := withAccessLog(textLogger(logs), proxies, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest("GET", "/healthz", nil)
			req.RemoteAddr = tt.peer
			req.Header.Set("X-Forwarded-For", tt.forwarded)
			h.ServeHTTP(httptest.NewRecorder(), req)
			line := logs.String()
			for _, w := range tt.want {
				if !strings.Contains(line, " "+w) {
					t.Errorf("access log %q lacks %s", line, w)
				}
			}
			if len(tt.want) == 1 && strings.Contains(line, "proxy=") {
				t.Errorf("access log %q names a proxy for a peer that is not one", line)
			}
		})
	}
}

// -log-format json writes one JSON object a line, the access log's among
// them; -log-level warn leaves out the lines of requests that went well.
func TestLogFormatAndLevel(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-log-format", "json")
	post(t, "GET", s.url+"/healthz", "", "")
	waitFor(t, "the access log line", func() bool { return strings.Contains(s.logs.String(), `"msg":"request"`) })
	for line := range strings.Lines(s.logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["level"] == nil || entry["msg"] == nil {
			t.Errorf("log line %q is not a JSON object with level and msg: %v", line, err)
		}
	}

	// At warn, a request that went well writes nothing, one that failed
	// its line.
	logs := &syncBuffer{}
	h := withAccessLog(newLogger(logs, "text", slog.LevelWarn), nil, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fails" {
			writeError(w, errors.New("the disk is gone"))
		}
	}))
	for _, path := range []string{"/healthz", "/fails"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if got := logs.String(); strings.Contains(got, "path=/healthz") || !strings.Contains(got, "path=/fails") {
		t.Errorf("at -log-level warn the access log is %q; want the failed request alone", got)
	}
}
