// Package redact keeps secrets out of what wxlogin shows: its log lines and
// errors, and the teaching page's drawing of each exchange with WeChat.
package redact

import (
	"encoding/json"
	"errors"
	"maps"
	"net/url"
)

// secretFields are the names under which a secret travels between wxlogin
// and WeChat, as a query parameter or a JSON member, each with what the
// teaching page shows in its place. No log line or error shows any of them.
// The page says what each secret is and where it stays, so that the
// session_key is seen to stay on the server; the login code alone it shows
// (label ""), so that one code is seen to go from the phone to wxlogin to
// WeChat: the phone the page runs for had it, and it is spent by then.
var secretFields = map[string]string{
	"secret":       "[AppSecret: hidden]",
	"session_key":  "[session_key: kept by wxlogin, never sent to the phone]",
	"access_token": "[access_token: hidden]",
	"signature":    "[signature: an HMAC made with the session_key]",
	"js_code":      "",
	// Not a secret but what a user typed, sent to msgSecCheck: the page
	// need not show other users' nicknames.
	"content": "[content: the text checked]",
}

// URLError hides secret query parameters in the URL that net/http puts
// in its errors.
func URLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	redacted := *ue
	redacted.URL = URL(ue.URL)
	return &redacted
}

// URL replaces the values of secret query parameters with "REDACTED".
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	q := u.Query()
	for name := range q {
		if _, secret := secretFields[name]; secret {
			q.Set(name, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Labels are the names of the secret fields, each with what the teaching
// page shows in its place ("" for the login code, shown as it is): a copy.
func Labels() map[string]string { return maps.Clone(secretFields) }

// Value is what the teaching page shows of a query parameter.
func Value(key, value string) string {
	if label := secretFields[key]; label != "" {
		return label
	}
	return value
}

// JSON returns body with the secrets of a JSON object replaced, or
// nil if body is empty or not a JSON object: the fake's server API speaks
// JSON objects, and anything else is not worth drawing.
func JSON(body []byte) json.RawMessage {
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil
	}
	for k := range fields {
		if label := secretFields[k]; label != "" {
			fields[k] = label
		}
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return nil // Cannot happen: the values came from JSON.
	}
	return out
}
