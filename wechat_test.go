package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/opendata"
	"wxlogin/internal/testkit"
)

// newTestClient returns a client for app "wxapp" whose WeChat is upstream,
// with retry pauses short enough for tests.
func newTestClient(t *testing.T, upstream http.Handler) *wechatClient {
	t.Helper()
	srv := httptest.NewServer(upstream)
	t.Cleanup(srv.Close)
	c := newWechatClient(srv.URL, "wxapp", testSecret, 2*time.Second, 5*time.Second)
	c.backoff = []time.Duration{time.Millisecond, time.Millisecond}
	return c
}

// replies is a fake WeChat that answers jscode2session calls with the given
// bodies in turn (the last one repeats) and counts the calls. A body of
// "RESET" drops the connection instead.
func replies(calls *atomic.Int32, bodies ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1)) - 1
		body := bodies[min(n, len(bodies)-1)]
		if body == "RESET" {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if strings.HasPrefix(body, "HTTP ") {
			code := map[string]int{"HTTP 500": 500, "HTTP 502": 502, "HTTP 404": 404}[body]
			http.Error(w, "<html>gateway</html>", code)
			return
		}
		w.Header().Set("Content-Type", "text/plain") // as WeChat does
		io.WriteString(w, body)
	})
}

// wechatErrcode is err's WeChat errcode, 0 if it has none.
func wechatErrcode(err error) int {
	var we *wechatError
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// The fake WeChat answers with errcodes of its own table, each from
// WECHAT.md, not with the client's constants: run against it, the client
// reads every refusal it acts on as the errcode it expects, which checks
// the two tables against each other.
func TestClientReadsTheFakesRefusals(t *testing.T) {
	clock := testkit.NewFakeClock()
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Secret: testSecret}, "wxother": {Secret: "other-secret"}}, fakewechat.Fixtures{}, clock.Now)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	client := func(appID, secret string) *wechatClient {
		c := newWechatClient(srv.URL+fakewechat.APIPrefix, appID, secret, 2*time.Second, 5*time.Second)
		c.backoff, c.now = nil, clock.Now
		return c
	}
	c := client("wxapp", testSecret)
	code := fake.IssueCode("wxapp", "alice")
	alice, err := c.code2Session(t.Context(), code)
	if err != nil || alice.OpenID != fakewechat.OpenID("wxapp", "alice") || alice.UnionID != fakewechat.UnionID("alice") {
		t.Fatalf("code2Session = %+v, %v; want alice's openid and unionid", alice, err)
	}
	testkit.WXCallAsIs(t, fake.Handler(), "risk-control", `{"user":"mallory","appid":"wxapp","blocked":true}`)
	for _, tt := range []struct {
		name string
		c    *wechatClient
		code string
		want int
	}{
		{"a code used", c, code, errcodeCodeUsed},
		{"a code never issued", c, "never-issued", errcodeInvalidCode},
		{"a code of another app", c, fake.IssueCode("wxother", "alice"), errcodeInvalidCode},
		{"a wrong AppSecret", client("wxapp", "not-the-secret"), fake.IssueCode("wxapp", "bob"), errcodeBadSecret},
		{"an unknown app", client("wxnobody", testSecret), fake.IssueCode("wxapp", "bob"), errcodeInvalidAppID},
		{"a blocked user", c, fake.IssueCode("wxapp", "mallory"), errcodeUserBlocked},
	} {
		if _, err := tt.c.code2Session(t.Context(), tt.code); wechatErrcode(err) != tt.want {
			t.Errorf("code2Session of %s: %v; want errcode %d", tt.name, err, tt.want)
		}
	}

	phoneCode := func(user string) string {
		return testkit.WXCall(t, fake.Handler(), "wx.getPhoneNumber", `{"user":"`+user+`","appid":"wxapp"}`)["code"].(string)
	}
	if _, err := c.phoneNumber(t.Context(), phoneCode("bob"), alice.OpenID); wechatErrcode(err) != errcodeInvalidOpenID {
		t.Errorf("phoneNumber of bob's code for alice: %v; want errcode %d", err, errcodeInvalidOpenID)
	}
	spent := phoneCode("alice")
	if _, err := c.phoneNumber(t.Context(), spent, alice.OpenID); err != nil {
		t.Fatalf("phoneNumber of alice's code: %v", err)
	}
	if _, err := c.phoneNumber(t.Context(), spent, alice.OpenID); wechatErrcode(err) != errcodeInvalidCode {
		t.Errorf("phoneNumber of a spent code: %v; want errcode %d", err, errcodeInvalidCode)
	}

	fake.IssueCode("wxapp", "alice") // a new session_key at WeChat
	current, _ := fake.SessionKey("wxapp", "alice")
	for key, want := range map[string]bool{alice.SessionKey: false, current: true} {
		if valid, err := c.checkSessionKey(t.Context(), alice.OpenID, key); err != nil || valid != want {
			t.Errorf("checkSessionKey = %v, %v; want %v (87009 for a replaced key)", valid, err, want)
		}
	}
}

