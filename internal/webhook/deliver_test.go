package webhook

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/testkit"
)

// memorySource is a Source in memory: a list of events, the cursor, and a
// hold that can be given to another instance.
type memorySource struct {
	mu        sync.Mutex
	list      []events.Event
	delivered int64
	cursors   []int64 // each SetDelivered, in order
	heldBy    string  // another instance holds the delivery when set
	recorded  chan struct{}
}

func newMemorySource(n int) *memorySource {
	src := &memorySource{recorded: make(chan struct{}, 1)}
	for i := 1; i <= n; i++ {
		e := events.Created(time.Now(), &account.User{ID: int64(i), AppID: "wxa"}, int64(i))
		e.Seq = int64(i)
		src.list = append(src.list, e)
	}
	return src
}

func (m *memorySource) Events(_ context.Context, after int64, limit int) ([]events.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var page []events.Event
	for _, e := range m.list {
		if e.Seq > after && len(page) < limit {
			page = append(page, e)
		}
	}
	return page, nil
}

func (m *memorySource) Delivered(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.delivered, nil
}

func (m *memorySource) SetDelivered(_ context.Context, seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.delivered = max(m.delivered, seq)
	m.cursors = append(m.cursors, seq)
	return nil
}

func (m *memorySource) HoldDelivery(_ context.Context, holder string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.heldBy == "" || m.heldBy == holder, nil
}

func (m *memorySource) Recorded() <-chan struct{} { return m.recorded }

// hookServer answers each post with the next status of answers (then
// 204), and keeps the ids it was posted, with the cursor at each post.
type hookServer struct {
	mu      sync.Mutex
	answers []int
	posted  []string
	cursors []int64
	src     *memorySource
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cursor, _ := h.src.Delivered(r.Context())
	h.posted = append(h.posted, r.Header.Get(HeaderID))
	h.cursors = append(h.cursors, cursor)
	code := http.StatusNoContent
	if len(h.answers) > 0 {
		code, h.answers = h.answers[0], h.answers[1:]
	}
	if code == http.StatusFound {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(code)
}

func (h *hookServer) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.posted)
}

// TestSenderDeliversInOrderAndRetries: events are posted in seq order;
// one not answered 2xx (an error, a redirect) is posted again, and the
// ones after it wait; the cursor moves past an event only once it was
// taken.
func TestSenderDeliversInOrderAndRetries(t *testing.T) {
	src := newMemorySource(3)
	hook := &hookServer{src: src, answers: []int{http.StatusInternalServerError, http.StatusFound, http.StatusNoContent, http.StatusServiceUnavailable}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	s := &Sender{URL: srv.URL, Secret: NewSecret(), Client: NewClient(time.Second), Log: slog.New(slog.DiscardHandler),
		Poll: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, src)
	}()
	testkit.WaitFor(t, "every event delivered", func() bool {
		delivered, _ := src.Delivered(ctx)
		return delivered == 3
	})
	cancel()
	<-done
	e1, e2, e3 := src.list[0].ID, src.list[1].ID, src.list[2].ID
	if got, want := hook.ids(), []string{e1, e1, e1, e2, e2, e3}; !slices.Equal(got, want) {
		t.Errorf("posted %v; want %v", got, want)
	}
	if want := []int64{0, 0, 0, 1, 1, 2}; !slices.Equal(hook.cursors, want) {
		t.Errorf("the cursor at each post: %v; want %v", hook.cursors, want)
	}
	if want := []int64{1, 2, 3}; !slices.Equal(src.cursors, want) {
		t.Errorf("SetDelivered calls %v; want %v", src.cursors, want)
	}
}

// TestSenderWaitsForTheHold: while another instance holds the delivery,
// nothing is posted; once it is free, everything is.
func TestSenderWaitsForTheHold(t *testing.T) {
	src := newMemorySource(2)
	src.heldBy = "another instance"
	hook := &hookServer{src: src}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	s := &Sender{URL: srv.URL, Secret: NewSecret(), Client: NewClient(time.Second), Log: slog.New(slog.DiscardHandler),
		Poll: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, src)
	// Several polls go by held by the other instance: none may post.
	for range 5 {
		src.recorded <- struct{}{}
	}
	if got := hook.ids(); len(got) != 0 {
		t.Fatalf("posted %v while another instance held the delivery", got)
	}
	src.mu.Lock()
	src.heldBy = ""
	src.mu.Unlock()
	testkit.WaitFor(t, "both events posted once the hold is free", func() bool { return len(hook.ids()) == 2 })
}
