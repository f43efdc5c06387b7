package opendata

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The official example of WeChat's open-data documentation (aes-sample),
// as WECHAT.md §2 records it.
const (
	officialAppID      = "wx4f4bc4dec97d474b"
	officialSessionKey = "tiihtNczf5v6AKRyjwEUhQ=="
	officialIV         = "r7BXXKkLb8qrSNn05n0qiA=="
	officialData       = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
	officialPlaintext  = `{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}`
	officialOpenID     = "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
)

func TestOfficialDecryptionExample(t *testing.T) {
	plain, err := Decrypt(officialSessionKey, officialData, officialIV)
	if err != nil {
		t.Fatalf("decrypting the official example: %v", err)
	}
	if string(plain) != officialPlaintext {
		t.Fatalf("official example decrypts to\n%s\nwant\n%s", plain, officialPlaintext)
	}
	info, err := parseUserInfo(plain, officialAppID, officialOpenID, false)
	if err != nil {
		t.Fatalf("parseUserInfo(official example): %v", err)
	}
	want := UserInfo{
		Profile: Profile{
			Nickname: "Band", Gender: 1, Language: "zh_CN", City: "Guangzhou", Province: "Guangdong", Country: "CN",
			AvatarURL: "http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0",
		},
		UnionID: "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
	}
	if info != want {
		t.Errorf("parseUserInfo(official example) = %+v; want %+v", info, want)
	}
}

func TestOfficialSignatureExample(t *testing.T) {
	const rawData = `{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}`
	const key, signature = "HyVFkGl5F5OQWJZZaNzBBg==", "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
	if got := SignRawData(rawData, key); got != signature {
		t.Errorf("signRawData(official example) = %s; want %s", got, signature)
	}
	if err := verifySignature(rawData, signature, key); err != nil {
		t.Errorf("verifySignature(official example) = %v; want nil", err)
	}
	for _, bad := range []string{strings.ToUpper(signature), signature[1:], signature + "0", ""} {
		if err := verifySignature(rawData, bad, key); !isDataCheck(err) {
			t.Errorf("verifySignature(signature %q) = %v; want a data check failure", bad, err)
		}
	}
}

func TestSessionKeySignature(t *testing.T) {
	// WeChat's example of the user login-state signature, which checksession
	// uses with an empty message: HMAC-SHA256 keyed with the base64 text.
	// Its empty-message value is WECHAT.md §4's own computation.
	if got, want := SessionKeySignature("o0q0otL8aEzpcZL/FT9WsQ=="), "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"; got != want {
		t.Errorf("sessionKeySignature = %s; want %s", got, want)
	}
}

func isDataCheck(err error) bool {
	var dce *CheckError
	return errors.As(err, &dce)
}

// encrypt encrypts plain for a test, with a fixed iv.
func encrypt(t testing.TB, key, plain string) (data, iv string) {
	t.Helper()
	ivBytes := bytes.Repeat([]byte{7}, 16)
	data, err := Encrypt(key, []byte(plain), ivBytes)
	if err != nil {
		t.Fatal(err)
	}
	return data, base64.StdEncoding.EncodeToString(ivBytes)
}

