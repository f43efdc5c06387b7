package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"wxlogin/internal/account"
)

// This file checks what users type, as WeChat checks it. The nickname
// input (<input type="nickname">) runs WeChat's content check in the
// client, but PATCH /user is an HTTP route anyone with a token can call
// directly, so a changed nickname is checked again here with msgSecCheck
// 2.0 (WECHAT.md §9) before it is saved. A nickname is shown to other
// users, and a mini program that shows unchecked user text is the one
// WeChat holds responsible.
//
// The verdicts: "risky" is refused with status 9; "review" (WeChat is not
// sure) is accepted, as WeChat's own nickname input accepts it; "pass" is
// accepted. When the check cannot be made (WeChat down, the access_token
// unobtainable, 61010 for a user WeChat has not seen in two hours), the
// change is refused with status 3: a nickname can wait for WeChat, and
// accepting it unchecked would make the check worthless whenever WeChat is
// slow. The setting -content-check turns it off, for deployments that check
// content elsewhere.

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
// their profile, may be shown (msg_sec_check, version 2). The access_token
// goes in the URL only: WeChat refuses one in the body with 47001.
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

// checkNickname refuses a nickname msgSecCheck finds risky, when the app
// checks content and the nickname is a new, non-empty one. current is the
// user's nickname before the change: an unchanged one is not sent again.
func checkNickname(ctx context.Context, app *miniApp, who account.Caller, current, nickname string) error {
	if !app.checkContent || nickname == "" || nickname == current {
		return nil
	}
	verdict, err := app.wx.msgSecCheck(ctx, who.OpenID, nickname)
	if err != nil {
		return wechatFailure(err)
	}
	if verdict.Suggest == suggestRisky {
		return &apiError{status: statusContentRisky, httpCode: http.StatusUnprocessableEntity, msg: msgContentRisky,
			cause: fmt.Errorf("msg_sec_check: nickname refused, label %d", verdict.Label)}
	}
	return nil
}
