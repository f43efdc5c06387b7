package config

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

// envFlagSet is the flags of envflags.go on an environment of env.
type envFlagSet struct {
	e    *Flags
	addr string
	ttl  time.Duration
	rate int
	mock OptionalBool
}

func newEnvFlagSet(env map[string]string) *envFlagSet {
	fs := flag.NewFlagSet("wxlogin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &envFlagSet{e: &Flags{fs: fs, getenv: func(k string) string { return env[k] }}}
	s.e.String(&s.addr, "addr", "WXLOGIN_ADDR", "127.0.0.1:8080", "listen address")
	s.e.Duration(&s.ttl, "token-ttl", "WXLOGIN_TOKEN_TTL", 2*time.Hour, "token lifetime")
	s.e.Int(&s.rate, "login-rate", "WXLOGIN_LOGIN_RATE", 300, "logins a minute")
	s.e.Bool(&s.mock, "mock", "WXLOGIN_MOCK", "mock mode")
	return s
}

func (s *envFlagSet) parse(args ...string) error { return s.e.fs.Parse(args) }

func TestEnvFlagsDefaultsComeFromTheEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantAddr string
		wantTTL  time.Duration
		wantRate int
		wantMock string // optionalBool's String: auto, true or false
	}{
		{"defaults", nil, nil, "127.0.0.1:8080", 2 * time.Hour, 300, "auto"},
		{"environment", map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_TOKEN_TTL": "30m", "WXLOGIN_LOGIN_RATE": "0", "WXLOGIN_MOCK": "false"},
			nil, ":9000", 30 * time.Minute, 0, "false"},
		{"a flag wins over its variable", map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_TOKEN_TTL": "30m", "WXLOGIN_MOCK": "false"},
			[]string{"-addr", ":9001", "-token-ttl", "1h", "-mock"}, ":9001", time.Hour, 300, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newEnvFlagSet(tt.env)
			if err := s.parse(tt.args...); err != nil {
				t.Fatal(err)
			}
			if len(s.e.errs) > 0 {
				t.Fatalf("errors %v", s.e.errs)
			}
			if s.addr != tt.wantAddr || s.ttl != tt.wantTTL || s.rate != tt.wantRate || s.mock.String() != tt.wantMock {
				t.Errorf("addr %q, ttl %v, rate %d, mock %s; want %q, %v, %d, %s",
					s.addr, s.ttl, s.rate, s.mock.String(), tt.wantAddr, tt.wantTTL, tt.wantRate, tt.wantMock)
			}
		})
	}
}

