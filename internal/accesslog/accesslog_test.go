package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The log writer keeps every line, in order, from concurrent writers, and
// has written all of them when Close returns.
func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	var out bytes.Buffer // written only by the writer's goroutine, then read after Close
	w := NewWriter(&out)
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
	w.Close()
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
	w := NewWriter(out)
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
	w.Close()
	if out.written != n {
		t.Errorf("%d bytes written; want %d", out.written, n)
	}
}

// envelopeStub is a server's error writer, as the access log is given one:
// it notes the error it answers with, and answers with its text, 404 or
// 405 for the mux's own answers and 500 for anything else.
func envelopeStub(w http.ResponseWriter, err error) {
	NoteError(w, err)
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrMethodNotAllowed):
		code = http.StatusMethodNotAllowed
	}
	w.Header().Set("Content-Type", "text/x-envelope")
	w.WriteHeader(code)
	fmt.Fprint(w, "envelope: ", err)
}

// answer is what Options.Answered was told of one request.
type answer struct {
	route string
	code  int
	cause error
}

// logged serves one request through Handler around next, with the stub
// writer and trusting no proxy; it returns the response, the log line, and
// what Answered was told.
func logged(t *testing.T, next http.Handler, req *http.Request) (*http.Response, string, []answer) {
	t.Helper()
	var logs bytes.Buffer
	var answers []answer
	h := Handler(slog.New(slog.NewTextHandler(&logs, nil)), Options{
		MaxBodyBytes: 16,
		WriteError:   envelopeStub,
		Answered:     func(route string, code int, cause error) { answers = append(answers, answer{route, code, cause}) },
	}, next)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result(), logs.String(), answers
}

// A panic before the answer began is answered by the server's writer with
// the panic's error, which the log line and Answered get; one after the
// answer began cannot change it, but the log still says why.
func TestAPanicGoesToTheServersWriter(t *testing.T) {
	resp, line, answers := logged(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}), httptest.NewRequest("GET", "/x", nil))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || !strings.HasPrefix(string(body), "envelope: panic: boom") {
		t.Errorf("a panicking handler answered %d %q; want the server's writer's 500 with the panic", resp.StatusCode, body)
	}
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "status=500") || !strings.Contains(line, "panic: boom") {
		t.Errorf("log line %q; want an error with status 500 and the panic", line)
	}
	if len(answers) != 1 || answers[0].code != 500 || answers[0].cause == nil || !strings.Contains(answers[0].cause.Error(), "panic: boom") {
		t.Errorf("Answered was told %+v; want one 500 with the panic", answers)
	}

	resp, line, answers = logged(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "partial")
		panic("late")
	}), httptest.NewRequest("GET", "/x", nil))
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "partial" {
		t.Errorf("a handler that panicked after answering answered %d %q; want its own 200", resp.StatusCode, body)
	}
	if !strings.Contains(line, "panic: late") || len(answers) != 1 || answers[0].cause == nil {
		t.Errorf("log line %q, Answered told %+v; want the late panic in both", line, answers)
	}
}

// The mux's own 404 and 405 (keeping its Allow header), and a redirect to a
// cleaned path, go to the server's writer as ErrNotFound and
// ErrMethodNotAllowed, in place of the mux's plain text; a redirect is
// logged with no route, as any 404.
func TestTheMuxsOwnAnswersGoToTheServersWriter(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })
	for _, tt := range []struct {
		method, target string
		code           int
		err            error
		allow          string
	}{
		{"GET", "/nope", 404, ErrNotFound, ""},
		{"POST", "/x", 405, ErrMethodNotAllowed, "GET, HEAD"},
		{"GET", "/y/../x", 404, ErrNotFound, ""},
	} {
		resp, _, answers := logged(t, mux, httptest.NewRequest(tt.method, tt.target, nil))
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tt.code || string(body) != "envelope: "+tt.err.Error() || resp.Header.Get("Content-Type") != "text/x-envelope" {
			t.Errorf("%s %s = %d %s %q; want %d from the server's writer alone", tt.method, tt.target, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.code)
		}
		if allow := resp.Header.Get("Allow"); allow != tt.allow {
			t.Errorf("%s %s: Allow = %q; want %q", tt.method, tt.target, allow, tt.allow)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("%s %s: Location = %q; want none", tt.method, tt.target, loc)
		}
		if len(answers) != 1 || answers[0].route != "" || answers[0].code != tt.code {
			t.Errorf("%s %s: Answered was told %+v; want %d with no route", tt.method, tt.target, answers, tt.code)
		}
	}
}

