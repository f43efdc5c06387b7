package fakewechat

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"
	"wxlogin/internal/account"
	"wxlogin/internal/opendata"
)

// This file is the fake WeChat's client side: what the WeChat app gives a
// mini program's code (wx.login, the buttons' e.detail, wx.getWeRunData),
// served as POST /mock/wx.<api> with the user named in the body. It keeps
// what WeChat keeps for each user on the phone side: whether they agreed to
// the app's privacy guide, and how many paid phone verifications the app
// has left.

// The errno of a client API failure, with WeChat's errMsg.
const (
	errnoPrivacyNotAuthorized = 104     // "<api>:fail privacy permission is not authorized" (WECHAT.md §10)
	errnoNoPhoneQuota         = 1400001 // the app's phone verifications are used up (WECHAT.md §3)
)

// anonymousNickname is the nickname WeChat has given every user in
// getUserInfo and getUserProfile data since its 2021 and 2022 changes
// (WECHAT.md §5).
const anonymousNickname = "微信用户"

// anonymousAvatarURL is the grey avatar WeChat sends in place of the real one
// (WECHAT.md §5).
const anonymousAvatarURL = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132"

// clientRequest is the body of every fake client API call: who is using the
// mini program, and which one when the fake serves several.
type clientRequest struct {
	User      string `json:"user"`
	AppID     string `json:"appid"`
	Anonymous bool   `json:"anonymous"` // getUserInfo: answer as WeChat does since 2021
	Blocked   bool   `json:"blocked"`   // /mock/risk-control: block the user's logins, or stop
}

// clientFail answers a client API call with WeChat's "<api>:fail <reason>".
func clientFail(w http.ResponseWriter, code int, api, reason string) {
	writeJSON(w, code, map[string]string{"errMsg": api + ":fail " + reason})
}

// clientFailErrno answers a client API call that WeChat fails with an errno
// as well: HTTP 200, since the mini program's callback gets it like any
// other result.
func clientFailErrno(w http.ResponseWriter, api, reason string, errno int) {
	writeJSON(w, http.StatusOK, map[string]any{"errMsg": api + ":fail " + reason, "errno": errno})
}

// clientRoutes serves the client API under /mock/.
func (f *Fake) clientRoutes(mux *http.ServeMux) {
	mux.Handle("POST /mock/wx.login", f.handleLogin())
	mux.Handle("POST /mock/wx.getUserInfo", f.handleGetUserInfo())
	mux.Handle("POST /mock/wx.getPhoneNumber", f.handleGetPhoneNumber("getPhoneNumber", true))
	mux.Handle("POST /mock/wx.getRealtimePhoneNumber", f.handleGetPhoneNumber("getRealtimePhoneNumber", false))
	mux.Handle("POST /mock/wx.getWeRunData", f.handleGetWeRunData())
	mux.Handle("POST /mock/wx.getPrivacySetting", f.handleGetPrivacySetting())
	mux.Handle("POST /mock/wx.agreePrivacyAuthorization", f.handleSetPrivacy("agreePrivacyAuthorization", true))
	mux.Handle("POST /mock/wx.revokePrivacyAuthorization", f.handleSetPrivacy("revokePrivacyAuthorization", false))
	mux.Handle("GET /mock/phone-quota", f.handlePhoneQuota())
	mux.Handle("POST /mock/phone-quota", f.handlePhoneQuota())
}

// decodeClientRequest reads a client API call, filling in the app when the
// fake has only one. On failure it has answered, and returns false.
func (f *Fake) decodeClientRequest(w http.ResponseWriter, r *http.Request, api string) (clientRequest, bool) {
	var req clientRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			clientFail(w, http.StatusRequestEntityTooLarge, api, "body too large")
			return req, false
		}
		clientFail(w, http.StatusBadRequest, api, `body must be JSON like {"user": "alice"}`)
		return req, false
	}
	if req.User == "" || !utf8.ValidString(req.User) || utf8.RuneCountInString(req.User) > 64 {
		clientFail(w, http.StatusBadRequest, api, "user must be a name of 1 to 64 characters")
		return req, false
	}
	if req.AppID == "" && len(f.apps) == 1 {
		for appID := range f.apps {
			req.AppID = appID
		}
	}
	if _, ok := f.apps[req.AppID]; !ok {
		reason := "unknown appid"
		if req.AppID == "" {
			reason = "appid required: the fake serves several apps"
		}
		clientFail(w, http.StatusBadRequest, api, reason)
		return req, false
	}
	f.mu.Lock()
	f.lastVisit[appUser{req.AppID, req.User}] = f.now() // the user is using the mini program
	f.mu.Unlock()
	return req, true
}

