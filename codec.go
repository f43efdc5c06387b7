package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"wxlogin/internal/account"
	"wxlogin/internal/strictjson"
)

// This file turns what wxlogin keeps by the million into bytes and back,
// without reflection: the user store's lines (a record per user, and
// claims), the token file's lines, and the body of GET /user, which every
// page of a mini program asks for. encoding/json defines every format here:
// a line or body is exactly what json.Marshal makes of its struct, and a
// line is valid exactly when json.Decoder with DisallowUnknownFields
// accepts it. The code is a fast path only: anything the readers are not
// sure of goes to encoding/json. Why it is worth having is in BENCHMARKS.md
// (start-up, GET /user). Tests and fuzz targets check that the two always
// agree: FuzzParseUserLine, FuzzAppendRecord and FuzzTokenFileLines for the
// lines, TestUserViewJSON for the body.

// storedLine is one line of the user store's journal: a user record, or a
// claim ({"claim": {...}}).
type storedLine struct {
	user  *account.User
	claim *claimRecord
	// The lines of account deletion (erase.go).
	personKey []byte
	kept      *keptClaim
	erased    *erasure
}

// claimLinePrefix starts every claim line; a user line starts with "id".
var claimLinePrefix = []byte(`{"claim":`)

// parseStoredLine parses one line of the user store's journal.
func parseStoredLine(line []byte) (storedLine, error) {
	if bytes.HasPrefix(line, claimLinePrefix) {
		c, err := parseClaimLine(line)
		return storedLine{claim: c}, err
	}
	if l, ok, err := parseErasureLine(line); ok {
		return l, err
	}
	u, err := parseUserLine(line)
	return storedLine{user: u}, err
}

// appendClaim appends c's line and a newline to buf. Claims are few, and
// written by encoding/json itself.
func appendClaim(buf []byte, c *claimRecord) []byte {
	line, _ := json.Marshal(struct {
		Claim *claimRecord `json:"claim"`
	}{c}) // Cannot fail: plain data.
	return append(append(buf, line...), '\n')
}

// parseClaimLine decodes and checks one stored claim.
func parseClaimLine(line []byte) (*claimRecord, error) {
	var l struct {
		Claim *claimRecord `json:"claim"`
	}
	if err := strictjson.Decode(line, &l); err != nil || l.Claim == nil {
		return nil, fmt.Errorf("not a claim record: %v", err)
	}
	c := l.Claim
	switch {
	case !account.ValidClaimName(c.Name):
		return nil, fmt.Errorf("claim name %q is not 1 to 32 of a-z, 0-9 and -", c.Name)
	case c.UserID < 1:
		return nil, fmt.Errorf("claim %q names user %d", c.Name, c.UserID)
	case c.At.IsZero():
		return nil, fmt.Errorf("claim %q has no time", c.Name)
	}
	return c, nil
}

// appendRecord appends u's record and a newline to buf.
func appendRecord(buf []byte, u *account.User) []byte {
	return append(appendUserFields(append(buf, '{'), u, false), "}\n"...)
}

// appendUserFields appends u's fields, in account.User's order, as members of a
// JSON object: those account.User marks omitempty only when set, as the record
// keeps them, or with every true all of them, as the API shows a user.
func appendUserFields(buf []byte, u *account.User, every bool) []byte {
	str := appendOptional
	if every {
		str = appendField
	}
	buf = strconv.AppendInt(append(buf, `"id":`...), u.ID, 10)
	buf = appendField(buf, `,"appid":`, u.AppID)
	buf = appendField(buf, `,"openid":`, u.OpenID)
	buf = str(buf, `,"unionid":`, u.UnionID)
	buf = str(buf, `,"nickname":`, u.Nickname)
	buf = str(buf, `,"avatar_url":`, u.AvatarURL)
	if every || u.Gender != 0 {
		buf = strconv.AppendInt(append(buf, `,"gender":`...), int64(u.Gender), 10)
	}
	buf = str(buf, `,"language":`, u.Language)
	buf = str(buf, `,"city":`, u.City)
	buf = str(buf, `,"province":`, u.Province)
	buf = str(buf, `,"country":`, u.Country)
	buf = str(buf, `,"phone_number":`, u.PhoneNumber)
	buf = str(buf, `,"pure_phone_number":`, u.PurePhoneNumber)
	buf = str(buf, `,"country_code":`, u.CountryCode)
	buf = appendTime(buf, `,"created_at":`, u.CreatedAt)
	buf = appendTime(buf, `,"updated_at":`, u.UpdatedAt)
	return appendTime(buf, `,"last_login_at":`, u.LastLoginAt)
}

