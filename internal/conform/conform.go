// Package conform is `wxlogin conform`: a verdict on any team's WeChat
// login backend. It serves the fake WeChat (internal/fakewechat) itself, so
// it knows every code and session_key it hands out; the backend under
// test is pointed at it, and conform drives the backend as a mini program
// would, through the routes a profile names (profile.go), running a
// catalogue of named checks (checks.go), each with a severity, a reason,
// the rule it comes from and a fix hint, as the OpenID Foundation's
// conformance suite does for relying parties. The verdict is a table, and
// JUnit, JSON or TAP for CI (report.go); an expected-failures file lets a
// team adopt the checks one at a time.
package conform

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"wxlogin/internal/fakewechat"
)

// SelfStarter starts a wxlogin for `conform -self`, on the profile's apps,
// pointed at the fake WeChat at fakeURL, with getenv holding the apps'
// secrets; it returns its base URL and a function that stops it.
type SelfStarter func(ctx context.Context, p *Profile, fakeURL string, getenv func(string) string) (baseURL string, stop func() error, err error)

// ErrUnexpected is returned when the verdict has a failure the expected
// file does not allow, or an allowed failure that did not happen.
var ErrUnexpected = errors.New("conform: the backend does not conform")

// Run is `wxlogin conform`, with args starting at "conform". self starts
// the wxlogin that -self judges.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, self SelfStarter) (err error) {
	fs := flag.NewFlagSet("wxlogin conform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profilePath := fs.String("profile", "", "the profile: how to reach and drive the backend under test (docs/conform.md)")
	initProfile := fs.Bool("init", false, "print a commented profile for wxlogin itself, to start from, and exit")
	selfTest := fs.Bool("self", false, "run the catalogue against a wxlogin started here, on a temporary data directory")
	list := fs.Bool("list", false, "print the catalogue and exit")
	junitPath := fs.String("junit", "", "also write the verdict as JUnit XML to this file")
	jsonPath := fs.String("json", "", "also write the verdict, with evidence, as JSON to this file")
	tap := fs.Bool("tap", false, "print the verdict as TAP instead of a table")
	expectedPath := fs.String("expected", "", "a file of the check ids expected to fail, one a line (# comments); any other failure, or an expected one that passes, fails the run")
	only := fs.String("only", "", "comma-separated plans or check ids to run (default: all)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("conform: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *initProfile:
		_, err := io.WriteString(stdout, InitProfile)
		return err
	case *list:
		return writeCatalogue(stdout)
	case *selfTest == (*profilePath != ""):
		return errors.New("conform: give -profile FILE, or -self")
	case *selfTest && self == nil:
		return errors.New("conform -self: this build cannot start a wxlogin")
	}
	var expected map[string]bool
	if *expectedPath != "" {
		if expected, err = loadExpected(*expectedPath); err != nil {
			return err
		}
	}
	checks, err := selectChecks(*only)
	if err != nil {
		return err
	}

	var p *Profile
	if *selfTest {
		getenv = selfSecrets()
		p, err = ParseProfile([]byte(InitProfile), getenv)
		if err == nil {
			p.FakeAddr, p.Timeout = "127.0.0.1:0", Duration(8*time.Second)
		}
	} else {
		p, err = LoadProfile(*profilePath, getenv)
	}
	if err != nil {
		return fmt.Errorf("conform: %w", err)
	}

	r, stopFake, err := start(p)
	if err != nil {
		return err
	}
	defer stopFake()
	fmt.Fprintf(stderr, "conform: the fake WeChat is at %s; point the backend's WeChat API base URL there\n", r.fakeURL)
	if *selfTest {
		baseURL, stop, err := self(ctx, p, r.fakeURL, getenv)
		if err != nil {
			return fmt.Errorf("conform -self: %w", err)
		}
		defer func() {
			if stopErr := stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("conform -self: the wxlogin judged: %w", stopErr))
			}
		}()
		p.BaseURL = baseURL
	}
	fmt.Fprintf(stderr, "conform: waiting for the backend at %s\n", p.BaseURL)
	if err := r.be.waitReady(ctx); err != nil {
		return fmt.Errorf("conform: %w", err)
	}
	results := r.runAll(ctx, checks)
	unexpected := markExpected(results, expected)

	if *tap {
		writeTAP(stdout, results)
	} else {
		writeTable(stdout, results)
	}
	if *junitPath != "" {
		if err := writeFileWith(*junitPath, func(w io.Writer) error { return writeJUnit(w, results) }); err != nil {
			return err
		}
	}
	if *jsonPath != "" {
		if err := writeFileWith(*jsonPath, func(w io.Writer) error { return writeJSON(w, p, results) }); err != nil {
			return err
		}
	}
	if unexpected > 0 {
		return fmt.Errorf("%w: %d unexpected result(s)", ErrUnexpected, unexpected)
	}
	return nil
}

