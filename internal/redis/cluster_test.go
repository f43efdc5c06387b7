package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

// A cluster client seeded with one node reaches keys on every node, and
// keys of one hash tag stay together for a pipeline.
func TestClusterRoutesBySlot(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3)
	c := cl.Client(t)
	ctx := t.Context()
	owners := map[int]bool{}
	for i := range 30 {
		key := "k" + strconv.Itoa(i)
		owners[cl.OwnerOf(key)] = true
		if _, err := c.Do(ctx, "SET", key, "v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("SET %s = %v", key, err)
		}
	}
	if len(owners) != 3 {
		t.Fatalf("the keys fell on %d nodes; want all 3", len(owners))
	}
	for i := range 30 {
		key := "k" + strconv.Itoa(i)
		if v, err := c.Do(ctx, "GET", key); err != nil || v != "v"+strconv.Itoa(i) {
			t.Errorf("GET %s = %v, %v", key, v, err)
		}
		// Each key is on the node its slot says, and on no other.
		if v, _ := cl.Direct(t, cl.OwnerOf(key)).Do(ctx, "GET", key); v != "v"+strconv.Itoa(i) {
			t.Errorf("%s is not on node %d", key, cl.OwnerOf(key))
		}
	}
	replies, err := c.Pipeline(ctx, [][]string{{"SET", "{u:1}.a", "1"}, {"SET", "{u:1}.b", "2"}, {"MGET", "{u:1}.a", "{u:1}.b"}})
	if err != nil || len(replies) != 3 || replies[2].([]any)[1] != "2" {
		t.Errorf("a pipeline on one hash tag = %#v, %v", replies, err)
	}
	if v, err := c.Do(ctx, "PING"); err != nil || v != "PONG" {
		t.Errorf("PING, a command with no key = %v, %v", v, err)
	}
}

// A slot moved to another node while the client's map says otherwise: the
// old node answers ASK while the slot is moving and MOVED once it has, and
// the client follows both.
func TestClusterFollowsAskAndMoved(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3)
	c := cl.Client(t)
	ctx := t.Context()
	key := "user:42"
	from := cl.OwnerOf(key)
	to := (from + 1) % 3
	if _, err := c.Do(ctx, "SET", key, "before"); err != nil { // the client learns the map
		t.Fatal(err)
	}
	slot := strconv.Itoa(redis.Slot(key))
	source, target := cl.Direct(t, from), cl.Direct(t, to)
	mustDo := func(rc *redis.Client, args ...string) {
		t.Helper()
		if _, err := rc.Do(ctx, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	mustDo(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.NodeID(t, from))
	mustDo(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.NodeID(t, to))
	host, port, _ := strings.Cut(cl.Nodes[to].Addr, ":")
	mustDo(source, "MIGRATE", host, port, key, "0", "5000")

	// Moving: the key is gone from the source, which says ASK.
	if v, err := c.Do(ctx, "GET", key); err != nil || v != "before" {
		t.Errorf("GET during the migration = %v, %v; want the value, through ASK", v, err)
	}

	// The new owner is told first, then the old one, then the rest: told
	// after the old owner, the new one, still importing, answers MOVED back
	// to it, and a client that follows the old owner's MOVED meanwhile is
	// sent from one to the other until it gives up (seen under load).
	mustDo(target, "CLUSTER", "SETSLOT", slot, "NODE", cl.NodeID(t, to))
	mustDo(source, "CLUSTER", "SETSLOT", slot, "NODE", cl.NodeID(t, to))
	for i := range cl.Nodes {
		if i != from && i != to {
			mustDo(cl.Direct(t, i), "CLUSTER", "SETSLOT", slot, "NODE", cl.NodeID(t, to))
		}
	}
	// Every node says so before the client is asked: a node that has not
	// taken the change in yet (its cluster bus behind, on a busy machine)
	// would send the client back, until it gives up.
	owner := cl.Nodes[to].Addr
	for i := range cl.Nodes {
		// A cluster's bus, with every test package at once on two cores,
		// took over the 5 seconds of WaitFor once (CI, 2026-12-08).
		testkit.WaitWithin(t, 30*time.Second, fmt.Sprintf("node %d to name %s the owner of slot %s", i, owner, slot), func() bool {
			v, err := cl.Direct(t, i).Do(ctx, "CLUSTER", "SLOTS")
			return err == nil && slotOwner(v, redis.Slot(key)) == owner
		})
	}
	// Moved: the source says MOVED; the client learns the new owner.
	if v, err := c.Do(ctx, "SET", key, "after"); err != nil || v != "OK" {
		t.Errorf("SET after the move = %v, %v; want it done through MOVED", v, err)
	}
	if v, _ := target.Do(ctx, "GET", key); v != "after" {
		t.Errorf("the key on its new node = %v; want after", v)
	}
	learned := c.KnownMaster(redis.Slot(key))
	if learned != cl.Nodes[to].Addr {
		t.Errorf("the client's map puts slot %s on %s; want %s", slot, learned, cl.Nodes[to].Addr)
	}
}

// A call whose context ends while it waits for the map fails with the
// context, within it.
func TestClusterCallsEndWithTheirContext(t *testing.T) {
	port := testkit.FreeRedisPort(t)
	cfg, _ := redis.ParseURL("redis://127.0.0.1:" + strconv.Itoa(port) + "?cluster=true&timeout=300ms")
	c := redis.NewClient(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Do(ctx, "GET", "k"); err == nil || !strings.Contains(err.Error(), "slot map") {
		t.Errorf("GET with no cluster = %v; want no slot map", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("GET with no cluster took %v", took)
	}
}

// slotOwner is the address of slot's master in a CLUSTER SLOTS reply, or
// "" if the reply does not name one.
func slotOwner(reply any, slot int) string {
	ranges, _ := reply.([]any)
	for _, r := range ranges {
		parts, _ := r.([]any)
		if len(parts) < 3 {
			continue
		}
		start, _ := parts[0].(int64)
		end, _ := parts[1].(int64)
		master, _ := parts[2].([]any)
		if int64(slot) < start || int64(slot) > end || len(master) < 2 {
			continue
		}
		host, _ := master[0].(string)
		port, _ := master[1].(int64)
		return host + ":" + strconv.FormatInt(port, 10)
	}
	return ""
}
