// Package opendata checks the data WeChat hands a mini program signed or
// encrypted with the user's session_key ("open data"): user info, the
// legacy phone number, WeRun steps; and the data made with the session_key
// a login has just replaced (previouskey.go). WECHAT.md §2 and §3 give the
// algorithms and shapes. Every check that fails is a *CheckError, which
// the server answers with status 5.
//
// AES-CBC has no integrity check of its own, so a changed ciphertext can
// decrypt to something. What stops forged data is that everything decrypted
// must be exactly the JSON WeChat documents: valid UTF-8, one object, no
// repeated keys, field names matched case-sensitively, the required fields
// present, and a watermark naming this mini program.
package opendata

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
	"wxlogin/internal/account"
	"wxlogin/internal/request"
	"wxlogin/internal/strictjson"
)

// CheckError is open data that failed a check: status 5. Check is safe
// to show the client; it says which check failed, never a key or the data.
type CheckError struct {
	Check string
	// NotTheKey marks a check that a session_key replaced by a later
	// wx.login cannot explain, so that the client is not told to log in
	// again for nothing.
	NotTheKey bool
}

func (e *CheckError) Error() string { return "open data: " + e.Check }

func checkFailed(format string, args ...any) *CheckError {
	return &CheckError{Check: fmt.Sprintf(format, args...)}
}

// errUndecryptable is the one answer for every failure after the AES step:
// bad padding and a plaintext that is not JSON look the same to the client.
// Telling them apart would be a padding oracle, letting a client with a
// token decrypt or forge data under that token's session_key by trial.
var errUndecryptable = checkFailed("无法用当前 session_key 解密 encryptedData")

// strictBase64 rejects the non-canonical encodings the default decoder
// accepts, so that changing any character of encryptedData or iv changes the
// bytes it decodes to.
var strictBase64 = base64.StdEncoding.Strict()

// decodeBase64Field decodes a base64 field of open data, naming it on failure.
func decodeBase64Field(name, s string) ([]byte, error) {
	// The decoder skips CR and LF even in strict mode; WeChat never sends them.
	if strings.ContainsAny(s, "\r\n") {
		return nil, checkFailed("%s 不是合法的 base64", name)
	}
	b, err := strictBase64.DecodeString(s)
	if err != nil {
		return nil, checkFailed("%s 不是合法的 base64", name)
	}
	return b, nil
}

// sessionKeyBytes decodes a session_key: base64 of 16 bytes, the AES-128 key.
func sessionKeyBytes(sessionKey string) ([]byte, error) {
	key, err := decodeBase64Field("session_key", sessionKey)
	if err != nil || len(key) != aes.BlockSize {
		return nil, checkFailed("session_key 无效")
	}
	return key, nil
}

// SignRawData is WeChat's signature of rawData: the hex SHA-1 of rawData
// followed by the session_key as text (WECHAT.md §2).
func SignRawData(rawData, sessionKey string) string {
	sum := sha1.Sum([]byte(rawData + sessionKey))
	return hex.EncodeToString(sum[:])
}

// SessionKeySignature is the signature of checksession and
// resetusersessionkey: the hex HMAC-SHA256 of the empty string keyed with
// the session_key's base64 text, not its decoded bytes (WECHAT.md §4). It
// proves the key is known without sending it.
func SessionKeySignature(sessionKey string) string {
	return hex.EncodeToString(hmac.New(sha256.New, []byte(sessionKey)).Sum(nil))
}

// verifySignature checks signature against rawData in constant time.
func verifySignature(rawData, signature, sessionKey string) error {
	want := SignRawData(rawData, sessionKey)
	if subtle.ConstantTimeCompare([]byte(signature), []byte(want)) != 1 {
		return checkFailed("signature 与 rawData 不匹配")
	}
	return nil
}

// Decrypt decrypts encryptedData: AES-128-CBC with the base64-decoded
// session_key as key and the base64-decoded iv, PKCS#7 padding. Every
// malformed input is a *CheckError, never a panic.
func Decrypt(sessionKey, encryptedData, iv string) ([]byte, error) {
	key, err := sessionKeyBytes(sessionKey)
	if err != nil {
		return nil, err
	}
	ivBytes, err := decodeBase64Field("iv", iv)
	if err != nil {
		return nil, err
	}
	if len(ivBytes) != aes.BlockSize {
		return nil, checkFailed("iv 应为 16 字节，实为 %d 字节", len(ivBytes))
	}
	data, err := decodeBase64Field("encryptedData", encryptedData)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, checkFailed("encryptedData 长度应为 16 字节的正整数倍，实为 %d 字节", len(data))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err // Cannot happen: the key is 16 bytes.
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, ivBytes).CryptBlocks(plain, data)
	return unpad(plain)
}