// appendOptional is appendField for the fields account.User marks omitempty.
func appendOptional(buf []byte, key, value string) []byte {
	if value == "" {
		return buf
	}
	return appendField(buf, key, value)
}

// appendField appends key and value as a JSON string. A string that needs
// no escaping is copied; the rest is left to encoding/json, whose escaping
// (HTML characters, U+2028, invalid UTF-8) is the format's.
func appendField(buf []byte, key, value string) []byte {
	buf = append(buf, key...)
	if !plainString(value) {
		quoted, _ := json.Marshal(value) // Cannot fail for a string.
		return append(buf, quoted...)
	}
	buf = append(buf, '"')
	buf = append(buf, value...)
	return append(buf, '"')
}

// plainString reports whether encoding/json writes s between quotes as it
// is: valid UTF-8 with no control character, quote, backslash, HTML
// character (<, >, &) or line or paragraph separator (U+2028, U+2029).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && (strings.HasPrefix(s[i:], "\u2028") || strings.HasPrefix(s[i:], "\u2029")):
			return false
		}
	}
	return utf8.ValidString(s)
}

// appendTime appends key and t as encoding/json writes a time.Time. It
// cannot fail: a time encoding/json refuses (a year outside 0 to 9999) never
// gets here, as userStore.stamp refuses such a clock and every other time
// was read from a record.
func appendTime(buf []byte, key string, t time.Time) []byte {
	buf = append(append(buf, key...), '"')
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"')
}

// parseUserLine decodes and checks one stored record. Unknown fields are an
// error, not ignored: they would be dropped by the next snapshot.
func parseUserLine(line []byte) (*account.User, error) {
	u, ok := readPlainRecord(line)
	if !ok {
		u = new(account.User)
		if err := strictjson.Decode(line, u); err != nil {
			return nil, fmt.Errorf("not a user record: %w", err)
		}
	}
	switch {
	case u.ID < 1:
		return nil, fmt.Errorf("user record with id %d", u.ID)
	case u.AppID == "" || u.OpenID == "":
		return nil, fmt.Errorf("user %d has no appid or openid", u.ID)
	case u.CreatedAt.IsZero():
		return nil, fmt.Errorf("user %d has no created_at", u.ID)
	}
	return u, nil
}

// readPlainRecord reads a record as appendRecord writes it when no string
// needs escaping and every time is in whole seconds of UTC: the fields in
// account.User's order, no white space, one newline at the end. It reports false
// for any other line, which may still be valid. Its strings share one
// allocation, which the record keeps alive as long as any of them.
func readPlainRecord(line []byte) (*account.User, bool) {
	r := recordReader{line: line, rest: line, ok: true}
	u := new(account.User)
	var spans [12]span // the string fields, in order, as offsets into line
	r.literal(`{"id":`)
	u.ID = r.integer()
	spans[0] = r.field(`,"appid":`)
	spans[1] = r.field(`,"openid":`)
	spans[2] = r.optionalField(`,"unionid":`)
	spans[3] = r.optionalField(`,"nickname":`)
	spans[4] = r.optionalField(`,"avatar_url":`)
	if r.optional(`,"gender":`) {
		u.Gender = int(r.integer())
	}
	spans[5] = r.optionalField(`,"language":`)
	spans[6] = r.optionalField(`,"city":`)
	spans[7] = r.optionalField(`,"province":`)
	spans[8] = r.optionalField(`,"country":`)
	spans[9] = r.optionalField(`,"phone_number":`)
	spans[10] = r.optionalField(`,"pure_phone_number":`)
	spans[11] = r.optionalField(`,"country_code":`)
	u.CreatedAt = r.time(`,"created_at":`)
	u.UpdatedAt = r.time(`,"updated_at":`)
	u.LastLoginAt = r.time(`,"last_login_at":`)
	r.literal("}\n")
	if !r.ok || len(r.rest) != 0 {
		return nil, false
	}

	// One string holds every field's text, back to back.
	var text strings.Builder
	total := 0
	for _, sp := range spans {
		total += sp.end - sp.start
	}
	text.Grow(total)
	for _, sp := range spans {
		text.Write(line[sp.start:sp.end])
	}
	var fields [len(spans)]string
	all, at := text.String(), 0
	for i, sp := range spans {
		fields[i] = all[at : at+sp.end-sp.start]
		at += len(fields[i])
	}
	u.AppID, u.OpenID, u.UnionID, u.Nickname, u.AvatarURL = fields[0], fields[1], fields[2], fields[3], fields[4]
	u.Language, u.City, u.Province, u.Country = fields[5], fields[6], fields[7], fields[8]
	u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = fields[9], fields[10], fields[11]
	return u, true
}

