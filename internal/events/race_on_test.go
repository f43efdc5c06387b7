//go:build race

package events

// raceDetector reports whether the tests run under -race, which adds
// allocations of its own: the allocation counts are pinned without it.
const raceDetector = true