// unpad strips PKCS#7 padding, checking every padding byte in constant time.
func unpad(b []byte) ([]byte, error) {
	n := int(b[len(b)-1])
	ok := subtle.ConstantTimeLessOrEq(1, n) & subtle.ConstantTimeLessOrEq(n, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, n)
		ok &= subtle.ConstantTimeSelect(inPad, subtle.ConstantTimeByteEq(b[len(b)-i], byte(n)), 1)
	}
	if ok != 1 {
		return nil, errUndecryptable
	}
	return b[:len(b)-n], nil
}

// Encrypt is the inverse of Decrypt, as WeChat does it; the fake WeChat
// uses it. iv must be 16 bytes.
func Encrypt(sessionKey string, plain, iv []byte) (encryptedData string, err error) {
	key, err := sessionKeyBytes(sessionKey)
	if err != nil {
		return "", err
	}
	if len(iv) != aes.BlockSize {
		return "", errors.New("iv must be 16 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	padded := append(bytes.Clone(plain), bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
	return base64.StdEncoding.EncodeToString(padded), nil
}

// ReadObject decodes a JSON object into its members' raw values.
// Unlike encoding/json's struct decoding, which matches names without regard
// to case and lets a repeated key win silently, it keeps names exact and
// refuses repeats, at any depth: either would let a changed ciphertext pass
// as WeChat's.
func ReadObject(data []byte) (Data, error) {
	if name := strictjson.DuplicateMember(data); name != "" {
		return nil, fmt.Errorf("key %q repeated", name)
	}
	return nestedFields(data)
}

// nestedFields is ReadObject for an object inside data that ReadObject has
// read: its repeats are checked already.
func nestedFields(data []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		return nil, errors.New("not a JSON object")
	}
	return fields, nil
}

// Data is decrypted open data, read field by exact name.
type Data map[string]json.RawMessage

// Parse checks that plain is a JSON object in valid UTF-8. Anything
// else means the session_key was not the one the data was encrypted with.
func Parse(plain []byte) (Data, error) {
	if !utf8.Valid(plain) {
		return nil, errUndecryptable
	}
	fields, err := ReadObject(plain)
	if err != nil {
		return nil, errUndecryptable
	}
	return Data(fields), nil
}

// has reports whether the field is present and not null.
func (d Data) has(name string) bool {
	v, ok := d[name]
	return ok && string(v) != "null"
}

// string reads a string field; absent or null reads as "".
func (d Data) string(name string) (string, error) {
	var s string
	if !d.has(name) {
		return "", nil
	}
	if err := json.Unmarshal(d[name], &s); err != nil {
		return "", checkFailed("解密数据中的 %s 不是字符串", name)
	}
	return s, nil
}

// int reads an integer field; absent or null reads as 0.
func (d Data) int(name string) (int64, error) {
	var n int64
	if !d.has(name) {
		return 0, nil
	}
	if err := json.Unmarshal(d[name], &n); err != nil {
		return 0, checkFailed("解密数据中的 %s 不是整数", name)
	}
	return n, nil
}

// object reads a nested object field.
func (d Data) object(name string) (Data, error) {
	fields, err := nestedFields(d[name])
	if err != nil {
		return nil, checkFailed("解密数据中的 %s 不是对象", name)
	}
	return Data(fields), nil
}

// checkWatermark checks that the data was issued for appID. WeChat stamps
// sensitive data with watermark.appid; its timestamp is when the user
// obtained the data, informational only (WECHAT.md §2).
func (d Data) checkWatermark(appID string, required bool) error {
	if !d.has("watermark") {
		if required {
			return checkFailed("解密数据缺少 watermark")
		}
		return nil
	}
	wm, err := d.object("watermark")
	if err != nil {
		return err
	}
	got, err := wm.string("appid")
	if err != nil {
		return err
	}
	if got != appID {
		return checkFailed("数据水印的 appid 不是本小程序")
	}
	return nil
}

// watermarkTimestamp is when data that decrypted to plain was fetched, by
// its watermark: Unix seconds, or 0 if it has none that reads.
func watermarkTimestamp(plain []byte) int64 {
	d, err := Parse(plain)
	if err != nil || !d.has("watermark") {
		return 0
	}
	wm, err := d.object("watermark")
	if err != nil {
		return 0
	}
	ts, _ := wm.int("timestamp")
	return ts
}

// Profile is the public part of a user's WeChat profile, as user info
// (rawData or decrypted) carries it.
type Profile struct {
	Nickname  string
	AvatarURL string
	Gender    int
	Language  string
	City      string
	Province  string
	Country   string
}

// AnonymousNickname is the nickname WeChat has given every user in
// getUserInfo and getUserProfile data since its 2021 and 2022 changes
// (WECHAT.md §5): a placeholder, not the user's name.
const AnonymousNickname = "微信用户"

// anonymous reports whether p is WeChat's placeholder profile.
func (p Profile) anonymous() bool { return p.Nickname == AnonymousNickname }

// readProfile reads the profile fields of user info.
func (d Data) readProfile() (Profile, error) {
	var p Profile
	var err error
	var gender int64
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"nickName", &p.Nickname}, {"avatarUrl", &p.AvatarURL}, {"language", &p.Language},
		{"city", &p.City}, {"province", &p.Province}, {"country", &p.Country},
	} {
		if *f.dst, err = d.string(f.name); err != nil {
			return p, err
		}
	}
	if gender, err = d.int("gender"); err != nil {
		return p, err
	}
	if gender < 0 || gender > 2 {
		return p, checkFailed("解密数据中的 gender 不是 0、1 或 2")
	}
	p.Gender = int(gender)
	return p, nil
}

