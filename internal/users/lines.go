package users

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/fastjson"
	"wxlogin/internal/strictjson"
)

// This file is the store's lines, which wxlogin keeps by the million,
// turned into bytes and back: a record per user on internal/fastjson's
// fast path, and claims. encoding/json defines every format here: a line is
// exactly what json.Marshal makes of its struct, and a line is valid
// exactly when json.Decoder with DisallowUnknownFields accepts it; a line
// the fast reader is not sure of goes to it. Tests and fuzz targets check
// that the two always agree: FuzzParseUserLine and FuzzAppendRecord.

// Line is one line of the store, as its journal and its snapshots keep it
// and Lines gives it: a user's record, a claim ({"claim": {...}}), or one of
// the lines of account deletion (erase.go). Exactly one field is set.
type Line struct {
	User  *account.User // a user's record, which a later line of the same id replaces
	Claim *Claim
	// The lines of account deletion (erase.go): the key of the persons'
	// hashes, once, before any kept claim; a claim of an erased user; an
	// erased user's way back to its person; and an erased user's id.
	PersonKey []byte
	Kept      *KeptClaim
	Alias     *Alias
	Erased    *Erased
	// The lines of events (events.go): an event, and the events' numbers.
	Event  *events.Event
	Cursor *Cursor
}

// claimLinePrefix starts every claim line; a user line starts with "id".
var claimLinePrefix = []byte(`{"claim":`)

// ParseLine parses and checks one line of the store, as a start-up reads
// it; the checks of what it says against the lines before it are the
// store's own (Create).
func ParseLine(line []byte) (Line, error) {
	if bytes.HasPrefix(line, claimLinePrefix) {
		c, err := parseClaimLine(line)
		return Line{Claim: c}, err
	}
	if l, ok, err := parseErasureLine(line); ok {
		return l, err
	}
	if l, ok, err := parseEventLine(line); ok {
		return l, err
	}
	u, err := parseUserLine(line)
	return Line{User: u}, err
}

// Append appends l's line, as the store writes it, and a newline to buf.
func (l Line) Append(buf []byte) []byte {
	switch {
	case l.User != nil:
		return appendRecord(buf, l.User)
	case l.Claim != nil:
		return appendClaim(buf, l.Claim)
	case l.PersonKey != nil:
		return personKeyLine(buf, l.PersonKey)
	case l.Kept != nil:
		return keptLine(buf, l.Kept)
	case l.Alias != nil:
		return aliasLine(buf, l.Alias)
	case l.Erased != nil:
		return erasedLine(buf, l.Erased.UserID, l.Erased.At)
	case l.Event != nil:
		return eventLine(buf, l.Event)
	case l.Cursor != nil:
		return cursorLine(buf, *l.Cursor)
	}
	return buf
}

// appendClaim appends c's line and a newline to buf. Claims are few, and
// written by encoding/json itself.
func appendClaim(buf []byte, c *Claim) []byte {
	line, _ := json.Marshal(struct {
		Claim *Claim `json:"claim"`
	}{c}) // Cannot fail: plain data.
	return append(append(buf, line...), '\n')
}

