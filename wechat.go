package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/flight"
	"wxlogin/internal/httpconn"
	"wxlogin/internal/metrics"
	"wxlogin/internal/opendata"
	"wxlogin/internal/redact"
)

// WeChat errcodes wxlogin acts on, with their sources in WECHAT.md §1, §3
// (40003 of getuserphonenumber) and §4.
const (
	errcodeSystemBusy    = -1    // 系统繁忙: the only errcode worth retrying
	errcodeInvalidCode   = 40029 // js_code wrong, expired, or from another app
	errcodeCodeUsed      = 40163 // js_code already exchanged (a code is single-use)
	errcodeUserBlocked   = 40226 // the user is high-risk: WeChat's risk control blocks their logins, with any code
	errcodeMissingCode   = 41008 // js_code missing
	errcodeInvalidOpenID = 40003 // getuserphonenumber: the code was not issued to this openid
	errcodeRateLimited   = 45011 // api minute-quota reached
	errcodeInvalidAppID  = 40013
	errcodeBadSecret     = 40125

	// An API call's access_token is bad: invalid or no longer the latest,
	// not an access_token, or expired (WECHAT.md §4). The token is dropped
	// and the call made once more with a fresh one.
	errcodeInvalidCredential = 40001
	errcodeInvalidToken      = 40014
	errcodeTokenExpired      = 42001

	errcodeInvalidSignature = 87009 // checksession: the session_key is not the user's current one
)

// wechatError is a reply from WeChat with a non-zero errcode.
type wechatError struct {
	API  string // the endpoint, e.g. "jscode2session"
	Code int
	Msg  string // WeChat's errmsg: for logs only, never for clients
}

func (e *wechatError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.API, e.Code, e.Msg)
}

// Errcode is e.Code, which a code's exchange shared with other instances
// tells them when WeChat refused the code (sharedExchanges).
func (e *wechatError) Errcode() int { return e.Code }

// codeRejected reports whether WeChat refused the code itself, as opposed
// to being unavailable, refusing wxlogin's own credentials or blocking the
// user: the client must then get a fresh code. (41008, a missing code, is
// not one: wxlogin never sends an empty code, so WeChat meant something
// else.)
func (e *wechatError) codeRejected() bool {
	return e.Code == errcodeInvalidCode || e.Code == errcodeCodeUsed
}

// httpStatusError is a non-2xx HTTP reply from WeChat (or a proxy before it).
type httpStatusError struct {
	API    string
	Status int
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("wechat %s: HTTP status %d", e.API, e.Status)
}

// errBadReply marks a reply that is not the JSON WeChat documents.
var errBadReply = errors.New("unexpected reply")

// code2SessionResult is a successful code2Session reply.
type code2SessionResult struct {
	OpenID     string
	SessionKey string
	UnionID    string // empty unless the app is bound to an Open Platform account
}

// sharedAccessTokens is where instances sharing a store keep each app's
// access_token: Redis's (*redisstore.AccessTokens), or nil for one instance,
// which keeps it in its own memory only.
type sharedAccessTokens interface {
	// Get returns the app's token and until when to use it, fetched by
	// fetch if no instance has one, by one instance at a time.
	Get(ctx context.Context, appID string, fetch func(ctx context.Context) (string, time.Time, error)) (string, time.Time, error)
	// Drop forgets token after WeChat refused it, unless it was replaced.
	Drop(ctx context.Context, appID, token string) error
}

// sharedExchanges is where instances sharing a store meet the exchanges
// under way: Redis's (redisExchanges, in main.go), or nil for one instance.
type sharedExchanges interface {
	// Exchange returns the answer to code: of the exchange another
	// instance has under way, or of exchange, made here. WeChat's refusal
	// comes back to the instances that waited for it as the wechatError
	// it was, but for its errmsg.
	Exchange(ctx context.Context, appID, code string, exchange func(ctx context.Context) (code2SessionResult, error)) (code2SessionResult, error)
}

