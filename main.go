// Command wxlogin is a WeChat Mini Program login server. A mini program sends
// it the one-time code from wx.login; wxlogin exchanges the code with WeChat
// (auth.code2Session) for the user's openid and session_key, creates the user
// on first sight in a durable JSON-lines store, keeps the session_key on the
// server, and answers with a random token of its own that the mini program
// sends with every later request.
//
// With no AppSecret configured it runs against a built-in fake WeChat served
// under /mock/, so `go run .` works on a fresh machine with no network.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx := context.Background()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "wxlogin: %v\n", err)
		os.Exit(1)
	}
}

// mockAppID is the AppID of the fake WeChat's app when WX_APPID is not set.
const mockAppID = "wxfa4e000000000000"

// config is everything run needs to know, from flags and the environment.
type config struct {
	addr          string
	dataDir       string
	tokenTTL      time.Duration
	tokenMaxAge   time.Duration
	wechatAPI     string
	wechatTimeout time.Duration
	loginTimeout  time.Duration
	mock          bool
	fakeOnly      bool   // serve only the fake WeChat, for other servers' tests
	adminAddr     string // where to serve net/http/pprof; "" for nowhere
	loginRate     int    // logins a minute per client address; 0 for no limit
	loginBurst    int    // logins at once per client address
	maxConns      int    // connections served at once; 0 for a cap under the open-file limit
	proxies       trustedProxies
	apps          []appConfig
}

// appConfig is one mini program wxlogin serves, as the apps file lists it.
// The file names the environment variable holding each AppSecret; it never
// holds a secret itself.
type appConfig struct {
	AppID     string `json:"appid"`
	Name      string `json:"name"`
	SecretEnv string `json:"secret_env"`
	// Unbound tells the fake WeChat, in mock mode, that the app is not bound
	// to an Open Platform account, so its users get no unionid. Against
	// WeChat it means nothing: WeChat knows.
	Unbound bool `json:"unbound"`

	secret string
}

// run is wxlogin: it serves until ctx ends or SIGINT/SIGTERM arrives, then
// shuts down gracefully, saving live tokens for the next start.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 1 && isTool(args[1]) {
		return runTool(ctx, args[1:], getenv, stdout, stderr) // wxlogin check, backup, … (datatools.go)
	}

	cfg, err := loadConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logOut := newLogWriter(stderr)
	defer logOut.close()
	log := slog.New(slog.NewTextHandler(logOut, nil))
	if cfg.fakeOnly {
		return runFakeOnly(ctx, cfg, log)
	}

	// One wxlogin owns the data directory before anything in it is read.
	dataDir, err := openDataDir(cfg.dataDir, log)
	if err != nil {
		return err
	}
	defer dataDir.release()
	// Replaying the store keeps almost everything it allocates (records are
	// read without garbage; only records a later line replaces become
	// garbage, and compaction keeps the journals smaller than the snapshot),
	// so collecting during it is wasted work (BENCHMARKS.md, start-up). A
	// GOMEMLIMIT set by the operator still applies. (The setting is the
	// process's: only tests run two servers in one.)
	gcPercent := debug.SetGCPercent(-1)
	users, err := openUserStore(cfg.dataDir, cfg.storeMeta(), time.Now, log)
	debug.SetGCPercent(gcPercent)
	if err != nil {
		return err
	}
	stopAdmin, err := startAdmin(ctx, cfg.adminAddr, users, log)
	if err != nil {
		return errors.Join(err, users.Close())
	}
	defer stopAdmin()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return errors.Join(err, users.Close())
	}
	// Tokens are loaded only once listening has worked: loading deletes the
	// saved file, and a start that fails must not log everyone out.
	clock := systemClock()
	tokens := newTokenStore(cfg.tokenTTL, cfg.tokenMaxAge, clock)
	tokenPath := filepath.Join(cfg.dataDir, tokenFileName)
	reloaded, err := tokens.load(tokenPath, users.identity)
	if errors.Is(err, errOldTokenFile) {
		log.Warn("tokens not reloaded", "err", err)
		err = nil
	}
	if err != nil {
		return errors.Join(err, ln.Close(), users.Close())
	}
	if reloaded > 0 {
		// Reading the token file leaves garbage the size of the tokens; it is
		// given back before serving, so that memory reflects the live state.
		debug.FreeOSMemory()
	}
	baseURL := "http://" + dialableAddr(ln.Addr())
	wechatAPI := cfg.wechatAPI
	var fake *fakeWechat
	if cfg.mock {
		fake = fakeFor(cfg.apps)
		// The clients reach the fake over HTTP, through the real code path.
		wechatAPI = baseURL + fakeAPIPrefix
	}
	apps := appSet{}
	for _, a := range cfg.apps {
		wx := newWechatClient(wechatAPI, a.AppID, a.secret, cfg.wechatTimeout, cfg.loginTimeout)
		apps[a.AppID] = &miniApp{ID: a.AppID, Name: a.Name, wx: wx}
	}
	limit := newLoginLimiter(cfg.loginRate, cfg.loginBurst, clock)
	srv := newHTTPServer(newServer(log, apps, users, tokens, limit, cfg.proxies, fake), cfg.loginTimeout, log)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		tokens.runSweeper(ctx, min(time.Minute, cfg.tokenTTL))
	}()
	if cfg.mock {
		log.Warn("MOCK MODE: logins go to the built-in fake WeChat, not to WeChat; get a code from POST /mock/wx.login",
			"appids", appIDsOf(cfg.apps), "teaching_page", baseURL+"/")
	}
	maxConns := cfg.connCap()
	log.Info("wxlogin listening", "url", baseURL, "addr", ln.Addr().String(), "max_conns", maxConns,
		"wechat_api", redactURL(wechatAPI), "data", cfg.dataDir, "users", users.count(), "tokens_reloaded", reloaded)

	err = serveUntilDone(ctx, srv, limitConns(srv, ln, maxConns), cfg.loginTimeout+5*time.Second, log)
	cancel()
	<-sweeperDone
	saved, saveErr := tokens.save(tokenPath)
	err = errors.Join(err, saveErr, users.Close())
	log.Info("stopped", "tokens_saved", saved)
	return err
}

