package conform

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"wxlogin/internal/strictjson"
)

// Profile says how to talk to the backend under test: where it is, where
// conform serves the fake WeChat it was pointed at, and the routes it has.
// A route left out (nil) makes its checks SKIPPED, never failed.
type Profile struct {
	// FakeAddr is where conform serves the fake WeChat: the backend's
	// WeChat base URL must be http://<FakeAddr>.
	FakeAddr string `json:"fake_addr"`
	// Apps are the mini programs the fake knows, and the backend serves.
	// The first is used unless a check needs another; a second bound app
	// lets the once-per-person checks cross apps, an unbound one checks a
	// login without unionid.
	Apps []App `json:"apps"`
	// BaseURL is the backend's, e.g. http://127.0.0.1:8080.
	BaseURL string `json:"base_url"`
	// Timeout bounds every request to the backend, and is the time within
	// which it must answer when WeChat hangs.
	Timeout Duration `json:"timeout"`
	// Wait is how long conform waits for the backend to answer Ready.
	Wait Duration `json:"wait"`
	// Ready is a path conform polls (GET) until the backend answers it at
	// all; "/" when empty.
	Ready string `json:"ready"`

	Login Login `json:"login"`
	Auth  Auth  `json:"auth"`
	// WhoAmI says whose a token is. A backend without such a route gives
	// the user's id in the login's answer (Login.UserID) instead, and the
	// checks that need to ask whether a token still works are SKIPPED.
	WhoAmI *WhoAmI `json:"whoami"`

	UserInfo *Route `json:"userinfo"`
	Phone    *Route `json:"phone"`
	Nickname *Route `json:"nickname"`
	Logout   *Route `json:"logout"`
	Delete   *Route `json:"delete"`
	Claim    *Route `json:"claim"`
}

// App is a mini program of the profile. Its AppSecret comes from the
// environment variable SecretEnv: the backend under test must be given the
// same one, and the fake refuses any other, as WeChat does.
type App struct {
	AppID     string `json:"appid"`
	SecretEnv string `json:"secret_env"`
	// Unbound is an app with no Open Platform account: WeChat gives its
	// users no unionid (WECHAT.md §7).
	Unbound bool   `json:"unbound"`
	secret  string // read from SecretEnv by Load
}

// Route is one of the backend's routes: its method and path, how its body
// is sent, and the names it gives WeChat's fields.
type Route struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Encoding is "json" (the default), "form", or "query" (the fields in
	// the URL's query string; the default for GET).
	Encoding string `json:"encoding"`
	// Fields maps the names WeChat gives the data (code, appid, rawData,
	// signature, encryptedData, iv, nickname) to the names the backend
	// reads; a name left out is sent as it is, one mapped to "" is not sent.
	Fields map[string]string `json:"fields"`
}

// Login is the login route, and where the token is in its answer.
type Login struct {
	Route
	// Token is the JSON path of the token in the answer: "data.token".
	Token string `json:"token"`
	// UserID is the JSON path of the user's id in the answer, for a
	// backend without a whoami route.
	UserID string `json:"user_id"`
	// SendAppID sends the appid with the code (default: only when the
	// profile has several apps).
	SendAppID bool `json:"send_appid"`
}

// Auth says how the token is sent: in Header, after Scheme and a space
// ("Bearer"), or alone when Scheme is empty. Left out, it is
// Authorization: Bearer <token>.
type Auth struct {
	Header string `json:"header"`
	Scheme string `json:"scheme"`
}

// WhoAmI is the route that says who the token belongs to, and the JSON
// path of the user's id in its answer.
type WhoAmI struct {
	Route
	UserID string `json:"user_id"`
}

// Duration is a time.Duration written as "15s" in a profile.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%s is not a positive duration like \"15s\"", b)
	}
	*d = Duration(v)
	return nil
}

