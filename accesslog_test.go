package main

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
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
	h := withAccessLog(textLogger(logs), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
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
