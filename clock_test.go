package main

import (
	"path/filepath"
	"testing"
	"time"
	"wxlogin/internal/testkit"
	"wxlogin/internal/tokenfile"
)

// A step of the wall clock, back or ahead, moves no token's lifetime: a
// token dies its idle lifetime after its last use and its age after it was
// issued, as time passes, whatever the wall clock says meanwhile.
func TestAWallClockStepMovesNoTokenLifetime(t *testing.T) {
	for _, step := range []time.Duration{-time.Hour, 365 * 24 * time.Hour} {
		clock := testkit.NewFakeClock()
		tokens := newTokenStore(time.Hour, 3*time.Hour, clock.Clock())
		token := tokens.issue(alice, "alice-key")
		clock.StepWall(step)
		clock.Advance(59 * time.Minute)
		if _, ok := tokens.lookup(token); !ok {
			t.Errorf("wall clock stepped %v: a token used 59 min after it was issued is refused", step)
		}
		for range 3 { // used every 59 min, it lives to its age of 3 h, and no longer
			clock.Advance(59 * time.Minute)
			tokens.lookup(token)
		}
		if _, ok := tokens.lookup(token); ok {
			t.Errorf("wall clock stepped %v: a token is alive %v after it was issued; its age is 3 h", step, 4*59*time.Minute)
		}
	}
}

// Times read back from the token file are clamped: a token saved while the
// clock ran a year ahead is taken as issued and used when it is read, so it
// lives no longer than its age from then; and one whose age has passed by
// the times saved is dropped.
func TestSavedTokensFromTheFutureAreClamped(t *testing.T) {
	ahead := testkit.NewFakeClock()
	ahead.StepWall(365 * 24 * time.Hour)
	before := newTokenStore(2*time.Hour, 720*time.Hour, ahead.Clock())
	token := before.issue(alice, "alice-key")
	path := filepath.Join(t.TempDir(), tokenfile.Name)
	if n, err := before.save(path); err != nil || n != 1 {
		t.Fatalf("save = %d, %v", n, err)
	}

	now := testkit.NewFakeClock() // the clock put right, a year behind the file
	after := newTokenStore(2*time.Hour, 720*time.Hour, now.Clock())
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want the token, taken as issued now", n, err)
	}
	for used := time.Duration(0); used <= 720*time.Hour; used += 2*time.Hour - time.Minute {
		now.Advance(2*time.Hour - time.Minute) // used within its idle lifetime each time
		after.lookup(token)
	}
	if _, ok := after.lookup(token); ok {
		t.Error("a token saved a year ahead is alive 30 days after it was read; its age is 30 days")
	}

	// A token 29 days old when saved, by a clock a year ahead, has a day
	// left when it is read, however far ahead that clock ran.
	oldAhead := testkit.NewFakeClock()
	oldAhead.StepWall(365 * 24 * time.Hour)
	agedStore := newTokenStore(1000*time.Hour, 720*time.Hour, oldAhead.Clock())
	aged := agedStore.issue(alice, "alice-key")
	oldAhead.Advance(29 * 24 * time.Hour)
	if _, err := agedStore.save(path); err != nil {
		t.Fatal(err)
	}
	reader := testkit.NewFakeClock()
	readBack := newTokenStore(1000*time.Hour, 720*time.Hour, reader.Clock())
	if n, err := readBack.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load of a 29-day-old token = %d, %v", n, err)
	}
	reader.Advance(25 * time.Hour)
	if _, ok := readBack.lookup(aged); ok {
		t.Error("a token 29 days old when saved is alive 25 h after it was read; its age is 30 days")
	}

	// Saved right, read once its age has passed: dropped, though its idle
	// lifetime has not.
	old := newTokenStore(1000*time.Hour, 720*time.Hour, now.Clock())
	old.issue(alice, "alice-key")
	if _, err := old.save(path); err != nil {
		t.Fatal(err)
	}
	now.Advance(721 * time.Hour)
	if n, err := newTokenStore(1000*time.Hour, 720*time.Hour, now.Clock()).load(path, knownUsers); err != nil || n != 0 {
		t.Errorf("a token read back after its age = %d, %v; want it dropped", n, err)
	}
}
