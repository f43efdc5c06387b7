package metrics

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The families are written in the text format: counters by label set,
// histograms with cumulative buckets, label values escaped; a family
// past maxSeries label sets counts the rest under "other".
func TestMetricsText(t *testing.T) {
	m := New(BuildInfo{version: "v1.2.3", revision: "abc", goVersion: "go1.26"})
	m.Request("POST /login", 200)
	m.Login(0, 0)
	m.Request("POST /login", 401)
	m.Login(2, 40029)
	m.Request("POST /login", 429)
	m.Login(7, 0)
	m.LoginLimited()
	m.Request("", 404)
	m.WechatCall("jscode2session", "ok", 0, 30*time.Millisecond)
	m.WechatCall("jscode2session", "ok", 0, 3*time.Second)
	m.Fsynced(2*time.Millisecond, nil)
	m.Fsynced(time.Millisecond, errors.New("EIO"))
	if text := string(m.appendText(nil)); strings.Contains(text, "webhook") {
		t.Errorf("metrics show a webhook though there is none:\n%s", text)
	}
	m.WebhookPosted("taken")
	m.WebhookPosted("refused")
	m.WebhookPosted("taken")
	m.WebhookState(41, time.Now().Add(-time.Hour))
	text := string(m.appendText(nil))
	for _, want := range []string{
		`wxlogin_build_info{version="v1.2.3",revision="abc",goversion="go1.26"} 1`,
		`wxlogin_http_requests_total{route="POST /login",code="200"} 1`,
		`wxlogin_http_requests_total{route="unmatched",code="404"} 1`,
		`wxlogin_logins_total{status="0",errcode="0"} 1`,
		`wxlogin_logins_total{status="2",errcode="40029"} 1`,
		`wxlogin_login_limited_total 1`,
		`wxlogin_wechat_calls_total{api="jscode2session",outcome="ok",errcode="0"} 2`,
		`wxlogin_wechat_call_duration_seconds_bucket{api="jscode2session",le="0.025"} 0`,
		`wxlogin_wechat_call_duration_seconds_bucket{api="jscode2session",le="0.05"} 1`,
		`wxlogin_wechat_call_duration_seconds_bucket{api="jscode2session",le="5"} 2`,
		`wxlogin_wechat_call_duration_seconds_bucket{api="jscode2session",le="+Inf"} 2`,
		`wxlogin_wechat_call_duration_seconds_sum{api="jscode2session"} 3.03`,
		`wxlogin_wechat_call_duration_seconds_count{api="jscode2session"} 2`,
		`wxlogin_store_fsync_duration_seconds_bucket{le="0.001"} 1`,
		`wxlogin_store_fsync_duration_seconds_count 2`,
		`wxlogin_store_fsync_failures_total 1`,
		`wxlogin_webhook_posts_total{outcome="taken"} 2`,
		`wxlogin_webhook_posts_total{outcome="refused"} 1`,
		`wxlogin_webhook_delivered_seq 41`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	if !regexp.MustCompile(`\nwxlogin_webhook_oldest_undelivered_seconds 36\d\d(\.\d+)?\n`).MatchString(text) {
		t.Errorf("the oldest undelivered event, an hour old, is not shown as such:\n%s", text)
	}
	if strings.Contains(text, "wxlogin_users") {
		t.Errorf("metrics show users though the store counts none:\n%s", text)
	}

	if got := string(appendLabelValue(nil, "a\"b\\c\nd")); got != `a\"b\\c\nd` {
		t.Errorf("label value escaped as %s", got)
	}
	v := newCounterVec("x")
	for i := range maxSeries + 10 {
		v.inc(strconv.Itoa(i))
	}
	v.inc("0") // held before the family filled: still its own
	if out := string(v.appendText(nil, "f_total", "h")); !strings.Contains(out, `f_total{x="other"} 10`+"\n") || strings.Count(out, "\nf_total{") != maxSeries+1 {
		t.Errorf("a family past %d label sets keeps %d of them", maxSeries, strings.Count(out, "\nf_total{"))
	} else if !strings.Contains(out, `f_total{x="0"} 2`+"\n") {
		t.Errorf("a label set held before the family filled stopped counting:\n%s", out[:200])
	}
}

// The line -version prints names the version, the revision, whether the
// checkout had changes, and the Go release; what the build does not know
// is "(unknown)".
func TestBuildInfoString(t *testing.T) {
	for _, tt := range []struct {
		build BuildInfo
		want  string
	}{
		{BuildInfo{version: "v1.2.3", revision: "abc", goVersion: "go1.26"}, "wxlogin v1.2.3 revision abc go1.26"},
		{BuildInfo{version: "(devel)", revision: "abc", modified: true, goVersion: "go1.26"}, "wxlogin (devel) revision abc (modified) go1.26"},
		{BuildInfo{goVersion: "go1.26"}, "wxlogin (unknown) revision (unknown) go1.26"},
	} {
		if got := tt.build.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.build, got, tt.want)
		}
	}
}

// BenchmarkRequest is counting one request of a route and code already
// seen, as every request but a route's first is.
func BenchmarkRequest(b *testing.B) {
	m := New(BuildInfo{})
	m.Request("GET /user", 200)
	b.ReportAllocs()
	for b.Loop() {
		m.Request("GET /user", 200)
	}
}

// Counting a request or a login of a series already held allocates
// nothing; the counts stay right.
func TestCountingAHeldSeriesAllocatesNothing(t *testing.T) {
	m := New(BuildInfo{})
	m.Request("GET /user", 200)
	m.Login(0, 0)
	if n := testing.AllocsPerRun(100, func() { m.Request("GET /user", 200); m.Login(0, 0) }); n != 0 {
		t.Errorf("counting a held series: %v allocations; want none", n)
	}
	text := string(m.appendText(nil))
	for _, want := range []string{`wxlogin_http_requests_total{route="GET /user",code="200"} 102`, `wxlogin_logins_total{status="0",errcode="0"} 102`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
}
