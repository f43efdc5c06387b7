// Package request reads what a client sends, strictly: bodies as JSON
// (what wx.request sends by default) or as a form, the token headers, and
// the checks of the fields a user may type. A body it cannot read is an
// *Error that says what is wrong, in the client's language; the server
// puts it in its envelope (status 1).
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"wxlogin/internal/strictjson"
)

// Kind is the kind of a request that cannot be read.
type Kind int

// The kinds of Error.
const (
	Malformed Kind = iota // not what the route reads: the server answers 400
	TooLarge              // a body over the server's cap: 413
)

// Error is a request that cannot be read. What says what is wrong, for the
// client, in its language ("" when there is no more to say than the kind);
// Err is the cause, for the log only.
type Error struct {
	Kind Kind
	What string
	Err  error
}

func (e *Error) Error() string {
	msg := "malformed request"
	if e.Kind == TooLarge {
		msg = "request body too large"
	}
	if e.What != "" {
		msg += ": " + e.What
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// malformed is a Malformed error saying what is wrong.
func malformed(what string, cause error) *Error {
	return &Error{Kind: Malformed, What: what, Err: cause}
}

// MaxBodyBytes caps every request body; a login is a few dozen bytes.
const MaxBodyBytes = 64 << 10

// mediaType is the media type of the request body; a request without
// a Content-Type is taken to be JSON, wx.request's default.
func mediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "application/json", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", malformed("无法解析 Content-Type", err)
	}
	return mt, nil
}

// ReadStringFields reads the named string fields of a request body sent as
// JSON (wx.request's default) or as a form, as older mini programs send
// them. Names match exactly, as WeChat spells them in e.detail; other
// fields are ignored, and a missing or null field reads as "".
func ReadStringFields(r *http.Request, fields map[string]*string) error {
	mediaType, err := mediaType(r)
	if err != nil {
		return err
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return bodyError(err)
		}
		for name, dst := range fields {
			if len(r.PostForm[name]) > 1 {
				return malformed(name+" 出现了不止一次", nil)
			}
			*dst = r.PostForm.Get(name)
			if !utf8.ValidString(*dst) {
				return malformed("请求体不是合法的 UTF-8", nil)
			}
		}
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return bodyError(err)
		}
		if plainStringFields(body, fields) {
			return nil
		}
		return decodeStringFields(body, fields)
	default:
		return malformed("Content-Type 应为 application/json 或 application/x-www-form-urlencoded", nil)
	}
	return nil
}

// decodeStringFields reads fields from a JSON body with the full decoder.
func decodeStringFields(body []byte, fields map[string]*string) error {
	var members map[string]json.RawMessage
	if err := decodeJSON(body, &members); err != nil {
		return err
	}
	for name, dst := range fields {
		raw, ok := members[name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return malformed(name+" 应为字符串", err)
		}
	}
	return nil
}

// plainStringFields reads fields from body if it is an object written
// the way a mini program's wx.request writes a login's: no space, every
// member a string of printable ASCII without escapes, no name twice (up
// to case). It reports false, having set nothing, for any other body,
// which the full decoder then reads (FuzzPlainStringFields holds the two
// to one reading).
func plainStringFields(body []byte, fields map[string]*string) bool {
	const most = 8 // members read this way; a body with more takes the decoder
	var names, values [most]string
	n := 0
	rest, ok := bytes.CutPrefix(body, []byte("{"))
	if !ok {
		return false
	}
	if string(rest) != "}" {
		for {
			var name, value string
			if name, rest, ok = plainJSONString(rest); !ok {
				return false
			}
			if rest, ok = bytes.CutPrefix(rest, []byte(":")); !ok {
				return false
			}
			if value, rest, ok = plainJSONString(rest); !ok || n == most {
				return false
			}
			for _, seen := range names[:n] {
				if strings.EqualFold(seen, name) { // twice, up to case, as strictjson.DuplicateMember has it
					return false
				}
			}
			names[n], values[n] = name, value
			n++
			if string(rest) == "}" {
				break
			}
			if rest, ok = bytes.CutPrefix(rest, []byte(",")); !ok {
				return false
			}
		}
	}
	for i := range n {
		if dst := fields[names[i]]; dst != nil {
			*dst = values[i]
		}
	}
	return true
}

// plainJSONString reads a JSON string of printable ASCII without escapes
// at the start of b, and what follows it.
func plainJSONString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return string(b[1:i]), b[i+1:], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", nil, false
		}
	}
	return "", nil, false
}

// ReadJSON reads a JSON request body into v, which must be a pointer to a
// struct. A member v has no field for is an error: a misspelt name is
// refused rather than silently ignored.
func ReadJSON(r *http.Request, v any) error {
	mediaType, err := mediaType(r)
	if err != nil {
		return err
	}
	if mediaType != "application/json" {
		return malformed("Content-Type 应为 application/json", nil)
	}
	return DecodeJSONBody(r, v)
}

// DecodeJSONBody decodes the body as one JSON object into v, strictly: a
// repeated member, a member v has no field for (a map has one for each)
// and data after the object are refused. An empty body decodes as {}. The
// body must be valid UTF-8: encoding/json would silently replace invalid
// bytes, storing text the client never sent.
func DecodeJSONBody(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	return decodeJSON(body, v)
}

