package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/flight"
)

// This file routes commands in a Redis Cluster, as the cluster spec says
// (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/):
// a key belongs to one of 16384 hash slots, CRC16 of the key (or of its
// {hash tag}) mod 16384, and each slot to one master. The client learns the
// map from CLUSTER SLOTS, sends each command to its slot's master, follows
// a MOVED (the slot has moved: the map is out of date) or an ASK (the slot
// is moving: ask that server this once), and learns the map again when a
// server cannot be reached, as after a failover.

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// maxRedirects bounds the redirections one call follows.
const maxRedirects = 5

// Slot is the hash slot of key: CRC16 (XMODEM) of its hash tag, the
// part between the first { and the next }, if there is one and it is not
// empty, or else of the whole key.
func Slot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16(key)) % SlotCount
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the
// cluster spec's.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// cluster sends commands to the masters of a Redis Cluster.
type cluster struct {
	cfg Config

	mu    sync.Mutex       // guards slots and pools
	slots []string         // the master of each slot, host:port; "" when not known
	pools map[string]*pool // by address; a server is dialled on first use

	refreshes flight.Group[struct{}, struct{}] // one CLUSTER SLOTS at a time
}

// newCluster is a cluster seeded with cfg's addresses; it learns the
// map on first use.
func newCluster(cfg Config) *cluster {
	return &cluster{cfg: cfg, slots: make([]string, SlotCount), pools: map[string]*pool{}}
}

// pool is the connection pool of the server at addr.
func (c *cluster) pool(addr string) *pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pools[addr]
	if !ok {
		p = newPool(addr, c.cfg)
		c.pools[addr] = p
	}
	return p
}

// masterOf is the server that holds slot, learning the map if it is not
// known; "" with an error when no server can say.
func (c *cluster) masterOf(ctx context.Context, slot int) (string, error) {
	c.mu.Lock()
	addr := c.slots[slot]
	c.mu.Unlock()
	if addr != "" {
		return addr, nil
	}
	if err := c.refresh(ctx); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if addr = c.slots[slot]; addr == "" {
		return "", fmt.Errorf("redis cluster: no server holds slot %d", slot)
	}
	return addr, nil
}

// sendLater sends cmd with the next call to the master of its key's slot
// (Client.Send); if the map does not say which, it learns the map and
// sends cmd on its own, in the background.
func (c *cluster) sendLater(cmd []string) {
	slot := Slot(commandKey(cmd))
	c.mu.Lock()
	addr := c.slots[slot]
	c.mu.Unlock()
	if addr != "" {
		c.pool(addr).sendLater(cmd)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		defer cancel()
		c.pipeline(ctx, commandKey(cmd), [][]string{cmd})
	}()
}

// anyServer is a server to send a command with no key to.
func (c *cluster) anyServer(ctx context.Context) (string, error) {
	return c.masterOf(ctx, 0)
}

// pipeline sends cmds to the master of key's slot (any server for key
// "") and returns their replies, following redirections. A pipeline is
// sent again whole when redirected, or when its server could not be
// reached before anything was sent; never after a failure midway, when
// Redis may have run some of it.
func (c *cluster) pipeline(ctx context.Context, key string, cmds [][]string) ([]any, error) {
	slot := Slot(key)
	var asking string  // the server an ASK sent the call to, for one try
	var movedTo string // the server a MOVED named, tried next whatever the map says
	var lastErr error
	movedFrom := map[string]bool{} // the servers that sent this call away with MOVED
	for redirects, waits := 0, 0; redirects < maxRedirects; redirects++ {
		addr := cmp.Or(asking, movedTo)
		movedTo = ""
		if addr == "" {
			var err error
			if key == "" {
				addr, err = c.anyServer(ctx)
			} else {
				addr, err = c.masterOf(ctx, slot)
			}
			if err != nil {
				return nil, err
			}
		}
		sent := cmds
		if asking != "" {
			sent = append([][]string{{"ASKING"}}, cmds...)
		}
		replies, err := c.pool(addr).do(ctx, sent)
		if errors.Is(err, errDial) {
			// The server is gone (a failover, a removed node): learn the
			// map again from the others and try where it says.
			lastErr = err
			c.forget(addr)
			if err := c.refresh(ctx); err != nil {
				return nil, errors.Join(lastErr, err)
			}
			asking = ""
			continue
		}
		if err != nil {
			return nil, err
		}
		if asking != "" {
			replies = replies[1:]
		}
		moved, ask, to := redirect(replies)
		switch {
		case moved < 0 && ask < 0 && tryAgain(replies) && waits < maxTryAgain:
			waits++
			redirects-- // a wait is not a redirection
			// A call of several keys while their slot migrates, some of them
			// not moved yet: nothing ran, and Redis asks to try again in a
			// moment, when they have.
			// Where an ASK sent the call, it stays: the keys still to come
			// are coming there.
			if err := pause(ctx); err != nil {
				return nil, err
			}
			movedTo = addr
			lastErr = errors.New("redis cluster: TRYAGAIN while a slot migrates")
			continue
		case moved >= 0:
			// The rest of the map is likely out of date too (a reshard):
			// learn it, but only once for everyone. A node that has not
			// heard of the move yet may give the old owner back, so the
			// slot MOVED named is kept, and tried next.
			c.refresh(ctx)
			c.mu.Lock()
			c.slots[moved] = to
			c.mu.Unlock()
			if movedFrom[to] && waits < maxTryAgain {
				// Sent back to a server that sent the call away: the two
				// disagree for a moment while the cluster takes the move
				// in. As for TRYAGAIN, wait a little; it is no redirection.
				waits++
				redirects--
				if err := pause(ctx); err != nil {
					return nil, err
				}
			}
			movedFrom[addr] = true
			asking, movedTo = "", to
		case ask >= 0:
			asking = to
		default:
			return replies, nil
		}
		lastErr = fmt.Errorf("redis cluster: redirected to %s", to)
	}
	return nil, fmt.Errorf("redis cluster: slot %d: too many redirections: %w", slot, lastErr)
}

