package conform

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// flawedSecrets are the flawed backend's apps, as the profile names them.
var flawedSecrets = map[string]string{"FLAWED_SECRET_1": "s3cret-one", "FLAWED_SECRET_2": "s3cret-two", "FLAWED_SECRET_3": "s3cret-three"}

func flawedEnv(name string) string { return flawedSecrets[name] }

// flawed is testdata/flawed built once for the package's tests, in dir,
// which TestMain removes.
var flawed struct {
	once     sync.Once
	dir, bin string
	err      error
}

func buildFlawed() (string, error) {
	flawed.once.Do(func() {
		if flawed.dir, flawed.err = os.MkdirTemp("", "conform-flawed-"); flawed.err != nil {
			return
		}
		flawed.bin = filepath.Join(flawed.dir, "flawed")
		if out, err := exec.Command("go", "build", "-o", flawed.bin, "./testdata/flawed").CombinedOutput(); err != nil {
			flawed.err = fmt.Errorf("go build ./testdata/flawed: %v\n%s", err, out)
		}
	})
	return flawed.bin, flawed.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if flawed.dir != "" {
		os.RemoveAll(flawed.dir)
	}
	os.Exit(code)
}

// freeAddr is a loopback address with a free port, for the fake WeChat,
// which the backend must know before conform starts it.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startFlawed starts the flawed backend with flaws, pointed at a fake
// WeChat to be served at fakeAddr, and returns the profile that drives it.
func startFlawed(t *testing.T, flaws string) string {
	bin, err := buildFlawed()
	if err != nil {
		t.Fatal(err)
	}
	fakeAddr := freeAddr(t)
	cmd := exec.Command(bin, "-wechat-api", "http://"+fakeAddr, "-flaws", flaws)
	cmd.Env = append(os.Environ(), "FLAWED_APPS=wxf1a0ed0000000001=s3cret-one,wxf1a0ed0000000002=s3cret-two,wxf1a0ed0000000003=s3cret-three")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("flawed backend: %v", err)
	}
	baseURL := strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	text, err := os.ReadFile("testdata/flawed/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	profile := strings.NewReplacer("FAKE_ADDR", fakeAddr, "BASE_URL", baseURL).Replace(string(text))
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// conformJSON runs conform with args and the profile, and returns its
// error and the checks of its JSON report.
func conformJSON(t *testing.T, profile string, args ...string) ([]Result, string, error) {
	out := filepath.Join(t.TempDir(), "verdict.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Run(ctx, append([]string{"conform", "-profile", profile, "-json", out}, args...), flawedEnv, &stdout, &stderr, nil)
	b, readErr := os.ReadFile(out)
	if readErr != nil {
		t.Fatalf("conform wrote no report (%v): %v\n%s%s", readErr, err, stderr.String(), stdout.String())
	}
	var verdict struct {
		Checks []Result `json:"checks"`
	}
	if err := json.Unmarshal(b, &verdict); err != nil {
		t.Fatal(err)
	}
	return verdict.Checks, stdout.String(), err
}

// notPassed returns the ids of the checks that found something, sorted.
func notPassed(results []Result) []string {
	var ids []string
	for _, r := range results {
		if r.Result != ResultPass {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// flawChecks is, for each flaw of testdata/flawed, the checks it must make
// fail: exactly those, and no others.
var flawChecks = map[string][]string{
	"leak-session-key":       {"login.no-session-key"},
	"token-sha1-session-key": {"login.token-unpredictable"},
	"token-md5-time":         {"login.token-unpredictable"},
	"token-short":            {"login.token-length"},
	"token-per-user":         {"login.token-unique", "session.logout"},
	"code-cache":             {"login.code-reuse"},
	"no-code-flight":         {"login.double-tap-one-call"},
	"no-user-lock":           {"login.concurrent-first", "login.double-tap"},
	"user-per-code":          {"login.concurrent-first", "login.stable-user-id", "session.delete"},
	"exchange-twice":         {"login.double-tap-one-call", "login.one-exchange"},
	"retry-refused":          {"login.invalid-code", "login.risk-blocked", "login.risk-distinct"}, // 40226 retried comes back 40163
	"retry-storm":            {"login.system-error"},
	"risk-as-invalid-code":   {"login.risk-distinct"},
	"lenient-parse":          {"login.wechat-html", "login.wechat-truncated"},
	"no-timeout":             {"login.wechat-hang"},
	"require-unionid":        {"login.unbound-app"},
	"whoami-broken":          {"login.concurrent-first", "login.double-tap", "login.happy-path", "login.stable-user-id", "login.unbound-app", "session.logout"},
	"unknown-token-ok":       {"session.unknown-token"},
	"userinfo-broken":        {"opendata.genuine"},
	"no-signature-check":     {"opendata.other-users-key", "opendata.tampered-rawdata"},
	"global-session-key":     {"opendata.other-users-key"},
	"no-watermark-check":     {"opendata.foreign-watermark"},
	"no-openid-check":        {"opendata.other-openid"},
	"500-on-bad-data":        {"opendata.padding-oracle", "opendata.previous-key"},
	"padding-oracle":         {"opendata.padding-oracle"},
	"phone-broken":           {"hygiene.access-token-cached", "hygiene.access-token-refetch", "phone.country-code-number", "phone.genuine", "phone.openid-sent", "phone.replay"},
	"phone-no-openid":        {"phone.openid-sent", "phone.other-users-code"},
	"phone-cache":            {"phone.replay"},
	"country-code-text-only": {"phone.country-code-number"},
	"logout-noop":            {"session.logout"},
	"delete-keeps-tokens":    {"session.delete"},
	"claim-unchecked":        {"session.claim-once", "session.claim-per-person"},
	"claim-per-openid":       {"session.claim-per-person"},
	"token-per-call":         {"hygiene.access-token-cached"},
	"no-refetch":             {"hygiene.access-token-refetch", "hygiene.nickname-checked"}, // the refused token stays in use
	"no-content-check":       {"hygiene.nickname-checked"},
}

// TestEveryCheckCanFail runs the catalogue against the flawed backend,
// without flaws (every check passes) and with each flaw alone (exactly its
// checks fail), so that no check passes whatever a backend does.
func TestEveryCheckCanFail(t *testing.T) {
	covered := map[string]bool{}
	for _, ids := range flawChecks {
		for _, id := range ids {
			covered[id] = true
		}
	}
	for _, c := range catalogue() {
		if !covered[c.ID] {
			t.Errorf("no flaw of testdata/flawed makes %s fail", c.ID)
		}
	}
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		results, table, err := conformJSON(t, startFlawed(t, ""))
		if got := notPassed(results); len(got) > 0 || err != nil {
			t.Errorf("without flaws: not passed %v, err %v\n%s", got, err, table)
		}
	})
	for flaw, want := range flawChecks {
		t.Run(flaw, func(t *testing.T) {
			t.Parallel()
			results, table, err := conformJSON(t, startFlawed(t, flaw))
			want := slices.Sorted(slices.Values(want))
			if got := notPassed(results); !slices.Equal(got, want) {
				t.Errorf("with %s: not passed %v, want %v\n%s", flaw, got, want, table)
			}
			failing := slices.ContainsFunc(results, func(r Result) bool { return r.Result == string(SevFail) })
			if failing != errors.Is(err, ErrUnexpected) {
				t.Errorf("with %s: conform returned %v; a FAIL among the results: %v", flaw, err, failing)
			}
		})
	}
}

// TestExpectedFailures runs a flaw with an expected-failures file: the
// flaw's FAIL allowed passes the run, a WARN needs no allowance, and an
// allowance for a check that passes fails the run, so that a fix is
// noticed; an id the catalogue lacks is refused.
func TestExpectedFailures(t *testing.T) {
	profile := startFlawed(t, "code-cache,risk-as-invalid-code")
	dir := t.TempDir()
	only := "login.code-reuse,login.risk-distinct,login.token-unique"
	for _, tc := range []struct {
		name, expected string
		wantErr        bool
	}{
		{"the FAIL allowed", "login.code-reuse # being fixed\n", false},
		{"no allowance", "", true},
		{"an allowance that is not needed", "login.code-reuse\nlogin.token-unique # fixed since\n", true},
		{"an id the catalogue lacks", "login.code-reuse\nlogin.code-reuse-not-here\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			os.WriteFile(path, []byte(tc.expected), 0o600)
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), []string{"conform", "-profile", profile, "-expected", path, "-only", only},
				flawedEnv, &stdout, &stderr, nil)
			if (err != nil) != tc.wantErr {
				t.Errorf("Run = %v, want an error: %v\n%s", err, tc.wantErr, stdout.String())
			}
		})
	}
}