// A request body is capped at MaxBodyBytes; the request is logged with its
// route, status and the client's address, the peer's unless Forwarded
// names another.
func TestTheBodyIsCappedAndTheClientNamed(t *testing.T) {
	var readErr error
	resp, line, answers := logged(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, readErr = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
	}), httptest.NewRequest("POST", "/upload", strings.NewReader(strings.Repeat("x", 17))))
	var tooLarge *http.MaxBytesError
	if !errors.As(readErr, &tooLarge) || tooLarge.Limit != 16 {
		t.Errorf("reading 17 bytes under a cap of 16: %v; want an *http.MaxBytesError of 16", readErr)
	}
	if resp.StatusCode != http.StatusAccepted || len(answers) != 1 || answers[0].code != http.StatusAccepted || answers[0].cause != nil {
		t.Errorf("answered %d, Answered told %+v; want 202 and no error", resp.StatusCode, answers)
	}
	if !strings.Contains(line, "remote=192.0.2.1:1234") || strings.Contains(line, "proxy=") {
		t.Errorf("log line %q; want the peer as the client, and no proxy", line)
	}

	var logs bytes.Buffer
	h := Handler(slog.New(slog.NewTextHandler(&logs, nil)), Options{
		WriteError: envelopeStub,
		Forwarded: func(*http.Request) (netip.Addr, bool) {
			return netip.MustParseAddr("203.0.113.7"), true
		},
	}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if line := logs.String(); !strings.Contains(line, " remote=203.0.113.7 proxy=192.0.2.1:1234") {
		t.Errorf("log line %q; want the forwarded client, and the peer as the proxy", line)
	}
}

// BenchmarkHandler is one request through Handler to a handler that
// answers 200 with nothing: with its line written (as wxlogin's
// NewLogger writes it, text, to a writer that drops it), and with no line
// (a logger whose level is above the access log's).
func BenchmarkHandler(b *testing.B) {
	for _, tt := range []struct {
		name  string
		level slog.Level
	}{{"line", slog.LevelInfo}, {"no-line", slog.LevelWarn}} {
		b.Run(tt.name, func(b *testing.B) {
			h := Handler(NewLogger(io.Discard, "text", tt.level), Options{MaxBodyBytes: 1 << 16, WriteError: envelopeStub},
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
			r := httptest.NewRequest(http.MethodGet, "/user", nil)
			r.Pattern = "GET /user"
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// FuzzAccessLine: the access line Handler writes itself is the one slog's
// TextHandler writes for the same request, byte for byte, whatever its
// method, path, client and error.
func FuzzAccessLine(f *testing.F) {
	f.Add("GET", "/user", "GET /user", 200, int64(41_237), "127.0.0.1:5123", "", "", int64(1_796_000_000_123_456_789))
	f.Add("POST", "/login", "", 503, int64(26_211_494), "203.0.113.7", "192.0.2.1:1234", "存储暂时不可用: redis 127.0.0.1:7409: context canceled", int64(0))
	f.Add("M=", "/a b\"c\\d\x00\u2028\xff", "", 404, int64(-5), "", "\t", "x\ny", int64(-1))
	f.Fuzz(func(t *testing.T, method, path, route string, status int, duration int64, remote, proxy, cause string, unixNano int64) {
		l := line{at: time.Unix(0, unixNano), level: slog.LevelInfo, method: method, path: path, route: route,
			status: status, duration: time.Duration(duration), remote: remote, proxy: proxy, err: cause}
		if status >= 500 {
			l.level = slog.LevelError
		}
		if y := l.at.Year(); y < 0 || y > 9999 {
			t.Skip("a year RFC 3339 cannot write")
		}
		var want bytes.Buffer
		r := slog.NewRecord(l.at, l.level, "request", 0)
		r.AddAttrs(slog.String("method", method), slog.String("path", path), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", l.duration), slog.String("remote", remote))
		if proxy != "" {
			r.AddAttrs(slog.String("proxy", proxy))
		}
		if cause != "" {
			r.AddAttrs(slog.String("err", cause))
		}
		if err := slog.NewTextHandler(&want, nil).Handle(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if got := l.appendText(nil); string(got) != want.String() {
			t.Fatalf("access line\n%q\nslog's TextHandler writes\n%q", got, want.String())
		}
	})
}

// The logger NewLogger makes writes the access lines itself in text, as
// FuzzAccessLine holds it to, and through slog in JSON; and neither below
// its level.
func TestNewLoggersAccessLines(t *testing.T) {
	for _, tt := range []struct {
		format string
		level  slog.Level
		want   string // a regular expression; "" for no line
	}{
		{"text", slog.LevelInfo, `^time=\S+ level=INFO msg=request method=GET path=/user route="GET /user" status=200 duration=\S+ remote=192.0.2.1:1234\n$`},
		{"json", slog.LevelInfo, `^\{"time":"[^"]+","level":"INFO","msg":"request","method":"GET","path":"/user","route":"GET /user","status":200,"duration":\d+,"remote":"192.0.2.1:1234"\}\n$`},
		{"text", slog.LevelWarn, ""},
		{"json", slog.LevelWarn, ""},
	} {
		var logs bytes.Buffer
		h := Handler(NewLogger(&logs, tt.format, tt.level), Options{MaxBodyBytes: 16, WriteError: envelopeStub},
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { r.Pattern = "GET /user" }))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/user", nil))
		if got := logs.String(); tt.want == "" && got != "" || tt.want != "" && !regexp.MustCompile(tt.want).MatchString(got) {
			t.Errorf("%s at %v: logged %q; want %s", tt.format, tt.level, got, tt.want)
		}
	}
}
