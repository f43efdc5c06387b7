package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/clock"
	"wxlogin/internal/config"
	"wxlogin/internal/testkit"
	"wxlogin/internal/tokenfile"
	"wxlogin/internal/users"
)

// TestSoak is the soak test, run when WXLOGIN_SOAK names a duration
// (scripts/soak sets it, and the built binary in WXLOGIN_BINARY). wxlogin
// runs in real mode against wxlogin -fake-only in another process, with 10%
// of WeChat calls failing in each of the ways of /mock/faults in turn, while
// WXLOGIN_SOAK_CONNS clients (64 by default) go through whole sessions: log
// in, read and change the profile, send user info and a phone number, claim
// a gift, check the session, log out. Every reply must be the envelope, with
// a status its route may answer; no 5xx but status 3 (WeChat failed);
// wxlogin must not panic; once the load stops, its goroutines, open files
// and heap must come back near where they were before, as its pprof
// endpoint and /proc tell; and stopped with SIGTERM, it must save no token,
// since every session logged out.
func TestSoak(t *testing.T) {
	duration := testkit.Setting(t, "WXLOGIN_SOAK", 0, time.ParseDuration)
	if duration <= 0 {
		t.Skip("runs for a minute: set WXLOGIN_SOAK=60s (scripts/soak) to run it")
	}
	conns := testkit.Setting(t, "WXLOGIN_SOAK_CONNS", 64, strconv.Atoi)
	const faultRate, usersPerConn = 0.1, 4

	env := []string{"WX_APPID=" + config.MockAppID, "WX_APPSECRET=soak-" + randomText(12, base64.RawURLEncoding.EncodeToString)}
	fake := startProcess(t, env, "-fake-only", "-addr", "127.0.0.1:0")
	srv := startProcess(t, env, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-login-rate", "0",
		"-wechat-api", fake.url, "-admin-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`msg="admin listening" url=(\S+)`).FindStringSubmatch(srv.logs.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", srv.logs.String())
	}
	probe := processProbe{pid: srv.cmd.Process.Pid, pprof: m[1]}
	s := &soakClient{
		hc:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns}},
		srv:  srv.url,
		fake: fake.url,
	}
	// Each client has users of its own, so that no other login replaces a
	// user's session_key between wx.getUserInfo and POST /user/userinfo.
	userOf := func(conn, i int) string { return fmt.Sprintf("soak-%d-%d", conn, i%usersPerConn) }
	eachConn := func(session func(conn int)) {
		var wg sync.WaitGroup
		for conn := range conns {
			wg.Go(func() { session(conn) })
		}
		wg.Wait()
	}

	// Every user logs in once first, with WeChat healthy, so that the level
	// before includes the users themselves and warm connection pools.
	eachConn(func(conn int) {
		for i := range usersPerConn {
			s.session(userOf(conn, i))
		}
	})
	if s.unexpected > 0 {
		t.Fatalf("warm-up with a healthy WeChat: %d unexpected replies: %v", s.unexpected, s.examples)
	}
	// The level before is taken once the warm-up's connections from the
	// clients are closed and the count has stopped falling.
	s.hc.CloseIdleConnections()
	before := probe.read(t, true)
	for settle := time.Now().Add(10 * time.Second); time.Now().Before(settle); {
		time.Sleep(200 * time.Millisecond)
		now := probe.read(t, true)
		if now.goroutines == before.goroutines && now.files == before.files {
			break
		}
		before = now
	}
	s.outcomes = nil // count the soak alone
	setFaults(t, fake.url, faultRate)

	peak := before
	var sampleErr error
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				l, err := probe.sample(false)
				if err != nil {
					sampleErr = err
					return
				}
				peak = peak.max(l)
			}
		}
	}()
	start := time.Now()
	deadline := start.Add(duration)
	eachConn(func(conn int) {
		for i := 0; time.Now().Before(deadline); i++ {
			s.session(userOf(conn, i))
		}
	})
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	if sampleErr != nil {
		t.Errorf("sampling wxlogin under load: %v", sampleErr)
	}
	injected := setFaults(t, fake.url, 0)
	s.hc.CloseIdleConnections()

	// The load is over: poll until the server has let its connections and
	// their goroutines go, or a deadline passes.
	const slack = 10
	var after level
	for settle := time.Now().Add(30 * time.Second); ; {
		after = probe.read(t, true)
		if after.goroutines <= before.goroutines+slack && after.files <= before.files+slack || time.Now().After(settle) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every session that got a token ended with POST /logout, so no login
	// may be left when wxlogin stops and saves its tokens. A logout that
	// does not revoke shows here after a run of any length, long before the
	// tokens it leaks outgrow the heap's slack.
	loginsLeft := -1
	select {
	case err := <-srv.exited:
		srv.exited <- err
		t.Errorf("wxlogin exited during the soak: %v", err)
	default:
		srv.stop(t)
		if m := regexp.MustCompile(`msg=stopped tokens_saved=(\d+)`).FindStringSubmatch(srv.logs.String()); m != nil {
			loginsLeft, _ = strconv.Atoi(m[1])
		}
	}
	panics := strings.Count(srv.logs.String(), "panic")

	t.Logf("soak figures: %v at %d connections, %.0f%% of WeChat calls failing (%d failed on purpose): %d requests, %.0f/s; %d 5xx other than status 3, %d other unexpected replies, %d panics, %d logins left after the last logout",
		duration, conns, faultRate*100, injected, s.requests(), float64(s.requests())/elapsed.Seconds(), s.bad5xx, s.unexpected-s.bad5xx, panics, loginsLeft)
	t.Logf("soak replies: %s", s.outcomeList())
	t.Logf("soak levels, before → peak → after: goroutines %d → %d → %d; open files %d → %d → %d; heap in use %s → %s → %s; RSS %s → %s → %s",
		before.goroutines, peak.goroutines, after.goroutines, before.files, peak.files, after.files,
		mib(before.heap), mib(peak.heap), mib(after.heap), mib(before.rss), mib(peak.rss), mib(after.rss))

	if s.unexpected > 0 {
		t.Errorf("%d unexpected replies, for example: %v", s.unexpected, s.examples)
	}
	if panics > 0 {
		t.Errorf("wxlogin logged %d panics", panics)
	}
	if injected == 0 {
		t.Error("no fault was injected: the soak did not meet a failing WeChat")
	}
	if loginsLeft != 0 {
		t.Errorf("wxlogin saved %d tokens when it stopped (-1: it did not say); every session logged out, so want 0", loginsLeft)
	}
	if after.goroutines > before.goroutines+slack || after.files > before.files+slack {
		t.Errorf("goroutines %d → %d, open files %d → %d: not back near their level before the load",
			before.goroutines, after.goroutines, before.files, after.files)
	}
	// The users and their login state are all in the level before; what a
	// session left behind (a token not revoked, a goroutine parked) would
	// grow the heap by the number of sessions, tens of thousands.
	if limit := before.heap + max(before.heap/4, 2<<20); after.heap > limit {
		t.Errorf("heap in use %s → %s after the load; want at most %s", mib(before.heap), mib(after.heap), mib(limit))
	}
}

