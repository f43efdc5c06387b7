package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisCluster is a Redis Cluster a test started: masters, each with its
// share of the slots.
type testRedisCluster struct {
	nodes []*redisServer
}

// startRedisCluster starts n redis-servers in cluster mode on loopback,
// joins them, gives each master an even share of the slots, and waits
// until every node says the cluster is ok. Everything stops with the test.
func startRedisCluster(t *testing.T, n int, args ...string) *testRedisCluster {
	t.Helper()
	c := &testRedisCluster{}
	for range n {
		c.nodes = append(c.nodes, startRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"}, args...)...))
	}
	ctx := t.Context()
	first := c.direct(t, 0)
	for _, node := range c.nodes[1:] {
		host, port, _ := strings.Cut(node.addr, ":")
		if _, err := first.do(ctx, "CLUSTER", "MEET", host, port); err != nil {
			t.Fatal(err)
		}
	}
	per := redisSlots / n
	for i := range c.nodes {
		start, end := i*per, (i+1)*per-1
		if i == n-1 {
			end = redisSlots - 1
		}
		if _, err := c.direct(t, i).do(ctx, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(start), strconv.Itoa(end)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitOK(t)
	return c
}

// direct is a plain client of node i alone, as redis-cli without -c is.
func (c *testRedisCluster) direct(t *testing.T, i int) *redisClient {
	return c.nodes[i].client(t, "", "")
}

// waitOK waits until every node reports cluster_state:ok and knows every
// other node, 20 s at most.
func (c *testRedisCluster) waitOK(t *testing.T) {
	t.Helper()
	waitWithin(t, 30*time.Second, "the cluster to be ok", func() bool {
		for i := range c.nodes {
			info, err := c.direct(t, i).do(t.Context(), "CLUSTER", "INFO")
			s, _ := info.(string)
			if err != nil || !strings.Contains(s, "cluster_state:ok") || !strings.Contains(s, "cluster_known_nodes:"+strconv.Itoa(len(c.nodes))) {
				return false
			}
		}
		return true
	})
}

// client is a cluster client seeded with the first node only: it must
// learn the rest.
func (c *testRedisCluster) client(t *testing.T) *redisClient {
	t.Helper()
	cfg, err := parseRedisURL("redis://" + c.nodes[0].addr + "?cluster=true")
	if err != nil {
		t.Fatal(err)
	}
	rc := newRedisClient(cfg)
	t.Cleanup(rc.close)
	return rc
}

// nodeID is node i's cluster id.
func (c *testRedisCluster) nodeID(t *testing.T, i int) string {
	t.Helper()
	id, err := c.direct(t, i).do(t.Context(), "CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	return id.(string)
}

// ownerOf is the index of the node that holds key's slot.
func (c *testRedisCluster) ownerOf(key string) int {
	return redisSlot(key) / (redisSlots / len(c.nodes)) % len(c.nodes)
}

// A cluster client seeded with one node reaches keys on every node, and
// keys of one hash tag stay together for a pipeline.
func TestRedisClusterRoutesBySlot(t *testing.T) {
	cl := startRedisCluster(t, 3)
	c := cl.client(t)
	ctx := t.Context()
	owners := map[int]bool{}
	for i := range 30 {
		key := "k" + strconv.Itoa(i)
		owners[cl.ownerOf(key)] = true
		if _, err := c.do(ctx, "SET", key, "v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("SET %s = %v", key, err)
		}
	}
	if len(owners) != 3 {
		t.Fatalf("the keys fell on %d nodes; want all 3", len(owners))
	}
	for i := range 30 {
		key := "k" + strconv.Itoa(i)
		if v, err := c.do(ctx, "GET", key); err != nil || v != "v"+strconv.Itoa(i) {
			t.Errorf("GET %s = %v, %v", key, v, err)
		}
		// Each key is on the node its slot says, and on no other.
		if v, _ := cl.direct(t, cl.ownerOf(key)).do(ctx, "GET", key); v != "v"+strconv.Itoa(i) {
			t.Errorf("%s is not on node %d", key, cl.ownerOf(key))
		}
	}
	replies, err := c.pipeline(ctx, [][]string{{"SET", "{u:1}.a", "1"}, {"SET", "{u:1}.b", "2"}, {"MGET", "{u:1}.a", "{u:1}.b"}})
	if err != nil || len(replies) != 3 || replies[2].([]any)[1] != "2" {
		t.Errorf("a pipeline on one hash tag = %#v, %v", replies, err)
	}
	if v, err := c.do(ctx, "PING"); err != nil || v != "PONG" {
		t.Errorf("PING, a command with no key = %v, %v", v, err)
	}
}

// A slot moved to another node while the client's map says otherwise: the
// old node answers ASK while the slot is moving and MOVED once it has, and
// the client follows both.
func TestRedisClusterFollowsAskAndMoved(t *testing.T) {
	cl := startRedisCluster(t, 3)
	c := cl.client(t)
	ctx := t.Context()
	key := "user:42"
	from := cl.ownerOf(key)
	to := (from + 1) % 3
	if _, err := c.do(ctx, "SET", key, "before"); err != nil { // the client learns the map
		t.Fatal(err)
	}
	slot := strconv.Itoa(redisSlot(key))
	source, target := cl.direct(t, from), cl.direct(t, to)
	mustDo := func(rc *redisClient, args ...string) {
		t.Helper()
		if _, err := rc.do(ctx, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	mustDo(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.nodeID(t, from))
	mustDo(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.nodeID(t, to))
	host, port, _ := strings.Cut(cl.nodes[to].addr, ":")
	mustDo(source, "MIGRATE", host, port, key, "0", "5000")

	// Moving: the key is gone from the source, which says ASK.
	if v, err := c.do(ctx, "GET", key); err != nil || v != "before" {
		t.Errorf("GET during the migration = %v, %v; want the value, through ASK", v, err)
	}

	for i := range cl.nodes {
		mustDo(cl.direct(t, i), "CLUSTER", "SETSLOT", slot, "NODE", cl.nodeID(t, to))
	}
	// Moved: the source says MOVED; the client learns the new owner.
	if v, err := c.do(ctx, "SET", key, "after"); err != nil || v != "OK" {
		t.Errorf("SET after the move = %v, %v; want it done through MOVED", v, err)
	}
	if v, _ := target.do(ctx, "GET", key); v != "after" {
		t.Errorf("the key on its new node = %v; want after", v)
	}
	c.cluster.mu.Lock()
	learned := c.cluster.slots[redisSlot(key)]
	c.cluster.mu.Unlock()
	if learned != cl.nodes[to].addr {
		t.Errorf("the client's map puts slot %s on %s; want %s", slot, learned, cl.nodes[to].addr)
	}
}

// A call whose context ends while it waits for the map fails with the
// context, within it.
func TestRedisClusterCallsEndWithTheirContext(t *testing.T) {
	port := freeRedisPort(t)
	cfg, _ := parseRedisURL("redis://127.0.0.1:" + strconv.Itoa(port) + "?cluster=true&timeout=300ms")
	c := newRedisClient(cfg)
	defer c.close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.do(ctx, "GET", "k"); err == nil || !strings.Contains(err.Error(), "slot map") {
		t.Errorf("GET with no cluster = %v; want no slot map", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("GET with no cluster took %v", took)
	}
}
