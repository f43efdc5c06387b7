package limits

import (
	"slices"
	"testing"
)

// A chain holds its links in the order they were pushed, takes out the one
// asked and no other, moves one to its front, and lets a link taken out go
// in again; a link in another chain is left where it is.
func TestChain(t *testing.T) {
	var c, other chain[int]
	links := make([]link[int], 5)
	for i := range links {
		links[i].value = i
	}
	values := func() []int {
		var got []int
		for l := c.Front(); l != nil && len(got) <= c.Len(); l = l.next {
			if l == &c.root {
				break
			}
			got = append(got, l.value)
		}
		return got
	}
	check := func(step string, want ...int) {
		t.Helper()
		if got := values(); !slices.Equal(got, want) || c.Len() != len(want) {
			t.Errorf("%s: %v, Len %d; want %v", step, got, c.Len(), want)
		}
	}
	check("empty")
	for i := range 4 {
		c.PushBack(&links[i])
	}
	other.PushBack(&links[4])
	check("four pushed", 0, 1, 2, 3)
	c.Remove(&links[1])
	c.Remove(&links[4]) // in other
	check("one taken out", 0, 2, 3)
	c.MoveToFront(&links[3])
	check("the last moved to the front", 3, 0, 2)
	c.PushBack(&links[1])
	check("the one taken out put back", 3, 0, 2, 1)
	for _, i := range []int{3, 0, 2, 1} {
		c.Remove(&links[i])
	}
	check("all taken out")
	if other.Len() != 1 || other.Front().value != 4 {
		t.Errorf("the other chain holds %d; want link 4 alone", other.Len())
	}
}