// wechatClient calls WeChat's server API for one mini program.
type wechatClient struct {
	baseURL string // "https://api.weixin.qq.com", or a fake's URL
	appID   string
	secret  string
	http    *http.Client // its Timeout bounds each call
	// lean, when set, makes the calls that are a GET with no body
	// (a login's code exchange): httpconn's lean path rather than http's,
	// under http's Timeout too. It is nil where a proxy is configured,
	// which only http's client speaks to.
	lean     *httpconn.Client
	basePath string // baseURL's path, before every API's

	// requestTimeout bounds all the calls one request makes (a code exchange
	// with its retries, or an access_token fetch and the call that needs it),
	// so that every request answers in time whatever WeChat does.
	requestTimeout time.Duration
	metrics        *metrics.Metrics // counts each call; nil for none
	// backoff holds the pauses before each retry; its length is the number of
	// retries.
	backoff []time.Duration

	now func() time.Time // for the access_token's expiry

	exchanges flight.Group[string, code2SessionResult] // the code exchanges under way, by code

	tokenMu    sync.Mutex // guards token and tokenUntil
	token      string     // the cached access_token, or ""
	tokenUntil time.Time  // when to stop using token and fetch another
	tokenFetch flight.Group[struct{}, string]
	// sharedTokens, with -redis, is where every instance finds the token
	// one of them fetched (redisstore.AccessTokens), and sharedExchanges
	// the exchanges under way on any of them (redisExchanges); nil
	// for one instance.
	sharedTokens    sharedAccessTokens
	sharedExchanges sharedExchanges
}

func newWechatClient(baseURL, appID, secret string, callTimeout, requestTimeout time.Duration) *wechatClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// All calls go to one host; keep enough idle connections for a launch spike.
	transport.MaxIdleConnsPerHost = 64
	baseURL = strings.TrimSuffix(baseURL, "/")
	var lean *httpconn.Client
	var basePath string
	if u, err := url.Parse(baseURL); err == nil {
		if proxy, err := transport.Proxy(&http.Request{URL: u}); err == nil && proxy == nil {
			lean, _ = httpconn.New(baseURL, transport.MaxIdleConnsPerHost, transport.TLSClientConfig)
			basePath = u.EscapedPath()
		}
	}
	return &wechatClient{
		baseURL:  baseURL,
		appID:    appID,
		secret:   secret,
		lean:     lean,
		basePath: basePath,
		http: &http.Client{
			Transport: transport,
			Timeout:   callTimeout,
			// WeChat does not redirect; following one could carry the secret elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		requestTimeout: requestTimeout,
		backoff:        []time.Duration{100 * time.Millisecond, 300 * time.Millisecond},
		now:            time.Now,
	}
}

// code2Session exchanges a wx.login code for the user's openid and
// session_key (auth.code2Session). A code is single-use, so concurrent calls
// with the same code (a double tap, a client retry) share one request to
// WeChat and all get its result. Once that request has finished, the same
// code goes to WeChat again like any other, and WeChat refuses it.
func (c *wechatClient) code2Session(ctx context.Context, code string) (code2SessionResult, error) {
	return c.exchanges.Do(ctx, code, func(ctx context.Context) (code2SessionResult, error) {
		if c.sharedExchanges != nil {
			// And with the other instances on one Redis. The flight's ctx
			// is not the caller's (flight.Group), so the wait for
			// another instance gets the request's bound here.
			ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
			defer cancel()
			return c.sharedExchanges.Exchange(ctx, c.appID, code, func(ctx context.Context) (code2SessionResult, error) {
				return c.exchangeCode(ctx, code)
			})
		}
		return c.exchangeCode(ctx, code)
	})
}

// exchangeCode calls jscode2session, retrying what may be retried.
func (c *wechatClient) exchangeCode(ctx context.Context, code string) (code2SessionResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	q := url.Values{
		"appid":      {c.appID},
		"secret":     {c.secret},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}
	var s code2SessionResult
	err := retrying(ctx, c.backoff, errcodeCodeUsed, func() (err error) {
		s, err = c.jscode2session(ctx, q)
		return err
	})
	return s, err
}