// serveUntilDone serves on ln until ctx ends or serving fails, then shuts
// the server down, giving requests in flight up to grace to finish.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration, log *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("shutting down")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if shutdownErr := srv.Shutdown(shutdownCtx); shutdownErr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", shutdownErr))
	}
	return err
}

// runFakeOnly is -fake-only: the fake WeChat alone, on its own address, with
// WeChat's server API at the root as on api.weixin.qq.com, so that a server
// under test (wxlogin with -wechat-api, or any backend) just changes its base
// URL. The client side (/mock/wx.login, …) stays where mock mode has it. No
// data directory is used: the fake keeps its codes and keys in memory.
func runFakeOnly(ctx context.Context, cfg config, log *slog.Logger) error {
	stopAdmin, err := startAdmin(ctx, cfg.adminAddr, nil, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	fake := fakeFor(cfg.apps)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := newHTTPServer(withAccessLog(log, fake.standalone()), cfg.loginTimeout, log)
	baseURL := "http://" + dialableAddr(ln.Addr())
	log.Info("wxlogin listening", "url", baseURL, "addr", ln.Addr().String(), "fake_only", true,
		"appids", appIDsOf(cfg.apps))
	return serveUntilDone(ctx, srv, limitConns(srv, ln, cfg.connCap()), 5*time.Second, log)
}

// fakeFor is a fake WeChat that knows the configured apps and their secrets.
func fakeFor(apps []appConfig) *fakeWechat {
	fakeApps := map[string]fakeApp{}
	for _, a := range apps {
		fakeApps[a.AppID] = fakeApp{Secret: a.secret, Unbound: a.Unbound}
	}
	return newFakeWechat(fakeApps, time.Now)
}

// connCap is how many client connections to serve at once.
func (cfg config) connCap() int {
	if cfg.maxConns > 0 {
		return cfg.maxConns
	}
	return defaultMaxConns(len(cfg.apps))
}

// storeMeta is what the user store records of the configuration.
func (cfg config) storeMeta() storeMeta {
	m := storeMeta{Mode: modeReal}
	if cfg.mock {
		m.Mode = modeMock
	}
	for _, a := range cfg.apps {
		m.AppIDs = append(m.AppIDs, a.AppID)
	}
	slices.Sort(m.AppIDs)
	return m
}

// appIDsOf lists the configured AppIDs for a log line.
func appIDsOf(apps []appConfig) string {
	ids := make([]string, len(apps))
	for i, a := range apps {
		ids[i] = a.AppID
	}
	return strings.Join(ids, ",")
}

// startAdmin serves the profiler, and a backup of users (nil for the fake
// alone), on an address of their own, so that neither is exposed where
// clients connect; with no address, nothing. It returns a function that
// stops it and waits until it has. (Importing net/http/pprof also registers
// it on http.DefaultServeMux, which wxlogin never serves.)
func startAdmin(ctx context.Context, addr string, users *userStore, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-admin-addr / WXLOGIN_ADMIN_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if users != nil {
		mux.Handle("GET /backup", handleBackup(users, log))
	}
	// A CPU profile, a trace or a backup runs as long as it needs: no write
	// timeout.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := serveUntilDone(ctx, srv, ln, time.Second, log); err != nil {
			log.Warn("admin server", "err", err)
		}
	}()
	log.Info("admin listening", "url", "http://"+dialableAddr(ln.Addr())+"/debug/pprof/")
	return func() { cancel(); <-done }, nil
}