// span is where a string's text is in a line.
type span struct{ start, end int }

// recordReader reads a line left to right. The first thing it cannot read
// clears ok, and every later call then does nothing.
type recordReader struct {
	line []byte // the whole line, for offsets
	rest []byte
	ok   bool
}

func (r *recordReader) offset() int { return len(r.line) - len(r.rest) }

// optional reads s if the line continues with it, and reports whether it did.
func (r *recordReader) optional(s string) bool {
	if !r.ok || len(r.rest) < len(s) || string(r.rest[:len(s)]) != s {
		return false
	}
	r.rest = r.rest[len(s):]
	return true
}

// literal reads s, which must come next.
func (r *recordReader) literal(s string) {
	if !r.optional(s) {
		r.ok = false
	}
}

// integer reads a JSON integer that fits an int64: an optional minus, then
// 0 or digits not starting with 0.
func (r *recordReader) integer() int64 {
	if !r.ok {
		return 0
	}
	n := 0
	if n < len(r.rest) && r.rest[n] == '-' {
		n++
	}
	digits := n
	for n < len(r.rest) && '0' <= r.rest[n] && r.rest[n] <= '9' {
		n++
	}
	if n == digits || r.rest[digits] == '0' && n > digits+1 {
		r.ok = false
		return 0
	}
	v, err := strconv.ParseInt(string(r.rest[:n]), 10, 64)
	if err != nil {
		r.ok = false
		return 0
	}
	r.rest = r.rest[n:]
	return v
}

// field reads key and a string that needs no escaping, returning where the
// string's text is.
func (r *recordReader) field(key string) span {
	r.literal(key)
	return r.plainText()
}

// optionalField is field for a key that may be absent.
func (r *recordReader) optionalField(key string) span {
	if !r.optional(key) {
		return span{}
	}
	return r.plainText()
}

// plainText reads a string encoding/json would decode to its own bytes:
// no escapes, no control characters, valid UTF-8.
func (r *recordReader) plainText() span {
	r.literal(`"`)
	if !r.ok {
		return span{}
	}
	start := r.offset()
	end := start
	for end < len(r.line) && r.line[end] >= 0x20 && r.line[end] != '"' && r.line[end] != '\\' {
		end++
	}
	if !utf8.Valid(r.line[start:end]) {
		r.ok = false
		return span{}
	}
	r.rest = r.line[end:]
	r.literal(`"`)
	return span{start, end}
}