func TestEnvFlagsNameTheVariableThatDoesNotParse(t *testing.T) {
	s := newEnvFlagSet(map[string]string{"WXLOGIN_TOKEN_TTL": "2 hours", "WXLOGIN_LOGIN_RATE": "many", "WXLOGIN_MOCK": "maybe"})
	if err := s.parse(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, err := range s.e.errs {
		got = append(got, err.Error())
	}
	want := []string{
		`WXLOGIN_TOKEN_TTL: "2 hours" is not a duration like 2h or 30m`,
		`WXLOGIN_LOGIN_RATE: "many" is not a whole number`,
		`WXLOGIN_MOCK: "maybe" is not a boolean`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s.ttl != 2*time.Hour || s.rate != 300 {
		t.Errorf("after refused values: ttl %v, rate %d; want the defaults", s.ttl, s.rate)
	}
}

func TestEnvFlagsSetSaysWhetherASettingWasGiven(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"neither", nil, nil, false},
		{"by variable", map[string]string{"WXLOGIN_ADDR": ":9000"}, nil, true},
		{"by flag", nil, []string{"-addr", "127.0.0.1:8080"}, true}, // the default's value, but given
	} {
		s := newEnvFlagSet(tt.env)
		if err := s.parse(tt.args...); err != nil {
			t.Fatal(err)
		}
		if got := s.e.Set("addr", "WXLOGIN_ADDR"); got != tt.want {
			t.Errorf("%s: set = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	testkit.WriteFile(t, secretFile, " file-secret \n")
	looseFile := filepath.Join(dir, "loose")
	testkit.WriteFile(t, looseFile, "s")
	os.Chmod(looseFile, 0o644)
	emptyFile := filepath.Join(dir, "empty")
	testkit.WriteFile(t, emptyFile, "\n")
	appsFile := func(content string) string {
		path := filepath.Join(t.TempDir(), "apps.json")
		testkit.WriteFile(t, path, content)
		return path
	}
	twoApps := appsFile(`{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxgame", "name": "Game", "secret_env": "GAME_SECRET", "unbound": true}]}`)
	bothSecrets := map[string]string{"SHOP_SECRET": "s1", "GAME_SECRET": "s2"}

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr string // a part of the error message
	}{
		{name: "defaults", check: func(c Config) bool {
			return c.Mock && c.Addr == "127.0.0.1:8080" && c.DataDir == "./data" && c.TokenTTL == 2*time.Hour &&
				c.TokenMaxAge == 720*time.Hour && c.WechatAPI == "https://api.weixin.qq.com" &&
				c.WechatTimeout == 5*time.Second && c.LoginTimeout == 10*time.Second &&
				c.LoginRate == 300 && c.LoginBurst == 100 && len(c.Proxies) == 0 &&
				only(c).AppID == MockAppID && len(only(c).Secret) == 32
		}},
		{name: "login limit and proxies from the environment", env: map[string]string{"WXLOGIN_LOGIN_RATE": "0", "WXLOGIN_LOGIN_BURST": "5", "WXLOGIN_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"},
			check: func(c Config) bool {
				return c.LoginRate == 0 && c.LoginBurst == 5 && fmt.Sprint(c.Proxies) == "[10.0.0.0/8 127.0.0.1/32]"
			}},
		{name: "login limit by flag", args: []string{"-login-rate", "60"}, env: map[string]string{"WXLOGIN_LOGIN_RATE": "0"},
			check: func(c Config) bool { return c.LoginRate == 60 }},
		{name: "negative login rate", args: []string{"-login-rate", "-1"}, wantErr: "-login-rate / WXLOGIN_LOGIN_RATE"},
		{name: "login rate not a number", env: map[string]string{"WXLOGIN_LOGIN_RATE": "lots"}, wantErr: "WXLOGIN_LOGIN_RATE"},
		{name: "zero burst", args: []string{"-login-burst", "0"}, wantErr: "-login-burst / WXLOGIN_LOGIN_BURST: must be at least 1"},
		{name: "logs as JSON from warn up, from the environment", env: map[string]string{"WXLOGIN_LOG_FORMAT": "json", "WXLOGIN_LOG_LEVEL": "warn"},
			check: func(c Config) bool { return c.LogFormat == "json" && c.LogLevel == slog.LevelWarn }},
		{name: "log defaults", check: func(c Config) bool { return c.LogFormat == "text" && c.LogLevel == slog.LevelInfo }},
		{name: "log format not known", args: []string{"-log-format", "xml"}, wantErr: `-log-format / WXLOGIN_LOG_FORMAT: "xml" is not text or json`},
		{name: "log level not known", args: []string{"-log-level", "loud"}, wantErr: `-log-level / WXLOGIN_LOG_LEVEL: "loud" is not debug`},
		{name: "-version ignores the rest", args: []string{"-version", "-fake-only"}, check: func(c Config) bool { return c.ShowVersion }},
		{name: "bad trusted proxy", args: []string{"-trusted-proxies", "10.0.0.0/8,proxy.local"}, wantErr: `-trusted-proxies / WXLOGIN_TRUSTED_PROXIES: "proxy.local"`},
		{name: "environment", env: map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_DATA": "/tmp/x", "WXLOGIN_TOKEN_TTL": "30m", "WXLOGIN_TOKEN_MAX_AGE": "24h"},
			check: func(c Config) bool {
				return c.Addr == ":9000" && c.DataDir == "/tmp/x" && c.TokenTTL == 30*time.Minute && c.TokenMaxAge == 24*time.Hour
			}},
		{name: "flags win over environment", args: []string{"-addr", ":9001", "-token-ttl", "1h"}, env: map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_TOKEN_TTL": "30m"},
			check: func(c Config) bool { return c.Addr == ":9001" && c.TokenTTL == time.Hour }},
		{name: "fake only", args: []string{"-fake-only"}, env: map[string]string{"WX_APPSECRET": "sec"},
			check: func(c Config) bool {
				return c.FakeOnly && !c.Mock && only(c).AppID == MockAppID && only(c).Secret == "sec"
			}},
		{name: "fake only from the environment, with an apps file", args: []string{"-apps", twoApps}, env: map[string]string{"WXLOGIN_FAKE_ONLY": "true", "SHOP_SECRET": "s1", "GAME_SECRET": "s2"},
			check: func(c Config) bool { return c.FakeOnly && len(c.Apps) == 2 && c.Apps[1].Unbound }},
		{name: "fake only without a secret", args: []string{"-fake-only"}, wantErr: "-fake-only needs the AppSecret"},
		{name: "fake only with an app missing its secret", args: []string{"-fake-only", "-apps", twoApps}, env: map[string]string{"SHOP_SECRET": "s1"},
			wantErr: "GAME_SECRET (its secret_env) is not set"},
		{name: "redis password in the flag", args: []string{"-redis", "redis://app:pw@127.0.0.1:6379"}, wantErr: "-redis / WXLOGIN_REDIS: a password in the -redis flag would show in ps"},
		{name: "redis durability not a policy", args: []string{"-redis", "redis://127.0.0.1", "-redis-durability", "maybe"}, wantErr: `-redis-durability / WXLOGIN_REDIS_DURABILITY: "maybe" is not fsync or unchecked`},
		{name: "redis with -fake-only", args: []string{"-fake-only", "-redis", "redis://127.0.0.1"}, env: map[string]string{"WX_APPSECRET": "sec"}, wantErr: "-fake-only keeps nothing"},
		{name: "fake only with -mock", args: []string{"-fake-only", "-mock"}, env: map[string]string{"WX_APPSECRET": "sec"}, wantErr: "do not apply"},
		{name: "fake only with -wechat-api", args: []string{"-fake-only", "-wechat-api", "http://127.0.0.1:1"}, env: map[string]string{"WX_APPSECRET": "sec"}, wantErr: "do not apply"},
		{name: "real mode", env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "sec"},
			check: func(c Config) bool { return !c.Mock && only(c).AppID == "wx1" && only(c).Secret == "sec" }},
		{name: "real mode with another API", args: []string{"-wechat-api", "http://127.0.0.1:1/"}, env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "sec"},
			check: func(c Config) bool { return !c.Mock && c.WechatAPI == "http://127.0.0.1:1/" }},
		{name: "secret from a private file", env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET_FILE": secretFile},
			check: func(c Config) bool { return !c.Mock && only(c).Secret == "file-secret" }},
		{name: "mock forced with a secret", args: []string{"-mock"}, env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "sec"},
			check: func(c Config) bool { return c.Mock && only(c).AppID == "wx1" && only(c).Secret == "sec" }},
		{name: "mock by environment", env: map[string]string{"WXLOGIN_MOCK": "true", "WX_APPID": "wx1", "WX_APPSECRET": "sec"},
			check: func(c Config) bool { return c.Mock }},

		{name: "apps file", args: []string{"-apps", twoApps}, env: bothSecrets, check: func(c Config) bool {
			return !c.Mock && len(c.Apps) == 2 && c.Apps[0].AppID == "wxshop" && c.Apps[0].Name == "Shop" &&
				c.Apps[0].Secret == "s1" && c.Apps[1].Secret == "s2" && c.Apps[1].Unbound
		}},
		{name: "apps file by environment, in mock mode", env: map[string]string{"WXLOGIN_APPS": twoApps}, check: func(c Config) bool {
			return c.Mock && len(c.Apps) == 2 && len(c.Apps[0].Secret) == 32 && c.Apps[0].Secret != c.Apps[1].Secret
		}},
		{name: "apps file, one secret missing", args: []string{"-apps", twoApps}, env: map[string]string{"SHOP_SECRET": "s1"},
			wantErr: "app wxgame: the environment variable GAME_SECRET (its secret_env) is not set"},
		{name: "apps file and WX_APPID", args: []string{"-apps", twoApps}, env: map[string]string{"WX_APPID": "wx1"}, wantErr: "not both"},
		{name: "apps file holding a secret", args: []string{"-apps", appsFile(`{"apps": [{"appid": "wx1", "name": "A", "secret": "s"}]}`)},
			wantErr: "the apps file holds none"},
		{name: "app listed twice", args: []string{"-apps", appsFile(`{"apps": [{"appid": "wx1", "name": "A", "secret_env": "A"}, {"appid": "wx1", "name": "B", "secret_env": "B"}]}`)},
			wantErr: "app wx1 is listed twice"},
		{name: "bad secret_env", args: []string{"-apps", appsFile(`{"apps": [{"appid": "wx1", "name": "A", "secret_env": "shop-secret"}]}`)},
			wantErr: `secret_env "shop-secret"`},
		{name: "app without name", args: []string{"-apps", appsFile(`{"apps": [{"appid": "wx1", "secret_env": "A"}]}`)},
			wantErr: "name must be 1 to 64 characters"},
		{name: "no apps", args: []string{"-apps", appsFile(`{"apps": []}`)}, wantErr: "lists no apps"},
		{name: "apps file not JSON", args: []string{"-apps", appsFile("apps:\n  - wx1\n")}, wantErr: "apps.json:1: not an apps file"},
		{name: "apps file missing", args: []string{"-apps", filepath.Join(dir, "nope.json")}, wantErr: "no such file"},
		{name: "secret readable by others", env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET_FILE": looseFile}, wantErr: "0644"},
		{name: "empty secret file", env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET_FILE": emptyFile}, wantErr: "empty"},
		{name: "secret twice", env: map[string]string{"WX_APPSECRET": "a", "WX_APPSECRET_FILE": secretFile}, wantErr: "not both"},
		{name: "secret without appid", env: map[string]string{"WX_APPSECRET": "sec"}, wantErr: "WX_APPID"},
		{name: "real mode without secret", args: []string{"-mock=false"}, wantErr: "WX_APPSECRET"},
		{name: "mock off by environment without secret", env: map[string]string{"WXLOGIN_MOCK": "0"}, wantErr: "WX_APPSECRET"},
		{name: "mock with another API", args: []string{"-wechat-api", "http://127.0.0.1:1"}, wantErr: "-wechat-api / WXLOGIN_WECHAT_API"},
		{name: "bad duration in environment", env: map[string]string{"WXLOGIN_TOKEN_TTL": "soon"}, wantErr: "WXLOGIN_TOKEN_TTL"},
		{name: "zero ttl", args: []string{"-token-ttl", "0"}, wantErr: "-token-ttl / WXLOGIN_TOKEN_TTL: must be positive"},
		{name: "negative max age", env: map[string]string{"WXLOGIN_TOKEN_MAX_AGE": "-1h"}, wantErr: "-token-max-age / WXLOGIN_TOKEN_MAX_AGE"},
		{name: "bad mock value", env: map[string]string{"WXLOGIN_MOCK": "maybe"}, wantErr: "WXLOGIN_MOCK"},
		{name: "api not http", args: []string{"-wechat-api", "ftp://example.com"}, env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "s"}, wantErr: "-wechat-api"},
		{name: "no secret flag", args: []string{"-secret", "x"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			cfg, err := Load(append([]string{"wxlogin"}, tt.args...), getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Load = %v; want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			if !tt.check(cfg) {
				t.Errorf("Load = %+v", cfg)
			}
		})
	}
}

// only returns the one app of a configuration without an apps file.
func only(c Config) App {
	if len(c.Apps) != 1 {
		return App{}
	}
	return c.Apps[0]
}

// The Redis password comes from the URL in the environment, or from a file
// only its owner can read; never from a flag, which anyone can see in ps,
// and never from both.
func TestParseRedisSetting(t *testing.T) {
	dir := t.TempDir()
	private, open := filepath.Join(dir, "private"), filepath.Join(dir, "open")
	writeFileMode(t, private, "file-secret\n", 0o600)
	writeFileMode(t, open, "file-secret\n", 0o644)
	tests := []struct {
		name, url    string
		fromFlag     bool
		passwordFile string
		want         redis.Config // the fields compared: addrs, user, password, db, cluster, poolSize, tls
		err          string       // a part of the error wanted
	}{
		{"password in the environment", "redis://wxlogin:s3cret@127.0.0.1", false, "", redis.Config{Addrs: []string{"127.0.0.1:6379"}, User: "wxlogin", Password: "s3cret", PoolSize: 8}, ""},
		{"password file", "redis://wxlogin@127.0.0.1", true, private, redis.Config{Addrs: []string{"127.0.0.1:6379"}, User: "wxlogin", Password: "file-secret", PoolSize: 8}, ""},
		{"password in a flag", "redis://:s3cret@127.0.0.1", true, "", redis.Config{}, "would show in ps"},
		{"password twice", "redis://:s3cret@127.0.0.1", false, private, redis.Config{}, "give one"},
		{"password file others can read", "redis://127.0.0.1", false, open, redis.Config{}, "make it 0600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRedis(tt.url, tt.fromFlag, tt.passwordFile)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseRedisSetting(%q) = %v; want an error saying %q", tt.url, err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "file-secret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRedisSetting(%q) = %v", tt.url, err)
			}
			if fmt.Sprint(got.Addrs) != fmt.Sprint(tt.want.Addrs) || got.User != tt.want.User || got.Password != tt.want.Password ||
				got.DB != tt.want.DB || got.Cluster != tt.want.Cluster || got.PoolSize != tt.want.PoolSize || got.TLS != nil {
				t.Errorf("parseRedisSetting(%q) = %+v; want %+v", tt.url, got, tt.want)
			}
		})
	}
}

