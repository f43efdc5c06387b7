package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/redact"
	"wxlogin/internal/scopes"
	"wxlogin/internal/testkit"
)

// pageServer is wxlogin's handler with one app, "wxapp", in mock mode (with
// the fake at /mock/) or in real mode. The app's name is one the status
// page must escape.
func pageServer(t *testing.T, mock bool) http.Handler {
	t.Helper()
	return newTestApp(t, appOptions{apps: []appSpec{{id: "wxapp", name: "Shop <demo>", secret: testSecret}}, mock: mock, quiet: true}).handler
}

// get fetches path from h and returns the response and its body.
func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	return w.Result(), w.Body.String()
}

func TestHomePage(t *testing.T) {
	tests := []struct {
		name, path   string
		mock         bool
		wantCode     int
		wantType     string
		wantContains []string
		wantAbsent   []string
	}{
		{"demo page", "/", true, 200, "text/html; charset=utf-8",
			[]string{`<script src="/demo/demo.js"`, `href="/demo/demo.css"`, "session_key stays here", `id="scopes"`},
			[]string{"http://", "https://cdn", "<script>"}},
		{"demo script", "/demo/demo.js", true, 200, "text/javascript; charset=utf-8",
			[]string{"/mock/exchanges", "/scopes", "'/login'"}, nil},
		{"demo style", "/demo/demo.css", true, 200, "text/css; charset=utf-8", []string{".diagram"}, []string{"@import", "url("}},
		{"status page", "/", false, 200, "text/html; charset=utf-8",
			[]string{"wxlogin is running", "Shop &lt;demo&gt; <code>wxapp</code>", `href="/scopes"`},
			[]string{testSecret, "demo.js", "/mock/", "Shop <demo>"}},
		{"no demo script in real mode", "/demo/demo.js", false, 404, "application/json; charset=utf-8", nil, nil},
		{"no exchanges in real mode", "/mock/exchanges", false, 404, "application/json; charset=utf-8", nil, nil},
		{"only the root is a page", "/index.html", true, 404, "application/json; charset=utf-8", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := pageServer(t, tt.mock)
			resp, body := get(t, h, tt.path)
			if resp.StatusCode != tt.wantCode || resp.Header.Get("Content-Type") != tt.wantType {
				t.Fatalf("GET %s = %d %q; want %d %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.wantCode, tt.wantType)
			}
			for _, s := range tt.wantContains {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s lacks %q", tt.path, s)
				}
			}
			for _, s := range tt.wantAbsent {
				if strings.Contains(body, s) {
					t.Errorf("GET %s holds %q", tt.path, s)
				}
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("GET %s: Cache-Control = %q; want no-store, as on every response", tt.path, cc)
			}
			if resp.StatusCode == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy = %q; want everything from this server only", tt.path, resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

// exchangesOf fetches GET /mock/exchanges?after=N from the fake.
func exchangesOf(t *testing.T, fake *fakewechat.Fake, query string) reply {
	t.Helper()
	return call(t, fake.Handler(), http.MethodGet, "/mock/exchanges"+query, "")
}

func TestExchangesShowWhatWxloginAskedWithoutSecrets(t *testing.T) {
	a, token := loggedIn(t)
	detail := testkit.WXCall(t, a.fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`)
	if got := send(t, a.handler, http.MethodPost, "/user/phone", token, map[string]any{"code": detail["code"]}); got.env.Status != 0 {
		t.Fatalf("phone = %s", got.raw)
	}
	if got := call(t, a.handler, http.MethodGet, "/session/check", "", "Authorization", "Bearer "+token); got.env.Status != 0 {
		t.Fatalf("session check = %s", got.raw)
	}
	if got := send(t, a.handler, http.MethodPatch, "/user", token, map[string]any{"nickname": "爱丽丝的昵称"}); got.env.Status != 0 {
		t.Fatalf("PATCH /user = %s", got.raw)
	}

	got := exchangesOf(t, a.fake, "")
	drawn := dataOf[exchangesData](t, got).Exchanges
	var paths []string
	for _, e := range drawn {
		paths = append(paths, e.Method+" "+e.Path)
	}
	want := []string{"GET /sns/jscode2session", "POST /cgi-bin/stable_token", "POST /wxa/business/getuserphonenumber", "GET /wxa/checksession", "POST /wxa/msg_sec_check"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Fatalf("exchanges = %v; want %v", paths, want)
	}
	if q := drawn[0].Query; q["js_code"] == "" || q["appid"] != "wxapp" || q["secret"] != redact.Labels()["secret"] {
		t.Errorf("jscode2session query = %v; want the code and appid shown, the secret hidden", q)
	}
	var session map[string]string
	if err := json.Unmarshal(drawn[0].Response, &session); err != nil || session["session_key"] != redact.Labels()["session_key"] || session["openid"] == "" {
		t.Errorf("jscode2session reply = %s; want the openid shown and the session_key hidden", drawn[0].Response)
	}
	key, _ := a.fake.SessionKey("wxapp", "alice")
	secrets := []string{testSecret, key, a.fake.AccessToken("wxapp"), "爱丽丝的昵称"}
	for _, secret := range secrets {
		if secret == "" || strings.Contains(got.raw, secret) {
			t.Errorf("GET /mock/exchanges holds a secret %q, or the test did not learn it: %s", secret, got.raw)
		}
	}
	for _, label := range redact.Labels() {
		if label != "" && !strings.Contains(got.raw, label) {
			t.Errorf("GET /mock/exchanges never says %q; every kind of secret should have been hidden once", label)
		}
	}

	last := drawn[len(drawn)-1].Seq
	if got := exchangesOf(t, a.fake, fmt.Sprintf("?after=%d", last-1)); len(dataOf[exchangesData](t, got).Exchanges) != 1 {
		t.Errorf("exchanges after %d = %s; want the last one only", last-1, got.raw)
	}
	if got := exchangesOf(t, a.fake, fmt.Sprintf("?after=%d", last)); got.raw != `{"status":0,"msg":"ok","data":{"exchanges":[]}}`+"\n" {
		t.Errorf("exchanges after the last = %s; want an empty list", got.raw)
	}
	for _, bad := range []string{"?after=-1", "?after=x", "?after=99999999999999999999"} {
		if got := exchangesOf(t, a.fake, bad); got.code != http.StatusBadRequest || got.env.Status != statusBadRequest {
			t.Errorf("GET /mock/exchanges%s = %d %s; want 400, status 1", bad, got.code, got.raw)
		}
	}
}

// chromium finds Debian's Chromium. CI installs it and sets
// WXLOGIN_REQUIRE_CHROMIUM, so that there a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("WXLOGIN_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium is not installed, and WXLOGIN_REQUIRE_CHROMIUM is set")
	}
	testkit.SkipMissingTool(t, "chromium is not installed (apt-get install chromium); .ci/run installs it and runs this test")
	return ""
}

// dumpDOM loads url in headless Chromium, lets the page run for up to 30 s
// of virtual time (which waits for its requests), and returns the DOM.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// The flags keep Chromium off the network but for the page's own server.
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=30000", "--dump-dom", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(dom)
}

// resultAt loads url in headless Chromium on a screen width px wide, as a
// phone's or a desktop's, waits until the page is done, and returns its
// result (the text of <output id="result">). A headless window is never
// narrower than 500 px, so the width is set as DevTools sets it, through
// the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
// ending in a NUL, on file descriptors 3 and 4).
func resultAt(t *testing.T, browser, url string, width int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	toBrowser, commands, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	replies, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	defer func() {
		commands.Close() // the browser exits when its pipe closes
		cmd.Wait()
		replies.Close()
	}()
	read := bufio.NewReader(replies)
	id := 0
	send := func(session, method string, params map[string]any) map[string]any {
		t.Helper()
		id++
		msg := map[string]any{"id": id, "method": method, "params": params}
		if session != "" {
			msg["sessionId"] = session
		}
		b, _ := json.Marshal(msg)
		if _, err := commands.Write(append(b, 0)); err != nil {
			t.Fatalf("DevTools %s: %v", method, err)
		}
		for {
			line, err := read.ReadBytes(0)
			if err != nil {
				t.Fatalf("DevTools %s: %v", method, err)
			}
			var reply struct {
				ID     int
				Result map[string]any
				Error  *struct{ Message string }
			}
			if err := json.Unmarshal(line[:len(line)-1], &reply); err != nil {
				t.Fatalf("DevTools sent %q: %v", line, err)
			}
			if reply.ID != id {
				continue // an event, or nothing asked for
			}
			if reply.Error != nil {
				t.Fatalf("DevTools %s: %s", method, reply.Error.Message)
			}
			return reply.Result
		}
	}
	target := send("", "Target.createTarget", map[string]any{"url": "about:blank"})["targetId"]
	session, _ := send("", "Target.attachToTarget", map[string]any{"targetId": target, "flatten": true})["sessionId"].(string)
	send(session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 900})
	send(session, "Page.navigate", map[string]any{"url": url})
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got := send(session, "Runtime.evaluate", map[string]any{"returnByValue": true,
			"expression": `document.body && document.body.dataset.demo === 'done' ? document.getElementById('result').textContent : ''`})
		if r, _ := got["result"].(map[string]any); r != nil {
			if v, _ := r["value"].(string); v != "" {
				return v
			}
		}
	}
	t.Fatalf("the page at %d px was not done within a minute", width)
	return ""
}

// attrs returns the value of attribute name on every element that has it,
// in document order.
func attrs(dom, name string) []string {
	var values []string
	for _, m := range regexp.MustCompile(` `+name+`="([^"]*)"`).FindAllStringSubmatch(dom, -1) {
		values = append(values, strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&amp;", "&").Replace(m[1]))
	}
	return values
}

// inOrder reports whether want appears in got in order, other items between.
func inOrder(got, want []string) bool {
	for _, g := range got {
		if len(want) > 0 && g == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

func TestTeachingPageInChromium(t *testing.T) {
	browser := chromium(t)
	s := startServer(t, nil, "-data", t.TempDir())

	t.Run("the whole flow", func(t *testing.T) {
		dom := dumpDOM(t, browser, s.url+"/?autorun")
		if state := attrs(dom, "data-demo"); len(state) != 1 || state[0] != "done" {
			t.Fatalf("page state = %v; want done. Page:\n%s", state, regexp.MustCompile(`<output[^>]*>[^<]*`).FindString(dom))
		}
		wantArrows := []string{
			"wx.login()", "login:ok",
			"POST /login", "GET /sns/jscode2session", "HTTP 200 · openid, session_key, unionid", "HTTP 200 · status 0 · ok",
			"GET /user", "HTTP 200 · status 0 · ok",
			"wx.getPrivacySetting()", "getPrivacySetting:ok",
			`tap <button open-type="agreePrivacyAuthorization">`, "agreePrivacyAuthorization:ok",
			`tap <button open-type="getUserInfo">`, "getUserInfo:ok", "POST /user/userinfo", "HTTP 200 · status 0 · ok",
			`tap <button open-type="getPhoneNumber">`, "getPhoneNumber:ok", "POST /user/phone",
			"POST /cgi-bin/stable_token", "POST /wxa/business/getuserphonenumber", "HTTP 200 · status 0 · ok",
			"POST /logout", "HTTP 200 · status 0 · ok", "GET /user", "HTTP 401 · status 4 · " + msgNotLoggedIn,
		}
		if got := attrs(dom, "data-label"); !inOrder(got, wantArrows) {
			t.Errorf("sequence diagram = %q;\nwant in order %q", got, wantArrows)
		}
		if !strings.Contains(dom, redact.Labels()["session_key"]) {
			t.Error("the diagram does not show the session_key kept by wxlogin")
		}
		if m := regexp.MustCompile(`"session_key": "[^\[]`).FindString(dom); m != "" {
			t.Errorf("the page shows a session_key: %s", m)
		}
		wantAuth := []string{
			"authorize:ok",
			"authorize:fail auth deny",
			"authorize:fail auth deny (refused before: no dialog until wx.openSetting)",
			`{"authSetting":{"scope.record":true,"scope.userLocation":true}}`,
			"authorize:ok (granted before, no dialog)",
			"authorize:fail, no dialog: only a tap on a button can ask for it",
			`{"authSetting":{"scope.record":true,"scope.userLocation":true}}`,
		}
		if got := attrs(dom, "data-result"); !slices.Equal(got, wantAuth) {
			t.Errorf("authorization log = %q;\nwant %q", got, wantAuth)
		}
		for _, want := range []string{"Since 2023-10-17", "收集你的手机号: ", ">收集你的位置信息<"} {
			if !strings.Contains(dom, want) {
				t.Errorf("the privacy layer does not show %q", want)
			}
		}
		if got := attrs(dom, "data-scope"); len(got) != len(scopes.Table()) {
			t.Errorf("scope table shows %d scopes; want %d", len(got), len(scopes.Table()))
		}
	})

	// On a phone's width the diagram is below the phone, and nothing is
	// wider than the screen; on a desktop's it is beside the phone.
	for _, width := range []int{400, 1400} {
		t.Run(fmt.Sprintf("at %d px", width), func(t *testing.T) {
			raw := resultAt(t, browser, s.url+"/?autorun=3", width)
			type box struct{ Left, Right, Top, Bottom int }
			var result struct {
				Layout struct {
					Width, ScrollWidth int
					Phone, Diagram     box
				}
			}
			if err := json.Unmarshal([]byte(raw), &result); err != nil {
				t.Fatalf("result %s: %v", raw, err)
			}
			l := result.Layout
			if l.Width != width {
				t.Fatalf("the window is %d px wide; want %d", l.Width, width)
			}
			if l.ScrollWidth > width || l.Phone.Right > width || l.Diagram.Right > width {
				t.Errorf("at %d px the page is %d px wide, the phone ends at %d, the diagram at %d; want all within the window", width, l.ScrollWidth, l.Phone.Right, l.Diagram.Right)
			}
			beside := l.Diagram.Left >= l.Phone.Right && l.Diagram.Top < l.Phone.Bottom
			below := l.Diagram.Top >= l.Phone.Bottom && l.Diagram.Right-l.Diagram.Left >= width*3/4
			if width < 900 && !below || width >= 900 && !beside {
				t.Errorf("at %d px the phone is at %+v and the diagram at %+v; want the diagram %s", width, l.Phone, l.Diagram, map[bool]string{true: "below, as wide as the screen", false: "beside it"}[width < 900])
			}
		})
	}

	t.Run("logged in, after the phone number", func(t *testing.T) {
		dom := dumpDOM(t, browser, s.url+"/?autorun=6")
		for _, want := range []string{`id="nickname">alice<`, fakewechat.PhoneNumber("alice"), "token in storage: "} {
			if !strings.Contains(dom, want) {
				t.Errorf("the phone does not show %q", want)
			}
		}
	})
}