// pause waits tryAgainPause, or until ctx ends.
func pause(ctx context.Context) error {
	t := time.NewTimer(tryAgainPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tryAgainPause is the wait before a call Redis answered TRYAGAIN
// is sent again, to the same server, up to maxTryAgain times: two
// seconds in all, within the call's context. (The new owner of a slot
// answers TRYAGAIN to a script of several keys, one of them new, until
// the slot is its own.)
const (
	tryAgainPause = 20 * time.Millisecond
	maxTryAgain   = 100
)

// tryAgain reports whether Redis answered TRYAGAIN to one of replies.
func tryAgain(replies []any) bool {
	for _, r := range replies {
		if e, ok := r.(Error); ok && strings.HasPrefix(string(e), "TRYAGAIN") {
			return true
		}
	}
	return false
}

// redirect finds a redirection among replies: the slot of a MOVED,
// or of an ASK (-1 when none), and the server named.
func redirect(replies []any) (moved, ask int, to string) {
	for _, r := range replies {
		e, ok := r.(Error)
		if !ok {
			continue
		}
		kind, rest, _ := strings.Cut(string(e), " ")
		if kind != "MOVED" && kind != "ASK" {
			continue
		}
		slotText, addr, ok := strings.Cut(rest, " ")
		slot, err := strconv.Atoi(slotText)
		if !ok || err != nil || slot < 0 || slot >= SlotCount || addr == "" {
			continue
		}
		if kind == "MOVED" {
			return slot, -1, addr
		}
		return -1, slot, addr
	}
	return -1, -1, ""
}

// forget drops every slot of addr from the map.
func (c *cluster) forget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.slots {
		if a == addr {
			c.slots[i] = ""
		}
	}
}

// refresh learns the slot map with CLUSTER SLOTS from the first server
// that answers: those of the map, then the seeds of the URL. Callers at
// the same moment share one refresh.
func (c *cluster) refresh(ctx context.Context) error {
	_, err := c.refreshes.Do(ctx, struct{}{}, func(ctx context.Context) (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		var errs []error
		for _, addr := range c.candidates() {
			replies, err := c.pool(addr).do(ctx, [][]string{{"CLUSTER", "SLOTS"}})
			if err == nil {
				var slots []string
				if slots, err = ParseClusterSlots(replies[0], addr); err == nil {
					c.mu.Lock()
					c.slots = slots
					c.mu.Unlock()
					return struct{}{}, nil
				}
			}
			errs = append(errs, err)
		}
		return struct{}{}, fmt.Errorf("redis cluster: no server gave the slot map: %w", errors.Join(errs...))
	})
	return err
}

// masters are the pools of the servers that hold slots, the map learned
// afresh.
func (c *cluster) masters(ctx context.Context) ([]*pool, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	addrs := slices.Compact(slices.Sorted(slices.Values(c.slots)))
	c.mu.Unlock()
	var pools []*pool
	for _, a := range addrs {
		if a != "" {
			pools = append(pools, c.pool(a))
		}
	}
	return pools, nil
}

// candidates are the servers to ask for the map: those it names now, then
// the seeds.
func (c *cluster) candidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var addrs []string
	for _, a := range append(append([]string(nil), c.slots...), c.cfg.Addrs...) {
		if a != "" && !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// ParseClusterSlots reads a CLUSTER SLOTS reply, asked of from, into the
// master of each slot, host:port. The reply is ranges of slots, each with
// its master first (an address and a port, then its replicas). An empty
// address means the server that was asked, from. Every slot must be
// covered: a cluster with a slot not served is not ready.
func ParseClusterSlots(reply any, from string) ([]string, error) {
	ranges, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("redis cluster: CLUSTER SLOTS answered %T", reply)
	}
	fromHost, _, _ := net.SplitHostPort(from)
	slots := make([]string, SlotCount)
	for _, r := range ranges {
		entry, ok := r.([]any)
		if !ok || len(entry) < 3 {
			return nil, errors.New("redis cluster: a CLUSTER SLOTS range is not [start, end, master, …]")
		}
		start, ok1 := entry[0].(int64)
		end, ok2 := entry[1].(int64)
		master, ok3 := entry[2].([]any)
		if !ok1 || !ok2 || !ok3 || len(master) < 2 || start < 0 || end < start || end >= SlotCount {
			return nil, fmt.Errorf("redis cluster: a bad CLUSTER SLOTS range %v", entry)
		}
		host, _ := master[0].(string)
		port, ok := master[1].(int64)
		if !ok || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("redis cluster: a bad master in CLUSTER SLOTS: %v", master)
		}
		if host == "" || host == "?" {
			host = fromHost
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for s := start; s <= end; s++ {
			slots[s] = addr
		}
	}
	for s, a := range slots {
		if a == "" {
			return nil, fmt.Errorf("redis cluster: slot %d is served by no one", s)
		}
	}
	return slots, nil
}

// close closes every server's connections.
func (c *cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pools {
		p.close()
	}
}
