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
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"wxlogin/internal/accesslog"
	"wxlogin/internal/clock"
	"wxlogin/internal/config"
	"wxlogin/internal/conform"
	"wxlogin/internal/datadir"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/jwt"
	"wxlogin/internal/limits"
	"wxlogin/internal/metrics"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redact"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/tokenfile"
	"wxlogin/internal/tools"
	"wxlogin/internal/users"
	"wxlogin/internal/webhook"
)

func main() {
	ctx := context.Background()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "wxlogin: %v\n", err)
		os.Exit(1)
	}
}

// run is wxlogin: it serves until ctx ends or SIGINT/SIGTERM arrives, then
// shuts down gracefully, saving live tokens for the next start.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 1 && tools.IsTool(args[1]) {
		return tools.Run(ctx, args[1:], getenv, stdout, stderr) // wxlogin check, backup, … (internal/tools)
	}
	if len(args) > 1 && args[1] == "conform" {
		return conform.Run(ctx, args[1:], getenv, stdout, stderr, startSelf) // a verdict on a login backend (internal/conform)
	}

	cfg, err := config.Load(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.ShowVersion {
		_, err := fmt.Fprintln(stdout, metrics.ReadBuildInfo())
		return err
	}
	logOut := accesslog.NewWriter(stderr)
	defer logOut.Close()
	log := accesslog.NewLogger(logOut, cfg.LogFormat, cfg.LogLevel)
	m := metrics.New(metrics.ReadBuildInfo())
	if cfg.FakeOnly {
		return runFakeOnly(ctx, cfg, m, log)
	}
	if cfg.Redis != nil {
		return runOnRedis(ctx, cfg, m, log)
	}

	// One wxlogin owns the data directory before anything in it is read.
	dataDir, err := datadir.Open(cfg.DataDir, log, tokenfile.Name, jwt.FileName)
	if err != nil {
		return err
	}
	defer dataDir.Release()
	// Replaying the store keeps almost everything it allocates (records are
	// read without garbage; only records a later line replaces become
	// garbage, and compaction keeps the journals smaller than the snapshot),
	// so collecting during it is wasted work (BENCHMARKS.md, start-up). A
	// GOMEMLIMIT set by the operator still applies. (The setting is the
	// process's: only tests run two servers in one.)
	gcPercent := debug.SetGCPercent(-1)
	userStore, err := users.Open(cfg.DataDir, cfg.StoreMeta(), time.Now, log, m.Fsynced)
	debug.SetGCPercent(gcPercent)
	if err != nil {
		return err
	}
	// The token store exists before the admin listener, which counts its
	// tokens; they are loaded into it only once listening has worked.
	clocks := clock.System()
	tokens := newTokenStore(cfg.TokenTTL, cfg.TokenMaxAge, clocks)
	m.Users = userStore.Count
	m.LiveTokens = func() int { return int(tokens.liveAtSweep.Load()) }
	var eventsOf eventLog // GET /events, with -events
	if cfg.Events.On {
		userStore.RecordEvents(cfg.Events.Webhook != "")
		eventsOf = fileUsers{userStore}
	} else {
		userStore.RecordNoEvents()
	}
	stopAdmin, err := startAdmin(ctx, cfg.AdminAddr, userStore, eventsOf, m, log)
	if err != nil {
		return errors.Join(err, userStore.Close())
	}
	defer stopAdmin()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return errors.Join(err, userStore.Close())
	}
	// Tokens are loaded only once listening has worked: loading deletes the
	// saved file, and a start that fails must not log everyone out.
	tokenPath := filepath.Join(cfg.DataDir, tokenfile.Name)
	reloaded, err := tokens.load(tokenPath, userStore.Identity)
	if errors.Is(err, errTokenFileDropped) {
		log.Warn("tokens not reloaded", "err", err)
		err = nil
	}
	if err != nil {
		return errors.Join(err, ln.Close(), userStore.Close())
	}
	if reloaded > 0 {
		// Reading the token file leaves garbage the size of the tokens; it is
		// given back before serving, so that memory reflects the live state.
		debug.FreeOSMemory()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		tokens.runSweeper(ctx, min(time.Minute, cfg.TokenTTL))
	}()
	err = serve(ctx, cfg, ln, fileUsers{userStore}, memoryTokens{tokens, userStore}, shared{}, clocks, m, log,
		"data", cfg.DataDir, "users", userStore.Count(), "tokens_reloaded", reloaded)
	cancel()
	<-sweeperDone
	saved, saveErr := tokens.save(tokenPath)
	err = errors.Join(err, saveErr, userStore.Close())
	log.Info("stopped", "tokens_saved", saved)
	return err
}

