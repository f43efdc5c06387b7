// Package flight shares one call among the requests that need it at the
// same moment: the WeChat client exchanges each login code once however
// many logins send it at once (a double tap, a client retry), and fetches
// one access_token however many calls need a fresh one.
package flight

import (
	"context"
	"sync"
)

// Group runs at most one call per key at a time. A caller arriving
// while the call for its key runs waits for that call and gets its result.
// Once the call has returned, the next caller for the key starts a new one.
type Group[K comparable, V any] struct {
	mu      sync.Mutex // guards flights
	flights map[K]*flight[V]
}

// flight is one call that callers share.
type flight[V any] struct {
	done chan struct{} // closed when val and err are set
	val  V
	err  error
}

// Do returns the result of fn for key: of a call already under way for
// key, or of a new one. A waiting caller whose ctx ends stops waiting with
// ctx's error. The call itself gets a ctx that the caller's cancellation
// does not end: others may be waiting for it, and abandoning it could spend
// something for nothing (a single-use code).
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(ctx context.Context) (V, error)) (V, error) {
	g.mu.Lock()
	if f, ok := g.flights[key]; ok {
		g.mu.Unlock()
		select {
		case <-f.done:
			return f.val, f.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	f := &flight[V]{done: make(chan struct{})}
	if g.flights == nil {
		g.flights = map[K]*flight[V]{}
	}
	g.flights[key] = f
	g.mu.Unlock()

	f.val, f.err = fn(context.WithoutCancel(ctx))
	g.mu.Lock()
	delete(g.flights, key)
	g.mu.Unlock()
	close(f.done)
	return f.val, f.err
}
