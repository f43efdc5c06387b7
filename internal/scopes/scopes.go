// Package scopes is the scope table: which of a mini program's features need the
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
package scopes

// How a mini program obtains a scope: the values of Scope.Request.
const (
	// RequestAuthorize: wx.authorize asks in advance, and the guarded API
	// asks by itself on first use.
	RequestAuthorize = "authorize"
	// RequestButton: only a tap on a button may start it; wx.authorize
	// never shows a dialog for it.
	RequestButton = "button"
	// RequestSettings: no dialog exists; the user turns it on in the
	// settings page that wx.openSetting opens.
	RequestSettings = "settings"
	// RequestNone: WeChat has withdrawn the authorization; the API is
	// called directly and wx.getSetting reports the scope as granted.
	RequestNone = "none"
)

// Scope is one row of the scope table.
type Scope struct {
	Scope   string   `json:"scope"`
	Guards  []string `json:"guards"` // the APIs and components that need it
	Purpose string   `json:"purpose"`
	Request string   `json:"request"` // RequestAuthorize, RequestButton, …
	Note    string   `json:"note,omitempty"`
	// Privacy is the item of the privacy guide that covers the scope's
	// APIs: the user must have agreed to it before the scope is asked for.
	Privacy string `json:"privacy"`
}

// PrivacyItem is an item of the privacy guide, with the interfaces it
// covers.
type PrivacyItem struct {
	Privacy string   `json:"privacy"`
	Guards  []string `json:"guards"`
}

// PrivacyGate is the privacy layer, as GET /scopes shows it.
type PrivacyGate struct {
	EnforcedSince string `json:"enforced_since"`
	Rule          string `json:"rule"`
	// Unscoped are privacy interfaces that no scope guards: the agreement is
	// all that stands in front of them (besides a tap).
	Unscoped []PrivacyItem `json:"unscoped"`
	Source   string        `json:"source"`
}

// PrivacyGuideSource is the official page listing the guide's items and the
// interfaces each covers.
const PrivacyGuideSource = "https://developers.weixin.qq.com/miniprogram/dev/framework/user-privacy/miniprogram-intro.html"

// Privacy returns the privacy layer in front of the scopes.
func Privacy() PrivacyGate {
	return PrivacyGate{
		EnforcedSince: "2023-10-17",
		Rule: "An interface that handles personal data fails (errno 104, privacy permission is not authorized) until the app " +
			"declares it in its privacy guide (errno 112 otherwise) and the user agrees: wx.getPrivacySetting tells whether " +
			"they must, wx.onNeedPrivacyAuthorization lets the app show its own popup, and a tap on " +
			`<button open-type="agreePrivacyAuthorization"> records the agreement. Only then do scopes come into play.`,
		Unscoped: []PrivacyItem{
			{"收集你的昵称、头像", []string{`<button open-type="chooseAvatar">`, `<input type="nickname">`}},
			{"收集你的手机号", []string{`<button open-type="getPhoneNumber">`, `<button open-type="getRealtimePhoneNumber">`}},
			{"收集你选择的位置信息", []string{"wx.choosePoi", "wx.chooseLocation"}},
			{"收集你选中的照片或视频信息", []string{"wx.chooseImage", "wx.chooseMedia", "wx.chooseVideo"}},
			{"收集你选中的文件", []string{"wx.chooseMessageFile"}},
		},
		Source: PrivacyGuideSource,
	}
}

// Source is the official page the table follows.
const Source = "https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/authorize.html"

