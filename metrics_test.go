package main

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
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
	m := newMetrics(buildInfo{version: "v1.2.3", revision: "abc", goVersion: "go1.26"})
	m.request("POST /login", 200)
	m.login(0, 0)
	m.request("POST /login", 401)
	m.login(2, 40029)
	m.request("POST /login", 429)
	m.login(7, 0)
	m.loginLimited()
	m.request("", 404)
	m.wechatCall("jscode2session", "ok", 0, 30*time.Millisecond)
	m.wechatCall("jscode2session", "ok", 0, 3*time.Second)
	m.fsynced(2*time.Millisecond, nil)
	m.fsynced(time.Millisecond, errors.New("EIO"))
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
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
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

// GET /metrics on the admin address of a running wxlogin: what a login, a
// refused code and a profile read did is counted, Prometheus's own parser
// (promtool check metrics) accepts the page, and no label holds a token,
// an openid or an address. It is not served on -addr.
func TestMetricsOnTheAdminAddress(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-admin-addr", "127.0.0.1:0")
	admin := regexp.MustCompile(`msg="admin listening" url=(\S+)/debug/pprof/`).FindStringSubmatch(s.logs.String())
	if admin == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logs.String())
	}
	login := post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	token, openID := dataOf[loginData](t, login).Token, fakeOpenID(mockAppID, "alice")
	post(t, "GET", s.url+"/user", "", "", "Authorization", "Bearer "+token)
	if got := post(t, "POST", s.url+"/login", jsonCT, `{"code":"not-a-code"}`); got.env.Status != statusInvalidCode {
		t.Fatalf("a made-up code = %+v; want status 2", got.env)
	}
	resp, err := client.Get(admin[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`wxlogin_logins_total{status="0",errcode="0"} 1`,
		`wxlogin_logins_total{status="2",errcode="40029"} 1`,
		`wxlogin_http_requests_total{route="GET /user",code="200"} 1`,
		`wxlogin_wechat_calls_total{api="jscode2session",outcome="ok",errcode="0"} 1`,
		`wxlogin_wechat_calls_total{api="jscode2session",outcome="errcode",errcode="40029"} 1`,
		`wxlogin_users 1`,
		`wxlogin_store_fsync_failures_total 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	// The first sweep runs as the server starts, before or after the login.
	if !regexp.MustCompile(`(?m)^wxlogin_tokens_live [01]$`).MatchString(text) {
		t.Errorf("metrics lack the live tokens of the last sweep:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^wxlogin_store_fsync_duration_seconds_count [1-9]`).MatchString(text) {
		t.Errorf("metrics count no fsync of the login's write:\n%s", text)
	}
	for _, secret := range []string{token, openID, "127.0.0.1"} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics hold %q", secret)
		}
	}
	if got := post(t, "GET", s.url+"/metrics", "", ""); got.code != http.StatusNotFound {
		t.Errorf("GET /metrics on -addr = %d; want 404", got.code)
	}
	checkWithPromtool(t, text)
}

// checkWithPromtool runs Prometheus's promtool check metrics on text.
func checkWithPromtool(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command(needTool(t, "promtool", "prometheus"), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, text)
	}
}