// parseClaimLine decodes and checks one stored claim.
func parseClaimLine(line []byte) (*Claim, error) {
	var l struct {
		Claim *Claim `json:"claim"`
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

// appendRecord appends u's record and a newline to buf: its fields in
// account.User's order, those it marks omitempty only when set, exactly as
// encoding/json writes an account.User.
func appendRecord(buf []byte, u *account.User) []byte {
	buf = strconv.AppendInt(append(buf, `{"id":`...), u.ID, 10)
	buf = fastjson.AppendString(buf, `,"appid":`, u.AppID)
	buf = fastjson.AppendString(buf, `,"openid":`, u.OpenID)
	buf = appendOptional(buf, `,"unionid":`, u.UnionID)
	buf = appendOptional(buf, `,"previous_unionids":`, u.PreviousUnionIDs)
	buf = appendOptional(buf, `,"nickname":`, u.Nickname)
	buf = appendOptional(buf, `,"avatar_url":`, u.AvatarURL)
	if u.Gender != 0 {
		buf = strconv.AppendInt(append(buf, `,"gender":`...), int64(u.Gender), 10)
	}
	buf = appendOptional(buf, `,"language":`, u.Language)
	buf = appendOptional(buf, `,"city":`, u.City)
	buf = appendOptional(buf, `,"province":`, u.Province)
	buf = appendOptional(buf, `,"country":`, u.Country)
	buf = appendOptional(buf, `,"phone_number":`, u.PhoneNumber)
	buf = appendOptional(buf, `,"pure_phone_number":`, u.PurePhoneNumber)
	buf = appendOptional(buf, `,"country_code":`, u.CountryCode)
	buf = fastjson.AppendTime(buf, `,"created_at":`, u.CreatedAt)
	buf = fastjson.AppendTime(buf, `,"updated_at":`, u.UpdatedAt)
	buf = fastjson.AppendTime(buf, `,"last_login_at":`, u.LastLoginAt)
	return append(buf, "}\n"...)
}

// appendOptional is fastjson.AppendString for the fields account.User marks
// omitempty: nothing for an empty string.
func appendOptional(buf []byte, key, value string) []byte {
	if value == "" {
		return buf
	}
	return fastjson.AppendString(buf, key, value)
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
// needs escaping and every time is in UTC: the fields in
// account.User's order, no white space, one newline at the end. It reports false
// for any other line, which may still be valid. Its strings share one
// allocation, which the record keeps alive as long as any of them.
func readPlainRecord(line []byte) (*account.User, bool) {
	r := fastjson.NewReader(line)
	u := new(account.User)
	var spans [13]fastjson.Span // the string fields, in order, as offsets into line
	r.Literal(`{"id":`)
	u.ID = r.Integer()
	spans[0] = r.Field(`,"appid":`)
	spans[1] = r.Field(`,"openid":`)
	spans[2] = r.OptionalField(`,"unionid":`)
	spans[12] = r.OptionalField(`,"previous_unionids":`)
	spans[3] = r.OptionalField(`,"nickname":`)
	spans[4] = r.OptionalField(`,"avatar_url":`)
	if r.Optional(`,"gender":`) {
		u.Gender = int(r.Integer())
	}
	spans[5] = r.OptionalField(`,"language":`)
	spans[6] = r.OptionalField(`,"city":`)
	spans[7] = r.OptionalField(`,"province":`)
	spans[8] = r.OptionalField(`,"country":`)
	spans[9] = r.OptionalField(`,"phone_number":`)
	spans[10] = r.OptionalField(`,"pure_phone_number":`)
	spans[11] = r.OptionalField(`,"country_code":`)
	u.CreatedAt = r.Time(`,"created_at":`)
	u.UpdatedAt = r.Time(`,"updated_at":`)
	u.LastLoginAt = r.Time(`,"last_login_at":`)
	r.Literal("}\n")
	if !r.Done() {
		return nil, false
	}

	// One string holds every field's text, back to back.
	var text strings.Builder
	total := 0
	for _, sp := range spans {
		total += sp.End - sp.Start
	}
	text.Grow(total)
	for _, sp := range spans {
		text.Write(line[sp.Start:sp.End])
	}
	var fields [len(spans)]string
	all, at := text.String(), 0
	for i, sp := range spans {
		fields[i] = all[at : at+sp.End-sp.Start]
		at += len(fields[i])
	}
	u.AppID, u.OpenID, u.UnionID, u.Nickname, u.AvatarURL = fields[0], fields[1], fields[2], fields[3], fields[4]
	u.Language, u.City, u.Province, u.Country = fields[5], fields[6], fields[7], fields[8]
	u.PhoneNumber, u.PurePhoneNumber, u.CountryCode = fields[9], fields[10], fields[11]
	u.PreviousUnionIDs = fields[12]
	return u, true
}