// Every form in which the scan finds a session_key is hidden in the
// evidence: base64 with "+" and "/", escaped for a URL or by PHP's
// json_encode, base64url, hex, raw bytes.
func TestRedactHidesEveryFormScanFinds(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 6)[:16]
	key := base64.StdEncoding.EncodeToString(raw)
	if !strings.ContainsAny(key, "+/") {
		t.Fatalf("key %s has no + or /", key)
	}
	r := &runner{keys: map[string]string{key: "alice"}, tokens: map[string]bool{}}
	forms, _ := keyForms(key)
	for _, form := range append(forms, string(raw)) {
		body := `{"k":"` + form + `"}`
		r.leaks = nil
		r.scan(reply{route: "login", body: []byte(body)})
		if len(r.leaks) == 0 {
			t.Errorf("the scan does not find %q", form)
		}
		if hidden := r.redact(body); strings.Contains(hidden, form) {
			t.Errorf("redact(%q) = %q; the key shows", body, hidden)
		}
	}
}

// TestReports checks the JUnit and TAP reports of a run with a FAIL, a
// WARN and a SKIPPED check.
func TestReports(t *testing.T) {
	profile := startFlawed(t, "leak-session-key,risk-as-invalid-code")
	junit := filepath.Join(t.TempDir(), "junit.xml")
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), []string{"conform", "-profile", profile, "-tap", "-junit", junit,
		"-only", "login.happy-path,login.risk-distinct,login.no-session-key"}, flawedEnv, &stdout, &stderr, nil)
	if !errors.Is(err, ErrUnexpected) {
		t.Fatalf("Run = %v, want ErrUnexpected", err)
	}
	tap := stdout.String()
	for _, want := range []string{"TAP version 13\n1..3\n", "ok 1 - login.happy-path\n", "not ok 2 - login.risk-distinct # TODO WARN", "not ok 3 - login.no-session-key\n"} {
		if !strings.Contains(tap, want) {
			t.Errorf("TAP has no %q:\n%s", want, tap)
		}
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("JUnit report: %v\n%s", err, b)
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Tests != 3 || suites.Suites[0].Failures != 1 {
		t.Errorf("JUnit suites = %+v, want one plan of 3 checks, 1 failure", suites.Suites)
	}
	if strings.Contains(string(b), "session_key\":\"") {
		t.Errorf("the JUnit report holds a session_key:\n%s", b)
	}
}