// retrying runs call, and again after each pause of backoff while it fails
// in a way a retry may mend (retryable) and time is left. A code is
// single-use: when a retry is refused with spentCode, an earlier attempt
// reached WeChat and spent the code, but its reply was lost, and that lost
// reply is the failure to report.
func retrying(ctx context.Context, backoff []time.Duration, spentCode int, call func() error) error {
	var firstErr error
	for attempt := 0; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		var we *wechatError
		if firstErr != nil && errors.As(err, &we) && we.Code == spentCode {
			return firstErr
		}
		if firstErr == nil {
			firstErr = err
		}
		if attempt == len(backoff) || ctx.Err() != nil || !retryable(err) {
			return err
		}
		t := time.NewTimer(backoff[attempt])
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// retryable reports whether a failed call may be repeated with the same code:
// WeChat said it was busy, or the request failed in transit (a per-call
// timeout included) or at a gateway. A code error never is: WeChat has judged
// the code, and asking again cannot change that. Whether time is left for a
// retry is the caller's question.
func retryable(err error) bool {
	var we *wechatError
	if errors.As(err, &we) {
		return we.Code == errcodeSystemBusy
	}
	var hse *httpStatusError
	if errors.As(err, &hse) {
		return hse.Status == http.StatusBadGateway || hse.Status == http.StatusServiceUnavailable ||
			hse.Status == http.StatusGatewayTimeout
	}
	if errors.Is(err, errBadReply) {
		return false // Something answered, and it was not WeChat.
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// jscode2session makes one call. WeChat answers text/plain with a JSON body,
// so the Content-Type is ignored (WECHAT.md §1).
func (c *wechatClient) jscode2session(ctx context.Context, q url.Values) (code2SessionResult, error) {
	const api = "jscode2session"
	body, err := c.call(ctx, api, http.MethodGet, "/sns/jscode2session", q, nil)
	if err != nil {
		return code2SessionResult{}, err
	}
	return parseCode2Session(body)
}

// maxReplyBytes caps what is read of a WeChat reply; real ones are a few
// hundred bytes.
const maxReplyBytes = 64 << 10

// call sends a request to the API path with query q and, if body is not
// nil, body as JSON, and returns the body of a 2xx reply. Errors never carry
// a secret, code or access_token: the URL is redacted, and bodies, which may
// hold the AppSecret, are never quoted.
func (c *wechatClient) call(ctx context.Context, api, method, path string, q url.Values, body []byte) ([]byte, error) {
	start := time.Now()
	reply, err := c.send(ctx, api, method, path, q, body)
	outcome, errcode := wechatOutcome(reply, err)
	c.metrics.WechatCall(api, outcome, errcode, time.Since(start))
	return reply, err
}

// wechatOutcome is how a call ended, for the metrics: "ok", "errcode" (a
// reply with a nonzero errcode, given too), "http_status", "timeout", or
// "error".
func wechatOutcome(reply []byte, err error) (string, int) {
	var status *httpStatusError
	var timeout net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout():
		return "timeout", 0
	case errors.As(err, &status):
		return "http_status", 0
	case err != nil:
		return "error", 0
	}
	// Most successful replies carry no errcode: they are not decoded twice.
	var r struct {
		Errcode int `json:"errcode"`
	}
	if bytes.Contains(reply, []byte(`"errcode"`)) && json.Unmarshal(reply, &r) == nil && r.Errcode != 0 {
		return "errcode", r.Errcode
	}
	return "ok", 0
}

// send makes one call and reads its reply.
func (c *wechatClient) send(ctx context.Context, api, method, path string, q url.Values, body []byte) ([]byte, error) {
	if c.lean != nil && method == http.MethodGet && body == nil {
		target := c.basePath + path
		if len(q) > 0 {
			target += "?" + q.Encode()
		}
		status, reply, err := c.lean.Get(ctx, target, c.http.Timeout, maxReplyBytes)
		if err != nil {
			err = &url.Error{Op: "Get", URL: c.baseURL + strings.TrimPrefix(target, c.basePath), Err: err}
			return nil, fmt.Errorf("wechat %s: %w", api, redact.URLError(err))
		}
		if status < 200 || status > 299 {
			return nil, &httpStatusError{API: api, Status: status}
		}
		return reply, nil
	}
	var reqBody io.Reader
	if body != nil {
		reqBody = bytes.NewReader(body)
	}
	target := c.baseURL + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reqBody)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", api, redact.URLError(err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", api, redact.URLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &httpStatusError{API: api, Status: resp.StatusCode}
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("wechat %s: reading reply: %w", api, redact.URLError(err))
	}
	return reply, nil
}