// time reads key and a time written as "2006-01-02T15:04:05Z", the form
// of a whole second of UTC. Anything else clears ok, to be read by
// encoding/json: fractions, offsets, and dates time.Parse would refuse.
func (r *recordReader) time(key string) time.Time {
	r.literal(key)
	const form = `"2006-01-02T15:04:05Z"`
	if !r.ok || len(r.rest) < len(form) {
		r.ok = false
		return time.Time{}
	}
	b := r.rest[:len(form)]
	num := func(from, to int) int {
		n := 0
		for _, c := range b[from:to] {
			if c < '0' || c > '9' {
				r.ok = false
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(1, 5), num(6, 8), num(9, 11)
	hour, minute, second := num(12, 14), num(15, 17), num(18, 20)
	if b[0] != '"' || b[5] != '-' || b[8] != '-' || b[11] != 'T' || b[14] != ':' || b[17] != ':' || string(b[20:]) != `Z"` {
		r.ok = false
	}
	if month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		r.ok = false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, 0, time.UTC)
	if !r.ok || t.Day() != day { // A day past the month's end rolls over.
		r.ok = false
		return time.Time{}
	}
	r.rest = r.rest[len(form):]
	return t
}

// str is field, returning the text as a new string.
func (r *recordReader) str(key string) string {
	sp := r.field(key)
	return string(r.line[sp.start:sp.end])
}

func appendSavedSessionKey(buf []byte, k savedSessionKey) []byte {
	buf = strconv.AppendInt(append(buf, `{"user_id":`...), k.UserID, 10)
	buf = appendField(buf, `,"appid":`, k.AppID)
	buf = appendField(buf, `,"openid":`, k.OpenID)
	buf = appendField(buf, `,"session_key":`, k.SessionKey)
	buf = strconv.AppendInt(append(buf, `,"stored_ns":`...), k.StoredAt, 10)
	return append(buf, "}\n"...)
}

func appendSavedToken(buf []byte, t savedToken) []byte {
	buf = appendField(buf, `{"sha256":`, t.SHA256)
	buf = strconv.AppendInt(append(buf, `,"user_id":`...), t.UserID, 10)
	buf = strconv.AppendInt(append(buf, `,"issued_ns":`...), t.IssuedAt, 10)
	buf = strconv.AppendInt(append(buf, `,"last_used_ns":`...), t.LastUsedAt, 10)
	return append(buf, "}\n"...)
}

// parseSavedSessionKey reads a session key line of the token file.
func parseSavedSessionKey(line []byte) (savedSessionKey, error) {
	return parseTokenFileLine(line, "session key", func(r *recordReader) (k savedSessionKey) {
		r.literal(`{"user_id":`)
		k.UserID = r.integer()
		k.AppID = r.str(`,"appid":`)
		k.OpenID = r.str(`,"openid":`)
		k.SessionKey = r.str(`,"session_key":`)
		r.literal(`,"stored_ns":`)
		k.StoredAt = r.integer()
		return k
	})
}

// parseSavedToken reads a token line of the token file.
func parseSavedToken(line []byte) (savedToken, error) {
	return parseTokenFileLine(line, "token", func(r *recordReader) (t savedToken) {
		t.SHA256 = r.str(`{"sha256":`)
		r.literal(`,"user_id":`)
		t.UserID = r.integer()
		r.literal(`,"issued_ns":`)
		t.IssuedAt = r.integer()
		r.literal(`,"last_used_ns":`)
		t.LastUsedAt = r.integer()
		return t
	})
}

// parseTokenFileLine reads one line of the token file with read, which
// expects the members in the order wxlogin writes them, up to the closing
// brace; a line it is unsure of goes to encoding/json, which defines the
// format. what names the kind of line in an error.
func parseTokenFileLine[T any](line []byte, what string, read func(r *recordReader) T) (T, error) {
	r := recordReader{line: line, rest: line, ok: true}
	v := read(&r)
	r.literal("}\n")
	if r.ok && len(r.rest) == 0 {
		return v, nil
	}
	var strict T
	if err := strictjson.Decode(line, &strict); err != nil {
		return strict, fmt.Errorf("not a %s: %w", what, err)
	}
	return strict, nil
}

// appendUserOK appends, and a newline, the success envelope holding v, as
// writeOK writes it.
func appendUserOK(buf []byte, v userView) []byte {
	buf = strconv.AppendInt(append(buf, `{"status":`...), statusOK, 10)
	buf = appendField(buf, `,"msg":`, msgOK)
	buf = v.appendJSON(append(buf, `,"data":`...))
	return append(buf, "}\n"...)
}

// appendJSON appends v as encoding/json writes it.
func (v userView) appendJSON(buf []byte) []byte {
	u := account.User(v.recordView)
	buf = appendUserFields(append(buf, '{'), &u, true)
	buf = strconv.AppendInt(append(buf, `,"person_id":`...), v.PersonID, 10)
	if v.Apps == nil {
		return append(buf, `,"apps":null}`...)
	}
	buf = append(buf, `,"apps":[`...)
	for i, a := range v.Apps {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendField(buf, `{"appid":`, a.AppID)
		buf = appendField(buf, `,"name":`, a.Name)
		buf = strconv.AppendInt(append(buf, `,"user_id":`...), a.UserID, 10)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}