// runOnRedis is wxlogin with -redis: users and tokens live in Redis
// (internal/redisstore), shared by every wxlogin on it, and no data
// directory is used. A token outlives a restart there without being saved.
func runOnRedis(ctx context.Context, cfg config.Config, m *metrics.Metrics, log *slog.Logger) error {
	rc := redis.NewClient(*cfg.Redis)
	defer rc.Close()
	// The start-up's checks of Redis take four calls' bound at most, all told.
	opening, cancel := context.WithTimeout(ctx, 4*cfg.Redis.Timeout)
	store, err := redisstore.Open(opening, rc, redisstore.Options{Durability: cfg.RedisDurability, Meta: cfg.StoreMeta(),
		TokenTTL: cfg.TokenTTL, TokenMaxAge: cfg.TokenMaxAge, PreviousKeyWindow: opendata.PreviousKeyWindow, Now: time.Now, Log: log,
		Events: cfg.Events.On})
	cancel()
	if err != nil {
		return err
	}
	if cfg.RedisDurability == redisstore.Fsync {
		// Checked at the start, and again each second while serving: a
		// Redis weakened since refuses writes until it is restored.
		ctx, cancel := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			store.WatchDurability(ctx)
		}()
		defer func() { cancel(); <-watched }()
	}
	// Erasures cut short after they were made (Redis lost a moment, an
	// instance killed) are finished in the background, by any instance.
	erasing, stopErasing := context.WithCancel(ctx)
	erasuresDone := make(chan struct{})
	go func() {
		defer close(erasuresDone)
		store.RunErasures(erasing)
	}()
	defer func() { stopErasing(); <-erasuresDone }()
	var eventsOf eventLog // GET /events, with -events
	if cfg.Events.On {
		eventsOf = store
		// Each change's events go into the log in the background, off the
		// request's path; the relay also moves those an instance killed
		// left in their outboxes. It stops once serving has, the last
		// request's events moved.
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		relaying := make(chan struct{})
		go func() {
			defer close(relaying)
			store.RunRelay(ctx)
		}()
		defer func() { cancel(); <-relaying }()
	}
	stopAdmin, err := startAdmin(ctx, cfg.AdminAddr, nil, eventsOf, m, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	sharing := shared{
		jwtKeys:    redisstore.NewJWTKeys(rc),
		tokens:     redisstore.NewAccessTokens(rc, time.Now, 50*time.Millisecond),
		exchanges:  redisExchanges{redisstore.NewExchanges(rc, 20*time.Millisecond, cfg.LoginTimeout+5*time.Second)},
		redisBound: cfg.Redis.Timeout,
	}
	if l := redisstore.NewLoginLimiter(rc, cfg.LoginRate, cfg.LoginBurst, time.Now); l != nil {
		sharing.limit = l
	}
	err = serve(ctx, cfg, ln, store, store, sharing, clock.System(), m, log,
		"redis", strings.Join(cfg.Redis.Addrs, ","), "redis_cluster", cfg.Redis.Cluster, "redis_durability", cfg.RedisDurability)
	log.Info("stopped")
	return err
}

// redisExchanges is the Redis store's shared code exchanges as the WeChat
// client's sharedExchanges: an answer crosses as the store's Session, and
// WeChat's refusal by its errcode, which comes back to the instances that
// waited for it as a *redisstore.Refused and leaves here as the
// wechatError it was, but for its errmsg.
type redisExchanges struct{ *redisstore.Exchanges }

func (r redisExchanges) Exchange(ctx context.Context, appID, code string, exchange func(ctx context.Context) (code2SessionResult, error)) (code2SessionResult, error) {
	s, err := r.Exchanges.Exchange(ctx, appID, code, func(ctx context.Context) (redisstore.Session, error) {
		s, err := exchange(ctx)
		return redisstore.Session(s), err
	})
	var elsewhere *redisstore.Refused
	if errors.As(err, &elsewhere) {
		err = &wechatError{API: "jscode2session", Code: elsewhere.Code, Msg: "(answered to another instance)"}
	}
	return code2SessionResult(s), err
}

// shared is what instances on one Redis share besides the stores: the
// WeChat clients' access_tokens and code exchanges, the login limit and
// -jwt's signing keys; nothing for one instance, whose own are used.
type shared struct {
	jwtKeys   jwt.Store
	tokens    sharedAccessTokens
	exchanges sharedExchanges
	limit     loginLimit
	// redisBound is the time a request may wait for Redis in all its
	// calls (redis.WithBudgets); 0 for none.
	redisBound time.Duration
}

