package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/events"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/testkit"
	"wxlogin/internal/users"
	"wxlogin/internal/webhook"
)

// This file tests what other services hear of users (-events, -webhook):
// through a real process, killed with SIGKILL, and a receiver that checks
// every signature and counts what it was told.

// receiver is another team's webhook endpoint: it takes a message only if
// its signature checks out under the secret, and keeps each, in the order
// received; while down, it answers 503.
type receiver struct {
	secret webhook.Secret
	srv    *httptest.Server

	mu       sync.Mutex
	down     bool
	received []receivedMessage
	refused  int // messages whose signature did not check out
}

// receivedMessage is one message taken, as sent.
type receivedMessage struct {
	headers http.Header
	body    string
	event   events.Event
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{secret: webhook.NewSecret()}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	var e events.Event
	if err == nil {
		err = json.Unmarshal(body, &e)
	}
	if err != nil || req.Header.Get("webhook-signature") != r.secret.Sign(id, time.Unix(sec, 0), body) || e.ID != id {
		r.refused++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.received = append(r.received, receivedMessage{headers: req.Header.Clone(), body: string(body), event: e})
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *receiver) refusals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func (r *receiver) messages() []receivedMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.received)
}

// firstOfEach is each event as first received, in the order received, and
// how many messages repeated one.
func firstOfEach(msgs []receivedMessage) (list []events.Event, repeats int) {
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.event.ID] {
			repeats++
			continue
		}
		seen[m.event.ID] = true
		list = append(list, m.event)
	}
	return list, repeats
}

// startWithWebhook runs wxlogin as a child process on a store (storeArgs
// and env: -data, or WXLOGIN_REDIS), posting its events to r, with its
// admin address; it returns the child and the admin URL.
func startWithWebhook(t *testing.T, r *receiver, env []string, storeArgs ...string) (*child, string) {
	t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-login-rate", "0", "-admin-addr", "127.0.0.1:0", "-webhook", r.srv.URL + "/hooks/wxlogin"}, storeArgs...)
	c := startProcess(t, append([]string{"WXLOGIN_WEBHOOK_SECRET=" + r.secret.Text()}, env...), args...)
	m := regexp.MustCompile(`msg="admin listening" url=(http://[^/]+)/`).FindStringSubmatch(c.logs.String())
	if m == nil {
		t.Fatalf("no admin address logged:\n%s", c.logs)
	}
	return c, m[1]
}

// webhookStore is a store for the webhook's process tests: its flags and
// environment.
type webhookStore struct {
	args, env []string
}

// webhookStores are the data directory and a Redis that fsyncs each write.
func webhookStores(t *testing.T, store storeKind) webhookStore {
	if store == onRedis {
		srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
		return webhookStore{env: []string{"WXLOGIN_REDIS=redis://" + srv.Addr}}
	}
	return webhookStore{args: []string{"-data", t.TempDir()}}
}

// TestWebhookDeliversEveryAcknowledgedChangeAcrossKill9 kills a wxlogin
// with SIGKILL while new users log in and take a gift, restarts it, and
// again: the receiver is told, at least once, of every user created and
// every gift taken that wxlogin acknowledged, each change under one
// webhook-id however often it came, and a user's events in the order they
// happened. GET /events lists the same events, and pages.
func TestWebhookDeliversEveryAcknowledgedChangeAcrossKill9(t *testing.T) {
	for _, store := range []storeKind{onFiles, onRedis} {
		t.Run(string(store), func(t *testing.T) { webhookAcrossKill9(t, store) })
	}
}

