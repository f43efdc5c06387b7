package main

import "net/http"

// This file is the scope table: which of a mini program's features need the
// user's authorization, and how a mini program gets it. The server checks no
// scope itself; scopes are granted and checked on the phone (wx.getSetting,
// wx.authorize). wxlogin serves the table so that a mini program, a teaching
// page or a test can show it from one source (WECHAT.md §6).
//
// In front of every scope stands the privacy agreement (WECHAT.md §10):
// since 2023-10-17 an interface that handles personal data fails until the
// app has declared it in its privacy guide and the user has agreed to that
// guide. So each row names the guide's item that covers it, and the table
// lists the privacy interfaces that have no scope at all.

// How a mini program obtains a scope: the values of scopeInfo.Request.
const (
	// requestAuthorize: wx.authorize asks in advance, and the guarded API
	// asks by itself on first use.
	requestAuthorize = "authorize"
	// requestButton: only a tap on a button may start it; wx.authorize
	// never shows a dialog for it.
	requestButton = "button"
	// requestSettings: no dialog exists; the user turns it on in the
	// settings page that wx.openSetting opens.
	requestSettings = "settings"
	// requestNone: WeChat has withdrawn the authorization; the API is
	// called directly and wx.getSetting reports the scope as granted.
	requestNone = "none"
)

// scopeInfo is one row of the scope table.
type scopeInfo struct {
	Scope   string   `json:"scope"`
	Guards  []string `json:"guards"` // the APIs and components that need it
	Purpose string   `json:"purpose"`
	Request string   `json:"request"` // requestAuthorize, requestButton, …
	Note    string   `json:"note,omitempty"`
	// Privacy is the item of the privacy guide that covers the scope's
	// APIs: the user must have agreed to it before the scope is asked for.
	Privacy string `json:"privacy"`
}

// privacyItem is an item of the privacy guide, with the interfaces it
// covers.
type privacyItem struct {
	Privacy string   `json:"privacy"`
	Guards  []string `json:"guards"`
}

// privacyGate is the privacy layer, as GET /scopes shows it.
type privacyGate struct {
	EnforcedSince string `json:"enforced_since"`
	Rule          string `json:"rule"`
	// Unscoped are privacy interfaces that no scope guards: the agreement is
	// all that stands in front of them (besides a tap).
	Unscoped []privacyItem `json:"unscoped"`
	Source   string        `json:"source"`
}

// privacyGuideSource is the official page listing the guide's items and the
// interfaces each covers.
const privacyGuideSource = "https://developers.weixin.qq.com/miniprogram/dev/framework/user-privacy/miniprogram-intro.html"

// thePrivacyGate returns the privacy layer in front of the scopes.
func thePrivacyGate() privacyGate {
	return privacyGate{
		EnforcedSince: "2023-10-17",
		Rule: "An interface that handles personal data fails (errno 104, privacy permission is not authorized) until the app " +
			"declares it in its privacy guide (errno 112 otherwise) and the user agrees: wx.getPrivacySetting tells whether " +
			"they must, wx.onNeedPrivacyAuthorization lets the app show its own popup, and a tap on " +
			`<button open-type="agreePrivacyAuthorization"> records the agreement. Only then do scopes come into play.`,
		Unscoped: []privacyItem{
			{"收集你的昵称、头像", []string{`<button open-type="chooseAvatar">`, `<input type="nickname">`}},
			{"收集你的手机号", []string{`<button open-type="getPhoneNumber">`, `<button open-type="getRealtimePhoneNumber">`}},
			{"收集你选择的位置信息", []string{"wx.choosePoi", "wx.chooseLocation"}},
			{"收集你选中的照片或视频信息", []string{"wx.chooseImage", "wx.chooseMedia", "wx.chooseVideo"}},
			{"收集你选中的文件", []string{"wx.chooseMessageFile"}},
		},
		Source: privacyGuideSource,
	}
}

// scopeSource is the official page the table follows.
const scopeSource = "https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/authorize.html"

