package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	got := URL("https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=abc&js_code=xyz&grant_type=authorization_code")
	for _, leaked := range []string{"abc", "xyz"} {
		if strings.Contains(got, "="+leaked) {
			t.Errorf("redact.URL kept %q: %s", leaked, got)
		}
	}
	if !strings.Contains(got, "appid=wx1") || !strings.Contains(got, "/sns/jscode2session") {
		t.Errorf("redact.URL = %s; want the path and appid kept", got)
	}
}

func FuzzRedactJSON(f *testing.F) {
	f.Add([]byte(`{"openid":"o1","session_key":"c2VjcmV0a2V5MTIzNDU2Nw==","unionid":"u1"}`))
	f.Add([]byte(`{"grant_type":"client_credential","appid":"wxapp","secret":"s3cr3t"}`))
	f.Add([]byte(`{"access_token":7200,"expires_in":7200}`))
	f.Add([]byte(`{"session_key":null,"signature":{"a":1}}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out := JSON(body)
		if out == nil {
			return
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatalf("redact.JSON(%q) = %q, not a JSON object: %v", body, out, err)
		}
		for key, label := range secretFields {
			if v, ok := fields[key]; ok && label != "" && v != label {
				t.Errorf("redact.JSON(%q) keeps %s = %v", body, key, v)
			}
		}
	})
}