// UserInfo is verified user info.
type UserInfo struct {
	Profile
	UnionID string // "" when WeChat sent none
}

// parseUserInfo reads decrypted user info and checks it belongs to openID in
// appID. openId may be missing only where WeChat documents it missing:
// wx.getUserProfile's data has neither openId nor unionId (WECHAT.md §3), so
// such data is accepted only when its signed rawData came with it.
func parseUserInfo(plain []byte, appID, openID string, signed bool) (UserInfo, error) {
	d, err := Parse(plain)
	if err != nil {
		return UserInfo{}, err
	}
	if err := d.checkWatermark(appID, true); err != nil {
		return UserInfo{}, err
	}
	gotOpenID, err := d.string("openId")
	if err != nil {
		return UserInfo{}, err
	}
	unionID, err := d.string("unionId")
	if err != nil {
		return UserInfo{}, err
	}
	switch {
	case gotOpenID == "" && (!signed || unionID != ""):
		return UserInfo{}, checkFailed("解密数据缺少 openId")
	case gotOpenID != "" && gotOpenID != openID:
		return UserInfo{}, checkFailed("数据属于另一个用户（openId 不符）")
	}
	p, err := d.readProfile()
	if err != nil {
		return UserInfo{}, err
	}
	return UserInfo{Profile: p, UnionID: unionID}, nil
}

// parseRawData reads the profile in signed rawData.
func parseRawData(rawData string) (Profile, error) {
	fields, err := ReadObject([]byte(rawData))
	if err != nil {
		return Profile{}, checkFailed("rawData 不是 JSON 对象")
	}
	return Data(fields).readProfile()
}

// Phone is a user's phone number as WeChat gives it (WECHAT.md §3).
type Phone struct {
	PhoneNumber     string `json:"phone_number"`      // with the country code for numbers outside China
	PurePhoneNumber string `json:"pure_phone_number"` // without it
	CountryCode     string `json:"country_code"`
}

// ParsePhone reads a phone number: decrypted legacy getPhoneNumber data, or
// the phone_info of getuserphonenumber, which WeChat's example shows with a
// numeric countryCode where the field table and the legacy data have a
// string (WECHAT.md §3): both are accepted.
func ParsePhone(d Data, appID string) (Phone, error) {
	if err := d.checkWatermark(appID, true); err != nil {
		return Phone{}, err
	}
	var p Phone
	var err error
	if p.PhoneNumber, err = d.string("phoneNumber"); err != nil {
		return p, err
	}
	if p.PurePhoneNumber, err = d.string("purePhoneNumber"); err != nil {
		return p, err
	}
	if p.CountryCode, err = d.string("countryCode"); err != nil {
		n, intErr := d.int("countryCode")
		if intErr != nil {
			return p, checkFailed("解密数据中的 countryCode 不是字符串或数字")
		}
		p.CountryCode = strconv.FormatInt(n, 10)
	}
	if p.PhoneNumber == "" {
		return p, checkFailed("解密数据缺少 phoneNumber")
	}
	return p, nil
}

