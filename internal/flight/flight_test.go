package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// waitingCtx tells, through waiting, when a caller has begun to wait on it:
// Group.Do asks for Done only to wait for a call under way. That lets
// a test hold a call until every caller it expects is waiting for it,
// without sleeping.
type waitingCtx struct {
	context.Context
	waiting chan<- struct{}
	once    sync.Once
}

func (c *waitingCtx) Done() <-chan struct{} {
	c.once.Do(func() { c.waiting <- struct{}{} })
	return c.Context.Done()
}

// blockedCall is a call of a Group that returns only once released.
type blockedCall struct {
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func newBlockedCall() *blockedCall {
	return &blockedCall{started: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blockedCall) fn(result string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		b.calls.Add(1)
		b.started <- struct{}{}
		<-b.release
		return result, ctx.Err()
	}
}

func TestFlightGroupSharesOneCallPerKey(t *testing.T) {
	var g Group[string, string]
	b := newBlockedCall()
	const waiters = 5
	results := make(chan string, waiters+1)
	go func() {
		v, _ := g.Do(t.Context(), "code", b.fn("first"))
		results <- v
	}()
	<-b.started

	waiting := make(chan struct{}, waiters)
	for range waiters {
		go func() {
			v, err := g.Do(&waitingCtx{Context: t.Context(), waiting: waiting}, "code", b.fn("second"))
			if err != nil {
				t.Errorf("a waiter got %v", err)
			}
			results <- v
		}()
	}
	for range waiters {
		<-waiting
	}
	close(b.release)
	for range waiters + 1 {
		if v := <-results; v != "first" {
			t.Errorf("a caller got %q; want the shared call's %q", v, "first")
		}
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("%d calls for one key at one moment; want 1", n)
	}

	// Once the call has returned, the key is free: the next caller makes a
	// call of its own.
	if v, _ := g.Do(t.Context(), "code", b.fn("later")); v != "later" || b.calls.Load() != 2 {
		t.Errorf("a call after the shared one returned = %q after %d calls; want a new call, later", v, b.calls.Load())
	}
}

func TestFlightGroupRunsKeysApart(t *testing.T) {
	var g Group[string, string]
	b := newBlockedCall()
	done := make(chan string, 2)
	for _, key := range []string{"a", "b"} {
		go func() {
			v, _ := g.Do(t.Context(), key, b.fn(key))
			done <- v
		}()
	}
	<-b.started
	<-b.started // Both calls run at once: neither waits for the other.
	close(b.release)
	if got := []string{<-done, <-done}; got[0] == got[1] {
		t.Errorf("two keys got %v; want each its own result", got)
	}
}

func TestFlightGroupCallOutlivesItsCallers(t *testing.T) {
	var g Group[string, string]
	b := newBlockedCall()
	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := g.Do(leaderCtx, "code", b.fn("spent"))
		leaderErr <- err
	}()
	<-b.started

	waiting := make(chan struct{}, 1)
	waiterCtx, cancelWaiter := context.WithCancel(t.Context())
	waiterErr := make(chan error, 1)
	go func() {
		_, err := g.Do(&waitingCtx{Context: waiterCtx, waiting: waiting}, "code", b.fn("never"))
		waiterErr <- err
	}()
	<-waiting
	cancelWaiter()
	if err := <-waiterErr; !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter whose context ended got %v; want context.Canceled", err)
	}

	// The caller that started the call gives up too, but the call goes on
	// (a code sent to WeChat is spent whether anyone waits or not) with a
	// context that its cancellation does not end.
	cancelLeader()
	close(b.release)
	if err := <-leaderErr; err != nil {
		t.Errorf("the call ended with %v after its caller's context was cancelled; want it to run on", err)
	}
}
