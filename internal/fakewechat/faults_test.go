package fakewechat

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
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

// GET /mock/faults reports the settings and what was injected; bad settings
// are refused in the envelope.
func TestFaultsEndpoint(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	h := fake.Handler()
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
	if report.Calls != 4 || total != 2 || len(report.Kinds) != len(FaultKinds()) || !strings.Contains(got.raw, `"system-error":1`) {
		t.Errorf("GET /mock/faults after 4 calls at rate 0.5 = %s; want 4 calls, 2 injected, all kinds", got.raw)
	}
}

// A "slow" call is answered as usual, only later: one whose caller has
// gone gets nothing, and one that waits gets WeChat's answer, its code
// spent. It is never among the default kinds.
func TestSlowFaultAnswersLate(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Secret: testSecret}}, Fixtures{}, time.Now)
	h := fake.Handler()
	if got := call(t, h, "POST", "/mock/faults", `{"rate": 1, "kinds": ["slow"]}`); got.env.Status != 0 {
		t.Fatalf("POST /mock/faults slow = %s", got.raw)
	}
	exchange := func(ctx context.Context, code string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, "GET", "/mock/api/sns/jscode2session?appid=wxapp&secret="+testSecret+"&js_code="+code+"&grant_type=authorization_code", nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	code := fake.IssueCode("wxapp", "alice")
	if w := exchange(gone, code); w.Body.Len() != 0 {
		t.Errorf("a slow call whose caller had gone was answered %s", w.Body)
	}
	if w := exchange(context.Background(), code); !strings.Contains(w.Body.String(), `"openid":"`) {
		t.Errorf("a slow call = %s; want WeChat's answer, the code unspent by the call that was not answered", w.Body)
	}
	if w := exchange(context.Background(), code); !strings.Contains(w.Body.String(), "40163") {
		t.Errorf("the code again = %s; want 40163, spent by the slow call", w.Body)
	}
	if slices.Contains(FaultKinds(), "slow") {
		t.Error("FaultKinds lists slow, which is no failure")
	}
}
