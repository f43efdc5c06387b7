package main

import (
	"testing"
	"time"
)

// The token store keeps the key a login replaced for previousKeyWindow,
// for every token of the user; the sweep then forgets it.
func TestTheReplacedKeyIsKeptForItsWindowOnly(t *testing.T) {
	clock := newFakeClock()
	tokens := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
	first := tokens.issue(alice, "key-1")
	clock.Advance(time.Minute)
	tokens.issue(alice, "key-2")
	replaced := clock.Now()
	who, _ := tokens.lookup(first)
	if who.SessionKey != "key-2" || who.PreviousKey != "key-1" || !who.ReplacedAt.Equal(replaced) {
		t.Errorf("after a second login: key %q, previous %q replaced at %v; want key-2, key-1 at %v", who.SessionKey, who.PreviousKey, who.ReplacedAt, replaced)
	}
	// WeChat may give the same key again: what it replaced still is, but
	// logins with it do not stretch the window, however many.
	for range 3 {
		clock.Advance(previousKeyWindow / 3)
		tokens.issue(alice, "key-2")
		if who, _ := tokens.lookup(first); who.PreviousKey != "key-1" || !who.ReplacedAt.Equal(replaced) {
			t.Errorf("after the same key again, previous %q replaced at %v; want key-1 at %v", who.PreviousKey, who.ReplacedAt, replaced)
		}
	}

	clock.Advance(time.Second) // past the window since the replacement
	if who, _ := tokens.lookup(first); who.PreviousKey != "" {
		t.Errorf("past the window, previous = %q; want none", who.PreviousKey)
	}
	tokens.issue(alice, "key-2")
	if who, _ := tokens.lookup(first); who.PreviousKey != "" {
		t.Errorf("past the window, after the same key again, previous = %q; want none", who.PreviousKey)
	}
	tokens.sweep()
	if k := tokens.loginStateOf(alice.UserID).key.Load(); k.previous != nil || k.key != "key-2" {
		t.Errorf("after the sweep, the user's key is %+v; want key-2 alone", k)
	}
}
