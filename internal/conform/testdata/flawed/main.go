// Command flawed is a small WeChat login backend written to be judged by
// wxlogin conform: correct by default, with a switch for each flaw that
// backends in the wild have (-flaws a,b). The conform tests start it with
// one flaw at a time and check that exactly that flaw's checks fail, which
// shows that every check can fail. Standard library only; in memory.
//
//	FLAWED_APPS=wx1=secret1,wx2=secret2 flawed -wechat-api http://127.0.0.1:9440 -flaws token-md5-time
//
// Routes: POST /login {"code", "appid"} (or GET /login?code=…&appid=…), GET /me, POST /userinfo, POST
// /phone {"code"}, PATCH /me {"nickname"}, POST /logout, DELETE /me,
// POST /gift. Answers are {"ok": bool, "error": "...", ...}.
package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// flaws are the known flaws this backend can be switched to have.
var flaws = map[string]string{
	"leak-session-key":       "the login's answer carries the session_key",
	"token-sha1-session-key": "the token is sha1(session_key), as wafer2's skey",
	"token-md5-time":         "the token is md5(openid + the time in microseconds)",
	"token-short":            "the token is 4 random bytes",
	"token-per-user":         "one token per user, given again at every login",
	"code-cache":             "a code's result is cached and served again",
	"no-code-flight":         "concurrent logins with one code each call WeChat",
	"no-user-lock":           "the user is looked up and inserted without a lock",
	"user-per-code":          "users are found by code, not by openid",
	"exchange-twice":         "jscode2session is called twice a login",
	"retry-refused":          "every WeChat error is retried, 40029 and 40226 too",
	"retry-storm":            "-1 is retried ten times",
	"risk-as-invalid-code":   "40226 is answered as 40029",
	"lenient-parse":          "a reply that does not parse is taken as an empty session",
	"no-timeout":             "the client to WeChat has no timeout",
	"require-unionid":        "a login without unionid is refused",
	"whoami-broken":          "GET /me answers no id",
	"unknown-token-ok":       "GET /me answers 200 to any token",
	"userinfo-broken":        "POST /userinfo refuses everything",
	"no-signature-check":     "rawData is taken without checking its signature",
	"global-session-key":     "open data is checked with the last session_key any login got",
	"no-watermark-check":     "the watermark's appid is not checked",
	"no-openid-check":        "the decrypted openId is not checked",
	"500-on-bad-data":        "undecryptable data is a 500",
	"padding-oracle":         "bad padding and bad JSON get different answers",
	"phone-broken":           "POST /phone refuses everything",
	"phone-no-openid":        "the phone code is sent without the caller's openid",
	"phone-cache":            "a phone code's number is cached and served again",
	"country-code-text-only": "countryCode is read as a string only",
	"logout-noop":            "logout ends nothing",
	"delete-keeps-tokens":    "deletion ends the caller's token only",
	"claim-unchecked":        "the gift is given every time",
	"claim-per-openid":       "the gift is once per app user, not per person",
	"token-per-call":         "an access_token is fetched for every call",
	"no-refetch":             "a refused access_token is not fetched again",
	"no-content-check":       "a nickname is saved unchecked",
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	api := flag.String("wechat-api", "", "WeChat API base URL (a fake's)")
	flawList := flag.String("flaws", "", "comma-separated flaws to have: "+strings.Join(flawNames(), ", "))
	flag.Parse()
	s := &server{api: *api, apps: map[string]string{}, has: map[string]bool{},
		users: map[string]*user{}, byID: map[int]*user{}, tokens: map[string]int{}, claims: map[string]bool{},
		codeCache: map[string]session{}, phoneCache: map[string]string{}, flights: map[string]*flight{}, accessTokens: map[string]string{}}
	for _, f := range strings.Split(*flawList, ",") {
		if f == "" {
			continue
		}
		if _, ok := flaws[f]; !ok {
			log.Fatalf("unknown flaw %q", f)
		}
		s.has[f] = true
	}
	for _, pair := range strings.Split(os.Getenv("FLAWED_APPS"), ",") {
		appID, secret, _ := strings.Cut(pair, "=")
		s.apps[appID] = secret
	}
	s.client = &http.Client{Timeout: time.Second}
	if s.has["no-timeout"] {
		s.client = &http.Client{}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, s.routes()))
}