// TestEvidenceHidesSecrets: the session_key a leaky backend sends is in
// no report, only where it was seen.
func TestEvidenceHidesSecrets(t *testing.T) {
	profile := startFlawed(t, "leak-session-key")
	results, table, _ := conformJSON(t, profile, "-only", "login.happy-path,login.no-session-key")
	for _, r := range results {
		for _, e := range r.Evidence {
			if strings.Contains(e, `"session_key":"`) && !strings.Contains(e, `"session_key":"[session_key]"`) {
				t.Errorf("%s: evidence shows a session_key: %s", r.ID, e)
			}
		}
	}
	if !strings.Contains(table, "FAIL") {
		t.Errorf("the table shows no failure:\n%s", table)
	}
}

// A backend without a whoami route, whose login is a GET with the code
// in the query and names the user in its answer: the checks that must ask
// whether a token works are SKIPPED, every other one runs and passes.
func TestProfileWithoutWhoAmI(t *testing.T) {
	path := startFlawed(t, "")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	profile := strings.NewReplacer(
		`"login": {"path": "/login", "token": "token"}`, `"login": {"method": "GET", "path": "/login", "token": "token", "user_id": "user_id"}`,
		`"whoami": {"path": "/me", "user_id": "id"},`, ``).Replace(string(text))
	if profile == string(text) {
		t.Fatal("the flawed backend's profile did not change")
	}
	os.WriteFile(path, []byte(profile), 0o600)
	results, table, err := conformJSON(t, path)
	if err != nil {
		t.Fatalf("conform: %v\n%s", err, table)
	}
	skipped := map[string]bool{"session.unknown-token": true, "session.logout": true, "session.delete": true}
	for _, r := range results {
		if want := map[bool]string{true: ResultSkipped, false: ResultPass}[skipped[r.ID]]; r.Result != want {
			t.Errorf("%s: %s, want %s (%s)", r.ID, r.Result, want, r.Got+r.Skipped)
		}
	}
}

