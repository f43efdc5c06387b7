package conform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// reply is one answer of the backend under test, as conform saw it. err is
// set when there was none: a timeout, a refused connection.
type reply struct {
	route  string
	status int
	header http.Header
	body   []byte
	err    error
	took   time.Duration
}

// ok reports whether the backend answered with a 2xx.
func (r reply) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// serverError reports whether the backend answered with a 5xx.
func (r reply) serverError() bool { return r.err == nil && r.status >= 500 }

// String is the reply as evidence: status and the start of the body.
func (r reply) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s: no answer: %v", r.route, r.err)
	}
	body := string(r.body)
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return fmt.Sprintf("%s: HTTP %d %s", r.route, r.status, strings.TrimSpace(body))
}

// at is the value at a JSON path ("data.token") of the reply's body, as
// text; "" when the body is not JSON or has nothing there.
func (r reply) at(path string) string {
	var v any
	if json.Unmarshal(r.body, &v) != nil {
		return ""
	}
	for _, name := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			v = node[name]
		case []any:
			i, err := strconv.Atoi(name)
			if err != nil || i < 0 || i >= len(node) {
				return ""
			}
			v = node[i]
		default:
			return ""
		}
	}
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool, map[string]any, []any:
		b, _ := json.Marshal(v)
		return string(b)
	}
	return ""
}

// backend drives the backend under test as its profile says. Every reply
// is shown to seen, which looks for secrets in it.
type backend struct {
	p      *Profile
	client *http.Client
	seen   func(reply)
}

// call sends fields (by WeChat's names) to route, with token when it is not "".
func (b *backend) call(ctx context.Context, name string, route Route, token string, fields map[string]string) reply {
	values := url.Values{}
	obj := map[string]string{}
	for k, v := range fields {
		if mapped, ok := route.Fields[k]; ok {
			k = mapped
		}
		if k == "" {
			continue
		}
		values.Set(k, v)
		obj[k] = v
	}
	var body io.Reader
	contentType, target := "", b.p.BaseURL+route.Path
	switch {
	case route.Encoding == "query" && len(values) > 0:
		target += "?" + values.Encode()
	case route.Encoding == "query":
	case route.Encoding == "form":
		body, contentType = strings.NewReader(values.Encode()), "application/x-www-form-urlencoded"
	case route.Method != http.MethodDelete || len(fields) > 0:
		enc, _ := json.Marshal(obj)
		body, contentType = bytes.NewReader(enc), "application/json"
	}
	rep := reply{route: name + " (" + route.Method + " " + route.Path + ")"}
	req, err := http.NewRequestWithContext(ctx, route.Method, target, body)
	if err != nil {
		rep.err = err
		return rep
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		v := token
		if b.p.Auth.Scheme != "" {
			v = b.p.Auth.Scheme + " " + token
		}
		req.Header.Set(b.p.Auth.Header, v)
	}
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		rep.err, rep.took = err, time.Since(start)
		return rep
	}
	defer resp.Body.Close()
	rep.status, rep.header = resp.StatusCode, resp.Header
	rep.body, rep.err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	rep.took = time.Since(start)
	b.seen(rep)
	return rep
}

// login sends a login code for app and returns the token the answer holds,
// "" if it holds none or is not a 2xx.
func (b *backend) login(ctx context.Context, app App, code string) (string, reply) {
	fields := map[string]string{"code": code}
	if b.p.Login.SendAppID {
		fields["appid"] = app.AppID
	}
	rep := b.call(ctx, "login", b.p.Login.Route, "", fields)
	if !rep.ok() {
		return "", rep
	}
	return rep.at(b.p.Login.Token), rep
}

// whoami returns the id of the user token belongs to, "" if the backend
// does not answer it with one. The profile has a whoami route.
func (b *backend) whoami(ctx context.Context, token string) (string, reply) {
	rep := b.call(ctx, "whoami", b.p.WhoAmI.Route, token, nil)
	if !rep.ok() {
		return "", rep
	}
	return rep.at(b.p.WhoAmI.UserID), rep
}

// waitReady polls the profile's ready path until the backend answers it
// at all, for up to the profile's wait.
func (b *backend) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(b.p.Wait))
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.p.BaseURL+b.p.Ready, nil)
		resp, err := b.client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the backend at %s did not answer GET %s within %v: %v", b.p.BaseURL, b.p.Ready, time.Duration(b.p.Wait), lastErr)
		case <-tick.C:
		}
	}
}
