package redisstore

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

// A Redis Cluster lets a script touch only the keys it declares in KEYS
// (redis.io, "Scripting with Lua": a script must name every key it
// accesses). Redis 7.0 enforces only that the keys share one slot, so a
// token key built in Lua from the user's hash passes there unseen; MONITOR
// shows each command a script runs, and COMMAND GETKEYS the keys each
// touches, so the test compares those with the script's KEYS. It drives
// every script that issues or ends tokens (a login with a token, issues
// past the size that prunes the set of tokens, a lookup, a revoke of all
// of a user's tokens, an erasure), on one server taken as a Cluster
// (crossSlot off), so that the scripts run are the Cluster's.
func TestRedisScriptsTouchOnlyTheKeysTheyDeclare(t *testing.T) {
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	admin := srv.Client(t, "", "")
	rs := openStore(t, redis.Config{Addrs: []string{srv.Addr}, PoolSize: 4, Timeout: 5 * time.Second}, time.Now)
	rs.crossSlot = false
	mon := monitor(t, srv.Addr)
	ctx := t.Context()

	u, _, token, err := rs.LoginWithToken(ctx, "wxapp", "o-alice", "u-alice", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	alice := account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: u.ID}
	for range 40 { // past 32: an issue prunes the set of tokens
		if _, err := rs.Issue(ctx, alice, "key-2"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := rs.LoginWithToken(ctx, "wxapp", "o-alice", "u-alice", "key-3"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := rs.Lookup(ctx, token); err != nil || !ok {
		t.Fatalf("Lookup(first token) = %v, %v; want it alive", ok, err)
	}
	if n, err := rs.RevokeUser(ctx, u.ID); err != nil || n != 42 {
		t.Fatalf("RevokeUser = %d, %v; want 42 tokens ended", n, err)
	}
	if _, _, _, err := rs.LoginWithToken(ctx, "wxapp", "o-alice", "u-alice", "key-4"); err != nil {
		t.Fatal(err)
	}
	if _, n, err := rs.EraseWithTokens(ctx, u.ID); err != nil || n != 1 {
		t.Fatalf("EraseWithTokens = %d, %v; want 1 token ended", n, err)
	}

	calls := mon.scriptCalls(t, admin.Do)
	if len(calls) < 40 {
		t.Fatalf("MONITOR showed %d script calls; want every one the test made", len(calls))
	}
	for _, c := range calls {
		for _, cmd := range c.commands {
			keys, err := admin.Do(ctx, append([]string{"COMMAND", "GETKEYS"}, cmd...)...)
			if err != nil {
				continue // a command of no key
			}
			list, _ := keys.([]any)
			for _, k := range list {
				if !slices.Contains(c.keys, k.(string)) {
					t.Errorf("a script declaring KEYS %q ran %q: %q is not among them", c.keys, cmd, k)
				}
			}
		}
	}
}

// monitorConn is a connection in MONITOR mode: every command the server
// runs, scripts' own among them, comes on it as a line.
type monitorConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// monitor opens a MONITOR connection to addr, closed when the test ends.
func monitor(t *testing.T, addr string) *monitorConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &monitorConn{conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := m.r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR answered %q, %v", line, err)
	}
	return m
}

// scriptCall is a script as MONITOR showed it: the keys it declared and
// the commands it ran.
type scriptCall struct {
	keys     []string
	commands [][]string
}

// scriptCalls reads the lines MONITOR sent until now (a marker, echoed
// with do, ends them) and answers the scripts they show. Redis 7.0 shows
// a script's EVALSHA before the commands it ran, and later versions
// after them: a probe script run first says which.
func (m *monitorConn) scriptCalls(t *testing.T, do func(ctx context.Context, args ...string) (any, error)) []scriptCall {
	t.Helper()
	ctx := t.Context()
	if _, err := do(ctx, "EVAL", "return redis.call('EXISTS', KEYS[1])", "1", "wx-monitor-probe"); err != nil {
		t.Fatal(err)
	}
	const end = "wx-monitor-end"
	if _, err := do(ctx, "ECHO", end); err != nil {
		t.Fatal(err)
	}
	var lines []monitorLine
	for {
		m.conn.SetDeadline(time.Now().Add(10 * time.Second))
		text, err := m.r.ReadString('\n')
		if err != nil {
			t.Fatalf("MONITOR: %v", err)
		}
		l, ok := parseMonitorLine(strings.TrimSuffix(strings.TrimPrefix(text, "+"), "\r\n"))
		if !ok {
			t.Fatalf("MONITOR sent %q", text)
		}
		if !l.script && len(l.args) == 2 && strings.EqualFold(l.args[0], "echo") && l.args[1] == end {
			break
		}
		lines = append(lines, l)
	}
	if len(lines) < 2 {
		t.Fatal("MONITOR showed not even the probe")
	}
	// The probe is the last call and its EXISTS the last command: a
	// script's own line is after its commands if the probe's is the last
	// line, and read backwards it is before them.
	if !lines[len(lines)-1].script {
		slices.Reverse(lines)
	}
	var calls []scriptCall
	for _, l := range lines {
		switch {
		case !l.script && len(l.args) >= 3 && (strings.EqualFold(l.args[0], "evalsha") || strings.EqualFold(l.args[0], "eval")):
			n, err := strconv.Atoi(l.args[2])
			if err != nil || 3+n > len(l.args) {
				t.Fatalf("MONITOR showed %q", l.args)
			}
			calls = append(calls, scriptCall{keys: l.args[3 : 3+n]})
		case l.script && len(calls) > 0:
			calls[len(calls)-1].commands = append(calls[len(calls)-1].commands, l.args)
		case l.script:
			t.Fatalf("MONITOR showed %q of no script", l.args)
		}
	}
	return slices.DeleteFunc(calls, func(c scriptCall) bool { return slices.Equal(c.keys, []string{"wx-monitor-probe"}) })
}

// monitorLine is one line of MONITOR: the command's words, and whether a
// script ran it ("[0 lua]") rather than a client.
type monitorLine struct {
	script bool
	args   []string
}

// parseMonitorLine reads a line such as
//
//	1700000000.000000 [0 lua] "HMGET" "wx:{u:1}" "appid"
//
// whose words Redis quotes as Go does (sdscatrepr: \", \\, \n, \xHH …).
func parseMonitorLine(s string) (monitorLine, bool) {
	_, rest, ok := strings.Cut(s, " [")
	if !ok {
		return monitorLine{}, false
	}
	from, rest, ok := strings.Cut(rest, "] ")
	if !ok {
		return monitorLine{}, false
	}
	l := monitorLine{script: strings.HasSuffix(from, " lua")}
	for rest != "" {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return monitorLine{}, false
		}
		word, _ := strconv.Unquote(q)
		l.args = append(l.args, word)
		rest = strings.TrimPrefix(rest[len(q):], " ")
	}
	return l, len(l.args) > 0
}

// A token issued between an erasure's read of the user's tokens and its
// script is not declared by it: the script erases nothing, and the
// erasure, made again, ends that token too.
func TestRedisAnErasureEndsATokenIssuedAfterItReadTheTokens(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	rs.crossSlot = false
	ctx := t.Context()
	u, _, first, err := rs.LoginWithToken(ctx, "wxapp", "o-alice", "", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	var late string
	rs.beforeTombstone = func() {
		if late == "" {
			late, err = rs.Issue(ctx, account.Identity{AppID: "wxapp", OpenID: "o-alice", UserID: u.ID}, "key-2")
			if err != nil {
				t.Error(err)
			}
		}
	}
	if _, n, err := rs.EraseWithTokens(ctx, u.ID); err != nil || n != 2 {
		t.Errorf("EraseWithTokens = %d, %v; want 2 tokens ended", n, err)
	}
	for _, token := range []string{first, late} {
		if _, ok, err := rs.Lookup(ctx, token); err != nil || ok {
			t.Errorf("Lookup(%s) after the erasure = %v, %v; want it dead", token, ok, err)
		}
	}
	keys, err := rs.rc.Do(ctx, "KEYS", userKey(u.ID)+":t:*")
	if ks, _ := keys.([]any); err != nil || len(ks) != 0 {
		t.Errorf("after the erasure the user's token keys are %v (%v); want none", keys, err)
	}
}
