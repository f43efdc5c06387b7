package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode"
)

// This file reads JSON strictly: every body a client sends, the data
// WeChat decrypts to, and wxlogin's own files. encoding/json alone lets
// three things through that matter here: members a struct has no field
// for, a member repeated (the last one wins, where another reader of the
// same bytes may take the first), and text after the value.

// errTrailingData is a JSON value followed by more than white space.
var errTrailingData = errors.New("data after the JSON value")

// decodeStrict decodes data, exactly one JSON value, into v, refusing a
// member v has no field for. Repeated members are duplicateMember's to find.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// What follows the value must be white space. Checked on the bytes, not
	// with the decoder's Token, which is slow enough to matter to a
	// start-up's replay (BENCHMARKS.md, start-up).
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return errTrailingData
	}
	return nil
}

// duplicateMember returns a member name that appears twice in one object,
// at any depth, of the JSON text data, or "" if none does (or data is not
// JSON, which the decoder then reports). encoding/json keeps the last of two
// equal names, where other readers of the same bytes (a gateway, a log, a
// WAF) may keep the first: refusing them leaves no room for the two to
// disagree, and in decrypted data no room for a changed ciphertext to pass
// as WeChat's. Names are compared as encoding/json matches them to struct
// fields, ignoring case, so {"nickname": …, "Nickname": …} is refused too.
func duplicateMember(data []byte) string {
	// Every member has a colon after its name, and colons in strings only
	// add to the count: with one colon at most, there is one member at most.
	// Most logins are {"code": "…"}, and skip the full scan (BENCHMARKS.md,
	// logins).
	if bytes.Count(data, []byte(":")) < 2 {
		return ""
	}
	// One frame per open object or array; an object's frame holds the
	// names seen and whether a name comes next.
	type frame struct {
		names    map[string]bool
		nameNext bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // Numbers are skipped; this keeps them from being parsed as floats.
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
			// Otherwise the token is the object's '}'.
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
		// A value has ended: in an object, a name comes next.
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].nameNext = true
		}
	}
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