// parseCode2Session decodes a jscode2session reply. On success WeChat often
// leaves errcode out rather than sending 0 (WECHAT.md §1).
func parseCode2Session(body []byte) (code2SessionResult, error) {
	var r struct {
		OpenID     string `json:"openid"`
		SessionKey string `json:"session_key"`
		UnionID    string `json:"unionid"`
		Errcode    int    `json:"errcode"`
		Errmsg     string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		// The decoder's message names a character or type, never the body,
		// which could hold a session_key.
		return code2SessionResult{}, fmt.Errorf("wechat jscode2session: %w: %v", errBadReply, err)
	}
	if r.Errcode != 0 {
		return code2SessionResult{}, &wechatError{API: "jscode2session", Code: r.Errcode, Msg: r.Errmsg}
	}
	if r.OpenID == "" || r.SessionKey == "" {
		return code2SessionResult{}, fmt.Errorf("wechat jscode2session: %w: no openid or session_key", errBadReply)
	}
	return code2SessionResult{OpenID: r.OpenID, SessionKey: r.SessionKey, UnionID: r.UnionID}, nil
}

// accessToken returns the app's access_token, fetching one only when none is
// cached or the cached one is near its end. However many requests need a
// token at the same moment, one fetch runs and all of them get its result.
func (c *wechatClient) accessToken(ctx context.Context) (string, error) {
	if token, ok := c.cachedAccessToken(); ok {
		return token, nil
	}
	return c.tokenFetch.Do(ctx, struct{}{}, c.fetchAccessToken)
}

// cachedAccessToken is the cached access_token, if it is still to be used.
func (c *wechatClient) cachedAccessToken() (string, bool) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	return c.token, c.token != "" && c.now().Before(c.tokenUntil)
}

