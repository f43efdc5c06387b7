// Package config is wxlogin's configuration: one struct, filled by Load
// from flags, each with an environment variable as its fall-back (the flag
// wins), the apps file, and the AppSecret, which comes only from the
// environment or a file, never a flag.
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/jwt"
	"wxlogin/internal/limits"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/request"
	"wxlogin/internal/strictjson"
	"wxlogin/internal/webhook"
)

// MockAppID is the AppID of the fake WeChat's app when WX_APPID is not set.
const MockAppID = "wxfa4e000000000000"

// Config is everything run needs to know, from flags and the environment.
type Config struct {
	Addr          string
	DataDir       string
	TokenTTL      time.Duration
	TokenMaxAge   time.Duration
	WechatAPI     string
	WechatTimeout time.Duration
	LoginTimeout  time.Duration
	Mock          bool
	FakeOnly      bool   // serve only the fake WeChat, for other servers' tests
	AdminAddr     string // where to serve pprof, /metrics and /backup; "" for nowhere
	LoginRate     int    // logins a minute per client address; 0 for no limit
	LoginBurst    int    // logins at once per client address
	MaxConns      int    // connections served at once; 0 for a cap under the open-file limit
	ContentCheck  bool   // check a changed nickname with msgSecCheck
	Proxies       limits.TrustedProxies
	Apps          []App
	// Redis, when set, is where users and tokens live, in place of the
	// data directory (internal/redisstore); RedisDurability is what it
	// must promise of a write (redisstore.Fsync or redisstore.Unchecked).
	Redis           *redis.Config
	RedisDurability string
	Fixtures        fakewechat.Fixtures // the fake's users fixed by name (-fake-fixtures)
	LogFormat       string              // "text" (logfmt) or "json"
	LogLevel        slog.Level          // the least level logged
	ShowVersion     bool                // -version: print the build and exit
	JWT             JWT                 // -jwt: signed access tokens for other services
	Events          Events              // -events, -webhook: what other services hear of users
}

// Events is -events and -webhook (internal/events, internal/webhook):
// each change other services follow is recorded with the change and
// listed by GET /events on -admin-addr; with a webhook, each is posted to
// it too, signed as Standard Webhooks has it.
type Events struct {
	On      bool           // record events; a webhook implies it
	Webhook string         // the URL events are posted to; "" for none
	Secret  webhook.Secret // from WXLOGIN_WEBHOOK_SECRET(_FILE), never a flag
}

// JWT is -jwt and what its tokens say (internal/jwt): with it, a login
// and POST /token also answer with a short-lived ES256 JWT that other
// services verify offline against GET /.well-known/jwks.json.
type JWT struct {
	On bool
	// Issuer is iss, the public URL wxlogin is reached at; "" (mock mode
	// only) for the URL it listens on.
	Issuer   string
	Audience string        // aud: the services the tokens are for
	TTL      time.Duration // how long a token lives
	Rotate   time.Duration // how long a signing key signs
	OpenID   bool          // whether a token carries the openid
}

// App is one mini program wxlogin serves, as the apps file lists it.
// The file names the environment variable holding each AppSecret; it never
// holds a secret itself.
type App struct {
	AppID     string `json:"appid"`
	Name      string `json:"name"`
	SecretEnv string `json:"secret_env"`
	// Unbound tells the fake WeChat, in mock mode, that the app is not bound
	// to an Open Platform account, so its users get no unionid. Against
	// WeChat it means nothing: WeChat knows.
	Unbound bool `json:"unbound"`

	// Secret is the AppSecret, read from the environment variable the
	// file names; never from the file itself (json:"-": a "secret" member
	// there is refused as unknown).
	Secret string `json:"-"`
}

// ConnCap is how many client connections to serve at once.
func (cfg Config) ConnCap() int {
	if cfg.MaxConns > 0 {
		return cfg.MaxConns
	}
	return limits.DefaultMaxConns(len(cfg.Apps))
}

// StoreMeta is what the stores record of the configuration.
func (cfg Config) StoreMeta() account.Meta {
	m := account.Meta{Mode: account.ModeReal}
	if cfg.Mock {
		m.Mode = account.ModeMock
	}
	for _, a := range cfg.Apps {
		m.AppIDs = append(m.AppIDs, a.AppID)
	}
	slices.Sort(m.AppIDs)
	return m
}

