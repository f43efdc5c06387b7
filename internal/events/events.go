// Package events is what other services hear of wxlogin's users: an event
// for each change they must follow, recorded by the store in the same
// durable write as the change itself (-events), numbered in the order the
// store made them, listed by GET /events?after=N and posted by -webhook
// (internal/webhook). An event is a plain value; this package names its
// types, makes its id and writes and reads its JSON, which is one shape
// everywhere: the store's line, a page of GET /events and a webhook's body.
package events

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fastjson"
	"wxlogin/internal/strictjson"
)

// The types of event.
const (
	// UserCreated: a user's first login in an app.
	UserCreated = "user.created"
	// PersonJoined: the records of previous_person_id are of person_id
	// now: user_id's record learned a unionid, or a changed one, that
	// joins them.
	PersonJoined = "person.joined"
	// PhoneBound: a user bound a phone number, or another one.
	PhoneBound = "phone.bound"
	// ClaimTaken: a person took a one-time benefit, through this user.
	ClaimTaken = "claim.taken"
	// UserDeleted: a user deleted their account. Only ids.
	UserDeleted = "user.deleted"
)

// Keep is how long an event stays listed by GET /events. With -webhook, an
// event is kept until it is delivered too, however long that takes.
const Keep = 7 * 24 * time.Hour

// Event is one change. ID is its webhook-id, the same at every delivery
// and replay of it: a receiver drops an event whose id it has seen. Seq
// orders the events of a store; a receiver pages on from the last it saw.
type Event struct {
	ID   string    `json:"id"`
	Seq  int64     `json:"seq"`
	Type string    `json:"type"`
	At   time.Time `json:"timestamp"`
	Data Data      `json:"data"`
}

// Data is what an event says of its user. Every event names the user, its
// app and its person (the id of the person's earliest record, as GET /user
// shows it); the other fields belong to one type each.
type Data struct {
	UserID   int64  `json:"user_id"`
	AppID    string `json:"appid"`
	PersonID int64  `json:"person_id"`
	// PreviousPersonID (person.joined) is a person joined into person_id:
	// its records are person_id's now.
	PreviousPersonID int64 `json:"previous_person_id,omitempty"`
	// The phone number bound (phone.bound), as GET /user shows it.
	PhoneNumber     string `json:"phone_number,omitempty"`
	PurePhoneNumber string `json:"pure_phone_number,omitempty"`
	CountryCode     string `json:"country_code,omitempty"`
	// Claim (claim.taken) is the name of the benefit taken.
	Claim string `json:"claim,omitempty"`
}

// New is an event of the given type about the user, not yet numbered,
// with a new id.
func New(kind string, at time.Time, data Data) Event {
	return Event{ID: NewID(), Type: kind, At: at.UTC(), Data: data}
}

// NewID is a new event id: "evt_" and 16 random bytes in base64url, unique
// across stores and instances without any coordination.
func NewID() string {
	var random [16]byte
	rand.Read(random[:]) // Never fails: crypto/rand.Read crashes the program rather than return short.
	// 22: the 16 bytes in base64url, unpadded.
	var id [len("evt_") + 22]byte
	copy(id[:], "evt_")
	base64.RawURLEncoding.Encode(id[len("evt_"):], random[:])
	return string(id[:]) // the one allocation of a new event's id (TestNewIDAllocatesOnce)
}

// Created, Joined, PhoneBound, Claimed and Deleted are the events of each
// change, for user u of person.
func Created(at time.Time, u *account.User, person int64) Event {
	return New(UserCreated, at, Data{UserID: u.ID, AppID: u.AppID, PersonID: person})
}

func Joined(at time.Time, u *account.User, person, previous int64) Event {
	return New(PersonJoined, at, Data{UserID: u.ID, AppID: u.AppID, PersonID: person, PreviousPersonID: previous})
}

func PhoneChanged(at time.Time, u *account.User, person int64) Event {
	return New(PhoneBound, at, Data{UserID: u.ID, AppID: u.AppID, PersonID: person,
		PhoneNumber: u.PhoneNumber, PurePhoneNumber: u.PurePhoneNumber, CountryCode: u.CountryCode})
}

func Claimed(at time.Time, u *account.User, person int64, name string) Event {
	return New(ClaimTaken, at, Data{UserID: u.ID, AppID: u.AppID, PersonID: person, Claim: name})
}

func Deleted(at time.Time, userID int64, appID string, person int64) Event {
	return New(UserDeleted, at, Data{UserID: userID, AppID: appID, PersonID: person})
}

// Of are the events of a change of a user's record from old (nil for a new
// user) to u, whose person is person after it: created; joined, once for
// each person of previous, the persons its new unionid brought together,
// that is not person; bound a phone.
func Of(at time.Time, old, u *account.User, person int64, previous []int64) []Event {
	var list []Event
	if old == nil {
		list = append(list, Created(at, u, person))
	}
	for i, p := range previous {
		if p != person && !slices.Contains(previous[:i], p) {
			list = append(list, Joined(at, u, person, p))
		}
	}
	if u.PhoneNumber != "" && (old == nil || old.PhoneNumber != u.PhoneNumber || old.CountryCode != u.CountryCode) {
		list = append(list, PhoneChanged(at, u, person))
	}
	return list
}