// serve builds the mini programs' WeChat clients and the handler on the
// stores, and serves on ln until ctx ends. where says which stores, for
// the log line that says wxlogin is listening.
func serve(ctx context.Context, cfg config.Config, ln net.Listener, users userBackend, tokens tokenBackend, with shared, clock clock.Clock, m *metrics.Metrics, log *slog.Logger, where ...any) error {
	baseURL := "http://" + dialableAddr(ln.Addr())
	wechatAPI := cfg.WechatAPI
	var fake *fakewechat.Fake
	if cfg.Mock {
		fake = fakeFor(cfg.Apps, cfg.Fixtures)
		// The clients reach the fake over HTTP, through the real code path.
		wechatAPI = baseURL + fakewechat.APIPrefix
	}
	apps := appSet{}
	for _, a := range cfg.Apps {
		wx := newWechatClient(wechatAPI, a.AppID, a.Secret, cfg.WechatTimeout, cfg.LoginTimeout)
		wx.sharedTokens, wx.sharedExchanges, wx.metrics = with.tokens, with.exchanges, m
		apps[a.AppID] = &miniApp{ID: a.AppID, Name: a.Name, wx: wx, checkContent: cfg.ContentCheck}
	}
	limit := with.limit
	if limit == nil {
		if l := limits.NewLoginLimiter(cfg.LoginRate, cfg.LoginBurst, clock); l != nil {
			limit = l
		}
	}
	var signer *jwt.Issuer
	if cfg.JWT.On {
		keys := with.jwtKeys
		if keys == nil {
			keys = jwt.NewFile(filepath.Join(cfg.DataDir, jwt.FileName))
		}
		issuer := cmp.Or(cfg.JWT.Issuer, baseURL) // the listening URL in mock mode only (config.Load)
		var stop func()
		var err error
		if signer, stop, err = startJWT(ctx, cfg.JWT, issuer, keys, clock, log); err != nil {
			return errors.Join(err, ln.Close())
		}
		defer stop()
		where = append(where, "jwt_issuer", issuer)
	}
	if cfg.Events.Webhook != "" {
		source, ok := users.(webhook.Source)
		if !ok {
			return errors.Join(errors.New("-webhook: this store records no events"), ln.Close())
		}
		defer startWebhook(ctx, cfg.Events, source, m, log)()
		where = append(where, "webhook", redact.URL(cfg.Events.Webhook))
	}
	handler := newServer(log, m, apps, users, tokens, signer, limit, cfg.Proxies, fake)
	if with.redisBound > 0 {
		handler = redis.WithBudgets(with.redisBound, handler)
	}
	srv := newHTTPServer(handler, cfg.LoginTimeout, log)
	if cfg.Mock {
		log.Warn("MOCK MODE: logins go to the built-in fake WeChat, not to WeChat; get a code from POST /mock/wx.login",
			"appids", strings.Join(config.AppIDs(cfg.Apps), ","), "teaching_page", baseURL+"/")
	}
	maxConns := cfg.ConnCap()
	log.Info("wxlogin listening", append([]any{"url", baseURL, "addr", ln.Addr().String(), "max_conns", maxConns,
		"wechat_api", redact.URL(wechatAPI)}, where...)...)
	return serveUntilDone(ctx, srv, limits.Conns(srv, ln, maxConns), cfg.LoginTimeout+5*time.Second, log)
}

// startWebhook posts each event of source to -webhook (internal/webhook)
// until stop is called; what is not delivered by then is at the next
// start.
func startWebhook(ctx context.Context, cfg config.Events, source webhook.Source, m *metrics.Metrics, log *slog.Logger) (stop func()) {
	sender := &webhook.Sender{URL: cfg.Webhook, Secret: cfg.Secret, Timeout: 10 * time.Second, Log: log, Metrics: m,
		Poll: time.Second, MaxBackoff: 30 * time.Second, Linger: 50 * time.Millisecond, Batch: 100}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sender.Run(ctx, source)
	}()
	return func() { cancel(); <-done }
}