// privacyAgreed reports whether u has agreed to their app's privacy guide.
func (f *Fake) privacyAgreed(u appUser) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.privacy[u]
}

// refusePrivate answers a privacy interface called before the user agreed
// to the privacy guide, as WeChat fails it, and reports whether it did.
// WeChat's own popup, or the mini program's (wx.onNeedPrivacyAuthorization
// and <button open-type="agreePrivacyAuthorization">), runs on the phone
// before the call; the fake sees only its outcome, through
// wx.agreePrivacyAuthorization.
func (f *Fake) refusePrivate(w http.ResponseWriter, api string, u appUser) bool {
	if f.privacyAgreed(u) {
		return false
	}
	clientFailErrno(w, api, "privacy permission is not authorized", errnoPrivacyNotAuthorized)
	return true
}

// handleGetPrivacySetting serves POST /mock/wx.getPrivacySetting: whether
// the user must still agree to the privacy guide, and its name.
func (f *Fake) handleGetPrivacySetting() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getPrivacySetting")
		if !ok {
			return
		}
		name := f.apps[req.AppID].Name
		if name == "" {
			name = "小程序"
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"errMsg":              "getPrivacySetting:ok",
			"needAuthorization":   !f.privacyAgreed(appUser{req.AppID, req.User}),
			"privacyContractName": "《" + name + "隐私保护指引》",
		})
	})
}

// handleSetPrivacy serves POST /mock/wx.agreePrivacyAuthorization (agreed):
// the user tapped <button open-type="agreePrivacyAuthorization">, or agreed
// in WeChat's own popup, and WeChat remembers it for the user and the app;
// and POST /mock/wx.revokePrivacyAuthorization: the agreement is gone, as
// when the user removes the mini program from their recent list, or its
// guide gains a new kind of data and needs a new agreement.
func (f *Fake) handleSetPrivacy(api string, agreed bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, api)
		if !ok {
			return
		}
		u := appUser{req.AppID, req.User}
		f.mu.Lock()
		if agreed {
			f.privacy[u] = true
		} else {
			delete(f.privacy, u)
		}
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"errMsg": api + ":ok"})
	})
}

// phoneQuotaSetting is the body of POST /mock/phone-quota and GET's answer: how
// many phone verifications an app has left. WeChat charges each successful
// tap (WECHAT.md §3); an app without quota gets errno 1400001. Remaining -1
// is no limit, the fake's default, so that load tests never run out.
type phoneQuotaSetting struct {
	AppID     string `json:"appid"`
	Remaining int    `json:"remaining"`
}

