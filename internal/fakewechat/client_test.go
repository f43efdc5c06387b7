package fakewechat

import (
	"net/http"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// The privacy interfaces fail with WeChat's errno 104 until the user agrees
// to the app's privacy guide; wx.getPrivacySetting says whether they must;
// a revoked agreement gates them again.
func TestPrivacyInterfacesWaitForAgreement(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Name: "Shop", Secret: testSecret}}, Fixtures{}, time.Now)
	fake.IssueCode("wxapp", "alice")
	interfaces := []string{"getUserInfo", "getPhoneNumber", "getRealtimePhoneNumber", "getWeRunData"}
	setting := func() map[string]any {
		return testkit.WXCallAsIs(t, fake.Handler(), "wx.getPrivacySetting", `{"user":"alice"}`)
	}

	if s := setting(); s["needAuthorization"] != true || s["privacyContractName"] != "《Shop隐私保护指引》" {
		t.Errorf("getPrivacySetting before agreeing = %v; want needAuthorization and the guide's name", s)
	}
	for _, api := range interfaces {
		detail := testkit.WXCallAsIs(t, fake.Handler(), "wx."+api, `{"user":"alice"}`)
		if detail["errMsg"] != api+":fail privacy permission is not authorized" || detail["errno"] != float64(errnoPrivacyNotAuthorized) {
			t.Errorf("%s before agreeing = %v; want errno 104", api, detail)
		}
	}
	if got := testkit.WXCallAsIs(t, fake.Handler(), "wx.getPhoneNumber", `{"user":"bob"}`); got["errno"] != float64(errnoPrivacyNotAuthorized) {
		t.Errorf("another user's getPhoneNumber = %v; want the gate: agreement is per user", got)
	}

	testkit.WXCallAsIs(t, fake.Handler(), "wx.agreePrivacyAuthorization", `{"user":"alice"}`)
	if s := setting(); s["needAuthorization"] != false {
		t.Errorf("getPrivacySetting after agreeing = %v", s)
	}
	for _, api := range interfaces {
		if detail := testkit.WXCallAsIs(t, fake.Handler(), "wx."+api, `{"user":"alice"}`); detail["errMsg"] != api+":ok" {
			t.Errorf("%s after agreeing = %v; want %s:ok", api, detail, api)
		}
	}

	testkit.WXCallAsIs(t, fake.Handler(), "wx.revokePrivacyAuthorization", `{"user":"alice"}`)
	if detail := testkit.WXCallAsIs(t, fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`); detail["errno"] != float64(errnoPrivacyNotAuthorized) {
		t.Errorf("getPhoneNumber after the agreement was revoked = %v; want errno 104", detail)
	}
}

// Each successful phone tap is charged to the app: with none left, the tap
// fails with errno 1400001 and gives no code. -1 is no limit.
func TestPhoneQuota(t *testing.T) {
	fake := New(map[string]App{"wxapp": {Name: "Test app", Secret: testSecret}}, Fixtures{}, time.Now)
	quota := func(body string) reply {
		t.Helper()
		return call(t, fake.Handler(), http.MethodPost, "/mock/phone-quota", body, "Content-Type", jsonCT)
	}
	if got := quota(`{"remaining":-2}`); got.code != http.StatusBadRequest {
		t.Errorf("POST /mock/phone-quota remaining -2 = %d %s; want 400", got.code, got.raw)
	}
	quota(`{"remaining":2}`)
	for i, api := range []string{"wx.getPhoneNumber", "wx.getRealtimePhoneNumber"} {
		if detail := testkit.WXCall(t, fake.Handler(), api, `{"user":"alice"}`); detail["code"] == nil {
			t.Fatalf("tap %d (%s) with quota left = %v; want a code", i+1, api, detail)
		}
	}
	for _, api := range []string{"getPhoneNumber", "getRealtimePhoneNumber"} {
		detail := testkit.WXCall(t, fake.Handler(), "wx."+api, `{"user":"alice"}`)
		if detail["errno"] != float64(errnoNoPhoneQuota) || detail["code"] != nil || detail["errMsg"] != api+":fail no quota" {
			t.Errorf("%s with no quota left = %v; want errno 1400001 and no code", api, detail)
		}
	}
	if got := call(t, fake.Handler(), http.MethodGet, "/mock/phone-quota", ""); got.raw != `{"appid":"wxapp","remaining":0}`+"\n" {
		t.Errorf("GET /mock/phone-quota = %s", got.raw)
	}
	quota(`{"remaining":-1}`)
	if detail := testkit.WXCall(t, fake.Handler(), "wx.getPhoneNumber", `{"user":"alice"}`); detail["code"] == nil {
		t.Errorf("getPhoneNumber with no limit = %v", detail)
	}
}