// A profile without "auth" sends Authorization: Bearer <token>; one that
// names a header sends the token after its scheme, or alone.
func TestProfileAuthDefaults(t *testing.T) {
	base := `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "S"}], "login": {"path": "/l", "token": "t", "user_id": "id"}`
	env := func(string) string { return "s" }
	for _, tc := range []struct {
		auth           string
		header, scheme string
	}{
		{``, "Authorization", "Bearer"},
		{`, "auth": {"header": "token"}`, "token", ""},
		{`, "auth": {"header": "Authorization", "scheme": "JWT"}`, "Authorization", "JWT"},
	} {
		p, err := ParseProfile([]byte(base+tc.auth+`}`), env)
		if err != nil {
			t.Fatal(err)
		}
		if p.Auth.Header != tc.header || p.Auth.Scheme != tc.scheme {
			t.Errorf("auth %q: %+v; want header %q, scheme %q", tc.auth, p.Auth, tc.header, tc.scheme)
		}
	}
}

func TestInitProfileParses(t *testing.T) {
	env := func(string) string { return "a-secret" }
	p, err := ParseProfile([]byte(InitProfile), env)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserInfo == nil || p.Phone == nil || p.Nickname == nil || p.Logout == nil || p.Delete == nil || p.Claim == nil {
		t.Errorf("the -init profile leaves a route out: %+v", p)
	}
	if len(p.bound()) != 2 {
		t.Errorf("the -init profile has %d bound apps, want 2", len(p.bound()))
	}
}