// StepInfo is one day of WeRun steps.
type StepInfo struct {
	Timestamp int64 `json:"timestamp"` // start of the day the count is for, Unix seconds
	Step      int64 `json:"step"`
}

// ParseWeRun reads decrypted WeRun data. WeChat's documented shape has no
// watermark, but real data carries one, so it is checked when present.
func ParseWeRun(plain []byte, appID string) ([]StepInfo, error) {
	d, err := Parse(plain)
	if err != nil {
		return nil, err
	}
	if err := d.checkWatermark(appID, false); err != nil {
		return nil, err
	}
	if !d.has("stepInfoList") {
		return nil, checkFailed("解密数据缺少 stepInfoList")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(d["stepInfoList"], &items); err != nil {
		return nil, checkFailed("解密数据中的 stepInfoList 不是数组")
	}
	steps := make([]StepInfo, 0, len(items))
	for _, raw := range items {
		fields, err := nestedFields(raw)
		if err != nil {
			return nil, checkFailed("stepInfoList 中有不是对象的项")
		}
		item := Data(fields)
		var s StepInfo
		if s.Timestamp, err = item.int("timestamp"); err != nil {
			return nil, err
		}
		if s.Step, err = item.int("step"); err != nil {
			return nil, err
		}
		if !item.has("timestamp") || !item.has("step") {
			return nil, checkFailed("stepInfoList 中有缺少 timestamp 或 step 的项")
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// Check keeps a phone number to what phone numbers look like.
func (p Phone) Check() error {
	for _, f := range []struct{ name, value string }{
		{"phoneNumber", p.PhoneNumber}, {"purePhoneNumber", p.PurePhoneNumber}, {"countryCode", p.CountryCode},
	} {
		if len(f.value) > 32 || strings.ContainsFunc(f.value, func(r rune) bool {
			return !(r == '+' || r == '-' || r == ' ' || '0' <= r && r <= '9')
		}) {
			return checkFailed("%s 不像电话号码", f.name)
		}
	}
	return nil
}

// VerifyUserInfo checks user info against the caller's session_key, or the
// one a login has just replaced (previouskey.go): the signed rawData, the
// encrypted data, or both, whichever were sent (rawData and encryptedData
// not ""). Both must pass when both are sent.
func VerifyUserInfo(who account.Caller, rawData, signature, encryptedData, iv string) (UserInfo, error) {
	signed, encrypted := rawData != "", encryptedData != ""
	info, err := verifiedWithKeys(who, func(key string) (info UserInfo, fetched int64, err error) {
		if signed {
			if err := verifySignature(rawData, signature, key); err != nil {
				return info, 0, err
			}
			if info.Profile, err = parseRawData(rawData); err != nil {
				return info, 0, err
			}
		}
		if encrypted {
			plain, err := Decrypt(key, encryptedData, iv)
			if err != nil {
				return info, 0, err
			}
			// The decrypted data is what WeChat vouches for most: it names the
			// user and the app, and may carry the unionId.
			if info, err = parseUserInfo(plain, who.AppID, who.OpenID, signed); err != nil {
				return info, 0, err
			}
			fetched = watermarkTimestamp(plain)
		}
		return info, fetched, nil
	})
	if err != nil {
		return info, err
	}
	if err := info.check(); err != nil {
		return info, err
	}
	return info, nil
}

// check applies the limits of PATCH /user to verified data too: a record is
// never stored that PATCH would refuse.
func (info UserInfo) check() error {
	p := info.Profile
	err := request.CheckFields(
		request.NameField("nickName", &p.Nickname), request.NameField("city", &p.City),
		request.NameField("province", &p.Province), request.NameField("country", &p.Country),
		request.LanguageField("language", &p.Language), request.AvatarURLField("avatarUrl", &p.AvatarURL),
		request.NameField("unionId", &info.UnionID),
	)
	if err != nil {
		return checkFailed("%v", err)
	}
	return nil
}

// Apply saves the verified profile on u: the fields WeChat filled, except
// the anonymous placeholder's nickname and avatar.
func (info UserInfo) Apply(u *account.User) {
	p := info.Profile
	setIfSent := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if !p.anonymous() {
		setIfSent(&u.Nickname, p.Nickname)
		setIfSent(&u.AvatarURL, p.AvatarURL)
	}
	setIfSent(&u.Language, p.Language)
	setIfSent(&u.City, p.City)
	setIfSent(&u.Province, p.Province)
	setIfSent(&u.Country, p.Country)
	u.SetUnionID(info.UnionID)
	if p.Gender != 0 {
		u.Gender = p.Gender
	}
}
