package limits

// chain is a doubly linked list, like container/list's, except that its
// links belong to their values and are put in again and again: a
// connection's place in the lists it waits in is made once, with it, and a
// request on a kept-alive connection takes it out of them and puts it back
// without an allocation (BenchmarkTrack). A chain must not be copied once
// used: its sentinel points to itself.
type chain[T any] struct {
	root link[T] // root.next is the front, root.prev the back
	len  int
}

// link is a value's place in one chain: in none while on is nil.
type link[T any] struct {
	prev, next *link[T]
	on         *chain[T]
	value      T
}

func (c *chain[T]) Len() int { return c.len }

// Front is the oldest link, or nil for an empty chain.
func (c *chain[T]) Front() *link[T] {
	if c.len == 0 {
		return nil
	}
	return c.root.next
}

// PushBack puts l, in no chain, at c's back.
func (c *chain[T]) PushBack(l *link[T]) {
	if c.root.next == nil {
		c.root.next, c.root.prev = &c.root, &c.root
	}
	last := c.root.prev
	l.prev, l.next, l.on = last, &c.root, c
	last.next, c.root.prev = l, l
	c.len++
}

// Remove takes l out of c; a link in another chain, or in none, is left.
func (c *chain[T]) Remove(l *link[T]) {
	if l.on != c {
		return
	}
	l.prev.next, l.next.prev = l.next, l.prev
	l.prev, l.next, l.on = nil, nil, nil
	c.len--
}

// MoveToFront moves l, in c, to c's front.
func (c *chain[T]) MoveToFront(l *link[T]) {
	if l.on != c || c.root.next == l {
		return
	}
	c.Remove(l)
	first := c.root.next
	l.prev, l.next, l.on = &c.root, first, c
	c.root.next, first.prev = l, l
	c.len++
}