// level is what the soak test watches of a process.
type level struct {
	goroutines, files int
	heap, rss         int64 // bytes
}

func (l level) max(o level) level {
	return level{max(l.goroutines, o.goroutines), max(l.files, o.files), max(l.heap, o.heap), max(l.rss, o.rss)}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// processProbe reads a wxlogin process's level from its pprof endpoint
// (-admin-addr) and /proc.
type processProbe struct {
	pid   int
	pprof string // the admin URL, ending in /debug/pprof/
}

// read takes the level now; with gc, after a garbage collection, so that
// the heap is what is live. It fails the test, so it is for the test's own
// goroutine; a sampler uses sample.
func (p processProbe) read(t *testing.T, gc bool) level {
	t.Helper()
	l, err := p.sample(gc)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (p processProbe) sample(gc bool) (level, error) {
	var l level
	goroutines, err := p.get("goroutine?debug=1")
	if err != nil {
		return l, err
	}
	if _, err := fmt.Sscanf(goroutines, "goroutine profile: total %d", &l.goroutines); err != nil {
		return l, fmt.Errorf("goroutine profile: %w: %.100q", err, goroutines)
	}
	heap, err := p.get("heap?debug=1&gc=" + map[bool]string{true: "1", false: "0"}[gc])
	if err != nil {
		return l, err
	}
	_, stats, _ := strings.Cut(heap, "\n# HeapInuse = ")
	if _, err := fmt.Sscanf(stats, "%d", &l.heap); err != nil {
		return l, fmt.Errorf("heap profile has no HeapInuse: %w", err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		return l, err
	}
	l.files = len(fds)
	kb, err := procStatusKB(p.pid, "VmRSS")
	l.rss = kb << 10
	return l, err
}

func (p processProbe) get(profile string) (string, error) {
	resp, err := client.Get(p.pprof + profile)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", profile, resp.Status)
	}
	return string(body), err
}

// setFaults sets the share of the fake's WeChat calls that fail, in every
// way in turn, and returns how many failed on purpose under the settings
// it replaces.
func setFaults(t *testing.T, fake string, rate float64) int {
	t.Helper()
	resp, err := client.Get(fake + "/mock/faults")
	if err != nil {
		t.Fatal(err)
	}
	var report struct{ Data faultsData }
	err = jsonDecode(resp.Body, &report)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := post(t, "POST", fake+"/mock/faults", jsonCT, fmt.Sprintf(`{"rate":%v}`, rate)); got.code != http.StatusOK {
		t.Fatalf("POST /mock/faults = %d %s", got.code, got.raw)
	}
	injected := 0
	for _, n := range report.Data.Injected {
		injected += n
	}
	return injected
}

// soakClient goes through sessions against wxlogin and counts its replies
// by route, HTTP status and envelope status.
type soakClient struct {
	hc        *http.Client
	srv, fake string

	mu         sync.Mutex // guards the fields below
	outcomes   map[string]int
	unexpected int      // replies a route may not give, including bad5xx
	bad5xx     int      // 5xx replies with a status other than 3
	examples   []string // the first few unexpected replies
}

// session is one visit of a mini program user: each call as the sample
// mini program makes it, with the client side from the fake.
func (s *soakClient) session(user string) {
	var code, agreed struct{ Code string }
	if !s.fakeCall("wx.login", user, &code) || !s.fakeCall("wx.agreePrivacyAuthorization", user, &agreed) {
		return
	}
	var login struct{ Token string }
	if s.call("login", "POST", "/login", "", `{"code":"`+code.Code+`"}`, &login) != statusOK {
		return
	}
	token := login.Token
	s.call("user", "GET", "/user", token, "", nil)
	s.call("patch", "PATCH", "/user", token, `{"nickname":"`+user+`"}`, nil)
	var info, phone json.RawMessage
	if s.fakeCall("wx.getUserInfo", user, &info) {
		s.call("userinfo", "POST", "/user/userinfo", token, string(info), nil)
	}
	if s.fakeCall("wx.getPhoneNumber", user, &phone) {
		s.call("phone", "POST", "/user/phone", token, string(phone), nil)
	}
	s.call("claim", "POST", "/claims/welcome-gift", token, "", nil)
	s.call("claims", "GET", "/claims", token, "", nil)
	s.call("check", "GET", "/session/check", token, "", nil)
	s.call("logout", "POST", "/logout", token, "", nil)
}

// expectedStatus lists the statuses each route may answer in a soak: any
// route can succeed; those that call WeChat (a new nickname goes to its
// content check) can find it failing (3); a gift already given is status 6.
var expectedStatus = map[string][]int{
	"login": {statusOK, statusWechatDown}, "phone": {statusOK, statusWechatDown}, "check": {statusOK, statusWechatDown},
	"patch": {statusOK, statusWechatDown},
	"claim": {statusOK, statusClaimed},
}

// call sends one request to wxlogin, counts its reply, and decodes its
// data into data when it has some. It returns the envelope status, or -2
// when there was no envelope.
func (s *soakClient) call(route, method, path, token, body string, data any) int {
	req, err := http.NewRequest(method, s.srv+path, strings.NewReader(body))
	if err != nil {
		panic(err) // a bad literal in the test
	}
	if body != "" {
		req.Header.Set("Content-Type", jsonCT)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.count(route, 0, -2, err.Error())
		return -2
	}
	defer resp.Body.Close()
	var env struct {
		Status *int
		Data   json.RawMessage
	}
	if err := jsonDecode(resp.Body, &env); err != nil || env.Status == nil {
		s.count(route, resp.StatusCode, -2, fmt.Sprintf("not the envelope: %v", err))
		return -2
	}
	if data != nil && *env.Status == statusOK {
		json.Unmarshal(env.Data, data)
	}
	s.count(route, resp.StatusCode, *env.Status, "")
	return *env.Status
}

func (s *soakClient) count(route string, httpCode, status int, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outcomes == nil {
		s.outcomes = map[string]int{}
	}
	s.outcomes[fmt.Sprintf("%s %d/%d", route, httpCode, status)]++
	ok := problem == "" && (status == statusOK || slices.Contains(expectedStatus[route], status))
	if httpCode >= 500 && status != statusWechatDown {
		s.bad5xx++
		ok = false
	}
	if !ok {
		s.unexpected++
		if len(s.examples) < 5 {
			s.examples = append(s.examples, fmt.Sprintf("%s: HTTP %d, status %d %s", route, httpCode, status, problem))
		}
	}
}

// fakeCall makes a client API call of the fake (wx.login, …) for user.
func (s *soakClient) fakeCall(api, user string, reply any) bool {
	resp, err := s.hc.Post(s.fake+"/mock/"+api, jsonCT, strings.NewReader(`{"user":"`+user+`"}`))
	if err == nil {
		defer resp.Body.Close()
		err = jsonDecode(resp.Body, reply)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		s.count("fake "+api, 0, -2, fmt.Sprint(err))
		return false
	}
	return true
}

func (s *soakClient) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for route, c := range s.outcomes {
		if !strings.HasPrefix(route, "fake ") {
			n += c
		}
	}
	return n
}

// outcomeList is the replies counted, "route HTTP/status: count", sorted.
func (s *soakClient) outcomeList() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]string, 0, len(s.outcomes))
	for outcome, n := range s.outcomes {
		list = append(list, fmt.Sprintf("%s: %d", outcome, n))
	}
	slices.Sort(list)
	return strings.Join(list, ", ")
}