// Append appends e's JSON to buf, exactly as encoding/json writes it
// (TestAppendIsEncodingJSON, FuzzAppend), without its reflection: the
// store writes one with each change, and the webhook one with each post.
func (e *Event) Append(buf []byte) []byte {
	d := &e.Data
	// Room for every key and number at their longest, and the strings
	// unescaped: one allocation, not one each time the JSON outgrows buf
	// (TestAppendAllocatesOnce).
	buf = slices.Grow(buf, 300+len(e.ID)+len(e.Type)+len(d.AppID)+len(d.PhoneNumber)+len(d.PurePhoneNumber)+len(d.CountryCode)+len(d.Claim))
	buf = fastjson.AppendString(append(buf, '{'), `"id":`, e.ID)
	buf = strconv.AppendInt(append(buf, `,"seq":`...), e.Seq, 10)
	buf = fastjson.AppendString(buf, `,"type":`, e.Type)
	buf = fastjson.AppendTime(buf, `,"timestamp":`, e.At)
	buf = strconv.AppendInt(append(buf, `,"data":{"user_id":`...), d.UserID, 10)
	buf = fastjson.AppendString(buf, `,"appid":`, d.AppID)
	buf = strconv.AppendInt(append(buf, `,"person_id":`...), d.PersonID, 10)
	if d.PreviousPersonID != 0 {
		buf = strconv.AppendInt(append(buf, `,"previous_person_id":`...), d.PreviousPersonID, 10)
	}
	buf = appendOptional(buf, `,"phone_number":`, d.PhoneNumber)
	buf = appendOptional(buf, `,"pure_phone_number":`, d.PurePhoneNumber)
	buf = appendOptional(buf, `,"country_code":`, d.CountryCode)
	buf = appendOptional(buf, `,"claim":`, d.Claim)
	return append(buf, "}}"...)
}

// appendOptional is fastjson.AppendString for a field marked omitempty.
func appendOptional(buf []byte, key, value string) []byte {
	if value == "" {
		return buf
	}
	return fastjson.AppendString(buf, key, value)
}

// Parse reads and checks one event's JSON; unknown fields are an error.
// The webhook reads each event from Redis's log with it: what Append
// wrote is read without reflection (FuzzParse holds that to encoding/json),
// any other JSON as encoding/json reads it.
func Parse(text []byte) (Event, error) {
	e, ok := parsePlain(text)
	if !ok {
		if err := strictjson.Decode(text, &e); err != nil {
			return Event{}, fmt.Errorf("not an event: %w", err)
		}
	}
	return e, e.check()
}

// parsePlain reads an event as Append writes it when no string needs
// escaping and its time is in UTC. It reports false for any other JSON,
// which may still be an event. Its strings share one allocation.
func parsePlain(text []byte) (Event, bool) {
	var e Event
	d := &e.Data
	var spans [7]fastjson.Span
	r := fastjson.NewReader(text)
	spans[0] = r.Field(`{"id":`)
	r.Literal(`,"seq":`)
	e.Seq = r.Integer()
	spans[1] = r.Field(`,"type":`)
	e.At = r.Time(`,"timestamp":`)
	r.Literal(`,"data":{"user_id":`)
	d.UserID = r.Integer()
	spans[2] = r.Field(`,"appid":`)
	r.Literal(`,"person_id":`)
	d.PersonID = r.Integer()
	if r.Optional(`,"previous_person_id":`) {
		d.PreviousPersonID = r.Integer()
	}
	spans[3] = r.OptionalField(`,"phone_number":`)
	spans[4] = r.OptionalField(`,"pure_phone_number":`)
	spans[5] = r.OptionalField(`,"country_code":`)
	spans[6] = r.OptionalField(`,"claim":`)
	r.Literal("}}")
	if !r.Done() {
		return Event{}, false
	}
	all := string(text)
	field := func(sp fastjson.Span) string { return all[sp.Start:sp.End] }
	e.ID, e.Type, d.AppID = field(spans[0]), field(spans[1]), field(spans[2])
	d.PhoneNumber, d.PurePhoneNumber, d.CountryCode, d.Claim = field(spans[3]), field(spans[4]), field(spans[5]), field(spans[6])
	return e, true
}

// ErrBad is the error of an event that is not one wxlogin writes.
var ErrBad = errors.New("not an event wxlogin writes")

func (e *Event) check() error {
	switch {
	case !strings.HasPrefix(e.ID, "evt_") || len(e.ID) > 64:
		return fmt.Errorf("%w: id %q", ErrBad, e.ID)
	case e.Seq < 0:
		return fmt.Errorf("%w: seq %d", ErrBad, e.Seq)
	case !known(e.Type):
		return fmt.Errorf("%w: type %q", ErrBad, e.Type)
	case e.At.IsZero():
		return fmt.Errorf("%w: no timestamp", ErrBad)
	case e.Data.UserID < 1 || e.Data.AppID == "" || e.Data.PersonID < 1:
		return fmt.Errorf("%w: user %d, appid %q, person %d", ErrBad, e.Data.UserID, e.Data.AppID, e.Data.PersonID)
	}
	return nil
}

func known(kind string) bool {
	switch kind {
	case UserCreated, PersonJoined, PhoneBound, ClaimTaken, UserDeleted:
		return true
	}
	return false
}

// Page is one answer of GET /events: the events after the seq asked for,
// oldest first, and Next, the after of the page that follows (the last
// event's seq, or the after asked for when there was none).
type Page struct {
	Events []Event `json:"events"`
	Next   int64   `json:"next"`
}