const okReply = `{"session_key":"tiihtNczf5v6AKRyjwEUhQ==","openid":"o-alice","unionid":"u-alice"}`

func TestCode2SessionSendsWhatWeChatExpects(t *testing.T) {
	var got *http.Request
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		io.WriteString(w, okReply)
	}))
	s, err := c.code2Session(t.Context(), "the-code")
	if err != nil {
		t.Fatal(err)
	}
	want := code2SessionResult{OpenID: "o-alice", SessionKey: "tiihtNczf5v6AKRyjwEUhQ==", UnionID: "u-alice"}
	if s != want {
		t.Errorf("code2Session = %+v; want %+v", s, want)
	}
	q := got.URL.Query()
	if got.Method != http.MethodGet || got.URL.Path != "/sns/jscode2session" ||
		q.Get("appid") != "wxapp" || q.Get("secret") != testSecret || q.Get("js_code") != "the-code" ||
		q.Get("grant_type") != "authorization_code" {
		t.Errorf("WeChat got %s %s; want GET /sns/jscode2session with appid, secret, js_code and grant_type=authorization_code",
			got.Method, got.URL)
	}
}

func TestCode2SessionErrorsAndRetries(t *testing.T) {
	tests := []struct {
		name      string
		bodies    []string
		wantCalls int32
		wantCode  int  // WeChat errcode expected in a *wechatError, or 0
		wantOK    bool // success expected
		check     func(error) bool
	}{
		{name: "invalid code is not retried", bodies: []string{`{"errcode":40029,"errmsg":"invalid code, rid: 1"}`}, wantCalls: 1, wantCode: 40029},
		{name: "used code is not retried", bodies: []string{`{"errcode":40163,"errmsg":"code been used"}`}, wantCalls: 1, wantCode: 40163},
		{name: "blocked user is not retried", bodies: []string{`{"errcode":40226,"errmsg":"code blocked"}`}, wantCalls: 1, wantCode: 40226},
		{name: "rate limit is not retried", bodies: []string{`{"errcode":45011,"errmsg":"api minute-quota reach limit"}`}, wantCalls: 1, wantCode: 45011},
		{name: "system busy is retried twice", bodies: []string{`{"errcode":-1,"errmsg":"system error"}`}, wantCalls: 3, wantCode: -1},
		{name: "system busy then success", bodies: []string{`{"errcode":-1,"errmsg":"system error"}`, okReply}, wantCalls: 2, wantOK: true},
		{name: "errcode 0 with data is success", bodies: []string{`{"errcode":0,"errmsg":"ok","openid":"o","session_key":"k"}`}, wantCalls: 1, wantOK: true},
		{name: "reset connection is retried", bodies: []string{"RESET", okReply}, wantCalls: 2, wantOK: true},
		{name: "bad gateway is retried", bodies: []string{"HTTP 502", "HTTP 502", "HTTP 502"}, wantCalls: 3,
			check: func(err error) bool { var e *httpStatusError; return errors.As(err, &e) && e.Status == 502 }},
		{name: "internal server error is not retried", bodies: []string{"HTTP 500"}, wantCalls: 1,
			check: func(err error) bool { var e *httpStatusError; return errors.As(err, &e) && e.Status == 500 }},
		{name: "html page", bodies: []string{"<html>portal</html>"}, wantCalls: 1,
			check: func(err error) bool { return errors.Is(err, errBadReply) }},
		{name: "truncated json", bodies: []string{`{"openid":"o","session_`}, wantCalls: 1,
			check: func(err error) bool { return errors.Is(err, errBadReply) }},
		{name: "no session_key", bodies: []string{`{"openid":"o"}`}, wantCalls: 1,
			check: func(err error) bool { return errors.Is(err, errBadReply) }},
		{name: "retry finds the code used by the lost attempt", bodies: []string{"RESET", `{"errcode":40163,"errmsg":"code been used"}`}, wantCalls: 2,
			check: func(err error) bool { var we *wechatError; return !errors.As(err, &we) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			c := newTestClient(t, replies(&calls, tt.bodies...))
			_, err := c.code2Session(t.Context(), "code")
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("WeChat was called %d times; want %d", got, tt.wantCalls)
			}
			if tt.wantOK {
				if err != nil {
					t.Errorf("code2Session = %v; want success", err)
				}
				return
			}
			if err == nil {
				t.Fatal("code2Session succeeded; want an error")
			}
			var we *wechatError
			if tt.wantCode != 0 && (!errors.As(err, &we) || we.Code != tt.wantCode) {
				t.Errorf("code2Session = %v; want WeChat errcode %d", err, tt.wantCode)
			}
			if tt.check != nil && !tt.check(err) {
				t.Errorf("code2Session = %v (%T); not the error expected", err, err)
			}
		})
	}
}