// handlePhoneQuota serves GET and POST /mock/phone-quota, which set and
// show an app's phone quota, as buying packages in WeChat's console does.
func (f *Fake) handlePhoneQuota() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := phoneQuotaSetting{AppID: r.URL.Query().Get("appid")}
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Remaining < -1 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be JSON like {"appid": "wx…", "remaining": 0}; remaining -1 is no limit`})
				return
			}
		}
		if q.AppID == "" && len(f.apps) == 1 {
			for appID := range f.apps {
				q.AppID = appID
			}
		}
		if _, ok := f.apps[q.AppID]; !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown appid"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Method == http.MethodPost {
			f.phoneQuota[q.AppID] = q.Remaining
		}
		q.Remaining = -1
		if n, ok := f.phoneQuota[q.AppID]; ok {
			q.Remaining = n
		}
		writeJSON(w, http.StatusOK, q)
	})
}

// chargePhone takes one verification from appID's quota, reporting false
// if none is left.
func (f *Fake) chargePhone(appID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, limited := f.phoneQuota[appID]
	switch {
	case !limited || n < 0:
		return true
	case n == 0:
		return false
	}
	f.phoneQuota[appID] = n - 1
	return true
}

// handleLogin serves POST /mock/wx.login: what wx.login() gives a mini program.
// The body names the user, {"user": "alice"}, and optionally the app; the
// reply is wx.login's success result, {"errMsg": "login:ok", "code": "..."}.
// Each login also gives the user a fresh session_key, as wx.login may.
func (f *Fake) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "login")
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"errMsg": "login:ok", "code": f.IssueCode(req.AppID, req.User)})
	})
}

// IssueCode creates a single-use login code for user in appID, with a new
// session_key that is the user's current one from now on: what wx.login
// (POST /mock/wx.login) gives, without the round trip.
func (f *Fake) IssueCode(appID, user string) string {
	u := appUser{appID, user}
	c := &issuedCode{
		code:       randomText(24, base64.RawURLEncoding.EncodeToString),
		user:       u,
		sessionKey: randomText(16, base64.StdEncoding.EncodeToString), // an AES-128 key
		expires:    f.now().Add(codeLifetime),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loginCodes.add(c, f.now())
	f.lastVisit[u] = f.now()
	f.sessionKeys[u] = c.sessionKey
	f.openIDs[account.Ref{AppID: appID, OpenID: f.openID(appID, user)}] = user
	return c.code
}

// encryptForUser encrypts v's JSON with the user's current session_key and
// a random iv, as WeChat encrypts open data, and returns the key it used,
// so that a signature made alongside uses the same one even if a wx.login
// replaces it meanwhile. It reports false if the user has not run wx.login,
// which WeChat requires first.
func (f *Fake) encryptForUser(u appUser, v any) (encryptedData, iv, key string, ok bool) {
	key, ok = f.sessionKey(u)
	if !ok {
		return "", "", "", false
	}
	ivBytes := make([]byte, 16)
	rand.Read(ivBytes)
	data, err := opendata.Encrypt(key, marshalAsWeChat(v), ivBytes)
	if err != nil {
		return "", "", "", false // Cannot happen: the fake's keys are 16 bytes.
	}
	return data, base64.StdEncoding.EncodeToString(ivBytes), key, true
}

// handleGetUserInfo serves POST /mock/wx.getUserInfo: the e.detail a
// <button open-type="getUserInfo"> handler gets, made with the user's current
// session_key. The profile is the user's name and a made-up avatar, or with
// "anonymous": true the placeholder WeChat has sent since 2021.
func (f *Fake) handleGetUserInfo() http.Handler {
	// The field order is WeChat's (WECHAT.md §2).
	type userInfo struct {
		NickName  string `json:"nickName"`
		Gender    int    `json:"gender"`
		Language  string `json:"language"`
		City      string `json:"city"`
		Province  string `json:"province"`
		Country   string `json:"country"`
		AvatarURL string `json:"avatarUrl"`
	}
	type encrypted struct {
		OpenID string `json:"openId"`
		userInfo
		UnionID   string    `json:"unionId,omitempty"`
		Watermark watermark `json:"watermark"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getUserInfo")
		if !ok || f.refusePrivate(w, "getUserInfo", appUser{req.AppID, req.User}) {
			return
		}
		u := appUser{req.AppID, req.User}
		nickname, avatar := f.profile(req.User)
		info := userInfo{NickName: nickname, Language: "zh_CN", AvatarURL: avatar}
		if req.Anonymous {
			info = userInfo{NickName: anonymousNickname, AvatarURL: anonymousAvatarURL}
		}
		plain := encrypted{
			OpenID: f.openID(u.appID, u.name), userInfo: info, UnionID: f.unionID(u),
			Watermark: watermark{Timestamp: f.now().Unix(), AppID: u.appID},
		}
		data, iv, key, ok := f.encryptForUser(u, plain)
		if !ok {
			clientFail(w, http.StatusBadRequest, "getUserInfo", "call wx.login first")
			return
		}
		rawData := string(marshalAsWeChat(info))
		writeJSON(w, http.StatusOK, map[string]any{
			"errMsg":        "getUserInfo:ok",
			"userInfo":      info,
			"rawData":       rawData,
			"signature":     opendata.SignRawData(rawData, key),
			"encryptedData": data,
			"iv":            iv,
		})
	})
}