func webhookAcrossKill9(t *testing.T, store storeKind) {
	const kills, workers, meanUptime = 3, 8, 400 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	where := webhookStores(t, store)
	r := newReceiver(t)
	users := newNewUsers()
	for kill := 1; kill <= kills; kill++ {
		c, _ := startWithWebhook(t, r, where.env, where.args...)
		stop := users.keepComing(c.url, workers, fmt.Sprintf("k%d", kill))
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(2 * meanUptime)))):
		case err := <-c.exited:
			t.Fatalf("wxlogin exited before kill %d: %v\n%s", kill, err, c.logs.String())
		}
		c.cmd.Process.Kill()
		<-c.exited
		c.exited <- nil // for the cleanup
		stop()
	}
	c, admin := startWithWebhook(t, r, where.env, where.args...)

	want := map[string]bool{} // "type user" of each acknowledged change
	for _, id := range users.acked {
		want[fmt.Sprint(events.UserCreated, " ", id)] = true
		if users.claimed[id] {
			want[fmt.Sprint(events.ClaimTaken, " ", id)] = true
		}
	}
	if len(want) < kills {
		t.Fatalf("only %d changes acknowledged in %d rounds: the kills did not land under load", len(want), kills)
	}
	var list []events.Event
	var repeats int
	missing := func() []string {
		list, repeats = firstOfEach(r.messages())
		told := map[string]bool{}
		for _, e := range list {
			told[fmt.Sprint(e.Type, " ", e.Data.UserID)] = true
		}
		var not []string
		for change := range want {
			if !told[change] {
				not = append(not, change)
			}
		}
		return not
	}
	deadline := time.Now().Add(30 * time.Second)
	for not := missing(); len(not) > 0; not = missing() {
		if time.Now().After(deadline) {
			slices.Sort(not)
			t.Fatalf("after 30 s, the receiver was told of %d events, and not of %d acknowledged changes: %v\n%s",
				len(list), len(not), not[:min(10, len(not))], c.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One id per change, and each user's events in their order.
	changeIDs := map[string]string{}
	createdAt := map[int64]int64{} // user → seq of user.created
	for _, e := range list {
		change := fmt.Sprint(e.Type, " ", e.Data.UserID, " ", e.Data.Claim)
		if other, ok := changeIDs[change]; ok {
			t.Errorf("%s told twice, as %s and %s", change, other, e.ID)
		}
		changeIDs[change] = e.ID
		switch e.Type {
		case events.UserCreated:
			createdAt[e.Data.UserID] = e.Seq
		case events.ClaimTaken:
			if createdAt[e.Data.UserID] == 0 {
				t.Errorf("user %d's gift told before the user", e.Data.UserID)
			}
		}
	}
	checkOrderPerUser(t, list)
	if n := r.refusals(); n > 0 {
		t.Errorf("%d messages failed the signature check", n)
	}

	// GET /events lists the same, page by page.
	var listed []events.Event
	for after := int64(0); ; {
		got := post(t, "GET", admin+"/events?limit=7&after="+strconv.FormatInt(after, 10), "", "")
		page := dataOf[events.Page](t, got)
		if len(page.Events) == 0 {
			if page.Next != after {
				t.Errorf("an empty page names next %d after %d", page.Next, after)
			}
			break
		}
		listed = append(listed, page.Events...)
		after = page.Next
	}
	ids := map[string]bool{}
	for i, e := range listed {
		ids[e.ID] = true
		if i > 0 && e.Seq <= listed[i-1].Seq {
			t.Errorf("GET /events lists %d after %d", e.Seq, listed[i-1].Seq)
		}
	}
	for _, e := range list {
		if !ids[e.ID] {
			t.Errorf("the receiver took %s (%s, seq %d), which GET /events does not list", e.ID, e.Type, e.Seq)
		}
	}
	t.Logf("webhook crash figures: %d kills, %d changes acknowledged, %d events received, %d repeated (seed %d)",
		kills, len(want), len(list), repeats, seed)
	c.stop(t)
	checkWithReferenceVerifier(t, r, r.messages()[:min(20, len(r.messages()))])
}

// TestAReceiverDownForAMinuteGetsEverythingInOrder: a receiver that
// answers 503 for a minute, while users log in and take gifts, is then
// told of all of it, each user's events in their order.
func TestAReceiverDownForAMinuteGetsEverythingInOrder(t *testing.T) {
	t.Parallel()
	for _, store := range []storeKind{onFiles, onRedis} {
		t.Run(string(store), func(t *testing.T) {
			t.Parallel()
			receiverDownForAMinute(t, store)
		})
	}
}

func receiverDownForAMinute(t *testing.T, store storeKind) {
	down := testkit.Setting(t, "WXLOGIN_WEBHOOK_DOWN", time.Minute, time.ParseDuration)
	r := newReceiver(t)
	r.setDown(true)
	wentDown := time.Now()
	where := webhookStores(t, store)
	c, admin := startWithWebhook(t, r, where.env, where.args...)
	users := newNewUsers()
	stop := users.keepComing(c.url, 4, "down")
	testkit.WaitWithin(t, 30*time.Second, "logins while the receiver is down", func() bool { return users.count() >= 100 })
	stop()
	acked := users.count()
	if acked == 0 {
		t.Fatal("no login acknowledged")
	}
	// The receiver stays down the rest of its minute; GET /events lists
	// everything meanwhile.
	var total int
	testkit.WaitWithin(t, 10*time.Second, "GET /events lists every change", func() bool {
		page := dataOf[events.Page](t, post(t, "GET", admin+"/events?limit=1000", "", ""))
		total = len(page.Events)
		return total >= acked
	})
	<-time.After(time.Until(wentDown.Add(down))) // the rest of the receiver's minute
	r.setDown(false)
	testkit.WaitWithin(t, 45*time.Second, "every event delivered once the receiver is back", func() bool {
		list, _ := firstOfEach(r.messages())
		return len(list) >= total
	})
	list, _ := firstOfEach(r.messages())
	checkOrderPerUser(t, list)
}

// checkOrderPerUser checks that each user's events, as first received,
// came in the order the store made them (users' events interleave freely).
func checkOrderPerUser(t *testing.T, list []events.Event) {
	t.Helper()
	last := map[int64]int64{} // user → seq of the last event received
	for _, e := range list {
		if e.Seq <= last[e.Data.UserID] {
			t.Errorf("user %d's event %d received after its event %d", e.Data.UserID, e.Seq, last[e.Data.UserID])
		}
		last[e.Data.UserID] = e.Seq
	}
}

// checkWithReferenceVerifier has the Standard Webhooks project's own
// library (the standardwebhooks npm package, pinned in tools/webhooks)
// check messages as the receiver took them.
func checkWithReferenceVerifier(t *testing.T, r *receiver, msgs []receivedMessage) {
	t.Helper()
	modules, _ := filepath.Abs("tools/webhooks/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "standardwebhooks")); err != nil {
		missingTool(t, "standardwebhooks (cd tools/webhooks && npm ci)", "npm")
	}
	needTool(t, "node", "nodejs")
	type message struct {
		Body    string            `json:"body"`
		Headers map[string]string `json:"headers"`
	}
	var list []message
	for _, m := range msgs {
		h := map[string]string{}
		for name := range m.headers {
			h[strings.ToLower(name)] = m.headers.Get(name)
		}
		list = append(list, message{Body: m.body, Headers: h})
	}
	input, _ := json.Marshal(list)
	// The timestamps are checked against now, as a receiver does: the
	// messages are seconds old.
	cmd := exec.Command("node", "-e", `
const { Webhook } = require('standardwebhooks');
const wh = new Webhook(process.env.WEBHOOK_SECRET);
let n = 0;
for (const m of JSON.parse(require('fs').readFileSync(0, 'utf8'))) { wh.verify(m.body, m.headers); n++; }
console.log(n + ' verified');
`)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "WEBHOOK_SECRET="+r.secret.Text())
	cmd.Stdin = strings.NewReader(string(input))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(len(list), " verified") {
		t.Errorf("the reference verifier: %v\n%s", err, out)
	}
}

// TestWebhookReceiversAsDocumented runs docs/events.md's Python and Node
// checks of a signature as pasted, on a message a real wxlogin posted:
// each accepts it as sent, and refuses it with another body, another id,
// another secret, or a timestamp ten minutes old.
func TestWebhookReceiversAsDocumented(t *testing.T) {
	needTool(t, "node", "nodejs")
	needTool(t, "python3", "python3")
	r := newReceiver(t)
	s := startServer(t, map[string]string{"WXLOGIN_WEBHOOK_SECRET": r.secret.Text()},
		"-data", t.TempDir(), "-webhook", r.srv.URL)
	post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)
	testkit.WaitFor(t, "the user.created message", func() bool { return len(r.messages()) > 0 })
	m := r.messages()[0]

	type check struct {
		Secret  string            `json:"secret"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	asSent := check{Secret: r.secret.Text(), Headers: map[string]string{}, Body: m.body}
	for name := range m.headers {
		asSent.Headers[strings.ToLower(name)] = m.headers.Get(name)
	}
	with := func(change func(c *check)) check {
		c := asSent
		c.Headers = maps.Clone(asSent.Headers)
		change(&c)
		return c
	}
	old := time.Now().Add(-10 * time.Minute)
	checks := []check{
		asSent,
		with(func(c *check) { c.Body = strings.Replace(c.Body, `"user_id":1`, `"user_id":2`, 1) }),
		with(func(c *check) { c.Headers["webhook-id"] = "evt_another" }),
		with(func(c *check) { c.Secret = webhook.NewSecret().Text() }),
		with(func(c *check) {
			c.Headers["webhook-timestamp"] = strconv.FormatInt(old.Unix(), 10)
			c.Headers["webhook-signature"] = r.secret.Sign(c.Headers["webhook-id"], old, []byte(c.Body))
		}),
	}
	input, _ := json.Marshal(checks)
	want := "[true, false, false, false, false]"

	dir := t.TempDir()
	section := func(heading, lang string) string {
		blocks := codeBlocks(t, docSection(t, "docs/events.md", heading), lang)
		if len(blocks) != 1 {
			t.Fatalf("docs/events.md %s has %d %s blocks; want one", heading, len(blocks), lang)
		}
		return blocks[0]
	}
	for _, recipe := range []struct {
		name, file, code, harness string
		command                   []string
	}{
		{"python", "verify.py", section("#### Python", "python"),
			"import json, sys\nprint(json.dumps([verify(c['secret'], c['headers'], c['body'].encode()) for c in json.load(sys.stdin)]))\n",
			[]string{"python3"}},
		{"node", "verify.js", section("#### Node", "js"),
			"const checks = JSON.parse(require('fs').readFileSync(0, 'utf8'));\nconsole.log(JSON.stringify(checks.map((c) => verify(c.secret, c.headers, c.body))).replaceAll(',', ', '));\n",
			[]string{"node"}},
	} {
		path := filepath.Join(dir, recipe.file)
		if err := os.WriteFile(path, []byte(recipe.code+"\n"+recipe.harness), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(recipe.command[0], path)
		cmd.Stdin = strings.NewReader(string(input))
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("%s: %v: %s; want %s (as sent, another body, id, secret, ten minutes old)", recipe.name, err, got, want)
		}
	}
}

// TestEventsPageBounds: GET /events refuses an after or a limit it cannot
// take, with status 1 and 400, and pages to an empty page naming next.
func TestEventsPageBounds(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.RecordEvents(false)
	for _, name := range []string{"a", "b", "c"} {
		if _, _, err := s.Login("wxapp", name, ""); err != nil {
			t.Fatal(err)
		}
	}
	h := handleEvents(fileUsers{s})
	for _, bad := range []string{"after=-1", "after=x", "limit=0", "limit=1001", "limit=1.5"} {
		got := call(t, h, "GET", "/events?"+bad, "")
		if got.code != http.StatusBadRequest || got.env.Status != statusBadRequest {
			t.Errorf("GET /events?%s = %d %s; want 400, status %d", bad, got.code, got.raw, statusBadRequest)
		}
	}
	for _, tt := range []struct {
		query string
		seqs  []int64
		next  int64
	}{
		{"", []int64{1, 2, 3}, 3},
		{"limit=2", []int64{1, 2}, 2},
		{"after=2", []int64{3}, 3},
		{"after=3", []int64{}, 3},
		{"after=99", []int64{}, 99},
	} {
		page := dataOf[events.Page](t, call(t, h, "GET", "/events?"+tt.query, ""))
		seqs := []int64{}
		for _, e := range page.Events {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, tt.seqs) || page.Next != tt.next {
			t.Errorf("GET /events?%s = %v next %d; want %v next %d", tt.query, seqs, page.Next, tt.seqs, tt.next)
		}
	}
}

// A user back in its app after its erasure, without a unionid (through
// its app's and openid's alias) or with another one (its app moved to
// another Open Platform account), is its erased user's person again, and
// receivers are told so alike by either store (eventStories).
func TestARejoinTellsTheSameEventsOnEitherStore(t *testing.T) {
	bob, aliceErased := storyStep{game: true, name: "bob", unionID: "u1"}, storyStep{name: "alice", unionID: "u1", erase: true}
	carol := storyStep{game: true, name: "carol", unionID: "u2"}
	stories := newEventStories(t)
	for _, st := range []struct {
		name  string
		steps []storyStep
	}{
		{"back without a unionid", []storyStep{bob, aliceErased, {name: "alice", gift: "gift"}}},
		{"back without a unionid, learning another", []storyStep{bob, aliceErased, {name: "alice", gift: "gift"}, {name: "alice", unionID: "u2"}}},
		{"back with another unionid", []storyStep{bob, aliceErased, {name: "alice", unionID: "u2", gift: "gift"}}},
		{"back with another unionid of a live record", []storyStep{bob, carol, aliceErased, {name: "alice", unionID: "u2", gift: "gift"}}},
		{"back with another unionid of an earlier live record", []storyStep{carol, bob, aliceErased, {name: "alice", unionID: "u2", gift: "gift"}}},
	} {
		stories.compare(t, st.name, st.steps)
	}
}

// A record that learns a unionid a live record of another person has
// (its app moved to another Open Platform account) makes the two persons
// one, and receivers are told alike by either store: the file store tells
// a person.joined of the record, naming the other person as the previous
// one. Also for a user back through its erased user's alias.
func TestALearnedUnionIDJoiningTwoPersonsIsToldAlikeOnEitherStore(t *testing.T) {
	bob, carol := storyStep{game: true, name: "bob", unionID: "u1"}, storyStep{game: true, name: "carol", unionID: "u2"}
	stories := newEventStories(t)
	stories.compare(t, "a live record", []storyStep{bob, carol, {name: "alice", unionID: "u1"}, {name: "alice", unionID: "u2"}})
	stories.compare(t, "back without a unionid", []storyStep{bob, carol, {name: "alice", unionID: "u1", erase: true}, {name: "alice"}, {name: "alice", unionID: "u2", gift: "gift"}})
}

// storyStep is a login of name in config.MockAppID, or in "wxgame" if
// game, with unionID; then a claim of gift, if any, and an erasure if
// erase.
type storyStep struct {
	game                bool
	name, unionID, gift string
	erase               bool
}

// eventStories tells a story of logins, claims and erasures on each store
// with events, and compares what each logs: the events, each once, users
// named by the order they came in, person ids by the record they name.
// The file store, which writes each event with its change, is the
// reference (docs/events.md): a new user's user.created names the person
// it is created into, and a record that learns a unionid is told joined
// when its person changes or takes another in. On Redis the relay runs
// after each step, as it does some milliseconds after each acknowledged
// change.
type eventStories struct {
	srv  *testkit.RedisServer
	meta account.Meta
}

func newEventStories(t *testing.T) eventStories {
	return eventStories{
		srv:  testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always"),
		meta: account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID, "wxgame"}},
	}
}

// compare tells steps on each store, in a subtest name, and fails it if
// Redis logs other events than the file store does.
func (k eventStories) compare(t *testing.T, name string, steps []storyStep) {
	t.Run(name, func(t *testing.T) {
		files, err := users.Open(t.TempDir(), k.meta, time.Now, discardLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer files.Close()
		files.RecordEvents(false)
		want := k.told(t, files, steps, func() {}, func() []events.Event { return files.Events(0, 1000) })

		rc := k.srv.Client(t, "", "")
		if _, err := rc.Do(t.Context(), "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		rs, err := redisstore.Open(t.Context(), rc, redisstore.Options{Durability: redisstore.Fsync, Meta: k.meta,
			TokenTTL: 2 * time.Hour, TokenMaxAge: 720 * time.Hour, Now: time.Now, Log: discardLogger(), Events: true})
		if err != nil {
			t.Fatal(err)
		}
		relay := func() {
			t.Helper()
			if err := rs.RelayLeftovers(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		got := k.told(t, redisWithin{t, rs}, steps, relay, func() []events.Event {
			list, err := rs.Events(t.Context(), 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			return list
		})
		if !slices.Equal(got, want) {
			t.Errorf("Redis logged:\n\t%s\nthe file store:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})
}

// told tells steps on s, relay moving Redis's events into its log after
// each change, and answers the events listed then, each once.
func (k eventStories) told(t *testing.T, s claimStore, steps []storyStep, relay func(), list func() []events.Event) []string {
	t.Helper()
	names := map[int64]string{} // each user's name in the story: "alice" again is "alice 2"
	count := map[string]int{}
	for _, st := range steps {
		app := config.MockAppID
		if st.game {
			app = "wxgame"
		}
		u := logInAs(t, s, app, st.name, st.unionID)
		if _, ok := names[u.ID]; !ok {
			count[st.name]++
			names[u.ID] = st.name
			if n := count[st.name]; n > 1 {
				names[u.ID] += fmt.Sprint(" ", n)
			}
		}
		relay()
		if st.gift != "" {
			if _, _, err := s.Claim(u.ID, st.gift); err != nil {
				t.Fatal(err)
			}
			relay()
		}
		if st.erase {
			eraseOn(t, s, u.ID)
			relay()
		}
	}
	name := func(id int64) string { return cmp.Or(names[id], fmt.Sprint("unknown id ", id)) }
	var got []string
	seen := map[string]bool{}
	for _, e := range list() {
		if seen[e.ID] {
			continue // the same event listed again, as Redis may
		}
		seen[e.ID] = true
		line := fmt.Sprintf("%s of %s, person %s", e.Type, name(e.Data.UserID), name(e.Data.PersonID))
		if e.Data.PreviousPersonID != 0 {
			line += ", previous person " + name(e.Data.PreviousPersonID)
		}
		got = append(got, line)
	}
	return got
}