// startJWT is -jwt's issuer of access tokens, signing with keys (the data
// directory's file, or Redis), and its refresh of the keys, running until
// stop is called.
func startJWT(ctx context.Context, cfg config.JWT, issuer string, keys jwt.Store, clock clock.Clock, log *slog.Logger) (signer *jwt.Issuer, stop func(), err error) {
	signer, err = jwt.New(ctx, keys, jwt.Options{Issuer: issuer, Audience: cfg.Audience, TTL: cfg.TTL, Rotate: cfg.Rotate, OpenID: cfg.OpenID, Now: clock.Now})
	if err != nil {
		return nil, nil, fmt.Errorf("-jwt: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		signer.Run(ctx, log)
	}()
	return signer, func() { cancel(); <-refreshed }, nil
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
func runFakeOnly(ctx context.Context, cfg config.Config, m *metrics.Metrics, log *slog.Logger) error {
	stopAdmin, err := startAdmin(ctx, cfg.AdminAddr, nil, nil, m, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	fake := fakeFor(cfg.Apps, cfg.Fixtures)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := newHTTPServer(withAccessLog(log, cfg.Proxies, m, fake.Standalone()), cfg.LoginTimeout, log)
	baseURL := "http://" + dialableAddr(ln.Addr())
	log.Info("wxlogin listening", "url", baseURL, "addr", ln.Addr().String(), "fake_only", true,
		"appids", strings.Join(config.AppIDs(cfg.Apps), ","))
	return serveUntilDone(ctx, srv, limits.Conns(srv, ln, cfg.ConnCap()), fakeOnlyGrace, log)
}

// fakeOnlyGrace is how long -fake-only's stop waits for calls in flight.
// Past Go's own five seconds: http.Server.Shutdown waits that long for a
// connection that has sent no request yet (a client's HTTP transport dials
// one beside each busy one and may never use it), so with five seconds
// exactly a stop raced those connections and could end in an error.
const fakeOnlyGrace = 10 * time.Second

// fakeFor is a fake WeChat that knows the configured apps and their secrets.
func fakeFor(apps []config.App, fixtures fakewechat.Fixtures) *fakewechat.Fake {
	fakeApps := map[string]fakewechat.App{}
	for _, a := range apps {
		fakeApps[a.AppID] = fakewechat.App{Name: a.Name, Secret: a.Secret, Unbound: a.Unbound}
	}
	return fakewechat.New(fakeApps, fixtures, time.Now)
}

// startAdmin serves the profiler, a backup of users (nil for the fake
// alone) and, with -events, GET /events (eventsOf, else nil), on an
// address of their own, so that none is exposed where clients connect;
// with no address, nothing. It returns a function that stops it and waits
// until it has. (Importing net/http/pprof also registers it on
// http.DefaultServeMux, which wxlogin never serves.)
func startAdmin(ctx context.Context, addr string, userStore *users.Store, eventsOf eventLog, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
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
	mux.Handle("GET /metrics", m.Handler())
	if userStore != nil {
		mux.Handle("GET /backup", tools.BackupHandler(userStore, log))
	}
	if eventsOf != nil {
		mux.Handle("GET /events", handleEvents(eventsOf))
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

// startSelf is the wxlogin `conform -self` judges: this binary's own run,
// with the profile's apps on a temporary data directory, pointed at the
// fake WeChat conform serves, on a port of its own choosing. It returns
// once the server has said where it listens, and its stop returns what
// run returned.
func startSelf(ctx context.Context, p *conform.Profile, fakeURL string, getenv func(string) string) (string, func() error, error) {
	dir, err := os.MkdirTemp("", "wxlogin-conform-")
	if err != nil {
		return "", nil, err
	}
	var apps []config.App
	for _, a := range p.Apps {
		apps = append(apps, config.App{AppID: a.AppID, Name: "conform", SecretEnv: a.SecretEnv, Unbound: a.Unbound})
	}
	appsJSON, _ := json.Marshal(map[string]any{"apps": apps})
	appsPath := filepath.Join(dir, "apps.json")
	if err := os.WriteFile(appsPath, appsJSON, 0o600); err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(dir))
	}

	ctx, cancel := context.WithCancel(ctx)
	listening := &listenWatcher{url: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"wxlogin", "-addr", "127.0.0.1:0", "-data", filepath.Join(dir, "data"), "-apps", appsPath,
			"-mock=false", "-wechat-api", fakeURL, "-wechat-timeout", "1s", "-login-timeout", "3s",
			"-login-rate", "0", "-log-format", "json"}, getenv, io.Discard, listening)
	}()
	stop := func() error {
		cancel()
		return errors.Join(<-done, os.RemoveAll(dir))
	}
	select {
	case url := <-listening.url:
		return url, stop, nil
	case err := <-done:
		done <- err
		return "", nil, errors.Join(fmt.Errorf("wxlogin stopped: %w", err), stop())
	case <-time.After(30 * time.Second):
		return "", nil, errors.Join(errors.New("wxlogin did not start listening within 30s"), stop())
	}
}

// listenWatcher reads wxlogin's JSON log for the line that says where it
// listens, sends that URL once, and then drops the log. run writes the log
// from one goroutine.
type listenWatcher struct {
	url     chan string
	partial []byte // the start of a line whose end has not come yet
	sent    bool
}

func (w *listenWatcher) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		line, rest, whole := bytes.Cut(w.partial, []byte("\n"))
		if !whole {
			return len(p), nil
		}
		w.partial = rest
		var entry struct{ Msg, URL string }
		if json.Unmarshal(line, &entry) == nil && entry.Msg == "wxlogin listening" && entry.URL != "" {
			w.sent, w.partial = true, nil
			w.url <- entry.URL
			return len(p), nil
		}
	}
}