// selfSecrets is the environment of `conform -self`: a random AppSecret
// for each app of the built-in profile.
func selfSecrets() func(string) string {
	secrets := map[string]string{}
	for i := 1; i <= 3; i++ {
		secrets[fmt.Sprintf("CONFORM_SECRET_%d", i)] = randomHex(16)
	}
	return func(name string) string { return secrets[name] }
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runner is one run of the catalogue: the fake, the backend, and what the
// run has seen of secrets.
type runner struct {
	p       *Profile
	be      *backend
	fake    *fakewechat.Fake
	fakeURL string
	toFake  *http.Client
	runID   string       // in every user name, so that runs never meet
	next    atomic.Int64 // numbers the users of a run

	mu     sync.Mutex // guards keys, tokens and leaks
	keys   map[string]string
	tokens map[string]bool
	leaks  []string
}

// start serves the fake WeChat on the profile's address, and returns the
// runner around it and a function that stops it.
func start(p *Profile) (*runner, func(), error) {
	apps := map[string]fakewechat.App{}
	for _, a := range p.Apps {
		apps[a.AppID] = fakewechat.App{Name: "conform", Secret: a.secret, Unbound: a.Unbound}
	}
	fake := fakewechat.New(apps, fakewechat.Fixtures{}, time.Now)
	// countryCode as the field table types it; phone.country-code-number
	// tries the example's number.
	fake.SetCountryCodeText(true)
	ln, err := net.Listen("tcp", p.FakeAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("conform: the fake WeChat cannot listen on fake_addr: %w", err)
	}
	srv := &http.Server{Handler: fake.Standalone(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	stop := func() {
		srv.Close() // A hanging fault waits for its caller: no graceful wait.
		<-served
	}
	r := &runner{
		p: p, fake: fake, fakeURL: "http://" + ln.Addr().String(),
		toFake: &http.Client{Timeout: 5 * time.Second},
		runID:  randomHex(3),
		keys:   map[string]string{}, tokens: map[string]bool{},
	}
	r.be = &backend{p: p, client: &http.Client{Timeout: time.Duration(p.Timeout)}, seen: r.scan}
	return r, stop, nil
}

// user returns a user name no other check of any run uses.
func (r *runner) user(tag string) string {
	return fmt.Sprintf("conform-%s-%s-%d", r.runID, tag, r.next.Add(1))
}

// code is wx.login on the user's phone: a new code, and a new session_key
// that conform remembers so as to look for it in every reply.
func (r *runner) code(app App, user string) string {
	code := r.fake.IssueCode(app.AppID, user)
	if key, ok := r.fake.SessionKey(app.AppID, user); ok {
		r.mu.Lock()
		r.keys[key] = user
		r.mu.Unlock()
	}
	return code
}

// login logs user in to app with a new code, returning the token ("" for none).
func (r *runner) login(ctx context.Context, app App, user string) (string, reply) {
	token, rep := r.be.login(ctx, app, r.code(app, user))
	r.remember(token)
	return token, rep
}

// remember keeps a token, to be hidden in the evidence.
func (r *runner) remember(token string) {
	if token == "" {
		return
	}
	r.mu.Lock()
	r.tokens[token] = true
	r.mu.Unlock()
}

// keyForms are the ways a backend might write a session_key: as WeChat
// gives it (base64), URL-escaped, with "/" escaped as PHP's json_encode
// does, in base64url or base64 without padding, in hex either case.
func keyForms(key string) (forms []string, raw []byte) {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return []string{key}, nil
	}
	return []string{key, url.QueryEscape(key), strings.ReplaceAll(key, "/", `\/`),
		base64.RawURLEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		hex.EncodeToString(raw), strings.ToUpper(hex.EncodeToString(raw))}, raw
}

// scan looks for every session_key the fake has issued, in every form a
// backend might write it, in a reply's headers and body.
func (r *runner) scan(rep reply) {
	var head strings.Builder
	for name, values := range rep.header {
		fmt.Fprintf(&head, "%s: %s\n", name, strings.Join(values, ", "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, user := range r.keys {
		forms, raw := keyForms(key)
		for _, form := range forms {
			switch {
			case strings.Contains(head.String(), form):
				r.leaks = append(r.leaks, fmt.Sprintf("%s: the session_key of %s in a response header", rep.route, user))
			case strings.Contains(string(rep.body), form):
				r.leaks = append(r.leaks, fmt.Sprintf("%s: the session_key of %s in the body", rep.route, user))
			default:
				continue
			}
			break
		}
		if raw != nil && bytes.Contains(rep.body, raw) {
			r.leaks = append(r.leaks, fmt.Sprintf("%s: the session_key of %s, as raw bytes, in the body", rep.route, user))
		}
	}
}

// redact hides the session_keys (in every form scan finds them) and
// tokens of the run in evidence.
func (r *runner) redact(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.keys {
		forms, raw := keyForms(key)
		for _, form := range forms {
			s = strings.ReplaceAll(s, form, "[session_key]")
		}
		if raw != nil {
			s = strings.ReplaceAll(s, string(raw), "[session_key]")
		}
	}
	for token := range r.tokens {
		if len(token) >= 8 {
			s = strings.ReplaceAll(s, token, "[token]")
		}
	}
	return s
}

// fakeCall posts body to one of the fake's own routes (/mock/…) and
// decodes its answer into out.
func (r *runner) fakeCall(path string, body, out any) error {
	b, _ := json.Marshal(body)
	resp, err := r.toFake.Post(r.fakeURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fake %s: HTTP %d", path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// setFaults makes the fake fail every server API call in the ways kinds
// name, taken in turn (none: no faults).
func (r *runner) setFaults(kinds ...string) error {
	rate := 1.0
	if len(kinds) == 0 {
		rate, kinds = 0, []string{"system-error"}
	}
	return r.fakeCall("/mock/faults", map[string]any{"rate": rate, "kinds": kinds}, nil)
}

// faultedCalls is how many server API calls the fake has failed on
// purpose since the faults were set.
func (r *runner) faultedCalls() (int, error) {
	var report struct {
		Data struct {
			Calls int `json:"calls"`
		} `json:"data"`
	}
	if err := r.fakeGet("/mock/faults", &report); err != nil {
		return 0, err
	}
	return report.Data.Calls, nil
}

// exchange is one server API call the fake recorded, its secrets replaced.
type exchange struct {
	Seq      int64             `json:"seq"`
	Path     string            `json:"path"`
	Query    map[string]string `json:"query"`
	Request  json.RawMessage   `json:"request"`
	Response json.RawMessage   `json:"response"`
}

// exchanges returns the server API calls the fake answered after seq.
func (r *runner) exchanges(seq int64) ([]exchange, error) {
	var page struct {
		Data struct {
			Exchanges []exchange `json:"exchanges"`
		} `json:"data"`
	}
	err := r.fakeGet(fmt.Sprintf("/mock/exchanges?after=%d", seq), &page)
	return page.Data.Exchanges, err
}

// fakeGet reads one of the fake's own routes into out.
func (r *runner) fakeGet(path string, out any) error {
	resp, err := r.toFake.Get(r.fakeURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fake %s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// mark is the number of the fake's latest recorded call, to count from.
func (r *runner) mark() int64 {
	all, _ := r.exchanges(0) // a failure shows in the count that follows
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Seq
}

// callsSince returns the server API calls at paths the fake answered after
// mark; the fake's record not read is an error, which the check reports
// as not tried.
func (r *runner) callsSince(mark int64, paths ...string) ([]exchange, error) {
	all, err := r.exchanges(mark)
	if err != nil {
		return nil, fmt.Errorf("could not be tried: the fake's record of calls: %w", err)
	}
	return callsTo(all, paths...), nil
}

// callsTo returns the calls among xs to the server API at path.
func callsTo(xs []exchange, paths ...string) []exchange {
	var out []exchange
	for _, x := range xs {
		for _, p := range paths {
			if x.Path == p {
				out = append(out, x)
			}
		}
	}
	return out
}
