package main

import (
	"context"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/clock"
	"wxlogin/internal/testkit"
)

func TestTokenSweep(t *testing.T) {
	clock := testkit.NewFakeClock()
	tokens := newTokenStore(time.Hour, 3*time.Hour, clock.Clock())
	old := tokens.issue(alice, "key")
	clock.Advance(30 * time.Minute)
	fresh := tokens.issue(bob, "bob-key")
	clock.Advance(45 * time.Minute) // old is dead, fresh is not

	if n := tokens.sweep(); n != 1 {
		t.Errorf("sweep removed %d tokens; want 1", n)
	}
	if _, ok := tokens.tokens.Load(account.HashToken(old)); ok {
		t.Error("sweep kept an expired token")
	}
	if _, ok := tokens.lookup(fresh); !ok {
		t.Error("sweep removed a live token")
	}
	clock.Advance(3 * time.Hour)
	tokens.sweep()
	if n := len(tokens.users); n != 0 {
		t.Errorf("%d users' session keys left after every token reached max age; want 0", n)
	}
}

func TestRunSweeperStopsWithContext(t *testing.T) {
	tokens := newTokenStore(time.Hour, time.Hour, clock.System())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tokens.runSweeper(ctx, time.Millisecond)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("runSweeper did not return after its context ended")
	}
}