func TestCode2SessionHangingWeChatIsBounded(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-r.Context().Done() // never answers
	}))
	c.http.Timeout = 200 * time.Millisecond
	c.requestTimeout = 500 * time.Millisecond
	start := time.Now()
	_, err := c.code2Session(t.Context(), "code")
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("code2Session = %v; want a deadline error", err)
	}
	if elapsed > c.requestTimeout+2*time.Second {
		t.Errorf("code2Session took %v; the bound is %v", elapsed, c.requestTimeout)
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("WeChat was called %d times; a per-call timeout should be retried while time is left", n)
	}
}

// roundTripFunc lets a test answer a client's requests in memory, where
// testing/synctest can see every goroutine block.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCode2SessionSharesOneCallPerCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		c := newWechatClient("http://wechat.invalid", "wxapp", testSecret, 5*time.Second, 10*time.Second)
		c.lean = nil // every call through the transport below
		c.http.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls.Add(1)
			<-release
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(okReply)), Request: r}, nil
		})
		const n = 10
		results := make(chan error, n)
		login := func(ctx context.Context) {
			s, err := c.code2Session(ctx, "double-tapped")
			if err == nil && s.OpenID != "o-alice" {
				err = errors.New("wrong openid " + s.OpenID)
			}
			results <- err
		}
		// The first caller's request reaches WeChat; then its client gives up.
		// The exchange must go on for the others, and for it.
		leaderCtx, cancelLeader := context.WithCancel(t.Context())
		defer cancelLeader()
		go login(leaderCtx)
		synctest.Wait()
		for range n - 1 {
			go login(t.Context())
		}
		synctest.Wait() // one caller is inside WeChat, the others wait for it
		cancelLeader()
		synctest.Wait()
		close(release)
		for range n {
			if err := <-results; err != nil {
				t.Errorf("a concurrent login with the same code failed: %v", err)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("WeChat was called %d times for one code; want 1", got)
		}

		// Once the exchange has finished, the code goes to WeChat again.
		release = make(chan struct{})
		close(release)
		if _, err := c.code2Session(t.Context(), "double-tapped"); err != nil {
			t.Fatal(err)
		}
		if got := calls.Load(); got != 2 {
			t.Errorf("WeChat was called %d times; a code sent after its exchange finished must be sent again", got)
		}
	})
}

func TestErrorsNeverCarryTheSecretOrCode(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, replies(&calls, "RESET"))
	_, err := c.code2Session(t.Context(), "secret-code-123")
	if err == nil {
		t.Fatal("code2Session succeeded against a server that drops connections")
	}
	msg := err.Error()
	if strings.Contains(msg, testSecret) || strings.Contains(msg, "secret-code-123") {
		t.Errorf("error %q carries the secret or the code", msg)
	}
	if !strings.Contains(msg, "REDACTED") {
		t.Errorf("error %q: want the URL kept, with its secrets redacted", msg)
	}

	// The same for an API that is not listening at all.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c = newWechatClient(closed.URL, "wxapp", testSecret, time.Second, time.Second)
	c.backoff = nil
	_, err = c.code2Session(t.Context(), "secret-code-123")
	if err == nil || strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "secret-code-123") {
		t.Errorf("error %v: want a failure that carries neither the secret nor the code", err)
	}
}

func TestWechatErrorClasses(t *testing.T) {
	for code, rejected := range map[int]bool{40029: true, 40163: true, 40226: false, 41008: false, -1: false, 45011: false, 40013: false, 40125: false} {
		if got := (&wechatError{Code: code}).codeRejected(); got != rejected {
			t.Errorf("errcode %d: codeRejected = %v; want %v", code, got, rejected)
		}
	}
}

