// Package clock is how wxlogin tells the time. A lifetime or a rate is
// measured on the monotonic clock, which only moves forward: a step of the
// wall clock (NTP, a virtual machine resumed, an operator's date) must
// neither lock a client out of logins nor keep a token alive past its age.
// The wall clock is for what is stored, saved and shown.
package clock

import "time"

// Clock tells both times: Now is the wall clock, and Elapsed the monotonic
// time since a fixed moment (the clock's making), as a duration. Tests give
// functions of their own, to move either without waiting.
type Clock struct {
	Now     func() time.Time
	Elapsed func() time.Duration
}

// System is the machine's clocks.
func System() Clock {
	start := time.Now() // holds a monotonic reading, which time.Since uses
	return Clock{Now: time.Now, Elapsed: func() time.Duration { return time.Since(start) }}
}