// handleGetPhoneNumber serves POST /mock/wx.getPhoneNumber and
// /mock/wx.getRealtimePhoneNumber: the e.detail a <button
// open-type="getPhoneNumber"> (or "getRealtimePhoneNumber") handler gets, a
// code for getuserphonenumber, the same server API for both (WECHAT.md §3).
// Both are privacy interfaces, and each success is charged to the app's
// quota; none left is errno 1400001. The quick kind, since base library
// 2.21.2, also carries the legacy encryptedData and iv if the user has run
// wx.login (legacy).
func (f *Fake) handleGetPhoneNumber(api string, legacy bool) http.Handler {
	type encrypted struct {
		PhoneNumber     string    `json:"phoneNumber"`
		PurePhoneNumber string    `json:"purePhoneNumber"`
		CountryCode     string    `json:"countryCode"`
		Watermark       watermark `json:"watermark"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, api)
		if !ok {
			return
		}
		u := appUser{req.AppID, req.User}
		if f.refusePrivate(w, api, u) {
			return
		}
		if !f.chargePhone(u.appID) {
			// WeChat documents the errno only; the errMsg's wording is the fake's.
			clientFailErrno(w, api, "no quota", errnoNoPhoneQuota)
			return
		}
		now := f.now()
		code := &issuedCode{code: randomText(32, hex.EncodeToString), user: u, expires: now.Add(codeLifetime)}
		f.mu.Lock()
		f.phoneCodes.add(code, now)
		f.openIDs[account.Ref{AppID: u.appID, OpenID: f.openID(u.appID, u.name)}] = u.name
		f.mu.Unlock()

		reply := map[string]string{"errMsg": api + ":ok", "code": code.code}
		if legacy {
			number, pure, countryCode := f.phone(u.name)
			plain := encrypted{number, pure, countryCode, watermark{now.Unix(), u.appID}}
			if data, iv, _, ok := f.encryptForUser(u, plain); ok {
				reply["encryptedData"], reply["iv"] = data, iv
			}
		}
		writeJSON(w, http.StatusOK, reply)
	})
}

// handleGetWeRunData serves POST /mock/wx.getWeRunData: the user's steps of
// the last 31 days, encrypted as wx.getWeRunData returns them, each day
// stamped with its midnight in China and the data watermarked.
func (f *Fake) handleGetWeRunData() http.Handler {
	// The shape is WeChat's (WECHAT.md §3).
	type stepInfo struct {
		Timestamp int64 `json:"timestamp"` // the day's midnight, Unix seconds
		Step      int64 `json:"step"`
	}
	type encrypted struct {
		StepInfoList []stepInfo `json:"stepInfoList"`
		Watermark    watermark  `json:"watermark"`
	}
	chinaTime := time.FixedZone("CST", 8*60*60) // WeRun's days begin at midnight in China.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := f.decodeClientRequest(w, r, "getWeRunData")
		if !ok || f.refusePrivate(w, "getWeRunData", appUser{req.AppID, req.User}) {
			return
		}
		now := f.now()
		y, m, d := now.In(chinaTime).Date()
		plain := encrypted{Watermark: watermark{now.Unix(), req.AppID}}
		for i := 30; i >= 0; i-- {
			day := time.Date(y, m, d-i, 0, 0, 0, 0, chinaTime)
			sum := seedHash("werun\x00" + req.User + "\x00" + day.Format(time.DateOnly))
			plain.StepInfoList = append(plain.StepInfoList, stepInfo{
				Timestamp: day.Unix(),
				Step:      int64(binary.BigEndian.Uint32(sum[:4]) % 20000),
			})
		}
		data, iv, _, ok := f.encryptForUser(appUser{req.AppID, req.User}, plain)
		if !ok {
			clientFail(w, http.StatusBadRequest, "getWeRunData", "call wx.login first")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"errMsg": "getWeRunData:ok", "encryptedData": data, "iv": iv})
	})
}
