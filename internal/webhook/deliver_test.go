package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	heldBy    string // another instance holds the delivery when set
	recorded  chan struct{}
	// taken, set by the test's receiver, are the ids it took; each
	// SetDelivered checks that every event up to the cursor was.
	taken     map[string]bool
	badCursor []int64
}

// newMemorySource holds an event for each user id given, in order.
func newMemorySource(users ...int64) *memorySource {
	src := &memorySource{recorded: make(chan struct{}, 1), taken: map[string]bool{}}
	for i, user := range users {
		e := events.Created(time.Now(), &account.User{ID: user, AppID: "wxa"}, user)
		e.Seq = int64(i + 1)
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
	for _, e := range m.list {
		if e.Seq <= seq && !m.taken[e.ID] {
			m.badCursor = append(m.badCursor, seq)
		}
	}
	m.delivered = max(m.delivered, seq)
	return nil
}

func (m *memorySource) HoldDelivery(_ context.Context, holder string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.heldBy == "" || m.heldBy == holder, nil
}

func (m *memorySource) Recorded() <-chan struct{} { return m.recorded }

func (m *memorySource) deliveredAll() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.delivered == int64(len(m.list))
}

// hookServer is a receiver: it answers each post of an id with the next
// status its script holds for that id (then 204), and records, in order,
// each post and whether it was taken.
type hookServer struct {
	mu     sync.Mutex
	src    *memorySource
	script map[string][]int
	posts  []string // "<id> <status>"
	conns  int
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := r.Header.Get("webhook-id")
	code := http.StatusNoContent
	if s := h.script[id]; len(s) > 0 {
		code, h.script[id] = s[0], s[1:]
	}
	if code == http.StatusFound {
		w.Header().Set("Location", "/elsewhere")
	}
	if code/100 == 2 {
		h.src.mu.Lock()
		h.src.taken[id] = true
		h.src.mu.Unlock()
	}
	h.posts = append(h.posts, id+" "+strconv.Itoa(code))
	w.WriteHeader(code)
}

func (h *hookServer) posted() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.posts)
}

// startHook serves h, or handler in front of it, counting h's connections.
func startHook(t *testing.T, h *hookServer, handler http.Handler, tlsToo bool) *httptest.Server {
	if handler == nil {
		handler = h
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			h.mu.Lock()
			h.conns++
			h.mu.Unlock()
		}
	}
	if tlsToo {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func testSender(url string) *Sender {
	return &Sender{URL: url, Secret: NewSecret(), Timeout: 5 * time.Second, Log: slog.New(slog.DiscardHandler),
		Poll: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Linger: time.Millisecond, Batch: 100}
}

// run runs s on src until every event is delivered.
func run(t *testing.T, s *Sender, src *memorySource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, src)
	}()
	testkit.WaitFor(t, "every event delivered", src.deliveredAll)
	cancel()
	<-done
}

// runUntilCleanup runs s on src until the test ends, and waits for it to
// stop then.
func runUntilCleanup(t *testing.T, s *Sender, src *memorySource) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, src)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// refusingOne is h, refusing the event id with a 503 while refusing holds,
// as it does at first.
func refusingOne(h *hookServer, id string) (handler http.Handler, refusing *atomic.Bool) {
	refusing = new(atomic.Bool)
	refusing.Store(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-id") == id && refusing.Load() {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}), refusing
}

// TestSenderKeepsEachUsersOrderAndRetries: a user's event waits until the
// one before it is taken; an event not taken (an error, a redirect) is
// posted again; the other users' events go on meanwhile; the cursor never
// passes an event not taken.
func TestSenderKeepsEachUsersOrderAndRetries(t *testing.T) {
	src := newMemorySource(1, 1, 2, 3) // user 1's two events, then users 2 and 3
	e1, e2, e3, e4 := src.list[0].ID, src.list[1].ID, src.list[2].ID, src.list[3].ID
	h := &hookServer{src: src, script: map[string][]int{e1: {500, 302}, e3: {503}}}
	run(t, testSender(startHook(t, h, nil, false).URL), src)

	want := []string{
		e1 + " 500", e3 + " 503", e4 + " 204", // e2 waits behind e1
		e1 + " 302", e3 + " 204",
		e1 + " 204",
		e2 + " 204",
	}
	if got := h.posted(); !slices.Equal(got, want) {
		t.Errorf("posted\n%v\nwant\n%v", got, want)
	}
	if len(src.badCursor) > 0 {
		t.Errorf("the cursor moved past an event not taken: %v", src.badCursor)
	}
	if h.conns != 1 {
		t.Errorf("%d connections; want the one, kept alive", h.conns)
	}
}

// TestSenderPipelinesOnOneConnection: many users' events go in rounds on
// one kept-alive connection, over TLS too; a receiver that closes the
// connection after each answer still gets every one.
func TestSenderPipelinesOnOneConnection(t *testing.T) {
	users := make([]int64, 250)
	for i := range users {
		users[i] = int64(i + 1)
	}
	for _, tt := range []struct {
		name          string
		tls, closeAll bool
		maxConns      int
	}{
		{"http", false, false, 1},
		{"https", true, false, 1},
		{"connection: close", false, true, 250},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemorySource(users...)
			h := &hookServer{src: src}
			var handler http.Handler = h
			if tt.closeAll {
				handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Connection", "close")
					h.ServeHTTP(w, r)
				})
			}
			srv := startHook(t, h, handler, tt.tls)
			s := testSender(srv.URL)
			if tt.tls {
				roots := x509.NewCertPool()
				roots.AddCert(srv.Certificate())
				s.TLS = &tls.Config{RootCAs: roots}
			}
			run(t, s, src)
			if got := len(h.posted()); got != len(users) {
				t.Errorf("%d posts for %d events", got, len(users))
			}
			if h.conns > tt.maxConns {
				t.Errorf("%d connections; want %d at most", h.conns, tt.maxConns)
			}
			if len(src.badCursor) > 0 {
				t.Errorf("the cursor moved past an event not taken: %v", src.badCursor)
			}
		})
	}
}