func TestDecryptRejectsMalformedInput(t *testing.T) {
	key := officialSessionKey
	validData, validIV := encrypt(t, key, `{"a":1}`)
	blockOf := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 16)) }
	// rawCiphertext encrypts a block without padding, to test bad padding.
	rawCiphertext := func(last []byte) string {
		data, _ := Encrypt(key, last, make([]byte, 16))
		raw, _ := base64.StdEncoding.DecodeString(data)
		return base64.StdEncoding.EncodeToString(raw[:16]) // The first block only: last as the plaintext, unpadded.
	}
	tests := []struct {
		name          string
		key, data, iv string
		wantCheck     string
	}{
		{"key not base64", "not base64!!", validData, validIV, "session_key 无效"},
		{"key of 15 bytes", base64.StdEncoding.EncodeToString(make([]byte, 15)), validData, validIV, "session_key 无效"},
		{"key of 32 bytes", base64.StdEncoding.EncodeToString(make([]byte, 32)), validData, validIV, "session_key 无效"},
		{"iv not base64", key, validData, "r7BXXKkLb8qrSNn05n0qiA=", "iv 不是合法的 base64"},
		{"iv non-canonical", key, validData, "r7BXXKkLb8qrSNn05n0qiB==", "iv 不是合法的 base64"},
		{"iv with a line break", key, validData, "r7BXXKkLb8qrSNn0\n5n0qiA==", "iv 不是合法的 base64"},
		{"iv of 12 bytes", key, validData, base64.StdEncoding.EncodeToString(make([]byte, 12)), "iv 应为 16 字节，实为 12 字节"},
		{"empty iv", key, validData, "", "iv 应为 16 字节，实为 0 字节"},
		{"data not base64", key, "%%%%", validIV, "encryptedData 不是合法的 base64"},
		{"data url-safe base64", key, strings.NewReplacer("+", "-", "/", "_").Replace(officialData), officialIV, "encryptedData 不是合法的 base64"},
		{"empty data", key, "", validIV, "encryptedData 长度应为 16 字节的正整数倍，实为 0 字节"},
		{"data of 17 bytes", key, base64.StdEncoding.EncodeToString(make([]byte, 17)), validIV, "encryptedData 长度应为 16 字节的正整数倍，实为 17 字节"},
		{"padding byte 0", key, rawCiphertext(bytes.Repeat([]byte{0}, 16)), blockOf(0), errUndecryptable.Check},
		{"padding byte 17", key, rawCiphertext(bytes.Repeat([]byte{17}, 16)), blockOf(0), errUndecryptable.Check},
		{"padding bytes differ", key, rawCiphertext(append(bytes.Repeat([]byte{'a'}, 13), 1, 3, 3)), blockOf(0), errUndecryptable.Check},
		{"wrong key", "HyVFkGl5F5OQWJZZaNzBBg==", officialData, officialIV, errUndecryptable.Check},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, err := Decrypt(tt.key, tt.data, tt.iv)
			if err == nil {
				// A wrong key can pass the padding check by chance; it then
				// fails as JSON, with the same message.
				_, err = Parse(plain)
			}
			var dce *CheckError
			if !errors.As(err, &dce) || dce.Check != tt.wantCheck {
				t.Errorf("decrypt = %v; want the check %q", err, tt.wantCheck)
			}
		})
	}
}

func TestPaddingIsCheckedEveryByte(t *testing.T) {
	key := officialSessionKey
	for n := 1; n <= 16; n++ {
		plain := append(bytes.Repeat([]byte{'x'}, 16-n), bytes.Repeat([]byte{byte(n)}, n)...)
		good, _ := Encrypt(key, plain[:16-n], make([]byte, 16))
		raw, _ := base64.StdEncoding.DecodeString(good)
		got, err := Decrypt(key, base64.StdEncoding.EncodeToString(raw[:16]), base64.StdEncoding.EncodeToString(make([]byte, 16)))
		if err != nil || string(got) != string(plain[:16-n]) {
			t.Fatalf("padding %d: decrypt = %q, %v; want %q", n, got, err, plain[:16-n])
		}
		for i := 16 - n; i < 15; i++ {
			// Flip one padding byte (not the last, which says how many there
			// are) through the iv, which XORs into the plaintext.
			iv := make([]byte, 16)
			iv[i] = 0x40
			_, err := Decrypt(key, base64.StdEncoding.EncodeToString(raw[:16]), base64.StdEncoding.EncodeToString(iv))
			if err != errUndecryptable {
				t.Errorf("padding %d with byte %d changed: %v; want errUndecryptable", n, i, err)
			}
		}
	}
}