// newHTTPServer sets every limit of the server explicitly: the zero values
// let a slow or idle client hold a connection forever.
func newHTTPServer(h http.Handler, loginTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      loginTimeout + 5*time.Second, // A request to WeChat may take loginTimeout.
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// dialableAddr turns a listening address into one a client can dial: a
// wildcard host (":8080", "0.0.0.0:8080", "[::]:8080") becomes 127.0.0.1,
// which a wildcard listener on Linux accepts even where IPv6 is off.
func dialableAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// loadConfig reads flags from args and falls back to the environment for
// each; a flag wins over its variable. The AppSecret is read only from the
// environment or a file it names, never from a flag: flags show in ps.
func loadConfig(args []string, getenv func(string) string, usageOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("wxlogin", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	e := envFlags{fs: fs, getenv: getenv}
	var cfg config
	var mock optionalBool
	e.string(&cfg.addr, "addr", "WXLOGIN_ADDR", "127.0.0.1:8080", "listen address")
	e.string(&cfg.dataDir, "data", "WXLOGIN_DATA", "./data", "data directory (users, saved tokens)")
	e.duration(&cfg.tokenTTL, "token-ttl", "WXLOGIN_TOKEN_TTL", 2*time.Hour, "a token expires this long after its last use")
	e.duration(&cfg.tokenMaxAge, "token-max-age", "WXLOGIN_TOKEN_MAX_AGE", 720*time.Hour, "a token expires this long after it was issued, however much it is used")
	e.string(&cfg.wechatAPI, "wechat-api", "WXLOGIN_WECHAT_API", "https://api.weixin.qq.com", "WeChat API base URL (a fake's or a proxy's in tests)")
	e.duration(&cfg.wechatTimeout, "wechat-timeout", "WXLOGIN_WECHAT_TIMEOUT", 5*time.Second, "timeout of one call to WeChat")
	e.duration(&cfg.loginTimeout, "login-timeout", "WXLOGIN_LOGIN_TIMEOUT", 10*time.Second, "a login, or any request that calls WeChat, answers within this, retries included")
	var appsPath string
	e.string(&appsPath, "apps", "WXLOGIN_APPS", "", `JSON file of the mini programs to serve, {"apps": [{"appid", "name", "secret_env"}]}; without it, WX_APPID and WX_APPSECRET name one`)
	e.bool(&mock, "mock", "WXLOGIN_MOCK", "serve the built-in fake WeChat under /mock/ and log in against it (default: on when no AppSecret is configured)")
	e.string(&cfg.adminAddr, "admin-addr", "WXLOGIN_ADMIN_ADDR", "", "serve net/http/pprof here, never on -addr (e.g. 127.0.0.1:6060; default: off)")
	e.int(&cfg.loginRate, "login-rate", "WXLOGIN_LOGIN_RATE", 300, "logins a minute per client address, refilled steadily; over it, 429 with status 7 and Retry-After (0: no limit)")
	e.int(&cfg.loginBurst, "login-burst", "WXLOGIN_LOGIN_BURST", 100, "logins one client address may make at once, before -login-rate applies")
	e.int(&cfg.maxConns, "max-conns", "WXLOGIN_MAX_CONNS", 0, "client connections served at once; past it, one that carries no request is closed to make room, or a new one waits (default 0: the open-file limit, less what wxlogin needs for itself)")
	var proxies string
	e.string(&proxies, "trusted-proxies", "WXLOGIN_TRUSTED_PROXIES", "", "comma-separated CIDRs of the reverse proxies in front of wxlogin, whose X-Forwarded-For is believed (default: none; the peer's address is the client's)")
	var fakeOnly optionalBool
	e.bool(&fakeOnly, "fake-only", "WXLOGIN_FAKE_ONLY", "serve only the fake WeChat, with WeChat's API paths at the root, for load tests and other backends' tests; needs WX_APPSECRET (or -apps), which it checks like WeChat")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	cfg.fakeOnly = fakeOnly.value
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (settings are flags; see -h)", fs.Arg(0))
	}
	if err := errors.Join(e.errs...); err != nil {
		return cfg, err
	}
	wechatAPISet := e.set("wechat-api", "WXLOGIN_WECHAT_API")

	for _, d := range []struct {
		value     time.Duration
		flag, env string
	}{
		{cfg.tokenTTL, "token-ttl", "WXLOGIN_TOKEN_TTL"},
		{cfg.tokenMaxAge, "token-max-age", "WXLOGIN_TOKEN_MAX_AGE"},
		{cfg.wechatTimeout, "wechat-timeout", "WXLOGIN_WECHAT_TIMEOUT"},
		{cfg.loginTimeout, "login-timeout", "WXLOGIN_LOGIN_TIMEOUT"},
	} {
		if d.value <= 0 {
			return cfg, fmt.Errorf("-%s / %s: must be positive", d.flag, d.env)
		}
	}
	if cfg.addr == "" {
		return cfg, errors.New("-addr / WXLOGIN_ADDR: must not be empty")
	}
	if cfg.loginRate < 0 {
		return cfg, errors.New("-login-rate / WXLOGIN_LOGIN_RATE: must be 0 (no limit) or more")
	}
	if cfg.loginBurst < 1 {
		return cfg, errors.New("-login-burst / WXLOGIN_LOGIN_BURST: must be at least 1")
	}
	if cfg.maxConns < 0 {
		return cfg, errors.New("-max-conns / WXLOGIN_MAX_CONNS: must be 0 (below the open-file limit) or more")
	}
	var err error
	if cfg.proxies, err = parseTrustedProxies(proxies); err != nil {
		return cfg, fmt.Errorf("-trusted-proxies / WXLOGIN_TRUSTED_PROXIES: %w", err)
	}
	if cfg.dataDir == "" {
		return cfg, errors.New("-data / WXLOGIN_DATA: must not be empty")
	}
	if u, err := url.Parse(cfg.wechatAPI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("-wechat-api / WXLOGIN_WECHAT_API: %q is not an http(s) URL", cfg.wechatAPI)
	}

	if appsPath == "" {
		cfg.apps, err = shortcutApp(getenv)
	} else {
		cfg.apps, err = loadApps(appsPath, getenv)
	}
	if err != nil {
		return cfg, err
	}
	anySecret := slices.ContainsFunc(cfg.apps, func(a appConfig) bool { return a.secret != "" })
	switch {
	case cfg.fakeOnly && (mock.set || wechatAPISet):
		return cfg, errors.New("-fake-only serves only the fake WeChat: -mock and -wechat-api / WXLOGIN_WECHAT_API do not apply")
	case cfg.fakeOnly && !anySecret:
		// The fake must know the secret the server under test sends: a random
		// one, as in mock mode, would refuse every caller.
		return cfg, errors.New("-fake-only needs the AppSecret the server under test will send: set WX_APPSECRET (and WX_APPID, else " + mockAppID + "), or -apps")
	case cfg.fakeOnly:
	case mock.set:
		cfg.mock = mock.value
	default:
		cfg.mock = !anySecret
	}
	if cfg.mock && wechatAPISet {
		return cfg, errors.New("-wechat-api / WXLOGIN_WECHAT_API is set, but wxlogin is in mock mode and would call its built-in fake: give an AppSecret (WX_APPSECRET) to use that API, or unset it")
	}
	for i := range cfg.apps {
		a := &cfg.apps[i]
		if (cfg.mock || cfg.fakeOnly) && a.AppID == "" {
			a.AppID = mockAppID
		}
		if cfg.mock && a.secret == "" {
			a.secret = randomText(16, hex.EncodeToString) // The fake checks it like WeChat would.
		}
		switch {
		case a.secret == "" && appsPath == "":
			return cfg, errors.New("-mock=false needs an AppSecret: set WX_APPSECRET or WX_APPSECRET_FILE")
		case a.secret == "":
			return cfg, fmt.Errorf("app %s: the environment variable %s (its secret_env) is not set", a.AppID, a.SecretEnv)
		case a.AppID == "":
			return cfg, errors.New("WX_APPID must be set with the AppSecret")
		}
		if a.Name == "" {
			a.Name = a.AppID
		}
	}
	return cfg, nil
}

// shortcutApp is the one app of WX_APPID and WX_APPSECRET (or
// WX_APPSECRET_FILE), either of which may be empty in mock mode.
func shortcutApp(getenv func(string) string) ([]appConfig, error) {
	secret, err := readSecret(getenv)
	if err != nil {
		return nil, err
	}
	appID := getenv("WX_APPID")
	return []appConfig{{AppID: appID, SecretEnv: "WX_APPSECRET", secret: secret}}, nil
}

// loadApps reads the apps file at path and each app's AppSecret from the
// environment variable it names.
func loadApps(path string, getenv func(string) string) ([]appConfig, error) {
	if getenv("WX_APPID") != "" || getenv("WX_APPSECRET") != "" || getenv("WX_APPSECRET_FILE") != "" {
		return nil, errors.New("-apps / WXLOGIN_APPS: set an apps file or WX_APPID and WX_APPSECRET, not both")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-apps / WXLOGIN_APPS: %w", err)
	}
	var f struct {
		Apps []appConfig `json:"apps"`
	}
	if err := decodeStrict(data, &f); err != nil {
		if strings.Contains(err.Error(), `unknown field "secret"`) {
			return nil, fmt.Errorf("%s: an app has a secret; the apps file holds none: give in secret_env the name of the environment variable that holds it", path)
		}
		return nil, fmt.Errorf("%s:%d: not an apps file: %w", path, jsonErrorLine(data, err), err)
	}
	if len(f.Apps) == 0 {
		return nil, fmt.Errorf(`%s: lists no apps; want {"apps": [{"appid": "wx…", "name": "Shop", "secret_env": "SHOP_SECRET"}]}`, path)
	}
	seen := map[string]bool{}
	for i := range f.Apps {
		a := &f.Apps[i]
		switch {
		case a.AppID == "" || len(a.AppID) > 64 || !isPrintableASCII(a.AppID):
			return nil, fmt.Errorf("%s: app %d: appid %q is not an AppID", path, i+1, a.AppID)
		case seen[a.AppID]:
			return nil, fmt.Errorf("%s: app %s is listed twice", path, a.AppID)
		case a.Name == "" || checkName("name", a.Name) != nil:
			return nil, fmt.Errorf("%s: app %s: name must be 1 to %d characters", path, a.AppID, maxNameRunes)
		case !isEnvName(a.SecretEnv):
			return nil, fmt.Errorf("%s: app %s: secret_env %q is not an environment variable name like SHOP_SECRET", path, a.AppID, a.SecretEnv)
		}
		seen[a.AppID] = true
		a.secret = getenv(a.SecretEnv)
	}
	return f.Apps, nil
}

// jsonErrorLine turns the offset in a JSON syntax or type error into a
// 1-based line number of data, for error messages a person can act on.
func jsonErrorLine(data []byte, err error) int {
	var offset int64
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	default:
		return 1
	}
	offset = min(max(offset, 0), int64(len(data)))
	return 1 + bytes.Count(data[:offset], []byte("\n"))
}

// isEnvName reports whether s is an environment variable name: upper-case
// letters, digits and underscores, not starting with a digit.
func isEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return s != ""
}

// readSecret reads the AppSecret from WX_APPSECRET, or from the file named by
// WX_APPSECRET_FILE, which must not be readable by group or others.
func readSecret(getenv func(string) string) (string, error) {
	secret, path := getenv("WX_APPSECRET"), getenv("WX_APPSECRET_FILE")
	switch {
	case secret != "" && path != "":
		return "", errors.New("set WX_APPSECRET or WX_APPSECRET_FILE, not both")
	case path == "":
		return secret, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("WX_APPSECRET_FILE: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("WX_APPSECRET_FILE: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("WX_APPSECRET_FILE: %s has mode %04o; it holds a secret, so make it 0600", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("WX_APPSECRET_FILE: %w", err)
	}
	secret = strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("WX_APPSECRET_FILE: %s is empty", path)
	}
	return secret, nil
}