// TestSenderWaitsForTheHold: while another instance holds the delivery,
// nothing is posted; once it is free, everything is.
func TestSenderWaitsForTheHold(t *testing.T) {
	src := newMemorySource(1, 2)
	src.heldBy = "another instance"
	h := &hookServer{src: src}
	s := testSender(startHook(t, h, nil, false).URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, src)
	// Several rounds go by held by the other instance: none may post.
	for range 5 {
		src.recorded <- struct{}{}
	}
	if got := h.posted(); len(got) != 0 {
		t.Fatalf("posted %v while another instance held the delivery", got)
	}
	src.mu.Lock()
	src.heldBy = ""
	src.mu.Unlock()
	testkit.WaitFor(t, "both events posted once the hold is free", func() bool { return len(h.posted()) == 2 })
}

// TestSenderGoesOnPastAnEventRefusedLong: while the receiver refuses one
// user's event, the other users' events go on, however many: more than
// the sender holds in memory at once (queueSize), each delivered while
// the first waits; once it is taken, the cursor moves past them all.
func TestSenderGoesOnPastAnEventRefusedLong(t *testing.T) {
	users := make([]int64, 1+2*queueSize)
	for i := range users {
		users[i] = int64(i + 1)
	}
	src := newMemorySource(users...)
	first := src.list[0].ID
	h := &hookServer{src: src}
	refuse, refusing := refusingOne(h, first)
	s := testSender(startHook(t, h, refuse, false).URL)
	runUntilCleanup(t, s, src)
	testkit.WaitFor(t, "every other user's event taken while the first is refused", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.taken) == len(users)-1
	})
	refusing.Store(false)
	testkit.WaitFor(t, "every event delivered once the first is taken", src.deliveredAll)
	if len(src.badCursor) > 0 {
		t.Errorf("the cursor moved past an event not taken: %v", src.badCursor[:min(len(src.badCursor), 5)])
	}
}

// TestSenderGoesOnPastAUserRefusedLong: while the receiver refuses one
// user's first event, and that user makes more events than the sender
// holds in memory at once (queueSize), the other users' events, read
// among and after them, are still delivered; once the first is taken,
// the user's events, read again from the source, all follow in order.
func TestSenderGoesOnPastAUserRefusedLong(t *testing.T) {
	var users []int64
	for i := range 2 * queueSize {
		user := int64(1) // the one refused, three events of four
		if i%4 == 3 {
			user = int64(i + 2)
		}
		users = append(users, user)
	}
	src := newMemorySource(users...)
	first := src.list[0].ID
	h := &hookServer{src: src}
	refuse, refusing := refusingOne(h, first)
	s := testSender(startHook(t, h, refuse, false).URL)
	runUntilCleanup(t, s, src)
	others := len(users) / 4
	testkit.WaitFor(t, "every other user's event taken while the first is refused", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.taken) == others
	})
	refusing.Store(false)
	testkit.WaitWithin(t, 30*time.Second, "every event delivered once the first is taken", src.deliveredAll)
	if len(src.badCursor) > 0 {
		t.Errorf("the cursor moved past an event not taken: %v", src.badCursor[:min(len(src.badCursor), 5)])
	}
	var want, got []string
	for _, e := range src.list {
		if e.Data.UserID == 1 {
			want = append(want, e.ID)
		}
	}
	seen := map[string]bool{}
	for _, post := range h.posted() {
		id, status, _ := strings.Cut(post, " ")
		if status == "204" && !seen[id] && slices.Contains(want, id) {
			seen[id] = true
			got = append(got, id)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("user 1's %d events were taken in another order, or not all (%d taken)", len(want), len(got))
	}
}