// Load reads flags from args and falls back to the environment for
// each; a flag wins over its variable. The AppSecret is read only from the
// environment or a file it names, never from a flag: flags show in ps.
func Load(args []string, getenv func(string) string, usageOut io.Writer) (Config, error) {
	fs := flag.NewFlagSet("wxlogin", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	e := NewFlags(fs, getenv)
	var cfg Config
	var mock OptionalBool
	e.String(&cfg.Addr, "addr", "WXLOGIN_ADDR", "127.0.0.1:8080", "listen address")
	e.String(&cfg.DataDir, "data", "WXLOGIN_DATA", "./data", "data directory (users, saved tokens)")
	e.Duration(&cfg.TokenTTL, "token-ttl", "WXLOGIN_TOKEN_TTL", 2*time.Hour, "a token expires this long after its last use")
	e.Duration(&cfg.TokenMaxAge, "token-max-age", "WXLOGIN_TOKEN_MAX_AGE", 720*time.Hour, "a token expires this long after it was issued, however much it is used")
	e.String(&cfg.WechatAPI, "wechat-api", "WXLOGIN_WECHAT_API", "https://api.weixin.qq.com", "WeChat API base URL (a fake's or a proxy's in tests)")
	e.Duration(&cfg.WechatTimeout, "wechat-timeout", "WXLOGIN_WECHAT_TIMEOUT", 5*time.Second, "timeout of one call to WeChat")
	e.Duration(&cfg.LoginTimeout, "login-timeout", "WXLOGIN_LOGIN_TIMEOUT", 10*time.Second, "a login, or any request that calls WeChat, answers within this, retries included")
	var appsPath string
	e.String(&appsPath, "apps", "WXLOGIN_APPS", "", `JSON file of the mini programs to serve, {"apps": [{"appid", "name", "secret_env"}]}; without it, WX_APPID and WX_APPSECRET name one`)
	e.Bool(&mock, "mock", "WXLOGIN_MOCK", "serve the built-in fake WeChat under /mock/ and log in against it (default: on when no AppSecret is configured)")
	e.String(&cfg.AdminAddr, "admin-addr", "WXLOGIN_ADMIN_ADDR", "", "serve net/http/pprof, GET /metrics (Prometheus) and GET /backup here, never on -addr (e.g. 127.0.0.1:6060; default: off)")
	e.Int(&cfg.LoginRate, "login-rate", "WXLOGIN_LOGIN_RATE", 300, "logins a minute per client address, refilled steadily; over it, 429 with status 7 and Retry-After (0: no limit)")
	e.Int(&cfg.LoginBurst, "login-burst", "WXLOGIN_LOGIN_BURST", 100, "logins one client address may make at once, before -login-rate applies")
	e.Int(&cfg.MaxConns, "max-conns", "WXLOGIN_MAX_CONNS", 0, "client connections served at once; past it, one that carries no request is closed to make room, from the client address holding the most, or a new one waits (default 0: the open-file limit, less what wxlogin needs for itself)")
	var proxies string
	e.String(&proxies, "trusted-proxies", "WXLOGIN_TRUSTED_PROXIES", "", "comma-separated CIDRs of the reverse proxies in front of wxlogin, whose X-Forwarded-For is believed (default: none; the peer's address is the client's)")
	contentCheck := OptionalBool{Value: true}
	e.Bool(&contentCheck, "content-check", "WXLOGIN_CONTENT_CHECK", "check a nickname set by PATCH /user with WeChat's msgSecCheck and refuse a risky one (status 9); when WeChat cannot check it, refuse the change (status 3) (default: on; -content-check=false to turn off)")
	var redisURL string
	e.String(&redisURL, "redis", "WXLOGIN_REDIS", "", "keep users and tokens in Redis, shared by every wxlogin on it, instead of -data: redis://[user@]host:port[/db][?cluster=true&addr=host:port&pool=8&timeout=2s], or rediss:// for TLS; a password only through WXLOGIN_REDIS or WXLOGIN_REDIS_PASSWORD_FILE, never this flag (default: off)")
	e.String(&cfg.RedisDurability, "redis-durability", "WXLOGIN_REDIS_DURABILITY", redisstore.Fsync, "with -redis: fsync refuses to start unless every Redis master appends each write to its AOF and fsyncs it before answering (appendonly yes, appendfsync always); unchecked takes Redis as it is, for a managed Redis that hides CONFIG or a weaker setup (docs/redis.md)")
	e.String(&cfg.LogFormat, "log-format", "WXLOGIN_LOG_FORMAT", "text", "text (key=value, logfmt) or json (one JSON object a line), on stderr")
	var logLevel string
	e.String(&logLevel, "log-level", "WXLOGIN_LOG_LEVEL", "info", "the least level logged: debug, info, warn or error (info includes a line per request)")
	fs.BoolVar(&cfg.ShowVersion, "version", false, "print the module version and VCS revision this binary was built from, and exit")
	var fixturesPath string
	e.String(&fixturesPath, "fake-fixtures", "WXLOGIN_FAKE_FIXTURES", "", "a JSON file of the fake WeChat's users, fixed by name: openids, unionid, nickname, avatar, phone; and which apps are unbound (docs/fake.md); in mock mode or with -fake-only")
	var fakeOnly OptionalBool
	e.Bool(&fakeOnly, "fake-only", "WXLOGIN_FAKE_ONLY", "serve only the fake WeChat, with WeChat's API paths at the root, for load tests and other backends' tests; needs WX_APPSECRET (or -apps), which it checks like WeChat")
	var jwtOn, jwtOpenID OptionalBool
	e.Bool(&jwtOn, "jwt", "WXLOGIN_JWT", "also answer a login and POST /token with a short-lived ES256 JWT (jwt, jwt_expires_in) that other services verify offline with GET /.well-known/jwks.json; its keys live in -data or in -redis (docs/jwt.md) (default: off)")
	e.String(&cfg.JWT.Issuer, "jwt-issuer", "WXLOGIN_JWT_ISSUER", "", "with -jwt: the tokens' iss, the public URL other services reach wxlogin at, e.g. https://login.example.com (needed outside mock mode; there it defaults to the listening URL)")
	e.String(&cfg.JWT.Audience, "jwt-audience", "WXLOGIN_JWT_AUDIENCE", "wxlogin", "with -jwt: the tokens' aud, which the services that verify them check")
	e.Duration(&cfg.JWT.TTL, "jwt-ttl", "WXLOGIN_JWT_TTL", 10*time.Minute, "with -jwt: a JWT expires this long after it is issued (at most 24h); a logout cannot recall one sooner")
	e.Duration(&cfg.JWT.Rotate, "jwt-rotate", "WXLOGIN_JWT_ROTATE", 24*time.Hour, "with -jwt: a signing key signs this long (at least 1h); the next is published a period ahead, the last until its tokens expire")
	e.Bool(&jwtOpenID, "jwt-openid", "WXLOGIN_JWT_OPENID", "with -jwt: put the user's openid in the JWT, for services that call WeChat for the user (default: off)")
	var eventsOn OptionalBool
	e.Bool(&eventsOn, "events", "WXLOGIN_EVENTS", "record an event with each change other services follow (user created, person joined, phone bound, claim taken, user deleted) and list them with GET /events on -admin-addr (docs/events.md) (default: off)")
	e.String(&cfg.Events.Webhook, "webhook", "WXLOGIN_WEBHOOK", "", "post each event to this URL, signed as Standard Webhooks has it with the whsec_ secret in WXLOGIN_WEBHOOK_SECRET or WXLOGIN_WEBHOOK_SECRET_FILE, until it answers 2xx; implies -events (default: off)")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	if cfg.ShowVersion {
		return cfg, nil // nothing else applies
	}
	cfg.FakeOnly = fakeOnly.Value
	cfg.ContentCheck = contentCheck.Value
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (settings are flags; see -h)", fs.Arg(0))
	}
	if err := errors.Join(e.errs...); err != nil {
		return cfg, err
	}
	wechatAPISet := e.Set("wechat-api", "WXLOGIN_WECHAT_API")

	for _, d := range []struct {
		value     time.Duration
		flag, env string
	}{
		{cfg.TokenTTL, "token-ttl", "WXLOGIN_TOKEN_TTL"},
		{cfg.TokenMaxAge, "token-max-age", "WXLOGIN_TOKEN_MAX_AGE"},
		{cfg.WechatTimeout, "wechat-timeout", "WXLOGIN_WECHAT_TIMEOUT"},
		{cfg.LoginTimeout, "login-timeout", "WXLOGIN_LOGIN_TIMEOUT"},
	} {
		if d.value <= 0 {
			return cfg, fmt.Errorf("-%s / %s: must be positive", d.flag, d.env)
		}
	}
	if cfg.Addr == "" {
		return cfg, errors.New("-addr / WXLOGIN_ADDR: must not be empty")
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("-log-format / WXLOGIN_LOG_FORMAT: %q is not text or json", cfg.LogFormat)
	}
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	level, ok := levels[strings.ToLower(logLevel)]
	if !ok {
		return cfg, fmt.Errorf("-log-level / WXLOGIN_LOG_LEVEL: %q is not debug, info, warn or error", logLevel)
	}
	cfg.LogLevel = level
	if cfg.LoginRate < 0 {
		return cfg, errors.New("-login-rate / WXLOGIN_LOGIN_RATE: must be 0 (no limit) or more")
	}
	if cfg.LoginBurst < 1 {
		return cfg, errors.New("-login-burst / WXLOGIN_LOGIN_BURST: must be at least 1")
	}
	if cfg.MaxConns < 0 {
		return cfg, errors.New("-max-conns / WXLOGIN_MAX_CONNS: must be 0 (below the open-file limit) or more")
	}
	var err error
	if redisURL != "" {
		r, err := ParseRedis(redisURL, e.OnCommandLine("redis"), getenv("WXLOGIN_REDIS_PASSWORD_FILE"))
		if err != nil {
			return cfg, fmt.Errorf("-redis / WXLOGIN_REDIS: %w", err)
		}
		cfg.Redis = &r
	}
	if cfg.RedisDurability != redisstore.Fsync && cfg.RedisDurability != redisstore.Unchecked {
		return cfg, fmt.Errorf("-redis-durability / WXLOGIN_REDIS_DURABILITY: %q is not %s or %s", cfg.RedisDurability, redisstore.Fsync, redisstore.Unchecked)
	}
	if cfg.FakeOnly && cfg.Redis != nil {
		return cfg, errors.New("-fake-only keeps nothing: -redis / WXLOGIN_REDIS does not apply")
	}
	if cfg.Proxies, err = limits.ParseTrustedProxies(proxies); err != nil {
		return cfg, fmt.Errorf("-trusted-proxies / WXLOGIN_TRUSTED_PROXIES: %w", err)
	}
	if cfg.DataDir == "" {
		return cfg, errors.New("-data / WXLOGIN_DATA: must not be empty")
	}
	if u, err := url.Parse(cfg.WechatAPI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("-wechat-api / WXLOGIN_WECHAT_API: %q is not an http(s) URL", cfg.WechatAPI)
	}

	if appsPath == "" {
		cfg.Apps, err = shortcutApp(getenv)
	} else {
		cfg.Apps, err = loadApps(appsPath, getenv)
	}
	if err != nil {
		return cfg, err
	}
	anySecret := slices.ContainsFunc(cfg.Apps, func(a App) bool { return a.Secret != "" })
	switch {
	case cfg.FakeOnly && (mock.Given || wechatAPISet):
		return cfg, errors.New("-fake-only serves only the fake WeChat: -mock and -wechat-api / WXLOGIN_WECHAT_API do not apply")
	case cfg.FakeOnly && !anySecret:
		// The fake must know the secret the server under test sends: a random
		// one, as in mock mode, would refuse every caller.
		return cfg, errors.New("-fake-only needs the AppSecret the server under test will send: set WX_APPSECRET (and WX_APPID, else " + MockAppID + "), or -apps")
	case cfg.FakeOnly:
	case mock.Given:
		cfg.Mock = mock.Value
	default:
		cfg.Mock = !anySecret
	}
	if cfg.Mock && wechatAPISet {
		return cfg, errors.New("-wechat-api / WXLOGIN_WECHAT_API is set, but wxlogin is in mock mode and would call its built-in fake: give an AppSecret (WX_APPSECRET) to use that API, or unset it")
	}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		if (cfg.Mock || cfg.FakeOnly) && a.AppID == "" {
			a.AppID = MockAppID
		}
		if cfg.Mock && a.Secret == "" {
			var b [16]byte
			rand.Read(b[:])                     // Never fails: crypto/rand.Read crashes the program rather than return short.
			a.Secret = hex.EncodeToString(b[:]) // The fake checks it like WeChat would.
		}
		switch {
		case a.Secret == "" && appsPath == "":
			return cfg, errors.New("-mock=false needs an AppSecret: set WX_APPSECRET or WX_APPSECRET_FILE")
		case a.Secret == "":
			return cfg, fmt.Errorf("app %s: the environment variable %s (its secret_env) is not set", a.AppID, a.SecretEnv)
		case a.AppID == "":
			return cfg, errors.New("WX_APPID must be set with the AppSecret")
		}
		if a.Name == "" {
			a.Name = a.AppID
		}
	}
	if err := checkJWT(&cfg, jwtOn.Value, jwtOpenID.Value, e.Set); err != nil {
		return cfg, err
	}
	if err := checkEvents(&cfg, eventsOn.Value, getenv); err != nil {
		return cfg, err
	}
	if fixturesPath != "" {
		if !cfg.Mock && !cfg.FakeOnly {
			return cfg, errors.New("-fake-fixtures / WXLOGIN_FAKE_FIXTURES: only the fake WeChat has fixtures (mock mode or -fake-only)")
		}
		if cfg.Fixtures, err = fakewechat.LoadFixtures(fixturesPath, AppIDs(cfg.Apps)); err != nil {
			return cfg, fmt.Errorf("-fake-fixtures / WXLOGIN_FAKE_FIXTURES: %w", err)
		}
	}
	return cfg, nil
}