// scopeTable returns the mini program scopes of WeChat's authorization page,
// as WECHAT.md §6 records it. It is built on each call so that no caller
// can change another's copy.
func scopeTable() []scopeInfo {
	return []scopeInfo{
		{
			Scope:   "scope.userInfo",
			Privacy: "收集你的昵称、头像",
			Guards:  []string{"wx.getUserInfo", `<button open-type="getUserInfo">`},
			Purpose: "the user's nickname and avatar",
			Request: requestButton,
			Note: "wx.authorize never shows a dialog for it. The data came from a tap on " +
				`<button open-type="getUserInfo">` + "; since 2021-04-28 that gives the anonymous 微信用户 " +
				`placeholder, and mini programs ask with <button open-type="chooseAvatar"> and <input type="nickname"> instead.`,
		},
		{
			Scope:   "scope.userLocation",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.getLocation", "wx.startLocationUpdate", "MapContext.moveToLocation"},
			Purpose: "precise location",
			Request: requestAuthorize,
			Note:    "The purpose must be declared under permission in app.json.",
		},
		{
			Scope:   "scope.userFuzzyLocation",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.getFuzzyLocation"},
			Purpose: "approximate location",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.userLocationBackground",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.startLocationUpdateBackground"},
			Purpose: "location while the mini program is in the background",
			Request: requestSettings,
			Note:    "No dialog: the user picks 使用小程序期间和离开小程序后 in the settings page that wx.openSetting opens.",
		},
		{
			Scope:   "scope.record",
			Privacy: "访问你的麦克风",
			Guards:  []string{"wx.startRecord", "RecorderManager.start", "wx.joinVoIPChat", "<live-pusher>"},
			Purpose: "the microphone",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.camera",
			Privacy: "访问你的摄像头",
			Guards:  []string{"<camera>", "<live-pusher>", "wx.createVKSession"},
			Purpose: "the camera",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.bluetooth",
			Privacy: "访问你的蓝牙",
			Guards:  []string{"wx.openBluetoothAdapter", "wx.createBLEPeripheralServer"},
			Purpose: "Bluetooth",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.writePhotosAlbum",
			Privacy: "使用你的相册（仅写入）权限",
			Guards:  []string{"wx.saveImageToPhotosAlbum", "wx.saveVideoToPhotosAlbum"},
			Purpose: "saving to the photo album",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.addPhoneContact",
			Privacy: "使用你的通讯录（仅写入）权限",
			Guards:  []string{"wx.addPhoneContact"},
			Purpose: "adding a phone contact",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.addPhoneCalendar",
			Privacy: "使用你的日历（仅写入）权限",
			Guards:  []string{"wx.addPhoneCalendar", "wx.addPhoneRepeatCalendar"},
			Purpose: "adding calendar events",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.werun",
			Privacy: "收集你的微信运动步数",
			Guards:  []string{"wx.getWeRunData"},
			Purpose: "WeRun step counts",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.address",
			Privacy: "收集你的地址",
			Guards:  []string{"wx.chooseAddress"},
			Purpose: "a shipping address",
			Request: requestNone,
			Note:    "The user picks an address each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoiceTitle",
			Privacy: "收集你的发票信息",
			Guards:  []string{"wx.chooseInvoiceTitle"},
			Purpose: "an invoice title",
			Request: requestNone,
			Note:    "The user picks a title each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoice",
			Privacy: "收集你的发票信息",
			Guards:  []string{"wx.chooseInvoice"},
			Purpose: "invoices",
			Request: requestNone,
			Note:    "The user picks invoices each time; wx.getSetting reports the scope as granted.",
		},
	}
}

// handleScopes serves GET /scopes: the privacy layer, then the scope table,
// with the page it follows. The phone number is not a scope: only a tap on
// <button open-type="getPhoneNumber"> gives one (WECHAT.md §3), so it is
// among the privacy layer's unscoped interfaces.
func handleScopes() http.Handler {
	type response struct {
		Privacy privacyGate `json:"privacy"`
		Scopes  []scopeInfo `json:"scopes"`
		Source  string      `json:"source"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOK(w, response{Privacy: thePrivacyGate(), Scopes: scopeTable(), Source: scopeSource})
	})
}