// writeFileMode writes a file with the given mode, whatever the umask.
func writeFileMode(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestJWTConfig: -jwt is off unless asked for; its settings are bounded,
// and outside mock mode it needs the public URL that is its issuer.
func TestJWTConfig(t *testing.T) {
	real := map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "s"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    JWT
		wantErr string
	}{
		{name: "off by default", want: JWT{Audience: "wxlogin", TTL: 10 * time.Minute, Rotate: 24 * time.Hour}},
		{name: "mock mode: the listening URL", args: []string{"-jwt"}, want: JWT{On: true, Audience: "wxlogin", TTL: 10 * time.Minute, Rotate: 24 * time.Hour}},
		{name: "all set", args: []string{"-jwt", "-jwt-issuer", "https://login.example.com/wx", "-jwt-audience", "orders", "-jwt-ttl", "5m", "-jwt-rotate", "168h", "-jwt-openid"}, env: real,
			want: JWT{On: true, Issuer: "https://login.example.com/wx", Audience: "orders", TTL: 5 * time.Minute, Rotate: 168 * time.Hour, OpenID: true}},
		{name: "from the environment", env: map[string]string{"WXLOGIN_JWT": "1", "WXLOGIN_JWT_ISSUER": "https://login.example.com", "WX_APPID": "wx1", "WX_APPSECRET": "s"},
			want: JWT{On: true, Issuer: "https://login.example.com", Audience: "wxlogin", TTL: 10 * time.Minute, Rotate: 24 * time.Hour}},
		{name: "real mode needs an issuer", args: []string{"-jwt"}, env: real, wantErr: "-jwt-issuer / WXLOGIN_JWT_ISSUER: -jwt needs the public URL"},
		{name: "issuer with a slash at the end", args: []string{"-jwt", "-jwt-issuer", "https://login.example.com/"}, env: real, wantErr: "ends in /"},
		{name: "issuer with a query", args: []string{"-jwt", "-jwt-issuer", "https://login.example.com?x=1"}, env: real, wantErr: "without query"},
		{name: "issuer not a URL", args: []string{"-jwt", "-jwt-issuer", "login.example.com"}, env: real, wantErr: "not an http(s) URL"},
		{name: "ttl over a day", args: []string{"-jwt", "-jwt-ttl", "25h"}, wantErr: "-jwt-ttl / WXLOGIN_JWT_TTL"},
		{name: "no ttl", args: []string{"-jwt", "-jwt-ttl", "0"}, wantErr: "-jwt-ttl / WXLOGIN_JWT_TTL"},
		{name: "rotation under an hour", args: []string{"-jwt", "-jwt-rotate", "30m"}, wantErr: "-jwt-rotate / WXLOGIN_JWT_ROTATE"},
		{name: "empty audience", args: []string{"-jwt", "-jwt-audience", ""}, wantErr: "-jwt-audience / WXLOGIN_JWT_AUDIENCE"},
		{name: "a setting without -jwt", args: []string{"-jwt-issuer", "https://login.example.com"}, wantErr: "-jwt-issuer / WXLOGIN_JWT_ISSUER applies only with -jwt"},
		{name: "a variable without -jwt", env: map[string]string{"WXLOGIN_JWT_TTL": "5m"}, wantErr: "-jwt-ttl / WXLOGIN_JWT_TTL applies only with -jwt"},
		{name: "fake-only signs nothing", args: []string{"-jwt", "-fake-only"}, env: real, wantErr: "-fake-only signs nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(append([]string{"wxlogin"}, tt.args...), func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Load = %v; want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || cfg.JWT != tt.want {
				t.Errorf("Load = %+v, %v; want %+v", cfg.JWT, err, tt.want)
			}
		})
	}
}

