package main

import "testing"

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
		if got := duplicateMember([]byte(tt.body)); got != tt.want {
			t.Errorf("duplicateMember(%s) = %q; want %q", tt.body, got, tt.want)
		}
	}
}
