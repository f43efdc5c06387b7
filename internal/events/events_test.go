package events

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/strictjson"
)

// TestOf: the events of a change of a record, by what changed.
func TestOf(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	plain := &account.User{ID: 5, AppID: "wxa"}
	phone := &account.User{ID: 5, AppID: "wxa", PhoneNumber: "+86 138", PurePhoneNumber: "138", CountryCode: "86"}
	otherCountry := *phone
	otherCountry.CountryCode = "852"
	tests := []struct {
		name     string
		old, u   *account.User
		previous []int64
		want     string
	}{
		{"a new user", nil, plain, nil, "user.created"},
		{"a new user with a phone", nil, phone, nil, "user.created phone.bound"},
		{"nothing followed changed", plain, plain, nil, ""},
		{"its own person again", plain, plain, []int64{3, 3}, ""},
		{"two persons joined into 3", plain, plain, []int64{4, 3, 6, 4}, "person.joined:4 person.joined:6"},
		{"a phone bound", plain, phone, nil, "phone.bound"},
		{"the same phone", phone, phone, nil, ""},
		{"the same number in another country", phone, &otherCountry, nil, "phone.bound"},
		{"a phone taken away", phone, plain, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range Of(at, tt.old, tt.u, 3, tt.previous) {
				kind := e.Type
				if e.Data.PreviousPersonID != 0 {
					kind += ":" + strconv.FormatInt(e.Data.PreviousPersonID, 10)
				}
				if e.Data.PersonID != 3 || e.Data.UserID != 5 || e.Data.AppID != "wxa" || !e.At.Equal(at) {
					t.Errorf("%s names %+v at %v", e.Type, e.Data, e.At)
				}
				if err := e.check(); err != nil {
					t.Errorf("%s: %v", e.Type, err)
				}
				got = append(got, kind)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("Of = %q; want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}

// TestParseRefusesWhatWxloginNeverWrites: an event without its id, type,
// time or ids, or with a field wxlogin does not write, is refused.
func TestParseRefusesWhatWxloginNeverWrites(t *testing.T) {
	good := `{"id":"evt_a","seq":1,"type":"user.created","timestamp":"2026-12-07T10:00:00Z","data":{"user_id":1,"appid":"wxa","person_id":1}}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("Parse(%s) = %v", good, err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"evt_a"`, `"msg_a"`, 1),
		strings.Replace(good, `"user.created"`, `"user.renamed"`, 1),
		strings.Replace(good, `"seq":1`, `"seq":-1`, 1),
		strings.Replace(good, `"timestamp":"2026-12-07T10:00:00Z",`, ``, 1),
		strings.Replace(good, `"user_id":1`, `"user_id":0`, 1),
		strings.Replace(good, `"appid":"wxa"`, `"appid":""`, 1),
		strings.Replace(good, `"person_id":1`, `"person_id":0`, 1),
		strings.Replace(good, `"person_id":1`, `"person_id":1,"unionid":"u"`, 1),
		good + "x",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) accepted it", bad)
		}
	}
}

// TestAppendIsEncodingJSON: Append writes what encoding/json writes, for
// every type of event, strings that need escaping among them.
func TestAppendIsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.FixedZone("", 8*3600))
	u := &account.User{ID: 5, AppID: "wx\"<a>", PhoneNumber: "+86 138\u2028", PurePhoneNumber: "138", CountryCode: "86"}
	for _, e := range []Event{
		Created(at, u, 3), Joined(at, u, 3, 9), PhoneChanged(at, u, 3), Claimed(at, u, 3, "welcome-gift"), Deleted(at, 5, "wxa", 5),
		{ID: "evt_\xff", Seq: 1 << 40, Type: UserCreated, At: time.Time{}.Add(time.Nanosecond)},
	} {
		checkAppend(t, e)
	}
}

// FuzzAppend: Append and encoding/json agree on any event.
func FuzzAppend(f *testing.F) {
	f.Add("evt_a", int64(7), "claim.taken", int64(1_796_000_000), int64(5), "wxa", int64(3), int64(0), "", "", "", "welcome-gift")
	f.Add("evt_\"\\", int64(-1), "\u2028", int64(0), int64(-5), "<&>", int64(0), int64(9), "+86 1", "1", "86", "")
	f.Fuzz(func(t *testing.T, id string, seq int64, kind string, unix, user int64, app string, person, previous int64, phone, pure, cc, claim string) {
		e := Event{ID: id, Seq: seq, Type: kind, At: time.Unix(unix%253_402_300_800, 0).UTC(),
			Data: Data{UserID: user, AppID: app, PersonID: person, PreviousPersonID: previous, PhoneNumber: phone, PurePhoneNumber: pure, CountryCode: cc, Claim: claim}}
		checkAppend(t, e)
	})
}

