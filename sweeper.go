package main

import (
	"context"
	"time"
)

// This file frees what the token store no longer needs: expired tokens,
// and the login state of users none of them can use, every minute while
// wxlogin runs.

// sweep frees expired tokens and the login state of users no live token
// can need, and reports how many tokens it removed; it keeps the count of
// those left alive for the metrics. A session key is stored
// at every issue, so all of a user's tokens were issued no later than their
// newest key was stored, and all are dead once maxAge has passed since then.
func (s *tokenStore) sweep() int {
	now := s.monotonic()
	removed, live := 0, 0
	s.tokens.Range(func(k, v any) bool {
		switch {
		case s.alive(v.(*tokenEntry), now):
			live++
		case s.tokens.CompareAndDelete(k, v):
			removed++
		}
		return true
	})
	s.liveAtSweep.Store(int64(live))
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, state := range s.users {
		k := state.key.Load()
		switch {
		case now >= k.storedAt+int64(s.maxAge):
			delete(s.users, id)
		case k.previous != nil && !k.previousInWindow(now):
			// The replaced key's window has closed: forget it.
			state.key.CompareAndSwap(k, &sessionKey{key: k.key, storedAt: k.storedAt})
		}
	}
	return removed
}

// runSweeper sweeps at once (tokens reloaded at a start may have expired
// meanwhile) and then every interval, until ctx ends.
func (s *tokenStore) runSweeper(ctx context.Context, every time.Duration) {
	s.sweep()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}
