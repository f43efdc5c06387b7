package testkit

import (
	"sync"
	"time"

	"wxlogin/internal/clock"
)

// FakeClock is a settable clock, so tests expire tokens, codes and buckets
// without sleeping. Its wall clock starts at 2026-11-24T10:00:00Z, and its
// monotonic clock at zero.
type FakeClock struct {
	mu      sync.Mutex
	t       time.Time     // the wall clock
	elapsed time.Duration // the monotonic clock, since the fake's making
}

// NewFakeClock is a FakeClock at its start.
func NewFakeClock() *FakeClock {
	return &FakeClock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
}

// Now is the wall clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Elapsed is the monotonic clock.
func (c *FakeClock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elapsed
}

// Advance lets time pass: both clocks move on by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.elapsed += d
}

// StepWall sets the wall clock by d, back or forth, as NTP or an operator
// may; the monotonic clock does not move.
func (c *FakeClock) StepWall(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Clock is the fake as wxlogin's clock.
func (c *FakeClock) Clock() clock.Clock { return clock.Clock{Now: c.Now, Elapsed: c.Elapsed} }