func checkAppend(t *testing.T, e Event) {
	t.Helper()
	want, err := json.Marshal(&e)
	if err != nil {
		t.Skip(err)
	}
	if got := e.Append(nil); string(got) != string(want) {
		t.Fatalf("Append = %s\nencoding/json writes %s", got, want)
	}
}

// FuzzParse: what Parse reads without reflection, encoding/json reads the
// same, and the events Append writes are read that way.
func FuzzParse(f *testing.F) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 120_000_000, time.UTC)
	u := &account.User{ID: 5, AppID: "wxa", PhoneNumber: "+86 138", PurePhoneNumber: "138", CountryCode: "86"}
	for _, e := range []Event{Created(at, u, 3), Joined(at, u, 3, 9), PhoneChanged(at, u, 3), Claimed(at, u, 3, "gift"), Deleted(at.Truncate(time.Second), 5, "wxa", 5)} {
		text := e.Append(nil)
		if _, ok := parsePlain(text); !ok {
			f.Fatalf("parsePlain(%s) did not read it", text)
		}
		f.Add(text)
	}
	f.Add([]byte(`{"id":"evt_a","seq":1,"type":"user.created","timestamp":"2026-12-07T10:00:00+08:00","data":{"user_id":1,"appid":"wxa","person_id":1}}`))
	f.Add([]byte(`{"id":"evt_\u0061","seq":01,"type":"x","timestamp":"2026-02-30T00:00:00.Z","data":{"user_id":1,"appid":"wxa","person_id":1,"claim":"a","claim":"b"}}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		fast, ok := parsePlain(text)
		if !ok {
			return
		}
		var slow Event
		if err := strictjson.Decode(text, &slow); err != nil {
			t.Fatalf("parsePlain read %s, which encoding/json refuses: %v", text, err)
		}
		if !fast.At.Equal(slow.At) || fast.At.Location() != slow.At.Location() {
			t.Fatalf("%s: parsePlain's time %v, encoding/json's %v", text, fast.At, slow.At)
		}
		fast.At, slow.At = time.Time{}, time.Time{}
		if fast != slow {
			t.Fatalf("%s: parsePlain read %+v, encoding/json %+v", text, fast, slow)
		}
	})
}

// TestAppendAllocatesOnce: an event written into no buffer, as the login
// and the webhook write one for each new user, costs one allocation, not
// one each time the JSON outgrows its buffer.
func TestAppendAllocatesOnce(t *testing.T) {
	if raceDetector {
		t.Skip("-race allocates on its own: the count is pinned without it")
	}
	u := account.User{ID: 123456, AppID: "wxfa4e000000000000", PhoneNumber: "+86 13800138000", PurePhoneNumber: "13800138000", CountryCode: "86"}
	at := time.Date(2026, 12, 8, 4, 0, 0, 123456789, time.UTC)
	for _, e := range []Event{Created(at, &u, 123456), PhoneChanged(at, &u, 123456), Joined(at, &u, 123456, 1234567)} {
		if n := testing.AllocsPerRun(100, func() { e.Append(nil) }); n != 1 {
			t.Errorf("%s: Append(nil) allocates %v times; want 1", e.Type, n)
		}
	}
}

// TestNewIDAllocatesOnce: every new user's login makes an event id; its
// string is all it allocates. Ids are "evt_" and 22 characters of
// base64url, and not two alike.
func TestNewIDAllocatesOnce(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NewID() }); n != 1 && !raceDetector {
		t.Errorf("NewID allocates %v times; want 1 (-race adds its own)", n)
	}
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !regexp.MustCompile(`^evt_[A-Za-z0-9_-]{22}$`).MatchString(id) || seen[id] {
			t.Fatalf("NewID gave %q: not evt_ and 22 base64url characters, or given before", id)
		}
		seen[id] = true
	}
}