func flawNames() []string {
	var names []string
	for name := range flaws {
		names = append(names, name)
	}
	return names
}

type user struct {
	id                      int
	appID, openID, unionID  string
	sessionKey, phone, nick string
}

type session struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid"`
	Errcode    int    `json:"errcode"`
}

type flight struct {
	done chan struct{}
	s    session
	err  error
}

type server struct {
	api    string
	apps   map[string]string // appid → secret
	has    map[string]bool   // the flaws switched on
	client *http.Client

	mu           sync.Mutex // guards everything below
	nextID       int
	users        map[string]*user // appid/openid → user
	byID         map[int]*user
	tokens       map[string]int // token → user id
	claims       map[string]bool
	codeCache    map[string]session
	phoneCache   map[string]string
	flights      map[string]*flight
	accessTokens map[string]string // appid → access_token
	lastKey      string
	createMu     sync.Mutex // held across a user's lookup and insert
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, nil) })
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /login", s.login) // as many tutorials have it: GET /login?code=…
	mux.HandleFunc("GET /me", s.auth(s.me))
	mux.HandleFunc("POST /userinfo", s.auth(s.userInfo))
	mux.HandleFunc("POST /phone", s.auth(s.phoneNumber))
	mux.HandleFunc("PATCH /me", s.auth(s.nickname))
	mux.HandleFunc("POST /logout", s.auth(s.logout))
	mux.HandleFunc("DELETE /me", s.auth(s.deleteMe))
	mux.HandleFunc("POST /gift", s.auth(s.gift))
	return mux
}

func answer(w http.ResponseWriter, status int, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["ok"] = status < 300
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(fields)
}

func refuse(w http.ResponseWriter, status int, msg string) {
	answer(w, status, map[string]any{"error": msg})
}

// body is the request's JSON body, or for a GET its query.
func body(r *http.Request) map[string]string {
	m := map[string]string{}
	if r.Method == "GET" {
		for k, v := range r.URL.Query() {
			m[k] = v[0]
		}
		return m
	}
	json.NewDecoder(r.Body).Decode(&m)
	return m
}

var errRefused = errors.New("refused")

type wechatError struct{ code int }

func (e wechatError) Error() string { return "errcode " + strconv.Itoa(e.code) }

// code2Session asks WeChat, retrying -1 (and more, with some flaws).
func (s *server) code2Session(ctx context.Context, appID, code string) (session, error) {
	q := url.Values{"appid": {appID}, "secret": {s.apps[appID]}, "js_code": {code}, "grant_type": {"authorization_code"}}
	tries := 3
	if s.has["retry-storm"] {
		tries = 10
	}
	var err error
	for range tries {
		var got session
		got, err = s.exchangeOnce(ctx, q)
		var we wechatError
		switch {
		case err == nil:
			if s.has["exchange-twice"] {
				s.exchangeOnce(ctx, q)
			}
			return got, nil
		case errors.As(err, &we) && we.code == -1, s.has["retry-refused"]:
			continue
		}
		return session{}, err
	}
	return session{}, err
}

func (s *server) exchangeOnce(ctx context.Context, q url.Values) (session, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.api+"/sns/jscode2session?"+q.Encode(), nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return session{}, err
	}
	defer resp.Body.Close()
	var got session
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil && !s.has["lenient-parse"] {
		return session{}, err
	}
	if got.Errcode != 0 {
		return session{}, wechatError{got.Errcode}
	}
	if got.OpenID == "" && !s.has["lenient-parse"] {
		return session{}, errors.New("no openid")
	}
	return got, nil
}