func TestProfileErrors(t *testing.T) {
	env := func(name string) string {
		if name == "SET" {
			return "x"
		}
		return ""
	}
	for _, tc := range []struct{ name, profile, want string }{
		{"no base URL", `{"apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "base_url"},
		{"secret not set", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "UNSET"}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "UNSET is not set"},
		{"a secret in the file", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret": "s"}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "unknown field"},
		{"no token path", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "/l"}, "whoami": {"path": "/u", "user_id": "id"}}`, "login.token"},
		{"a relative path", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "login.path"},
		{"only unbound apps", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "SET", "unbound": true}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "bound"},
		{"no way to tell the user", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "/l", "token": "t"}}`, "login.user_id"},
		{"a bad encoding", `{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "/l", "token": "t", "user_id": "id", "encoding": "xml"}}`, "login.encoding"},
		{"a bad timeout", `{"base_url": "http://x", "timeout": "soon", "apps": [{"appid": "wx1", "secret_env": "SET"}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`, "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tc.profile), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseProfile = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestDerivedFrom(t *testing.T) {
	now := time.Now()
	values := map[string]string{"openid": "oABC", "session_key": "a2V5a2V5a2V5a2V5a2V5aw==", "code": "c0de"}
	for _, tc := range []struct {
		name, token string
		derived     bool
	}{
		{"random", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", false},
		{"the openid", "oABC", true},
		{"holds the code", "x-c0de-y", true},
		{"sha1 of the session_key", "6d8b7e1a39b3f0a2d2b0b41b3e4f40c8e1b5a3a3", false}, // not its real hash
		{"md5 of openid and seconds", md5hex("oABC" + fmt.Sprint(now.Unix())), true},
		{"md5 of microseconds", md5hex(fmt.Sprint(now.UnixMicro())), true},
		{"sha256 of openid+session_key", sha256hex("oABCa2V5a2V5a2V5a2V5a2V5aw=="), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := derivedFrom(tc.token, values, now, now); (got != "") != tc.derived {
				t.Errorf("derivedFrom(%q) = %q, want derived: %v", tc.token, got, tc.derived)
			}
		})
	}
}

func TestTokenBits(t *testing.T) {
	for _, tc := range []struct {
		token string
		min   float64
		ok    bool
	}{
		{strings.Repeat("a1", 16), 128, true},                 // 32 hex digits
		{"1234567890123456789012345678901234567", 122, false}, // 37 decimal digits: 122.9 bits
		{"xY_A9Qe3xY_B9Qe3xY_C9Q", 128, true},                 // 22 base64url characters
		{"550e8400-e29b-41d4-a716-446655440000", 128, true},   // a UUID's 32 hex digits
		{"deadbeef", 32, false},
	} {
		if bits := tokenBits(tc.token); (bits >= 128) != tc.ok || bits < tc.min {
			t.Errorf("tokenBits(%q) = %.1f", tc.token, bits)
		}
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(InitProfile))
	f.Add([]byte(`{"base_url": "http://x", "apps": [{"appid": "wx1", "secret_env": "S"}], "login": {"path": "/l", "token": "t"}, "whoami": {"path": "/u", "user_id": "id"}}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		p, err := ParseProfile(text, func(string) string { return "s" })
		if err != nil {
			return
		}
		if p.BaseURL == "" || len(p.Apps) == 0 || p.Login.Method == "" || p.Timeout <= 0 || len(p.bound()) == 0 {
			t.Errorf("ParseProfile accepted an incomplete profile: %+v", p)
		}
	})
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// docs/conform.md lists every check of the catalogue as it is: id,
// severity, reason and rule.
func TestDocsListEveryCheck(t *testing.T) {
	doc, err := os.ReadFile("../../docs/conform.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range catalogue() {
		if !strings.Contains(string(doc), "\n"+docRow(c)+"\n") {
			t.Errorf("docs/conform.md has no row\n%s", docRow(c))
		}
	}
	rows := regexp.MustCompile("\n\\| `[a-z]+\\.[a-z0-9-]+` \\| ").FindAllString(string(doc), -1)
	if len(rows) != len(catalogue()) {
		t.Errorf("docs/conform.md lists %d checks; the catalogue has %d", len(rows), len(catalogue()))
	}
}

func TestSameAnswer(t *testing.T) {
	r := func(status int, body string) reply { return reply{status: status, body: []byte(body)} }
	for _, tc := range []struct {
		name     string
		a, a2, b reply
		wantSame bool
	}{
		{"the same body", r(400, `{"e":1}`), r(400, `{"e":1}`), r(400, `{"e":1}`), true},
		{"another body", r(400, `{"e":1}`), r(400, `{"e":1}`), r(400, `{"e":2}`), false},
		{"another status", r(400, `{"e":1}`), r(400, `{"e":1}`), r(401, `{"e":1}`), false},
		{"bodies with a time in them", r(400, `{"t":1}`), r(400, `{"t":2}`), r(400, `{"t":3}`), true},
	} {
		if got := sameAnswer(tc.a, tc.a2, tc.b); got != tc.wantSame {
			t.Errorf("%s: sameAnswer = %v, want %v", tc.name, got, tc.wantSame)
		}
	}
}

// docRow is a check's row in docs/conform.md's catalogue.
func docRow(c Check) string {
	return fmt.Sprintf("| `%s` | %s | %s | %s |", c.ID, c.Severity, c.Reason, c.Rule)
}

// Every route a check needs is one a profile can have: a misspelt need
// would skip its check whatever the profile says.
func TestChecksNeedKnownRoutes(t *testing.T) {
	known := (&Profile{}).routes()
	for _, c := range catalogue() {
		for _, need := range c.needs {
			if _, ok := known[need]; !ok {
				t.Errorf("%s needs route %q, which no profile has", c.ID, need)
			}
		}
	}
}
