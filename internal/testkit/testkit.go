// Package testkit is what wxlogin's tests share across packages: real
// redis-servers and Redis Clusters started for a test on free loopback
// ports (redis.go), a fake clock (clock.go), files written, damaged and
// searched as wxlogin's tests need them (files.go), and the waits, skips,
// settings and JSON checks around them. Only tests import it.
package testkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
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

// KeepBusy calls work in n goroutines, again and again, w numbering the
// goroutine and i its calls, until stop is called: the load a crash, a
// failover or a backup happens under. stop returns once every call under
// way has returned.
func KeepBusy(n int, work func(w, i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				work(w, i)
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// Setting is a test's setting from the environment variable name, read
// with parse (such as strconv.Atoi or time.ParseDuration), or def when it
// is not set: how long a soak runs, how many kills a crash test makes.
func Setting[T any](t testing.TB, name string, def T, parse func(string) (T, error)) T {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	value, err := parse(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return value
}

// JSONKeys lists the keys of a JSON object in order, each nested object's
// keys right after its own, as "parent.child".
func JSONKeys(t testing.TB, data []byte) []string {
	t.Helper()
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.Token() // The opening brace.
	for dec.More() {
		k, _ := dec.Token()
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		if bytes.HasPrefix(value, []byte("{")) {
			for _, sub := range JSONKeys(t, value) {
				keys = append(keys, k.(string)+"."+sub)
			}
		}
	}
	return keys
}