// TestEventsConfig: -events, -webhook and the webhook's secret, which
// comes only from the environment or a file only its owner reads, and is
// never quoted in an error.
func TestEventsConfig(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	const hook = "http://127.0.0.1:9/hook"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		on      bool
		webhook string
		wantErr string
	}{
		{name: "off by default"},
		{name: "events alone", args: []string{"-events"}, on: true},
		{name: "a webhook implies events", args: []string{"-webhook", hook}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": secret}, on: true, webhook: hook},
		{name: "the secret from a file", env: map[string]string{"WXLOGIN_WEBHOOK": hook, "WXLOGIN_WEBHOOK_SECRET_FILE": file}, on: true, webhook: hook},
		{name: "no secret", args: []string{"-webhook", hook}, wantErr: "needs its secret"},
		{name: "both", args: []string{"-webhook", hook}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": secret, "WXLOGIN_WEBHOOK_SECRET_FILE": file}, wantErr: "not both"},
		{name: "a file others read", args: []string{"-webhook", hook}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET_FILE": open}, wantErr: "make it 0600"},
		{name: "not whsec_", args: []string{"-webhook", hook}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, wantErr: "not a webhook secret"},
		{name: "a secret and no webhook", env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": secret}, wantErr: "no -webhook"},
		{name: "not a URL", args: []string{"-webhook", "hook.example.com"}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": secret}, wantErr: "not an http(s) URL"},
		{name: "a password in the URL", args: []string{"-webhook", "https://u:p@hook.example.com"}, env: map[string]string{"WXLOGIN_WEBHOOK_SECRET": secret}, wantErr: "without user or password"},
		{name: "fake-only", args: []string{"-events", "-fake-only"}, env: map[string]string{"WX_APPID": "wx1", "WX_APPSECRET": "s"}, wantErr: "-fake-only keeps no users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(append([]string{"wxlogin"}, tt.args...), func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil && strings.Contains(err.Error(), "MfKQ9r8") {
				t.Errorf("the error quotes the secret: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Load = %v; want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || cfg.Events.On != tt.on || cfg.Events.Webhook != tt.webhook {
				t.Fatalf("Load = %+v, %v; want on %v, webhook %q", cfg.Events, err, tt.on, tt.webhook)
			}
			if tt.webhook != "" && cfg.Events.Secret.Text() != secret {
				t.Errorf("the secret read is not the one given")
			}
		})
	}
}