func TestParseOpenDataIsExact(t *testing.T) {
	const app, openID = "wxapp", "o-alice"
	wm := `"watermark":{"timestamp":1,"appid":"wxapp"}`
	tests := []struct {
		name      string
		plain     string
		signed    bool
		wantCheck string // "" for success
	}{
		{"valid", `{"openId":"o-alice","nickName":"A",` + wm + `}`, false, ""},
		{"unknown fields are WeChat's to add", `{"openId":"o-alice","isNew":true,` + wm + `}`, false, ""},
		{"getUserProfile shape, signed", `{"nickName":"A",` + wm + `}`, true, ""},
		{"getUserProfile shape, unsigned", `{"nickName":"A",` + wm + `}`, false, "解密数据缺少 openId"},
		{"unionId without openId", `{"nickName":"A","unionId":"u",` + wm + `}`, true, "解密数据缺少 openId"},
		{"other user", `{"openId":"o-bob",` + wm + `}`, false, "数据属于另一个用户（openId 不符）"},
		{"other app", `{"openId":"o-alice","watermark":{"timestamp":1,"appid":"wxother"}}`, false, "数据水印的 appid 不是本小程序"},
		{"no watermark", `{"openId":"o-alice"}`, false, "解密数据缺少 watermark"},
		{"watermark not an object", `{"openId":"o-alice","watermark":"wxapp"}`, false, "解密数据中的 watermark 不是对象"},
		{"appid in another case", `{"openId":"o-alice","watermark":{"timestamp":1,"AppId":"wxapp"}}`, false, "数据水印的 appid 不是本小程序"},
		{"openId in another case", `{"OpenId":"o-alice",` + wm + `}`, false, "解密数据缺少 openId"},
		{"openId repeated", `{"openId":"o-bob","openId":"o-alice",` + wm + `}`, false, errUndecryptable.Check},
		{"openId repeated in another case", `{"openId":"o-alice","OpenId":"o-bob",` + wm + `}`, false, errUndecryptable.Check},
		{"a key repeated in the watermark", `{"openId":"o-alice","watermark":{"appid":"wxother","appid":"wxapp"}}`, false, errUndecryptable.Check},
		{"openId not a string", `{"openId":1,` + wm + `}`, false, "解密数据中的 openId 不是字符串"},
		{"gender out of range", `{"openId":"o-alice","gender":3,` + wm + `}`, false, "解密数据中的 gender 不是 0、1 或 2"},
		{"trailing data", `{"openId":"o-alice",` + wm + `}x`, false, errUndecryptable.Check},
		{"two objects", `{"openId":"o-alice",` + wm + `}{}`, false, errUndecryptable.Check},
		{"array", `[1]`, false, errUndecryptable.Check},
		{"invalid UTF-8", "{\"openId\":\"o-alice\",\"nickName\":\"\xff\"," + wm + "}", false, errUndecryptable.Check},
		{"not JSON", `openId=o-alice`, false, errUndecryptable.Check},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseUserInfo([]byte(tt.plain), app, openID, tt.signed)
			if tt.wantCheck == "" {
				if err != nil {
					t.Errorf("parseUserInfo(%s) = %v; want success", tt.plain, err)
				}
				return
			}
			var dce *CheckError
			if !errors.As(err, &dce) || dce.Check != tt.wantCheck {
				t.Errorf("parseUserInfo(%s) = %v; want the check %q", tt.plain, err, tt.wantCheck)
			}
		})
	}
}

func TestParsePhoneAndWeRun(t *testing.T) {
	wm := `"watermark":{"timestamp":1,"appid":"wxapp"}`
	phones := []struct {
		plain string
		want  Phone
		check string
	}{
		{`{"phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":"86",` + wm + `}`, Phone{"13580006666", "13580006666", "86"}, ""},
		{`{"phoneNumber":"+1 4155550100","purePhoneNumber":"4155550100","countryCode":1,` + wm + `}`, Phone{"+1 4155550100", "4155550100", "1"}, ""},
		{`{"purePhoneNumber":"13580006666",` + wm + `}`, Phone{}, "解密数据缺少 phoneNumber"},
		{`{"phoneNumber":"13580006666","countryCode":true,` + wm + `}`, Phone{}, "解密数据中的 countryCode 不是字符串或数字"},
		{`{"phoneNumber":"13580006666"}`, Phone{}, "解密数据缺少 watermark"},
	}
	for _, tt := range phones {
		d, err := Parse([]byte(tt.plain))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParsePhone(d, "wxapp")
		if tt.check != "" {
			if dce := (*CheckError)(nil); !errors.As(err, &dce) || dce.Check != tt.check {
				t.Errorf("parsePhone(%s) = %v; want the check %q", tt.plain, err, tt.check)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parsePhone(%s) = %+v, %v; want %+v", tt.plain, got, err, tt.want)
		}
	}

	steps, err := ParseWeRun([]byte(`{"stepInfoList":[{"timestamp":1445866601,"step":100},{"timestamp":1445876601,"step":120}]}`), "wxapp")
	if err != nil || len(steps) != 2 || steps[1] != (StepInfo{1445876601, 120}) {
		t.Errorf("parseWeRun(WeChat's documented example) = %v, %v", steps, err)
	}
	for plain, check := range map[string]string{
		`{"stepInfoList":[],"watermark":{"timestamp":1,"appid":"wxother"}}`: "数据水印的 appid 不是本小程序",
		`{"stepinfolist":[]}`:                           "解密数据缺少 stepInfoList",
		`{"stepInfoList":{}}`:                           "解密数据中的 stepInfoList 不是数组",
		`{"stepInfoList":[1]}`:                          "stepInfoList 中有不是对象的项",
		`{"stepInfoList":[{"timestamp":1}]}`:            "stepInfoList 中有缺少 timestamp 或 step 的项",
		`{"stepInfoList":[{"Timestamp":1,"step":1}]}`:   "stepInfoList 中有缺少 timestamp 或 step 的项",
		`{"stepInfoList":[{"timestamp":1.5,"step":1}]}`: "解密数据中的 timestamp 不是整数",
	} {
		_, err := ParseWeRun([]byte(plain), "wxapp")
		if dce := (*CheckError)(nil); !errors.As(err, &dce) || dce.Check != check {
			t.Errorf("parseWeRun(%s) = %v; want the check %q", plain, err, check)
		}
	}
}

func FuzzDecryptOpenData(f *testing.F) {
	f.Add(officialSessionKey, officialData, officialIV)
	f.Add(officialSessionKey, "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, key, data, iv string) {
		plain, err := Decrypt(key, data, iv)
		if err != nil {
			if !isDataCheck(err) {
				t.Fatalf("Decrypt error %v is not a data check failure", err)
			}
			// A real session_key is 24 characters; a short one can match by chance.
			if len(key) >= 8 && strings.Contains(err.Error(), key) {
				t.Fatalf("error %q contains the session_key", err)
			}
			return
		}
		raw, _ := base64.StdEncoding.DecodeString(data)
		if len(plain) >= len(raw) || len(raw)-len(plain) > 16 {
			t.Fatalf("%d bytes decrypted to %d", len(raw), len(plain))
		}
	})
}

