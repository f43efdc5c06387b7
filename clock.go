package main

import "time"

// This file is how wxlogin tells the time. A lifetime or a rate is measured
// on the monotonic clock, which only moves forward: a step of the wall
// clock (NTP, a virtual machine resumed, an operator's date) must neither
// lock a client out of logins nor keep a token alive past its age. The wall
// clock is for what is stored, saved and shown.

// clock tells both times: now is the wall clock, and elapsed the monotonic
// time since a fixed moment (the clock's making), as a duration.
type clock struct {
	now     func() time.Time
	elapsed func() time.Duration
}

// systemClock is the machine's clocks.
func systemClock() clock {
	start := time.Now() // holds a monotonic reading, which time.Since uses
	return clock{now: time.Now, elapsed: func() time.Duration { return time.Since(start) }}
}
