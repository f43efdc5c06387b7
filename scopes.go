package main

import "net/http"

// This file is the scope table: which of a mini program's features need the
// user's authorization, and how a mini program gets it. The server checks no
// scope itself; scopes are granted and checked on the phone (wx.getSetting,
// wx.authorize). wxlogin serves the table so that a mini program, a teaching
// page or a test can show it from one source (WECHAT.md §6).

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
			Guards:  []string{"wx.getUserInfo", `<button open-type="getUserInfo">`},
			Purpose: "the user's nickname and avatar",
			Request: requestButton,
			Note: "wx.authorize never shows a dialog for it. The data came from a tap on " +
				`<button open-type="getUserInfo">` + "; since 2021-04-28 that gives the anonymous 微信用户 " +
				`placeholder, and mini programs ask with <button open-type="chooseAvatar"> and <input type="nickname"> instead.`,
		},
		{
			Scope:   "scope.userLocation",
			Guards:  []string{"wx.getLocation", "wx.startLocationUpdate", "MapContext.moveToLocation"},
			Purpose: "precise location",
			Request: requestAuthorize,
			Note:    "The purpose must be declared under permission in app.json.",
		},
		{
			Scope:   "scope.userFuzzyLocation",
			Guards:  []string{"wx.getFuzzyLocation"},
			Purpose: "approximate location",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.userLocationBackground",
			Guards:  []string{"wx.startLocationUpdateBackground"},
			Purpose: "location while the mini program is in the background",
			Request: requestSettings,
			Note:    "No dialog: the user picks 使用小程序期间和离开小程序后 in the settings page that wx.openSetting opens.",
		},
		{
			Scope:   "scope.record",
			Guards:  []string{"wx.startRecord", "RecorderManager.start", "wx.joinVoIPChat", "<live-pusher>"},
			Purpose: "the microphone",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.camera",
			Guards:  []string{"<camera>", "<live-pusher>", "wx.createVKSession"},
			Purpose: "the camera",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.bluetooth",
			Guards:  []string{"wx.openBluetoothAdapter", "wx.createBLEPeripheralServer"},
			Purpose: "Bluetooth",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.writePhotosAlbum",
			Guards:  []string{"wx.saveImageToPhotosAlbum", "wx.saveVideoToPhotosAlbum"},
			Purpose: "saving to the photo album",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.addPhoneContact",
			Guards:  []string{"wx.addPhoneContact"},
			Purpose: "adding a phone contact",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.addPhoneCalendar",
			Guards:  []string{"wx.addPhoneCalendar", "wx.addPhoneRepeatCalendar"},
			Purpose: "adding calendar events",
			Request: requestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.werun",
			Guards:  []string{"wx.getWeRunData"},
			Purpose: "WeRun step counts",
			Request: requestAuthorize,
		},
		{
			Scope:   "scope.address",
			Guards:  []string{"wx.chooseAddress"},
			Purpose: "a shipping address",
			Request: requestNone,
			Note:    "The user picks an address each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoiceTitle",
			Guards:  []string{"wx.chooseInvoiceTitle"},
			Purpose: "an invoice title",
			Request: requestNone,
			Note:    "The user picks a title each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoice",
			Guards:  []string{"wx.chooseInvoice"},
			Purpose: "invoices",
			Request: requestNone,
			Note:    "The user picks invoices each time; wx.getSetting reports the scope as granted.",
		},
	}
}

// handleScopes serves GET /scopes: the scope table, with the page it follows.
// The phone number is not in it: it has no scope, and only a tap on
// <button open-type="getPhoneNumber"> gives one (WECHAT.md §3).
func handleScopes() http.Handler {
	type response struct {
		Scopes []scopeInfo `json:"scopes"`
		Source string      `json:"source"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOK(w, response{Scopes: scopeTable(), Source: scopeSource})
	})
}
