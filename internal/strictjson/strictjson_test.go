package strictjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestDuplicateMember(t *testing.T) {
	for _, tt := range []struct {
		body, want string
	}{
		{`{"code":"a"}`, ""},
		{`{"code":"a","code":"b"}`, "code"},
		{`{"code":"a","Code":"b"}`, "Code"},
		{`{"nickname":"a","NICKNAME":"b"}`, "NICKNAME"},
		{`{"k":"a","\u212a":"b"}`, "\u212a"}, // KELVIN SIGN folds to k, as encoding/json matches it
		{`{"s":1,"\u017f":2}`, "\u017f"},     // LATIN SMALL LETTER LONG S folds to s
		{`{"a":{"b":1},"b":2}`, ""},          // one name per object
		{`{"a":[{"b":1},{"b":2}]}`, ""},      // two objects in an array
		{`{"a":[{"b":1,"c":{},"b":2}]}`, "b"},
		{`{"a":{},"a":[]}`, "a"},
		{`{"a":"x","b":{"a":"y"},"a":"z"}`, "a"},
		{`[{"a":1},{"a":1}]`, ""},
		{`{"a":"b","b":"a"}`, ""}, // a name as a value is not a name
		{`{"a":1,"a":`, "a"},      // found before the error
		{`{"a":`, ""},
		{`not json`, ""},
		{``, ""},
	} {
		if got := DuplicateMember([]byte(tt.body)); got != tt.want {
			t.Errorf("DuplicateMember(%s) = %q; want %q", tt.body, got, tt.want)
		}
	}
}

// FuzzDuplicateMember checks the scan against a reference that reads every
// token with encoding/json's Decoder: on JSON text they name the same
// member, and on anything else the scan returns, without panicking.
func FuzzDuplicateMember(f *testing.F) {
	for _, seed := range []string{
		`{"code":"a","Code":"b"}`, `{"a":[{"b":1,"c":{},"b":2}]}`, `{"k":"a","\u212a":"b"}`,
		`{"a\"b":1,"A\"B":2}`, `{"a":"x","b":{"a":"y"},"a":"z"}`, `[{"a":1},{"a":1}]`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"Q":18}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := DuplicateMember(data)
		if !json.Valid(data) {
			return
		}
		if want := duplicateMemberByTokens(data); got != want {
			t.Fatalf("DuplicateMember(%q) = %q; reading every token finds %q", data, got, want)
		}
	})
}

// duplicateMemberByTokens is DuplicateMember written plainly, with
// encoding/json's Decoder reading every token: slow, but clearly right.
func duplicateMemberByTokens(data []byte) string {
	type frame struct {
		names    map[string]bool
		nameNext bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if n := len(stack); n > 0 && stack[n-1].nameNext {
			if name, ok := tok.(string); ok {
				top, folded := stack[n-1], foldName(name)
				if top.names[folded] {
					return name
				}
				top.names[folded], top.nameNext = true, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, nameNext: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].nameNext = true
		}
	}
}