// checkJWT completes cfg.JWT with -jwt and -jwt-openid, and checks it;
// given says whether a setting was given. A -jwt-… setting without -jwt is
// refused: it would do nothing, silently.
func checkJWT(cfg *Config, on, openID bool, given func(flag, env string) bool) error {
	j := &cfg.JWT
	j.On, j.OpenID = on, openID
	if !on {
		for _, s := range [][2]string{{"jwt-issuer", "WXLOGIN_JWT_ISSUER"}, {"jwt-audience", "WXLOGIN_JWT_AUDIENCE"},
			{"jwt-ttl", "WXLOGIN_JWT_TTL"}, {"jwt-rotate", "WXLOGIN_JWT_ROTATE"}, {"jwt-openid", "WXLOGIN_JWT_OPENID"}} {
			if given(s[0], s[1]) {
				return fmt.Errorf("-%s / %s applies only with -jwt / WXLOGIN_JWT", s[0], s[1])
			}
		}
		return nil
	}
	switch {
	case cfg.FakeOnly:
		return errors.New("-fake-only signs nothing: -jwt / WXLOGIN_JWT does not apply")
	case j.TTL <= 0 || j.TTL > jwt.MaxTTL:
		return fmt.Errorf("-jwt-ttl / WXLOGIN_JWT_TTL: %v is not between 0 and %v", j.TTL, jwt.MaxTTL)
	case j.Rotate < jwt.MinRotate:
		return fmt.Errorf("-jwt-rotate / WXLOGIN_JWT_ROTATE: %v is shorter than %v", j.Rotate, jwt.MinRotate)
	case j.Audience == "":
		return errors.New("-jwt-audience / WXLOGIN_JWT_AUDIENCE: must not be empty")
	case j.Issuer == "" && !cfg.Mock:
		return errors.New("-jwt-issuer / WXLOGIN_JWT_ISSUER: -jwt needs the public URL other services reach wxlogin at, e.g. https://login.example.com")
	case j.Issuer == "":
		return nil
	}
	// The discovery document is at the issuer plus /.well-known/…
	// (OpenID Connect Discovery §4), and verifiers compare iss exactly.
	u, err := url.Parse(j.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("-jwt-issuer / WXLOGIN_JWT_ISSUER: %q is not an http(s) URL without query or fragment", j.Issuer)
	}
	if strings.HasSuffix(j.Issuer, "/") {
		return fmt.Errorf("-jwt-issuer / WXLOGIN_JWT_ISSUER: %q ends in /: write it without, as verifiers compare it exactly", j.Issuer)
	}
	return nil
}