// TestSetAsideEventsAreReadAgainInOrder drives the queue alone, round by
// round, with more events of one user than the queue holds, and a
// receiver that takes some posts and refuses others. The queue never
// holds more than queueSize; every event is taken once, each user's in seq
// order; the cursor never passes an event not taken.
func TestSetAsideEventsAreReadAgainInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var mixed []int64 // user 1's events a third of them, the rest of many users
	for range 4 * queueSize {
		user := int64(1)
		if rng.IntN(3) > 0 {
			user = 2 + rng.Int64N(queueSize)
		}
		mixed = append(mixed, user)
	}
	var crowded []int64 // user 1's events, then a queue's worth of other users', then user 1's again
	for i := range 2*queueSize + maxWaiting {
		user := int64(1)
		if i >= maxWaiting+10 && i < maxWaiting+10+queueSize {
			user = int64(i)
		}
		crowded = append(crowded, user)
	}
	for _, tc := range []struct {
		name  string
		users []int64
		// take says whether the receiver takes p in round
		take func(p *pending, round int) bool
	}{
		{"one post in three taken", mixed, func(*pending, int) bool { return rng.IntN(3) == 0 }},
		// The other users' events are refused for a while after user 1's
		// first maxWaiting+1 are taken: its events set aside wait to be
		// read again into a queue full of the others'.
		{"the queue full of refused users", crowded, func(p *pending, round int) bool {
			return p.event.Data.UserID == 1 || round > maxWaiting+100
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemorySource(tc.users...)
			d := &delivery{Sender: testSender("http://127.0.0.1:1/"), src: src, fresh: true}
			want := map[int64][]int64{}
			for _, e := range src.list {
				want[e.Data.UserID] = append(want[e.Data.UserID], e.Seq)
			}
			taken := map[int64][]int64{} // each user's events taken, by seq
			for round := 0; !src.deliveredAll(); round++ {
				if round == 10*len(tc.users) {
					t.Fatalf("%d rounds, and not every event is delivered", round)
				}
				if err := d.fill(t.Context()); err != nil {
					t.Fatal(err)
				}
				if len(d.queue) > queueSize {
					t.Fatalf("round %d: %d events in the queue; want %d at most", round, len(d.queue), queueSize)
				}
				batch, _ := d.due(time.Now())
				for _, p := range batch {
					if tc.take(p, round) {
						p.taken = true
						src.mu.Lock()
						src.taken[p.event.ID] = true
						src.mu.Unlock()
						taken[p.event.Data.UserID] = append(taken[p.event.Data.UserID], p.event.Seq)
					}
				}
				if err := d.advance(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			for user, seqs := range want {
				if !slices.Equal(taken[user], seqs) {
					t.Errorf("user %d's events taken: %v; want each once, in seq order: %v", user, taken[user], seqs)
				}
			}
			if len(src.badCursor) > 0 {
				t.Errorf("the cursor moved past an event not taken: %v", src.badCursor[:min(len(src.badCursor), 5)])
			}
		})
	}
}

// A phone.bound waiting in the queue, refused by the receiver, goes out
// as the source holds it when it is posted again: once its user is erased,
// without the number (the data directory takes it out of the event), or
// not at all (Redis deletes the event from its log), the cursor moving on
// past it, and the user's next event posted at once.
func TestAnErasedUsersPhoneLeavesTheQueueToo(t *testing.T) {
	const number = "13800138000"
	for _, deleted := range []bool{false, true} {
		t.Run(map[bool]string{false: "taken out of the event", true: "the event deleted"}[deleted], func(t *testing.T) {
			src := newMemorySource(1, 2, 1)
			alice := &account.User{ID: 1, AppID: "wxa", PhoneNumber: number, PurePhoneNumber: number, CountryCode: "86"}
			bound := events.PhoneChanged(time.Now(), alice, 1)
			bound.Seq = 1
			src.list[0] = bound
			h := &hookServer{src: src}
			var refusing atomic.Bool
			refusing.Store(true)
			var mu sync.Mutex
			var refused, numbersAfter int // posts of alice's phone refused; posts with her number after her erasure
			erased := false
			hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				if erased && strings.Contains(string(body), number) {
					numbersAfter++
				}
				if r.Header.Get("webhook-id") == bound.ID && refusing.Load() {
					refused++
					mu.Unlock()
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				mu.Unlock()
				h.ServeHTTP(w, r)
			})
			s := testSender(startHook(t, h, hook, false).URL)
			s.Poll = time.Hour // nothing waits for it
			runUntilCleanup(t, s, src)
			testkit.WaitFor(t, "alice's phone.bound refused", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return refused > 0
			})
			src.mu.Lock()
			if deleted {
				src.list = src.list[1:]
				src.taken[bound.ID] = true // nothing left to deliver of it
			} else {
				src.list[0].Data.PhoneNumber, src.list[0].Data.PurePhoneNumber, src.list[0].Data.CountryCode = "", "", ""
			}
			src.mu.Unlock()
			mu.Lock()
			erased = true
			mu.Unlock()
			refusing.Store(false)
			testkit.WaitFor(t, "every event delivered", func() bool {
				src.mu.Lock()
				defer src.mu.Unlock()
				return src.delivered == 3
			})
			mu.Lock()
			defer mu.Unlock()
			if numbersAfter > 0 {
				t.Errorf("%d posts held alice's number after her erasure", numbersAfter)
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			if !deleted && !src.taken[bound.ID] {
				t.Error("alice's phone.bound, without its number, was never taken")
			}
			if len(src.badCursor) > 0 {
				t.Errorf("the cursor moved past an event not taken: %v", src.badCursor)
			}
		})
	}
}