// FuzzParseCode2Session checks that no reply, however odd, panics the
// parser, and that a success always has an openid and a session_key.
func FuzzParseCode2Session(f *testing.F) {
	f.Add([]byte(okReply))
	f.Add([]byte(`{"errcode":40029,"errmsg":"invalid code, rid: 6166f719-1ab2"}`))
	f.Add([]byte(`{"errcode":"40029"}`))
	f.Add([]byte(`<html><body>502 Bad Gateway</body></html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseCode2Session(body)
		if err == nil && (s.OpenID == "" || s.SessionKey == "") {
			t.Fatalf("parseCode2Session(%q) = %+v with no error; want openid and session_key", body, s)
		}
		if err != nil && s != (code2SessionResult{}) {
			t.Fatalf("parseCode2Session(%q) returned data with error %v", body, err)
		}
	})
}

func TestAccessTokenIsCachedUntilShortlyBeforeItExpires(t *testing.T) {
	clock := testkit.NewFakeClock()
	fake := fakewechat.New(map[string]fakewechat.App{"wxapp": {Secret: testSecret}}, fakewechat.Fixtures{}, clock.Now)
	upstream := &countingUpstream{next: fake.Handler()}
	c := newTestClient(t, upstream)
	c.baseURL += "/mock/api"
	c.now = clock.Now
	fetch := func() string {
		t.Helper()
		token, err := c.accessToken(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	first := fetch()
	// WeChat renews a stable token in its last 5 minutes; it is used until then.
	clock.Advance(7200*time.Second - 5*time.Minute - time.Second)
	if got := fetch(); got != first || upstream.count(stableTokenPath) != 1 {
		t.Errorf("before the renewal window: token changed or fetched again (%d fetches)", upstream.count(stableTokenPath))
	}
	clock.Advance(2 * time.Second)
	second := fetch()
	if second == first || upstream.count(stableTokenPath) != 2 {
		t.Errorf("in the renewal window: got the same token, %d fetches; want a new one from a second fetch", upstream.count(stableTokenPath))
	}
	// checksession with the token: an openid the fake has not seen, if it
	// takes the token.
	checked := wechatAPI(t, fake, "GET", "/wxa/checksession?access_token="+first+"&openid=o-nobody&signature=s&sig_method=hmac_sha256", "")
	if code, _ := checked["errcode"].(float64); code == errcodeInvalidCredential || code == errcodeTokenExpired {
		t.Errorf("the previous token died at once: %v; WeChat keeps it valid until it expires", checked)
	}
}

func TestStableTokenSendsWhatWeChatExpects(t *testing.T) {
	var body map[string]any
	var contentType, method, path string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, contentType = r.Method, r.URL.Path, r.Header.Get("Content-Type")
		json.NewDecoder(r.Body).Decode(&body)
		io.WriteString(w, `{"access_token":"AT","expires_in":7200}`)
	}))
	if _, err := c.accessToken(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"grant_type": "client_credential", "appid": "wxapp", "secret": testSecret, "force_refresh": false}
	if method != "POST" || path != "/cgi-bin/stable_token" || contentType != "application/json" || fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("stable_token request: %s %s %s %v; want POST /cgi-bin/stable_token application/json %v", method, path, contentType, body, want)
	}
}

func TestParseStableToken(t *testing.T) {
	tests := []struct {
		body        string
		wantToken   string
		wantErrcode int
		wantBad     bool
	}{
		{`{"access_token":"AT","expires_in":7200}`, "AT", 0, false},
		{`{"errcode":40125,"errmsg":"invalid appsecret"}`, "", 40125, false},
		{`{"errcode":45009,"errmsg":"reach max api daily quota limit"}`, "", 45009, false},
		{`{"access_token":"","expires_in":7200}`, "", 0, true},
		{`{"access_token":"AT","expires_in":0}`, "", 0, true},
		{`{"access_token":"AT","expires_in":86400}`, "", 0, true},
		{`<html>`, "", 0, true},
	}
	for _, tt := range tests {
		token, _, err := parseStableToken([]byte(tt.body))
		if token != tt.wantToken || wechatErrcode(err) != tt.wantErrcode || errors.Is(err, errBadReply) != tt.wantBad {
			t.Errorf("parseStableToken(%s) = %q, %v; want %q, errcode %d, bad reply %v", tt.body, token, err, tt.wantToken, tt.wantErrcode, tt.wantBad)
		}
	}
}

func TestCheckSessionKeySendsASignatureNotTheKey(t *testing.T) {
	var query url.Values
	var rawQuery string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cgi-bin/stable_token" {
			io.WriteString(w, `{"access_token":"AT","expires_in":7200}`)
			return
		}
		query, rawQuery = r.URL.Query(), r.URL.RawQuery
		io.WriteString(w, `{"errcode":87009,"errmsg":"invalid signature"}`)
	}))
	valid, err := c.checkSessionKey(t.Context(), "o-alice", officialSessionKey)
	if err != nil || valid {
		t.Fatalf("checkSessionKey = %v, %v; want false (87009), nil", valid, err)
	}
	want := url.Values{"access_token": {"AT"}, "openid": {"o-alice"}, "signature": {opendata.SessionKeySignature(officialSessionKey)}, "sig_method": {"hmac_sha256"}}
	if query.Encode() != want.Encode() {
		t.Errorf("checksession query %v; want %v", query, want)
	}
	if strings.Contains(rawQuery, url.QueryEscape(officialSessionKey)) {
		t.Errorf("checksession sent the session_key: %s", rawQuery)
	}
}

// FuzzParseWechatReplies checks that no reply panics the parsers of the
// server APIs wxlogin calls with an access_token, and that successes hold
// what callers rely on.
func FuzzParseWechatReplies(f *testing.F) {
	f.Add([]byte(`{"access_token":"AT","expires_in":7200}`))
	f.Add([]byte(`{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800000000","purePhoneNumber":"13800000000","countryCode":86,"watermark":{"timestamp":1,"appid":"wxapp"}}}`))
	f.Add([]byte(`{"errcode":40001,"errmsg":"invalid credential"}`))
	f.Add([]byte(`{"errcode":0,"phone_info":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if token, lifetime, err := parseStableToken(body); err == nil && (token == "" || lifetime <= 0) {
			t.Fatalf("parseStableToken(%q) = %q, %v with no error", body, token, lifetime)
		}
		if d, err := parsePhoneReply(body); err == nil {
			opendata.ParsePhone(d, "wxapp")
		}
		var r struct {
			Errcode int `json:"errcode"`
		}
		if err := decodeReply("checksession", body, &r); err == nil && r.Errcode != 0 {
			t.Fatalf("decodeReply(%q) accepted errcode %d", body, r.Errcode)
		}
	})
}

// getuserphonenumber is tried once more after -1 or a failure in transit:
// the user paid for the code already. A retry that finds the code spent
// reports the first failure, not the spent code (status 3, not 2); and a
// code WeChat refuses outright is never tried again.
func TestPhoneNumberIsRetriedOnce(t *testing.T) {
	const phone = `{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800000000","purePhoneNumber":"13800000000","countryCode":"86","watermark":{"timestamp":1,"appid":"wxapp"}}}`
	const busy, spent = `{"errcode":-1,"errmsg":"system error"}`, `{"errcode":40029,"errmsg":"invalid code"}`
	tests := []struct {
		name      string
		replies   []string
		wantCalls int32
		wantCode  int // the errcode of the error returned, 0 for success
	}{
		{"busy, then the number", []string{busy, phone}, 2, 0},
		{"cut off, then the number", []string{"RESET", phone}, 2, 0},
		{"busy twice", []string{busy, busy, phone}, 2, -1},
		{"busy, then the code is spent", []string{busy, spent}, 2, -1},
		{"an invalid code", []string{spent, phone}, 1, errcodeInvalidCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("POST /cgi-bin/stable_token", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"access_token":"at","expires_in":7200}`)
			})
			mux.Handle("POST /wxa/business/getuserphonenumber", replies(&calls, tt.replies...))
			c := newTestClient(t, mux)
			info, err := c.phoneNumber(t.Context(), "phone-code", "o-alice")
			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("%d calls to getuserphonenumber; want %d", n, tt.wantCalls)
			}
			if tt.wantCode == 0 {
				if err != nil || string(info["phoneNumber"]) != `"13800000000"` {
					t.Errorf("phoneNumber = %v, %v; want the number", info, err)
				}
				return
			}
			if got := wechatErrcode(err); got != tt.wantCode {
				t.Errorf("phoneNumber error %v has errcode %d; want %d", err, got, tt.wantCode)
			}
		})
	}
}