// decodeJSON is DecodeJSONBody of a body read.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !utf8.Valid(body) {
		return malformed("请求体不是合法的 UTF-8", nil)
	}
	if name := strictjson.DuplicateMember(body); name != "" {
		return malformed("字段 "+quoteName(name)+" 出现了不止一次", nil)
	}
	if err := strictjson.Decode(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// quoteName quotes a member name from a request for an error message,
// cut to 64 runes: the name is the client's, of any length.
func quoteName(name string) string {
	if utf8.RuneCountInString(name) > 64 {
		name = string([]rune(name)[:64]) + "…"
	}
	return strconv.Quote(name)
}

// bodyError explains a failure to read a request body.
func bodyError(err error) *Error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Kind: TooLarge, Err: err}
	}
	return malformed("", err)
}

// jsonError explains a JSON body that does not decode, naming the field.
func jsonError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.Is(err, strictjson.ErrTrailingData) {
		return malformed("请求体在 JSON 对象之后还有内容", nil)
	}
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return malformed(typeErr.Field+" 应为"+jsonKind(typeErr.Type), err)
	}
	// DisallowUnknownFields reports with this text only; Go has no error type for it.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if len(name) > 66 {
			name = name[:64] + `…"`
		}
		return malformed("未知字段 "+name, err)
	}
	return malformed("请求体不是合法的 JSON 对象", err)
}

// jsonKind names a Go type as the JSON a client should send for it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "字符串"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "整数"
	case reflect.Bool:
		return "布尔值"
	case reflect.Slice, reflect.Array:
		return "数组"
	default:
		return "对象"
	}
}

// IsPrintableASCII reports whether s has only visible ASCII characters.
func IsPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Token finds the token in "Authorization: Bearer <token>" or,
// as many mini programs send it, in a "token" header; "" if there is none.
// Either header sent twice is refused: two tokens in one request leave it
// open which one speaks (a reverse proxy that adds its own must replace the
// client's).
func Token(h http.Header) (string, error) {
	auth, token := h.Values("Authorization"), h.Values("Token")
	if len(auth) > 1 || len(token) > 1 {
		return "", malformed("Authorization 或 token 请求头出现了不止一次", nil)
	}
	if len(auth) == 1 {
		if scheme, t, ok := strings.Cut(auth[0], " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t), nil
		}
	}
	if len(token) == 1 {
		return strings.TrimSpace(token[0]), nil
	}
	return "", nil
}

// Field is a profile field to check, under the name its source gives
// it: PATCH /user's own names, or WeChat's in verified user info. Its value
// is nil when the field was not sent.
type Field struct {
	name  string
	value *string
	check func(name, value string) error
}

// NameField is a field CheckName checks: a nickname, a place, a unionid.
func NameField(name string, value *string) Field { return Field{name, value, CheckName} }

// LanguageField is a field holding a language tag.
func LanguageField(name string, value *string) Field { return Field{name, value, checkLanguage} }

// AvatarURLField is a field CheckAvatarURL checks.
func AvatarURLField(name string, value *string) Field { return Field{name, value, CheckAvatarURL} }

// CheckFields checks every field that was sent. Its errors name the
// field and are for the client.
func CheckFields(fields ...Field) error {
	for _, f := range fields {
		if f.value == nil {
			continue
		}
		if err := f.check(f.name, *f.value); err != nil {
			return err
		}
	}
	return nil
}

// Limits of profile fields. WeChat's own are smaller; these only keep
// nonsense out of the store. MaxNameRunes is a name's, in characters.
const (
	MaxNameRunes    = 64
	maxLanguageLen  = 16
	maxAvatarURLLen = 1024
)

// CheckName accepts a name: a nickname, a place, a unionid.
func CheckName(name, s string) error { return CheckText(name, s, MaxNameRunes) }

// CheckText accepts text of at most maxRunes characters with no control
// characters (line breaks included).
func CheckText(name, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s 不是合法的 UTF-8", name)
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return fmt.Errorf("%s 最多 %d 个字符，实为 %d 个", name, maxRunes, n)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s 含有控制字符", name)
	}
	return nil
}

// checkLanguage accepts a language tag such as zh_CN or en.
func checkLanguage(name, s string) error {
	if len(s) > maxLanguageLen || strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		return fmt.Errorf("%s 应为 zh_CN 这样的语言代码", name)
	}
	return nil
}

// CheckAvatarURL accepts an absolute http or https URL, or "" for none.
// chooseAvatar gives a temporary local file, which WeChat DevTools shows as
// http://tmp/...: that is refused with a hint, as no one else can load it.
func CheckAvatarURL(name, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case len(s) > maxAvatarURLLen:
		return fmt.Errorf("%s 最长 %d 字节", name, maxAvatarURLLen)
	case err != nil || !IsPrintableASCII(s) || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
		return fmt.Errorf("%s 应为 http 或 https 网址", name)
	case u.Hostname() == "tmp" || u.Hostname() == "usr":
		return fmt.Errorf("%s 是 chooseAvatar 给出的本地临时文件：请先用 wx.uploadFile 上传，再保存上传后的网址", name)
	}
	return nil
}