// AppIDs lists the apps' AppIDs.
func AppIDs(apps []App) []string {
	ids := make([]string, len(apps))
	for i, a := range apps {
		ids[i] = a.AppID
	}
	return ids
}

// shortcutApp is the one app of WX_APPID and WX_APPSECRET (or
// WX_APPSECRET_FILE), either of which may be empty in mock mode.
func shortcutApp(getenv func(string) string) ([]App, error) {
	secret, err := readSecret(getenv)
	if err != nil {
		return nil, err
	}
	appID := getenv("WX_APPID")
	return []App{{AppID: appID, SecretEnv: "WX_APPSECRET", Secret: secret}}, nil
}

// loadApps reads the apps file at path and each app's AppSecret from the
// environment variable it names.
func loadApps(path string, getenv func(string) string) ([]App, error) {
	if getenv("WX_APPID") != "" || getenv("WX_APPSECRET") != "" || getenv("WX_APPSECRET_FILE") != "" {
		return nil, errors.New("-apps / WXLOGIN_APPS: set an apps file or WX_APPID and WX_APPSECRET, not both")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-apps / WXLOGIN_APPS: %w", err)
	}
	var f struct {
		Apps []App `json:"apps"`
	}
	if err := strictjson.Decode(data, &f); err != nil {
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
		case a.AppID == "" || len(a.AppID) > 64 || !request.IsPrintableASCII(a.AppID):
			return nil, fmt.Errorf("%s: app %d: appid %q is not an AppID", path, i+1, a.AppID)
		case seen[a.AppID]:
			return nil, fmt.Errorf("%s: app %s is listed twice", path, a.AppID)
		case a.Name == "" || request.CheckName("name", a.Name) != nil:
			return nil, fmt.Errorf("%s: app %s: name must be 1 to %d characters", path, a.AppID, request.MaxNameRunes)
		case !isEnvName(a.SecretEnv):
			return nil, fmt.Errorf("%s: app %s: secret_env %q is not an environment variable name like SHOP_SECRET", path, a.AppID, a.SecretEnv)
		}
		seen[a.AppID] = true
		a.Secret = getenv(a.SecretEnv)
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

// checkEvents completes cfg.Events with -events and the webhook's secret,
// and checks them. The secret comes only from the environment or a file
// only its owner reads, and only with a webhook to sign for.
func checkEvents(cfg *Config, on bool, getenv func(string) string) error {
	ev := &cfg.Events
	ev.On = on || ev.Webhook != ""
	text, path := getenv("WXLOGIN_WEBHOOK_SECRET"), getenv("WXLOGIN_WEBHOOK_SECRET_FILE")
	switch {
	case cfg.FakeOnly && ev.On:
		return errors.New("-fake-only keeps no users: -events and -webhook do not apply")
	case ev.Webhook == "" && (text != "" || path != ""):
		return errors.New("WXLOGIN_WEBHOOK_SECRET(_FILE) is set, but there is no -webhook / WXLOGIN_WEBHOOK to sign for")
	case ev.Webhook == "":
		return nil
	case text != "" && path != "":
		return errors.New("set WXLOGIN_WEBHOOK_SECRET or WXLOGIN_WEBHOOK_SECRET_FILE, not both")
	case text == "" && path == "":
		return errors.New("-webhook / WXLOGIN_WEBHOOK needs its secret, whsec_ and the key in base64, in WXLOGIN_WEBHOOK_SECRET or WXLOGIN_WEBHOOK_SECRET_FILE")
	}
	if u, err := url.Parse(ev.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return errors.New("-webhook / WXLOGIN_WEBHOOK: not an http(s) URL without user or password")
	}
	if path != "" {
		var err error
		if text, err = readSecretFile(path, "WXLOGIN_WEBHOOK_SECRET_FILE"); err != nil {
			return err
		}
	}
	secret, err := webhook.ParseSecret(text)
	if err != nil {
		return fmt.Errorf("the webhook's secret: %w", err)
	}
	ev.Secret = secret
	return nil
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
	return readSecretFile(path, "WX_APPSECRET_FILE")
}

// ParseRedis reads the -redis setting, a Redis URL (redis.ParseURL).
// The password comes from the URL, which must then come from the
// environment, or from passwordFile, a file only its owner can read; never
// from a flag, which anyone can see in ps.
func ParseRedis(raw string, fromFlag bool, passwordFile string) (redis.Config, error) {
	cfg, err := redis.ParseURL(raw)
	if err != nil {
		return cfg, err
	}
	u, _ := url.Parse(raw) // it parsed above
	if _, inURL := u.User.Password(); inURL && fromFlag {
		return cfg, errors.New("a password in the -redis flag would show in ps: put the URL in WXLOGIN_REDIS, or the password in WXLOGIN_REDIS_PASSWORD_FILE")
	}
	if passwordFile != "" {
		if cfg.Password != "" {
			return cfg, errors.New("a password in both the URL and WXLOGIN_REDIS_PASSWORD_FILE: give one")
		}
		p, err := readSecretFile(passwordFile, "WXLOGIN_REDIS_PASSWORD_FILE")
		if err != nil {
			return cfg, err
		}
		cfg.Password = p
	}
	return cfg, nil
}

// readSecretFile reads a secret from a file that only its owner may read;
// what names the setting in errors.
func readSecretFile(path, what string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s: %s has mode %04o; it holds a secret, so make it 0600", what, path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("%s: %s is empty", what, path)
	}
	return secret, nil
}

