package main

import (
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
)

// WeChat errcodes wxlogin acts on. See ../shared/WECHAT.md §1 for sources.
const (
	errcodeSystemBusy   = -1    // 系统繁忙: the only errcode worth retrying
	errcodeInvalidCode  = 40029 // js_code wrong, expired, or from another app
	errcodeCodeUsed     = 40163 // js_code already exchanged (a code is single-use)
	errcodeCodeBlocked  = 40226 // high-risk user, login blocked by WeChat
	errcodeMissingCode  = 41008 // js_code missing
	errcodeRateLimited  = 45011 // api minute-quota reached
	errcodeInvalidAppID = 40013
	errcodeBadSecret    = 40125
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

// codeRejected reports whether WeChat refused the login code itself, as
// opposed to being unavailable or refusing wxlogin's own credentials: the
// client must then get a fresh code from wx.login.
func (e *wechatError) codeRejected() bool {
	switch e.Code {
	case errcodeInvalidCode, errcodeCodeUsed, errcodeCodeBlocked, errcodeMissingCode:
		return true
	}
	return false
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

// codeSession is a successful code2Session reply.
type codeSession struct {
	OpenID     string
	SessionKey string
	UnionID    string // empty unless the app is bound to an Open Platform account
}

// wechatClient calls WeChat's server API for one mini program.
type wechatClient struct {
	baseURL string // "https://api.weixin.qq.com", or a fake's URL
	appID   string
	secret  string
	http    *http.Client // its Timeout bounds each call

	// loginTimeout bounds a whole code exchange, retries included, so that a
	// login answers in time whatever WeChat does.
	loginTimeout time.Duration
	// backoff holds the pauses before each retry; its length is the number of
	// retries.
	backoff []time.Duration

	mu       sync.Mutex // guards inflight
	inflight map[string]*codeExchange
}

// codeExchange is one code2Session call that concurrent logins with the same
// code share.
type codeExchange struct {
	done chan struct{} // closed when res and err are set
	res  codeSession
	err  error
}

func newWechatClient(baseURL, appID, secret string, callTimeout, loginTimeout time.Duration) *wechatClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// All calls go to one host; keep enough idle connections for a launch spike.
	transport.MaxIdleConnsPerHost = 64
	return &wechatClient{
		baseURL: strings.TrimSuffix(baseURL, "/"),
		appID:   appID,
		secret:  secret,
		http: &http.Client{
			Transport: transport,
			Timeout:   callTimeout,
			// WeChat does not redirect; following one could carry the secret elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		loginTimeout: loginTimeout,
		backoff:      []time.Duration{100 * time.Millisecond, 300 * time.Millisecond},
		inflight:     map[string]*codeExchange{},
	}
}

// code2Session exchanges a wx.login code for the user's openid and
// session_key (auth.code2Session). A code is single-use, so concurrent calls
// with the same code (a double tap, a client retry) share one request to
// WeChat and all get its result. Once that request has finished, the same
// code goes to WeChat again like any other, and WeChat refuses it.
func (c *wechatClient) code2Session(ctx context.Context, code string) (codeSession, error) {
	c.mu.Lock()
	if x, ok := c.inflight[code]; ok {
		c.mu.Unlock()
		select {
		case <-x.done:
			return x.res, x.err
		case <-ctx.Done():
			return codeSession{}, ctx.Err()
		}
	}
	x := &codeExchange{done: make(chan struct{})}
	c.inflight[code] = x
	c.mu.Unlock()

	// The exchange outlives this caller's cancellation: others may be waiting
	// for it, and abandoning it would spend the code for nothing.
	x.res, x.err = c.exchange(context.WithoutCancel(ctx), code)
	c.mu.Lock()
	delete(c.inflight, code)
	c.mu.Unlock()
	close(x.done)
	return x.res, x.err
}

// exchange calls jscode2session, retrying what may be retried.
func (c *wechatClient) exchange(ctx context.Context, code string) (codeSession, error) {
	ctx, cancel := context.WithTimeout(ctx, c.loginTimeout)
	defer cancel()
	q := url.Values{
		"appid":      {c.appID},
		"secret":     {c.secret},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}
	var firstErr error
	for attempt := 0; ; attempt++ {
		s, err := c.jscode2session(ctx, q)
		if err == nil {
			return s, nil
		}
		var we *wechatError
		if firstErr != nil && errors.As(err, &we) && we.Code == errcodeCodeUsed {
			// Our own earlier attempt reached WeChat and used the code, but its
			// reply was lost: that lost reply is the failure to report.
			return codeSession{}, firstErr
		}
		if firstErr == nil {
			firstErr = err
		}
		if attempt == len(c.backoff) || ctx.Err() != nil || !retryable(err) {
			return codeSession{}, err
		}
		t := time.NewTimer(c.backoff[attempt])
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return codeSession{}, err
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
func (c *wechatClient) jscode2session(ctx context.Context, q url.Values) (codeSession, error) {
	const api = "jscode2session"
	body, err := c.get(ctx, api, "/sns/jscode2session", q)
	if err != nil {
		return codeSession{}, err
	}
	return parseCode2Session(body)
}

// maxReplyBytes caps what is read of a WeChat reply; real ones are a few
// hundred bytes.
const maxReplyBytes = 64 << 10

// get sends a GET to the API path with query q and returns the body of a
// 2xx reply. Errors never carry the secret or the code: the URL is redacted.
func (c *wechatClient) get(ctx context.Context, api, path string, q url.Values) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", api, redactURLError(err))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", api, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &httpStatusError{API: api, Status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("wechat %s: reading reply: %w", api, redactURLError(err))
	}
	return body, nil
}

// parseCode2Session decodes a jscode2session reply. On success WeChat often
// leaves errcode out rather than sending 0 (WECHAT.md §1).
func parseCode2Session(body []byte) (codeSession, error) {
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
		return codeSession{}, fmt.Errorf("wechat jscode2session: %w: %v", errBadReply, err)
	}
	if r.Errcode != 0 {
		return codeSession{}, &wechatError{API: "jscode2session", Code: r.Errcode, Msg: r.Errmsg}
	}
	if r.OpenID == "" || r.SessionKey == "" {
		return codeSession{}, fmt.Errorf("wechat jscode2session: %w: no openid or session_key", errBadReply)
	}
	return codeSession{OpenID: r.OpenID, SessionKey: r.SessionKey, UnionID: r.UnionID}, nil
}

// secretParams are the query parameters that must never reach a log line or
// an error message: the AppSecret, the login code, the access_token.
var secretParams = [...]string{"secret", "js_code", "access_token"}

// redactURLError hides secret query parameters in the URL that net/http puts
// in its errors.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	redacted := *ue
	redacted.URL = redactURL(ue.URL)
	return &redacted
}

// redactURL replaces the values of secret query parameters with "REDACTED".
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	q := u.Query()
	for _, p := range secretParams {
		if q.Has(p) {
			q.Set(p, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}
