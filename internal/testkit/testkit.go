// Package testkit is what wxlogin's tests share across packages: real
// redis-servers and Redis Clusters started for a test on free loopback
// ports (redis.go), a fake clock (clock.go), files written and checked as
// wxlogin keeps them (files.go), and the waits and skips around them. Only
// tests import it.
package testkit

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// SkipMissingTool skips t for a tool that is not installed, and says so on
// stderr too: go test run in the package's directory, as the README's
// command runs it, shows stderr without -v, where a skip's message alone
// would go unseen.
func SkipMissingTool(t testing.TB, why string) {
	t.Helper()
	fmt.Fprintf(os.Stderr, "SKIPPED %s: %s\n", t.Name(), why)
	t.Skip(why)
}

// WaitFor polls cond until it holds, or fails the test after 5 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, 5*time.Second, what, cond)
}

// WaitWithin is WaitFor with a deadline of its own, for what takes a
// busy machine longer (a Redis Cluster forming, a failover).
func WaitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