// Flags defines flags whose defaults come from environment variables, and
// collects the errors of variables that do not parse, naming them.
type Flags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

// NewFlags defines flags on fs whose defaults come from the variables of
// getenv.
func NewFlags(fs *flag.FlagSet, getenv func(string) string) *Flags {
	return &Flags{fs: fs, getenv: getenv}
}

// Err is every variable that did not parse, each named.
func (e *Flags) Err() error { return errors.Join(e.errs...) }

func (e *Flags) usage(text, env string) string { return text + " (env " + env + ")" }

func (e *Flags) String(p *string, name, env, def, usage string) {
	if v := e.getenv(env); v != "" {
		def = v
	}
	e.fs.StringVar(p, name, def, e.usage(usage, env))
}

func (e *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	e.fs.DurationVar(p, name, fromEnv(e, env, def, time.ParseDuration, "a duration like 2h or 30m"), e.usage(usage, env))
}

func (e *Flags) Int(p *int, name, env string, def int, usage string) {
	e.fs.IntVar(p, name, fromEnv(e, env, def, strconv.Atoi, "a whole number"), e.usage(usage, env))
}

// fromEnv is env's value read by parse, or def when env is unset. A value
// parse refuses is noted as an error saying it is not what.
func fromEnv[T any](e *Flags, env string, def T, parse func(string) (T, error), what string) T {
	v := e.getenv(env)
	if v == "" {
		return def
	}
	parsed, err := parse(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not %s", env, v, what))
		return def
	}
	return parsed
}

func (e *Flags) Bool(p *OptionalBool, name, env, usage string) {
	if v := e.getenv(env); v != "" {
		if err := p.Set(v); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not a boolean", env, v))
		}
	}
	e.fs.Var(p, name, e.usage(usage, env))
}

// Set reports whether a setting was given by flag or by environment.
func (e *Flags) Set(name, env string) bool {
	set := e.getenv(env) != ""
	e.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// OnCommandLine reports whether flag name was given as a flag, not through
// its variable: where a secret would show in ps.
func (e *Flags) OnCommandLine(name string) bool {
	given := false
	e.fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// OptionalBool is a boolean flag that knows whether it was given, for
// settings whose default depends on other settings.
type OptionalBool struct {
	Value, Given bool
}

func (b *OptionalBool) String() string {
	if b == nil || !b.Given {
		return "auto"
	}
	return strconv.FormatBool(b.Value)
}

func (b *OptionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.Value, b.Given = v, true
	return nil
}

func (b *OptionalBool) IsBoolFlag() bool { return true }
