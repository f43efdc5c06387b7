package redis

import "time"

// What the tests against a real redis-server see of the client's insides.
// Those tests are of package redis_test: they start their servers with
// testkit, which imports this package.

// ErrDial and ErrBudgetSpent are the failures the tests tell apart.
var (
	ErrDial        = errDial
	ErrBudgetSpent = errBudgetSpent
)

// FreeConns is how many more connections the client of one server may
// use now: 0 while every one of its pool is in use.
func (c *Client) FreeConns() int { return len(c.single.slots) }

// Writes is how many pipelines the client of one server has written,
// each carrying one call or more.
func (c *Client) Writes() int64 { return c.single.writes.Load() }

// KnownMaster is the server a cluster client's map gives slot to, "" if
// it does not know.
func (c *Client) KnownMaster(slot int) string {
	c.cluster.mu.Lock()
	defer c.cluster.mu.Unlock()
	return c.cluster.slots[slot]
}

// SendLaterWithin sets how long a command sent for later (Client.Send)
// waits for a call to go with, until the test ends.
func SendLaterWithin(t interface{ Cleanup(func()) }, d time.Duration) {
	old := sendLaterWithin
	sendLaterWithin = d
	t.Cleanup(func() { sendLaterWithin = old })
}
