// Package strictjson reads JSON strictly: every body a client sends, the
// data WeChat decrypts to, and wxlogin's own files. encoding/json alone lets
// three things through that matter here: members a struct has no field for,
// a member repeated (the last one wins, where another reader of the same
// bytes may take the first), and text after the value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrTrailingData is a JSON value followed by more than white space.
var ErrTrailingData = errors.New("data after the JSON value")

// Decode decodes data, exactly one JSON value, into v, refusing a member v
// has no field for. Repeated members are DuplicateMember's to find.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// What follows the value must be white space. Checked on the bytes, not
	// with the decoder's Token, which is slow enough to matter to a
	// start-up's replay (BENCHMARKS.md, start-up).
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return ErrTrailingData
	}
	return nil
}

// DuplicateMember returns a member name that appears twice in one object,
// at any depth, of the JSON text data, or "" if none does (or data is not
// JSON, which the decoder then reports). encoding/json keeps the last of two
// equal names, where other readers of the same bytes (a gateway, a log, a
// WAF) may keep the first: refusing them leaves no room for the two to
// disagree, and in decrypted data no room for a changed ciphertext to pass
// as WeChat's. Names are compared as encoding/json matches them to struct
// fields, ignoring case, so {"nickname": …, "Nickname": …} is refused too.
func DuplicateMember(data []byte) string {
	// Every member has a colon after its name, and colons in strings only
	// add to the count: with one colon at most, there is one member at most.
	// Most logins are {"code": "…"}, and skip the scan (BENCHMARKS.md,
	// logins).
	if bytes.Count(data, []byte(":")) < 2 {
		return ""
	}
	// The scan reads only what tells names apart: brackets, commas and
	// strings. Text that is not JSON may give any answer here, and the
	// decoder then refuses it.
	var open []memberSet // one per object or array open at i
	nameNext := false    // the next string is a member name
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			open = append(open, memberSet{object: true})
			nameNext = true
		case '[':
			open = append(open, memberSet{})
			nameNext = false
		case '}', ']':
			if len(open) == 0 {
				return ""
			}
			open = open[:len(open)-1]
			nameNext = false
		case ',':
			nameNext = len(open) > 0 && open[len(open)-1].object
		case '"':
			end := closingQuote(data, i)
			if end < 0 {
				return ""
			}
			if nameNext {
				name := unquoteName(data[i : end+1])
				if open[len(open)-1].add(name) {
					return name
				}
				nameNext = false
			}
			i = end
		}
	}
	return ""
}

// closingQuote is the index of the quote that ends the string starting at
// data[start], or -1 if the string does not end.
func closingQuote(data []byte, start int) int {
	for j := start + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// unquoteName is the name a JSON string stands for, as encoding/json reads
// it (escapes decoded, invalid UTF-8 replaced).
func unquoteName(quoted []byte) string {
	if bytes.IndexByte(quoted, '\\') < 0 && utf8.Valid(quoted) {
		return string(quoted[1 : len(quoted)-1])
	}
	var name string
	if err := json.Unmarshal(quoted, &name); err != nil {
		return string(quoted) // Not a JSON string: the decoder refuses the text.
	}
	return name
}

// memberSet is the names of one object's members seen so far, compared as
// strings.EqualFold does; an array has none.
type memberSet struct {
	object bool
	names  []string        // while there are few: compared one by one
	folded map[string]bool // foldName of each, once there are many
}

// add adds name, and reports whether the object already has it.
func (m *memberSet) add(name string) (repeated bool) {
	if m.folded != nil {
		f := foldName(name)
		repeated = m.folded[f]
		m.folded[f] = true
		return repeated
	}
	for _, seen := range m.names {
		if strings.EqualFold(seen, name) {
			return true
		}
	}
	m.names = append(m.names, name)
	if len(m.names) > 16 { // Comparing each name with all the others would grow as their square.
		m.folded = make(map[string]bool, 2*len(m.names))
		for _, seen := range m.names {
			m.folded[foldName(seen)] = true
		}
		m.names = nil
	}
	return false
}

// foldName maps every rune of name to the smallest rune it is equal to
// under Unicode simple case folding, so that two names are equal after
// foldName exactly when strings.EqualFold says so, as encoding/json compares
// member names with field names.
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, name)
}
