//go:build !race

package main

// raceDetector reports whether the tests run under -race, which adds
// allocations of its own: TestAllocationsPerRequest counts without it.
const raceDetector = false