// exchange is code2Session shared by concurrent logins with one code.
func (s *server) exchange(ctx context.Context, appID, code string) (session, error) {
	s.mu.Lock()
	if got, ok := s.codeCache[code]; ok && s.has["code-cache"] {
		s.mu.Unlock()
		return got, nil
	}
	if s.has["no-code-flight"] {
		s.mu.Unlock()
		return s.code2Session(ctx, appID, code)
	}
	if f, ok := s.flights[code]; ok {
		s.mu.Unlock()
		<-f.done
		return f.s, f.err
	}
	f := &flight{done: make(chan struct{})}
	s.flights[code] = f
	s.mu.Unlock()
	f.s, f.err = s.code2Session(ctx, appID, code)
	s.mu.Lock()
	delete(s.flights, code) // a later login with the code asks WeChat, which refuses it
	if f.err == nil {
		s.codeCache[code] = f.s
	}
	s.mu.Unlock()
	close(f.done)
	return f.s, f.err
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	in := body(r)
	appID := in["appid"]
	if _, ok := s.apps[appID]; !ok || in["code"] == "" {
		refuse(w, 400, "bad request")
		return
	}
	got, err := s.exchange(r.Context(), appID, in["code"])
	var we wechatError
	switch {
	case errors.As(err, &we) && (we.code == 40029 || we.code == 40163 || we.code == 40226 && s.has["risk-as-invalid-code"]):
		refuse(w, 401, "invalid code")
		return
	case errors.As(err, &we) && we.code == 40226:
		refuse(w, 403, "blocked by WeChat")
		return
	case err != nil:
		refuse(w, 502, "WeChat unavailable")
		return
	case got.UnionID == "" && s.has["require-unionid"]:
		refuse(w, 400, "no unionid")
		return
	}
	u := s.findOrCreate(appID, in["code"], got)
	token := s.newToken(u, got)
	out := map[string]any{"token": token, "user_id": u.id}
	if s.has["leak-session-key"] {
		out["session_key"] = got.SessionKey
	}
	answer(w, 200, out)
}

// dbLatency is what a database write costs, here and in the wild: the
// window in which a lookup-then-insert makes two users.
const dbLatency = 20 * time.Millisecond

func (s *server) findOrCreate(appID, code string, got session) *user {
	key := appID + "/" + got.OpenID
	if s.has["user-per-code"] {
		key = appID + "/code/" + code
	}
	if !s.has["no-user-lock"] {
		s.createMu.Lock()
		defer s.createMu.Unlock()
	}
	s.mu.Lock()
	u, ok := s.users[key]
	s.mu.Unlock()
	if !ok {
		time.Sleep(dbLatency)
		s.mu.Lock()
		s.nextID++
		u = &user{id: s.nextID, appID: appID, openID: got.OpenID, unionID: got.UnionID}
		s.users[key], s.byID[u.id] = u, u
		s.mu.Unlock()
	}
	s.mu.Lock()
	u.sessionKey, s.lastKey = got.SessionKey, got.SessionKey
	s.mu.Unlock()
	return u
}