// fetchAccessToken fetches an access_token and caches it. A failure is not
// cached: the next request tries again.
func (c *wechatClient) fetchAccessToken(ctx context.Context) (string, error) {
	// A fetch may have finished between the caller's look at the cache and
	// this one's start.
	if token, ok := c.cachedAccessToken(); ok {
		return token, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	fetch := func(ctx context.Context) (string, time.Time, error) {
		fetchedAt := c.now()
		token, lifetime, err := c.stableToken(ctx)
		return token, fetchedAt.Add(lifetime), err
	}
	var token string
	var until time.Time
	var err error
	if c.sharedTokens != nil {
		token, until, err = c.sharedTokens.Get(ctx, c.appID, fetch)
	} else {
		token, until, err = fetch(ctx)
	}
	if err != nil {
		return "", err
	}
	c.tokenMu.Lock()
	c.token, c.tokenUntil = token, until
	c.tokenMu.Unlock()
	return token, nil
}

// dropAccessToken forgets token after WeChat refused it, here and where
// instances share it, unless it has already been replaced: of many calls
// refused with one stale token, only the first causes a fetch.
func (c *wechatClient) dropAccessToken(ctx context.Context, token string) error {
	// The shared copy first: a request that finds the local one gone must
	// not fetch the refused token back from Redis.
	if c.sharedTokens != nil {
		if err := c.sharedTokens.Drop(ctx, c.appID, token); err != nil {
			return err
		}
	}
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token == token {
		c.token = ""
	}
	return nil
}

// stableToken calls getStableAccessToken in normal mode, which returns the
// token WeChat currently holds for the app rather than replacing it, so
// other servers sharing the AppSecret keep working (WECHAT.md §4). It
// returns how long to use the token: until shortly before it expires, when
// WeChat has already issued its successor.
func (c *wechatClient) stableToken(ctx context.Context) (string, time.Duration, error) {
	const api = "stable_token"
	body, _ := json.Marshal(map[string]any{ // Cannot fail: plain data.
		"grant_type":    "client_credential",
		"appid":         c.appID,
		"secret":        c.secret,
		"force_refresh": false,
	})
	reply, err := c.call(ctx, api, http.MethodPost, "/cgi-bin/stable_token", nil, body)
	if err != nil {
		return "", 0, err
	}
	token, expiresIn, err := parseStableToken(reply)
	if err != nil {
		return "", 0, err
	}
	// WeChat renews a stable token 5 minutes before it expires; one fetched
	// in those minutes may have as little as that left.
	lifetime := expiresIn - min(5*time.Minute, expiresIn/2)
	return token, lifetime, nil
}

// parseStableToken decodes a stable_token reply.
func parseStableToken(body []byte) (string, time.Duration, error) {
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := decodeReply("stable_token", body, &r); err != nil {
		return "", 0, err
	}
	if r.AccessToken == "" || r.ExpiresIn <= 0 || r.ExpiresIn > 7200 {
		return "", 0, fmt.Errorf("wechat stable_token: %w: no access_token, or expires_in %d not in 1..7200", errBadReply, r.ExpiresIn)
	}
	return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, nil
}

// withAccessToken calls do with the app's access_token. If WeChat answers
// that the token is bad, it is dropped and do runs once more with a fresh
// one. The whole exchange is bounded by requestTimeout.
func (c *wechatClient) withAccessToken(ctx context.Context, do func(ctx context.Context, token string) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		token, err := c.accessToken(ctx)
		if err != nil {
			return err
		}
		err = do(ctx, token)
		var we *wechatError
		if attempt > 0 || !errors.As(err, &we) || !we.tokenRefused() {
			return err
		}
		if err := c.dropAccessToken(ctx, token); err != nil {
			return err
		}
	}
}

// tokenRefused reports whether WeChat refused the call's access_token.
func (e *wechatError) tokenRefused() bool {
	switch e.Code {
	case errcodeInvalidCredential, errcodeInvalidToken, errcodeTokenExpired:
		return true
	}
	return false
}