func FuzzOpenDataRoundTrip(f *testing.F) {
	f.Add([]byte(officialPlaintext), []byte("0123456789abcdef"))
	f.Add([]byte{}, []byte("0123456789abcdef"))
	f.Add(bytes.Repeat([]byte{16}, 16), []byte("0123456789abcdef"))
	f.Fuzz(func(t *testing.T, plain, iv []byte) {
		if len(iv) != 16 {
			return
		}
		data, err := Encrypt(officialSessionKey, plain, iv)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(officialSessionKey, data, base64.StdEncoding.EncodeToString(iv))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip of %q = %q, %v", plain, got, err)
		}
	})
}

func FuzzParseOpenData(f *testing.F) {
	f.Add([]byte(officialPlaintext))
	f.Add([]byte(`{"phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":86,"watermark":{"timestamp":1,"appid":"wxapp"}}`))
	f.Add([]byte(`{"stepInfoList":[{"timestamp":1445866601,"step":100}],"watermark":{"timestamp":1,"appid":"wxapp"}}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		if d, err := Parse(plain); err == nil {
			if !json.Valid(plain) {
				t.Fatalf("Parse accepted invalid JSON %q", plain)
			}
			ParsePhone(d, "wxapp")
		}
		for _, appID := range []string{officialAppID, "wxapp"} {
			if _, err := parseUserInfo(plain, appID, officialOpenID, true); err != nil && !isDataCheck(err) {
				t.Fatalf("parseUserInfo error %v is not a data check failure", err)
			}
			if _, err := ParseWeRun(plain, appID); err != nil && !isDataCheck(err) {
				t.Fatalf("parseWeRun error %v is not a data check failure", err)
			}
		}
		parseRawData(string(plain))
	})
}

// BenchmarkDecryptOpenData decrypts WeChat's published example.
func BenchmarkDecryptOpenData(b *testing.B) {
	for b.Loop() {
		if _, err := Decrypt(officialSessionKey, officialData, officialIV); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecryptUserInfo is the decryption of user info and the exact
// reading of what it decrypts to, as POST /user/userinfo does them.
func BenchmarkDecryptUserInfo(b *testing.B) {
	plain, err := Decrypt(officialSessionKey, officialData, officialIV)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		data, err := Decrypt(officialSessionKey, officialData, officialIV)
		if err != nil || !bytes.Equal(data, plain) {
			b.Fatal(err)
		}
		if _, err := parseUserInfo(data, officialAppID, officialOpenID, false); err != nil {
			b.Fatal(err)
		}
	}
}
