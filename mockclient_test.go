package main

import (
	"net/http"
	"testing"
)

// The privacy interfaces fail with WeChat's errno 104 until the user agrees
// to the app's privacy guide; wx.getPrivacySetting says whether they must;
// a revoked agreement gates them again.
func TestPrivacyInterfacesWaitForAgreement(t *testing.T) {
	a := newTestApp(t, appOptions{apps: []appSpec{{id: "wxapp", name: "Shop", secret: testSecret}}})
	a.fake.issueCode("wxapp", "alice")
	interfaces := []string{"getUserInfo", "getPhoneNumber", "getRealtimePhoneNumber", "getWeRunData"}
	setting := func() map[string]any { return wxCallAsIs(t, a.fake, "wx.getPrivacySetting", `{"user":"alice"}`) }

	if s := setting(); s["needAuthorization"] != true || s["privacyContractName"] != "《Shop隐私保护指引》" {
		t.Errorf("getPrivacySetting before agreeing = %v; want needAuthorization and the guide's name", s)
	}
	for _, api := range interfaces {
		detail := wxCallAsIs(t, a.fake, "wx."+api, `{"user":"alice"}`)
		if detail["errMsg"] != api+":fail privacy permission is not authorized" || detail["errno"] != float64(errnoPrivacyNotAuthorized) {
			t.Errorf("%s before agreeing = %v; want errno 104", api, detail)
		}
	}
	if got := wxCallAsIs(t, a.fake, "wx.getPhoneNumber", `{"user":"bob"}`); got["errno"] != float64(errnoPrivacyNotAuthorized) {
		t.Errorf("another user's getPhoneNumber = %v; want the gate: agreement is per user", got)
	}

	wxCallAsIs(t, a.fake, "wx.agreePrivacyAuthorization", `{"user":"alice"}`)
	if s := setting(); s["needAuthorization"] != false {
		t.Errorf("getPrivacySetting after agreeing = %v", s)
	}
	for _, api := range interfaces {
		if detail := wxCallAsIs(t, a.fake, "wx."+api, `{"user":"alice"}`); detail["errMsg"] != api+":ok" {
			t.Errorf("%s after agreeing = %v; want %s:ok", api, detail, api)
		}
	}

	wxCallAsIs(t, a.fake, "wx.revokePrivacyAuthorization", `{"user":"alice"}`)
	if detail := wxCallAsIs(t, a.fake, "wx.getPhoneNumber", `{"user":"alice"}`); detail["errno"] != float64(errnoPrivacyNotAuthorized) {
		t.Errorf("getPhoneNumber after the agreement was revoked = %v; want errno 104", detail)
	}
}

// The real-time phone button's code goes to the same server API as the
// quick one's, so POST /user/phone takes it alike; it carries no legacy
// encryptedData.
func TestRealtimePhoneNumber(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		detail := wxCall(t, a.fake, "wx.getRealtimePhoneNumber", `{"user":"alice"}`)
		if detail["errMsg"] != "getRealtimePhoneNumber:ok" || detail["code"] == "" || detail["encryptedData"] != nil {
			t.Fatalf("getRealtimePhoneNumber = %v; want a code only", detail)
		}
		got := send(t, a.handler, http.MethodPost, "/user/phone", token, map[string]any{"code": detail["code"]})
		if got.env.Status != 0 || dataOf[phoneData](t, got).PhoneNumber != fakePhoneNumber("alice") {
			t.Errorf("POST /user/phone with a real-time code = %s", got.raw)
		}
		if n := a.calls.count(phonePath); n != 1 {
			t.Errorf("getuserphonenumber called %d times; want 1", n)
		}
	})
}

// Each successful phone tap is charged to the app: with none left, the tap
// fails with errno 1400001 and gives no code. -1 is no limit.
func TestPhoneQuota(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{store: store})
		quota := func(body string) reply {
			t.Helper()
			return call(t, a.fake.routes(), http.MethodPost, "/mock/phone-quota", body, "Content-Type", jsonCT)
		}
		if got := quota(`{"remaining":-2}`); got.code != http.StatusBadRequest {
			t.Errorf("POST /mock/phone-quota remaining -2 = %d %s; want 400", got.code, got.raw)
		}
		quota(`{"remaining":2}`)
		for i, api := range []string{"wx.getPhoneNumber", "wx.getRealtimePhoneNumber"} {
			if detail := wxCall(t, a.fake, api, `{"user":"alice"}`); detail["code"] == nil {
				t.Fatalf("tap %d (%s) with quota left = %v; want a code", i+1, api, detail)
			}
		}
		for _, api := range []string{"getPhoneNumber", "getRealtimePhoneNumber"} {
			detail := wxCall(t, a.fake, "wx."+api, `{"user":"alice"}`)
			if detail["errno"] != float64(errnoNoPhoneQuota) || detail["code"] != nil || detail["errMsg"] != api+":fail no quota" {
				t.Errorf("%s with no quota left = %v; want errno 1400001 and no code", api, detail)
			}
		}
		if got := call(t, a.fake.routes(), http.MethodGet, "/mock/phone-quota", ""); got.raw != `{"appid":"wxapp","remaining":0}`+"\n" {
			t.Errorf("GET /mock/phone-quota = %s", got.raw)
		}
		quota(`{"remaining":-1}`)
		if detail := wxCall(t, a.fake, "wx.getPhoneNumber", `{"user":"alice"}`); detail["code"] == nil {
			t.Errorf("getPhoneNumber with no limit = %v", detail)
		}
	})
}