// TestScaleFigures measures the scale figures of BENCHMARKS.md when
// WXLOGIN_SCALE is set (scripts/scale does): bytes on disk per user, and the
// start-up time and memory of a real wxlogin process with 1 M users on disk,
// then with 1 M live tokens as well. It asserts only that the process loads
// them all; the figures are logged, never compared with a limit here.
func TestScaleFigures(t *testing.T) {
	if os.Getenv("WXLOGIN_SCALE") == "" {
		t.Skip("measures for minutes: set WXLOGIN_SCALE=1 (scripts/scale) to run it")
	}
	const n = 1_000_000
	dir := t.TempDir()
	if keep := os.Getenv("WXLOGIN_SCALE_DIR"); keep != "" {
		dir = keep // kept afterwards, to profile a start-up against it
	}
	s, err := users.Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seedUsers(t, s, n)
	who := make([]account.Identity, n) // of users 1 to n, for their tokens
	for i := range who {
		who[i], _ = s.Identity(int64(i + 1))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	size := dirSize(t, dir)
	t.Logf("bytes on disk per user: %.0f (%d users in %d bytes)", float64(size)/n, n, size)

	startMeasured := func(what string) *child {
		start := time.Now()
		c := startChild(t, dir)
		t.Logf("%s: start-up %v (exec to answering /healthz), RSS %s", what, time.Since(start).Round(time.Millisecond), rssOf(t, c))
		return c
	}
	stop := func(c *child) {
		c.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-c.exited; err != nil {
			t.Fatalf("wxlogin exited with %v\n%s", err, c.logs.String())
		}
		c.exited <- nil // for the cleanup
	}
	c := startMeasured("1 M users")
	if !strings.Contains(c.logs.String(), fmt.Sprintf("users=%d ", n)) {
		t.Fatalf("wxlogin did not load %d users:\n%s", n, c.logs.String())
	}
	stop(c)

	// 1 M live tokens, one per user, each with its session_key, as a
	// graceful restart would leave them.
	tokens := newTokenStore(2*time.Hour, 720*time.Hour, clock.System())
	for i := range n {
		tokens.issue(who[i], base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%016d", i))))
	}
	if saved, err := tokens.save(filepath.Join(dir, tokenfile.Name)); err != nil || saved != n {
		t.Fatalf("saved %d tokens, %v", saved, err)
	}
	c = startMeasured("1 M users and 1 M live tokens")
	if !strings.Contains(c.logs.String(), fmt.Sprintf("tokens_reloaded=%d", n)) {
		t.Fatalf("wxlogin did not reload %d tokens:\n%s", n, c.logs.String())
	}
	stop(c)
}

// dirSize is the bytes in dir's files.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		total += info.Size()
	}
	return total
}

// rssOf reads a process's resident memory now and at its peak.
func rssOf(t *testing.T, c *child) string {
	t.Helper()
	now, err := procStatusKB(c.cmd.Process.Pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	peak, err := procStatusKB(c.cmd.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d kB (peak %d kB)", now, peak)
}

// procStatusKB reads a field of /proc/<pid>/status that is given in kB,
// such as VmRSS.
func procStatusKB(pid int, field string) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	_, value, _ := strings.Cut(string(status), "\n"+field+":")
	var kb int64
	if _, err := fmt.Sscanf(value, "%d kB", &kb); err != nil {
		return 0, fmt.Errorf("no %s in /proc/%d/status: %w", field, pid, err)
	}
	return kb, nil
}