// LoadProfile reads the profile at path, its AppSecrets from getenv.
// Lines whose first characters are // are comments.
func LoadProfile(path string, getenv func(string) string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ParseProfile(b, getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParseProfile is LoadProfile on the profile's text.
func ParseProfile(text []byte, getenv func(string) string) (*Profile, error) {
	var kept [][]byte
	for _, line := range bytes.Split(text, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte("//")) {
			line = nil // kept empty, so that a decoding error's line stays right
		}
		kept = append(kept, line)
	}
	var p Profile
	if err := strictjson.Decode(bytes.Join(kept, []byte("\n")), &p); err != nil {
		return nil, err
	}
	if err := p.complete(getenv); err != nil {
		return nil, err
	}
	return &p, nil
}

// complete checks a profile and fills in its defaults.
func (p *Profile) complete(getenv func(string) string) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("base_url: %q is not an http(s) URL", p.BaseURL)
	}
	p.BaseURL = strings.TrimSuffix(p.BaseURL, "/")
	if p.FakeAddr == "" {
		p.FakeAddr = "127.0.0.1:9440"
	}
	if len(p.Apps) == 0 {
		bad("apps: at least one app is needed")
	}
	bound := 0
	for i := range p.Apps {
		a := &p.Apps[i]
		if a.AppID == "" || a.SecretEnv == "" {
			bad("apps[%d]: appid and secret_env are needed", i)
			continue
		}
		if a.secret = getenv(a.SecretEnv); a.secret == "" {
			bad("apps[%d]: %s is not set: it holds the AppSecret the backend was given", i, a.SecretEnv)
		}
		if !a.Unbound {
			bound++
		}
	}
	if len(p.Apps) > 0 && bound == 0 {
		bad("apps: at least one app must be bound to an Open Platform account")
	}
	if p.Timeout == 0 {
		p.Timeout = Duration(15 * time.Second)
	}
	if p.Wait == 0 {
		p.Wait = Duration(60 * time.Second)
	}
	if p.Ready == "" {
		p.Ready = "/"
	}
	if p.Login.Token == "" {
		bad("login.token: the JSON path of the token in the login's answer is needed, e.g. \"data.token\"")
	}
	switch {
	case p.WhoAmI == nil && p.Login.UserID == "":
		bad("whoami: a route that says whose a token is, or login.user_id, the JSON path of the user's id in the login's answer, is needed")
	case p.WhoAmI != nil && p.WhoAmI.UserID == "":
		bad("whoami.user_id: the JSON path of the user's id is needed, e.g. \"data.id\"")
	}
	if p.Auth.Header == "" { // "auth" left out: the usual Authorization: Bearer <token>
		p.Auth.Header = "Authorization"
		p.Auth.Scheme = cmp.Or(p.Auth.Scheme, "Bearer")
	}
	if len(p.Apps) > 1 {
		p.Login.SendAppID = true
	}
	defaults := map[string]string{"login": "POST", "whoami": "GET", "nickname": "PATCH", "delete": "DELETE"}
	for name, r := range p.routes() {
		if r == nil {
			continue
		}
		if !strings.HasPrefix(r.Path, "/") {
			bad("%s.path: %q must start with /", name, r.Path)
		}
		if r.Method == "" {
			r.Method = cmp.Or(defaults[name], "POST")
		}
		r.Method = strings.ToUpper(r.Method)
		switch {
		case r.Encoding == "" && r.Method == http.MethodGet:
			r.Encoding = "query"
		case r.Encoding == "":
			r.Encoding = "json"
		case r.Encoding != "json" && r.Encoding != "form" && r.Encoding != "query":
			bad("%s.encoding: %q is not json, form or query", name, r.Encoding)
		}
	}
	return errors.Join(errs...)
}

// routes are the profile's routes by the names checks need them by; a
// route the profile leaves out is nil.
func (p *Profile) routes() map[string]*Route {
	routes := map[string]*Route{"login": &p.Login.Route, "whoami": nil, "userinfo": p.UserInfo, "phone": p.Phone,
		"nickname": p.Nickname, "logout": p.Logout, "delete": p.Delete, "claim": p.Claim}
	if p.WhoAmI != nil {
		routes["whoami"] = &p.WhoAmI.Route
	}
	return routes
}

// bound returns the profile's bound apps, in its order.
func (p *Profile) bound() []App {
	var apps []App
	for _, a := range p.Apps {
		if !a.Unbound {
			apps = append(apps, a)
		}
	}
	return apps
}

// unbound returns the profile's first unbound app, if it has one.
func (p *Profile) unbound() (App, bool) {
	for _, a := range p.Apps {
		if a.Unbound {
			return a, true
		}
	}
	return App{}, false
}

// InitProfile is the profile `wxlogin conform -init` writes: wxlogin's
// own routes, for a wxlogin started as its comments say.
const InitProfile = `// A profile for wxlogin conform (docs/conform.md). Lines starting with //
// are comments. This one describes wxlogin itself; change what differs in
// your backend. A route you leave out makes its checks SKIPPED.
{
  // conform serves the fake WeChat here: start your backend with its WeChat
  // API base URL set to http://127.0.0.1:9440 (wxlogin: -wechat-api).
  "fake_addr": "127.0.0.1:9440",
  // The mini programs the fake knows. Give your backend the same AppIDs and
  // the AppSecrets that these environment variables hold. A second bound app
  // lets the once-per-person checks cross apps; an unbound one checks a login
  // with no unionid.
  "apps": [
    {"appid": "wxc0f0000000000001", "secret_env": "CONFORM_SECRET_1"},
    {"appid": "wxc0f0000000000002", "secret_env": "CONFORM_SECRET_2"},
    {"appid": "wxc0f0000000000003", "secret_env": "CONFORM_SECRET_3", "unbound": true}
  ],
  "base_url": "http://127.0.0.1:8080",
  // Every request is bounded by this; when WeChat hangs, the backend must
  // answer within it.
  "timeout": "15s",
  // conform polls this path until the backend answers, for up to "wait".
  "ready": "/healthz",
  "wait": "60s",
  // The login: the code from wx.login in "code" (rename it in "fields"), the
  // appid too when there are several apps; the token at this JSON path. A
  // backend with no whoami route gives "user_id", the JSON path of the user's
  // id in this answer.
  "login": {"method": "POST", "path": "/login", "encoding": "json", "token": "data.token"},
  // How the token is sent: "Authorization: Bearer <token>". With "scheme": ""
  // the header holds the token alone.
  "auth": {"header": "Authorization", "scheme": "Bearer"},
  // Who the token belongs to: the user's id at this JSON path. Without it,
  // the checks that ask whether a token still works are SKIPPED.
  "whoami": {"method": "GET", "path": "/user", "user_id": "data.id"},
  // getUserInfo's rawData, signature, encryptedData and iv.
  "userinfo": {"method": "POST", "path": "/user/userinfo"},
  // getPhoneNumber's code.
  "phone": {"method": "POST", "path": "/user/phone"},
  // A nickname the user typed.
  "nickname": {"method": "PATCH", "path": "/user", "fields": {"nickname": "nickname"}},
  "logout": {"method": "POST", "path": "/logout"},
  // Account deletion (注销).
  "delete": {"method": "DELETE", "path": "/user"},
  // A benefit taken once per person, across apps.
  "claim": {"method": "POST", "path": "/claims/conform-gift"}
}
`
