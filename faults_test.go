package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The injector fails exactly the fraction of calls it is set to, spread
// evenly, with the kinds in turn.
func TestFaultInjectorPicksTheFraction(t *testing.T) {
	var fi faultInjector
	if got := fi.pick(); got != "" {
		t.Fatalf("an injector never set failed a call with %q", got)
	}
	if err := fi.set(faultSettings{Rate: 0.25, Kinds: []string{"html", "reset"}}); err != nil {
		t.Fatal(err)
	}
	var picked []string
	for range 100 {
		if k := fi.pick(); k != "" {
			picked = append(picked, k)
		}
	}
	if len(picked) != 25 || picked[0] != "html" || picked[1] != "reset" || picked[2] != "html" {
		t.Errorf("rate 0.25 failed %d of 100 calls, starting %v; want 25, alternating html and reset", len(picked), picked[:min(3, len(picked))])
	}
	if r := fi.report(); r.Calls != 100 || r.Injected["html"] != 13 || r.Injected["reset"] != 12 {
		t.Errorf("report = %+v; want 100 calls, 13 html, 12 reset", r)
	}
	for _, bad := range []faultSettings{{Rate: 1.5}, {Rate: -0.1}, {Rate: 0.5, Kinds: []string{"meteor"}}} {
		if err := fi.set(bad); err == nil {
			t.Errorf("set(%+v) succeeded; want an error", bad)
		}
	}
}

// Every kind of WeChat failure turns a login into status 3 within the
// login's time bound, with only the retryable ones retried; once the fake
// is healthy, the very same code logs in, because a failed call never
// reached the code.
func TestLoginUnderEachFault(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		tests := []struct {
			kind    string
			calls   int // calls wxlogin makes for one login: 3 when it retries
			errcode int
		}{
			{"system-error", 3, -1},
			{"rate-limit", 1, 45011},
			{"http-500", 1, 0},
			{"html", 1, 0},
			{"truncated", 1, 0},
			{"hang", 3, 0},
			{"reset", 3, 0},
		}
		for _, tt := range tests {
			t.Run(tt.kind, func(t *testing.T) {
				a := newTestApp(t, appOptions{store: store})
				a.wx.http.Timeout = 200 * time.Millisecond // one call; a hang costs this
				a.wx.requestTimeout = 2 * time.Second      // the whole login, retries included
				code := a.fake.issueCode("wxapp", "alice")
				if got := call(t, a.fake.routes(), "POST", "/mock/faults", `{"rate":1,"kinds":["`+tt.kind+`"]}`, "Content-Type", jsonCT); got.env.Status != 0 {
					t.Fatalf("POST /mock/faults = %s", got.raw)
				}

				start := time.Now()
				got := call(t, a.handler, "POST", "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
				took := time.Since(start)
				if got.env.Status != statusWechatDown || got.env.Errcode != tt.errcode || (got.code != http.StatusBadGateway && got.code != http.StatusGatewayTimeout) {
					t.Errorf("login = %d %s; want 502 or 504, status 3, errcode %d", got.code, got.raw, tt.errcode)
				}
				if took > a.wx.requestTimeout+time.Second {
					t.Errorf("login answered after %v; the bound is %v", took, a.wx.requestTimeout)
				}
				if r := a.fake.faults.report(); r.Calls != tt.calls {
					t.Errorf("wxlogin called WeChat %d times for one login; want %d", r.Calls, tt.calls)
				}

				calls := a.fake.faults.report().Calls
				call(t, a.fake.routes(), "POST", "/mock/faults", `{"rate":0}`, "Content-Type", jsonCT)
				again := call(t, a.handler, "POST", "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
				if again.env.Status != statusOK {
					t.Errorf("the same code once the fake is healthy = %s; want a login", again.raw)
				}
				t.Logf("fault figures: %s: HTTP %d, status %d, errcode %d, %d calls to WeChat, answered in %v (bound %v); healthy again: status %d",
					tt.kind, got.code, got.env.Status, got.env.Errcode, calls, took.Round(time.Millisecond), a.wx.requestTimeout, again.env.Status)
			})
		}
	})
}

// GET /mock/faults reports the settings and what was injected; bad settings
// are refused in the envelope.
func TestFaultsEndpoint(t *testing.T) {
	fake := newFakeWechat(map[string]fakeApp{"wxapp": {Secret: testSecret}}, time.Now)
	h := fake.routes()
	healthy := call(t, h, "GET", "/mock/faults", "")
	if d := dataOf[faultsData](t, healthy); healthy.env.Status != 0 || d.Rate != 0 || d.Calls != 0 {
		t.Errorf("GET /mock/faults of a healthy fake = %s", healthy.raw)
	}
	for _, body := range []string{`{"rate":2}`, `{"rate":0.1,"kinds":["meteor"]}`, `{"rate":"lots"}`, `{"rate":0.1,"extra":1}`} {
		if got := call(t, h, "POST", "/mock/faults", body, "Content-Type", jsonCT); got.code != http.StatusBadRequest || got.env.Status != statusBadRequest {
			t.Errorf("POST /mock/faults %s = %d %s; want 400, status 1", body, got.code, got.raw)
		}
	}
	// As curl -d sends it, JSON labelled as a form, as /mock/wx.* take it.
	if got := call(t, h, "POST", "/mock/faults", `{"rate":0.5}`, "Content-Type", "application/x-www-form-urlencoded"); got.env.Status != 0 || dataOf[faultsData](t, got).Rate != 0.5 {
		t.Errorf("POST /mock/faults as curl -d sends it = %s; want the rate set", got.raw)
	}
	for range 4 {
		r := httptest.NewRequest("GET", "/mock/api/sns/jscode2session?appid=wxapp&secret="+testSecret+"&js_code=x&grant_type=authorization_code", nil)
		w := httptest.NewRecorder()
		func() {
			defer func() { recover() }() // a "reset" aborts the handler where it cannot take over the connection
			h.ServeHTTP(w, r)
		}()
	}
	got := call(t, h, "GET", "/mock/faults", "")
	report := dataOf[faultsData](t, got)
	total := 0
	for _, n := range report.Injected {
		total += n
	}
	if report.Calls != 4 || total != 2 || len(report.Kinds) != len(faultKinds) || !strings.Contains(got.raw, `"system-error":1`) {
		t.Errorf("GET /mock/faults after 4 calls at rate 0.5 = %s; want 4 calls, 2 injected, all kinds", got.raw)
	}
}