// Table returns the mini program scopes of WeChat's authorization page,
// as WECHAT.md §6 records it. It is built on each call so that no caller
// can change another's copy.
func Table() []Scope {
	return []Scope{
		{
			Scope:   "scope.userInfo",
			Privacy: "收集你的昵称、头像",
			Guards:  []string{"wx.getUserInfo", `<button open-type="getUserInfo">`},
			Purpose: "the user's nickname and avatar",
			Request: RequestButton,
			Note: "wx.authorize never shows a dialog for it. The data came from a tap on " +
				`<button open-type="getUserInfo">` + "; since 2021-04-28 that gives the anonymous 微信用户 " +
				`placeholder, and mini programs ask with <button open-type="chooseAvatar"> and <input type="nickname"> instead.`,
		},
		{
			Scope:   "scope.userLocation",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.getLocation", "wx.startLocationUpdate", "MapContext.moveToLocation"},
			Purpose: "precise location",
			Request: RequestAuthorize,
			Note:    "The purpose must be declared under permission in app.json.",
		},
		{
			Scope:   "scope.userFuzzyLocation",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.getFuzzyLocation"},
			Purpose: "approximate location",
			Request: RequestAuthorize,
		},
		{
			Scope:   "scope.userLocationBackground",
			Privacy: "收集你的位置信息",
			Guards:  []string{"wx.startLocationUpdateBackground"},
			Purpose: "location while the mini program is in the background",
			Request: RequestSettings,
			Note:    "No dialog: the user picks 使用小程序期间和离开小程序后 in the settings page that wx.openSetting opens.",
		},
		{
			Scope:   "scope.record",
			Privacy: "访问你的麦克风",
			Guards:  []string{"wx.startRecord", "RecorderManager.start", "wx.joinVoIPChat", "<live-pusher>"},
			Purpose: "the microphone",
			Request: RequestAuthorize,
		},
		{
			Scope:   "scope.camera",
			Privacy: "访问你的摄像头",
			Guards:  []string{"<camera>", "<live-pusher>", "wx.createVKSession"},
			Purpose: "the camera",
			Request: RequestAuthorize,
		},
		{
			Scope:   "scope.bluetooth",
			Privacy: "访问你的蓝牙",
			Guards:  []string{"wx.openBluetoothAdapter", "wx.createBLEPeripheralServer"},
			Purpose: "Bluetooth",
			Request: RequestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.writePhotosAlbum",
			Privacy: "使用你的相册（仅写入）权限",
			Guards:  []string{"wx.saveImageToPhotosAlbum", "wx.saveVideoToPhotosAlbum"},
			Purpose: "saving to the photo album",
			Request: RequestAuthorize,
		},
		{
			Scope:   "scope.addPhoneContact",
			Privacy: "使用你的通讯录（仅写入）权限",
			Guards:  []string{"wx.addPhoneContact"},
			Purpose: "adding a phone contact",
			Request: RequestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.addPhoneCalendar",
			Privacy: "使用你的日历（仅写入）权限",
			Guards:  []string{"wx.addPhoneCalendar", "wx.addPhoneRepeatCalendar"},
			Purpose: "adding calendar events",
			Request: RequestAuthorize,
			Note:    "Needs authorization since 2022-02-21.",
		},
		{
			Scope:   "scope.werun",
			Privacy: "收集你的微信运动步数",
			Guards:  []string{"wx.getWeRunData"},
			Purpose: "WeRun step counts",
			Request: RequestAuthorize,
		},
		{
			Scope:   "scope.address",
			Privacy: "收集你的地址",
			Guards:  []string{"wx.chooseAddress"},
			Purpose: "a shipping address",
			Request: RequestNone,
			Note:    "The user picks an address each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoiceTitle",
			Privacy: "收集你的发票信息",
			Guards:  []string{"wx.chooseInvoiceTitle"},
			Purpose: "an invoice title",
			Request: RequestNone,
			Note:    "The user picks a title each time; wx.getSetting reports the scope as granted.",
		},
		{
			Scope:   "scope.invoice",
			Privacy: "收集你的发票信息",
			Guards:  []string{"wx.chooseInvoice"},
			Purpose: "invoices",
			Request: RequestNone,
			Note:    "The user picks invoices each time; wx.getSetting reports the scope as granted.",
		},
	}
}
