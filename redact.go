package main

import (
	"encoding/json"
	"errors"
	"net/url"
)

// This file keeps secrets out of what wxlogin shows: its log lines and
// errors, and the teaching page's drawing of each exchange with WeChat.

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
	for name := range q {
		if _, secret := secretFields[name]; secret {
			q.Set(name, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// redactValue is what the teaching page shows of a query parameter.
func redactValue(key, value string) string {
	if label := secretFields[key]; label != "" {
		return label
	}
	return value
}

// redactJSON returns body with the secrets of a JSON object replaced, or
// nil if body is empty or not a JSON object: the fake's server API speaks
// JSON objects, and anything else is not worth drawing.
func redactJSON(body []byte) json.RawMessage {
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