func (s *server) newToken(u *user, got session) string {
	b := make([]byte, 32)
	rand.Read(b)
	token := hex.EncodeToString(b)
	switch {
	case s.has["token-sha1-session-key"]:
		h := sha1.Sum([]byte(got.SessionKey))
		token = hex.EncodeToString(h[:])
	case s.has["token-md5-time"]:
		h := md5.Sum([]byte(u.openID + strconv.FormatInt(time.Now().UnixMicro(), 10)))
		token = hex.EncodeToString(h[:])
	case s.has["token-short"]:
		token = token[:8]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.has["token-per-user"] {
		for t, id := range s.tokens {
			if id == u.id {
				return t
			}
		}
	}
	s.tokens[token] = u.id
	return token
}

func (s *server) auth(h func(w http.ResponseWriter, r *http.Request, u *user, token string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		id, ok := s.tokens[token]
		u := s.byID[id]
		s.mu.Unlock()
		if !ok || u == nil {
			if s.has["unknown-token-ok"] && r.Method == "GET" {
				answer(w, 200, nil)
				return
			}
			refuse(w, 401, "not logged in")
			return
		}
		h(w, r, u, token)
	}
}

func (s *server) me(w http.ResponseWriter, r *http.Request, u *user, _ string) {
	if s.has["whoami-broken"] {
		answer(w, 200, nil)
		return
	}
	answer(w, 200, map[string]any{"id": u.id, "nickname": u.nick})
}

func (s *server) userInfo(w http.ResponseWriter, r *http.Request, u *user, _ string) {
	in := body(r)
	if s.has["userinfo-broken"] {
		refuse(w, 400, "not supported")
		return
	}
	s.mu.Lock()
	key := u.sessionKey
	if s.has["global-session-key"] {
		key = s.lastKey
	}
	s.mu.Unlock()
	if in["encryptedData"] != "" {
		var data struct {
			OpenID    string `json:"openId"`
			Watermark struct {
				AppID string `json:"appid"`
			} `json:"watermark"`
		}
		plain, err := decrypt(key, in["encryptedData"], in["iv"])
		if err == nil {
			if err = json.Unmarshal(plain, &data); err != nil && s.has["padding-oracle"] {
				refuse(w, 400, "bad JSON")
				return
			}
		} else if s.has["padding-oracle"] {
			refuse(w, 400, "bad padding")
			return
		}
		switch {
		case err != nil && s.has["500-on-bad-data"]:
			refuse(w, 500, "internal error") // an exception a framework turns into a 500
			return
		case err != nil:
			refuse(w, 400, "bad data")
			return
		case data.Watermark.AppID != u.appID && !s.has["no-watermark-check"]:
			refuse(w, 400, "bad data")
			return
		case data.OpenID != u.openID && !s.has["no-openid-check"]:
			refuse(w, 400, "bad data")
			return
		}
	}
	if in["rawData"] != "" {
		h := sha1.Sum([]byte(in["rawData"] + key))
		if !s.has["no-signature-check"] && subtle.ConstantTimeCompare([]byte(hex.EncodeToString(h[:])), []byte(in["signature"])) != 1 {
			refuse(w, 400, "bad signature")
			return
		}
	}
	if in["rawData"] == "" && in["encryptedData"] == "" {
		refuse(w, 400, "no data")
		return
	}
	answer(w, 200, nil)
}

func decrypt(key64, data64, iv64 string) ([]byte, error) {
	key, err1 := base64.StdEncoding.DecodeString(key64)
	data, err2 := base64.StdEncoding.DecodeString(data64)
	iv, err3 := base64.StdEncoding.DecodeString(iv64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil || len(iv) != 16 || len(data) == 0 || len(data)%16 != 0 {
		return nil, errors.New("bad sizes")
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)
	n := int(plain[len(plain)-1])
	if n < 1 || n > 16 || !bytes.Equal(plain[len(plain)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errors.New("bad padding")
	}
	return plain[:len(plain)-n], nil
}

// accessToken returns the app's access_token, fetching one when it has none.
func (s *server) accessToken(ctx context.Context, appID string, fresh bool) (string, error) {
	s.mu.Lock()
	token := s.accessTokens[appID]
	s.mu.Unlock()
	if token != "" && !fresh && !s.has["token-per-call"] {
		return token, nil
	}
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": appID, "secret": s.apps[appID]})
	req, _ := http.NewRequestWithContext(ctx, "POST", s.api+"/cgi-bin/stable_token", bytes.NewReader(b))
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var got struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	s.mu.Lock()
	s.accessTokens[appID] = got.AccessToken
	s.mu.Unlock()
	return got.AccessToken, nil
}

// callAPI posts in to a server API with the app's access_token, fetching
// a new one once when WeChat refuses it.
func (s *server) callAPI(ctx context.Context, appID, path string, in, out any) error {
	for attempt := 0; ; attempt++ {
		token, err := s.accessToken(ctx, appID, attempt > 0)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(in)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.api+path+"?access_token="+url.QueryEscape(token), bytes.NewReader(b))
		resp, err := s.client.Do(req)
		if err != nil {
			return err
		}
		raw := new(bytes.Buffer)
		raw.ReadFrom(resp.Body)
		resp.Body.Close()
		var head struct {
			Errcode int `json:"errcode"`
		}
		json.Unmarshal(raw.Bytes(), &head)
		if (head.Errcode == 40001 || head.Errcode == 42001) && attempt == 0 && !s.has["no-refetch"] {
			continue
		}
		if head.Errcode != 0 {
			return wechatError{head.Errcode}
		}
		return json.Unmarshal(raw.Bytes(), out)
	}
}

func (s *server) phoneNumber(w http.ResponseWriter, r *http.Request, u *user, _ string) {
	code := body(r)["code"]
	if s.has["phone-broken"] || code == "" {
		refuse(w, 400, "not supported")
		return
	}
	s.mu.Lock()
	cached, ok := s.phoneCache[code]
	s.mu.Unlock()
	if ok && s.has["phone-cache"] {
		answer(w, 200, map[string]any{"phone": cached})
		return
	}
	in := map[string]string{"code": code, "openid": u.openID}
	if s.has["phone-no-openid"] {
		delete(in, "openid")
	}
	var out struct {
		PhoneInfo struct {
			PhoneNumber string          `json:"phoneNumber"`
			CountryCode json.RawMessage `json:"countryCode"` // "86" or 86: WeChat documents both
		} `json:"phone_info"`
	}
	if err := s.callAPI(r.Context(), u.appID, "/wxa/business/getuserphonenumber", in, &out); err != nil {
		refuse(w, 400, "phone code refused")
		return
	}
	var text string
	if s.has["country-code-text-only"] && json.Unmarshal(out.PhoneInfo.CountryCode, &text) != nil {
		refuse(w, 502, "unexpected answer from WeChat")
		return
	}
	s.mu.Lock()
	u.phone, s.phoneCache[code] = out.PhoneInfo.PhoneNumber, out.PhoneInfo.PhoneNumber
	s.mu.Unlock()
	answer(w, 200, map[string]any{"phone": out.PhoneInfo.PhoneNumber})
}

func (s *server) nickname(w http.ResponseWriter, r *http.Request, u *user, _ string) {
	nick := body(r)["nickname"]
	if !s.has["no-content-check"] {
		var out struct {
			Result struct {
				Suggest string `json:"suggest"`
			} `json:"result"`
		}
		in := map[string]any{"content": nick, "version": 2, "scene": 1, "openid": u.openID}
		if err := s.callAPI(r.Context(), u.appID, "/wxa/msg_sec_check", in, &out); err != nil {
			refuse(w, 502, "cannot check the nickname")
			return
		}
		if out.Result.Suggest != "pass" {
			refuse(w, 422, "nickname refused")
			return
		}
	}
	s.mu.Lock()
	u.nick = nick
	s.mu.Unlock()
	answer(w, 200, nil)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, u *user, token string) {
	if !s.has["logout-noop"] {
		s.mu.Lock()
		delete(s.tokens, token)
		s.mu.Unlock()
	}
	answer(w, 200, nil)
}

func (s *server) deleteMe(w http.ResponseWriter, r *http.Request, u *user, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, id := range s.tokens {
		if id == u.id && (t == token || !s.has["delete-keeps-tokens"]) {
			delete(s.tokens, t)
		}
	}
	if !s.has["delete-keeps-tokens"] {
		delete(s.byID, u.id)
	}
	answer(w, 200, nil)
}

func (s *server) gift(w http.ResponseWriter, r *http.Request, u *user, _ string) {
	person := "union/" + u.unionID
	if u.unionID == "" || s.has["claim-per-openid"] {
		person = "user/" + u.appID + "/" + u.openID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claims[person] && !s.has["claim-unchecked"] {
		refuse(w, 409, "already claimed")
		return
	}
	s.claims[person] = true
	answer(w, 201, nil)
}