// decodeReply decodes a server API reply: a non-zero errcode becomes a
// *wechatError, and on success the reply is decoded into v unless v is nil.
func decodeReply(api string, body []byte, v any) error {
	var r struct {
		Errcode int    `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("wechat %s: %w: %v", api, errBadReply, err)
	}
	if r.Errcode != 0 {
		return &wechatError{API: api, Code: r.Errcode, Msg: r.Errmsg}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("wechat %s: %w: %v", api, errBadReply, err)
	}
	return nil
}

// phoneNumber exchanges a phone code, of getPhoneNumber or
// getRealtimePhoneNumber, for the user's phone number (getuserphonenumber,
// WECHAT.md §3). openID asks WeChat to check that the code was issued to
// this user. After WeChat refused the access_token, when it never looked at
// the code, the call is made again; and once after -1 (system busy) or a
// failure in transit, as WxJava does for every call (WECHAT.md §3): the
// user paid for the code when the tap succeeded, so giving up on a busy
// WeChat costs them another, and a retry that finds the code spent reports
// the first failure, not the spent code.
func (c *wechatClient) phoneNumber(ctx context.Context, code, openID string) (opendata.Data, error) {
	const api = "getuserphonenumber"
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"code": code, "openid": openID}) // Cannot fail: plain data.
	var info opendata.Data
	err := retrying(ctx, c.backoff[:min(1, len(c.backoff))], errcodeInvalidCode, func() error {
		return c.withAccessToken(ctx, func(ctx context.Context, token string) error {
			reply, err := c.call(ctx, api, http.MethodPost, "/wxa/business/getuserphonenumber",
				url.Values{"access_token": {token}}, body)
			if err != nil {
				return err
			}
			info, err = parsePhoneReply(reply)
			return err
		})
	})
	return info, err
}

// parsePhoneReply decodes a getuserphonenumber reply and returns its
// phone_info, to be read like decrypted phone data.
func parsePhoneReply(body []byte) (opendata.Data, error) {
	var r struct {
		PhoneInfo json.RawMessage `json:"phone_info"`
	}
	if err := decodeReply("getuserphonenumber", body, &r); err != nil {
		return nil, err
	}
	fields, err := opendata.ReadObject(r.PhoneInfo)
	if err != nil {
		return nil, fmt.Errorf("wechat getuserphonenumber: %w: phone_info: %v", errBadReply, err)
	}
	return opendata.Data(fields), nil
}

// checkSessionKey asks WeChat whether sessionKey is still the user's current
// session_key (checksession, WECHAT.md §4). The session_key itself is never
// sent: the signature is an HMAC-SHA256 of the empty string keyed with it.
func (c *wechatClient) checkSessionKey(ctx context.Context, openID, sessionKey string) (bool, error) {
	const api = "checksession"
	signature := opendata.SessionKeySignature(sessionKey)
	valid := false
	err := c.withAccessToken(ctx, func(ctx context.Context, token string) error {
		q := url.Values{
			"access_token": {token},
			"openid":       {openID},
			"signature":    {signature},
			"sig_method":   {"hmac_sha256"},
		}
		reply, err := c.call(ctx, api, http.MethodGet, "/wxa/checksession", q, nil)
		if err != nil {
			return err
		}
		err = decodeReply(api, reply, nil)
		var we *wechatError
		switch {
		case err == nil:
			valid = true
		case errors.As(err, &we) && we.Code == errcodeInvalidSignature:
			valid, err = false, nil
		}
		return err
	})
	return valid, err
}

// The verdicts of msgSecCheck 2.0: result.suggest.
const (
	suggestPass   = "pass"
	suggestReview = "review"
	suggestRisky  = "risky"
)

// contentSceneProfile is msgSecCheck's scene for profile data (资料).
const contentSceneProfile = 1

// contentVerdict is msgSecCheck's overall result.
type contentVerdict struct {
	Suggest string `json:"suggest"` // pass, review or risky
	Label   int    `json:"label"`   // what was found: 100 normal, 20001 politics, … (WECHAT.md §9)
}

// msgSecCheck asks WeChat whether content, typed by the user openID into
// their profile, may be shown (msg_sec_check, version 2, WECHAT.md §9). The
// access_token goes in the URL only: WeChat refuses one in the body with
// 47001.
func (c *wechatClient) msgSecCheck(ctx context.Context, openID, content string) (contentVerdict, error) {
	const api = "msg_sec_check"
	body, _ := json.Marshal(struct { // Cannot fail: plain data.
		Content string `json:"content"`
		Version int    `json:"version"`
		Scene   int    `json:"scene"`
		OpenID  string `json:"openid"`
	}{content, 2, contentSceneProfile, openID})
	var verdict contentVerdict
	err := c.withAccessToken(ctx, func(ctx context.Context, token string) error {
		reply, err := c.call(ctx, api, http.MethodPost, "/wxa/msg_sec_check", url.Values{"access_token": {token}}, body)
		if err != nil {
			return err
		}
		verdict, err = parseContentVerdict(reply)
		return err
	})
	return verdict, err
}

// parseContentVerdict decodes a msg_sec_check reply. A reply without one of
// the three verdicts is not an answer: it could otherwise pass risky text.
func parseContentVerdict(body []byte) (contentVerdict, error) {
	var r struct {
		Result *contentVerdict `json:"result"`
	}
	if err := decodeReply("msg_sec_check", body, &r); err != nil {
		return contentVerdict{}, err
	}
	if r.Result == nil {
		return contentVerdict{}, fmt.Errorf("wechat msg_sec_check: %w: no result", errBadReply)
	}
	switch r.Result.Suggest {
	case suggestPass, suggestReview, suggestRisky:
		return *r.Result, nil
	}
	return contentVerdict{}, fmt.Errorf("wechat msg_sec_check: %w: suggest %q", errBadReply, r.Result.Suggest)
}
