package account

import (
	"maps"
	"testing"
)

// TestPersons: records that share a unionid, now or before, are one
// person, named by its first record; a record with none is alone.
func TestPersons(t *testing.T) {
	users := []User{
		{ID: 1, UnionID: "u-old"},
		{ID: 2, UnionID: "u-new", PreviousUnionIDs: "u-old"}, // joins 1 and 4
		{ID: 3},                   // alone
		{ID: 4, UnionID: "u-new"}, // one person with 1, through 2
		{ID: 5, UnionID: "u-other"},
	}
	byUser, byUnionID := Persons(users)
	if want := map[int64]int64{1: 1, 2: 1, 3: 3, 4: 1, 5: 5}; !maps.Equal(byUser, want) {
		t.Errorf("Persons by user = %v; want %v", byUser, want)
	}
	if want := map[string]int64{"u-old": 1, "u-new": 1, "u-other": 5}; !maps.Equal(byUnionID, want) {
		t.Errorf("Persons by unionid = %v; want %v", byUnionID, want)
	}
	hash := func(appID, openID, unionID string) string { return unionID + "/" + appID + openID }
	persons, aliases := PersonHashes(hash, users)
	if persons[4] != "u-old/" || persons[3] != "/" || aliases["u-new/"] != "u-old/" || len(aliases) != 1 {
		t.Errorf("PersonHashes = %v, aliases %v; want 4 under u-old's hash, u-new's an alias of it", persons, aliases)
	}
}

// TestClaimCensus: a claim counts once per person and name; an erased
// user's claim once however many hashes hold it; a person's claim once
// with one of the same name under a hash it sees, and not with one under
// a hash it does not.
func TestClaimCensus(t *testing.T) {
	for _, tt := range []struct {
		name  string
		count func(c *ClaimCensus)
		want  int
	}{
		{"two persons, one name", func(c *ClaimCensus) { c.Add("p1", "gift"); c.Add("p2", "gift") }, 2},
		{"one person, two names", func(c *ClaimCensus) { c.Add("p1", "gift"); c.Add("p1", "coupon") }, 2},
		{"one person's claim twice", func(c *ClaimCensus) { c.Add("p1", "gift"); c.Add("p1", "gift") }, 1},
		{"an erased user's claim under two hashes", func(c *ClaimCensus) {
			c.AddKept(5, "gift", "h1", "h2")
			c.AddKept(5, "gift", "h3")
		}, 1},
		{"two erased users' claims under one hash", func(c *ClaimCensus) { c.AddKept(5, "gift", "h1"); c.AddKept(6, "gift", "h1") }, 1},
		{"two erased users' claims under two hashes", func(c *ClaimCensus) { c.AddKept(5, "gift", "h1"); c.AddKept(6, "gift", "h2") }, 2},
		{"a person's claim and one it sees", func(c *ClaimCensus) {
			c.Add("p1", "gift")
			c.AddKept(5, "gift", "h1")
			c.Sees("p1", "h1")
		}, 1},
		{"a person's claim and one it does not see", func(c *ClaimCensus) {
			c.Add("p1", "gift")
			c.AddKept(5, "gift", "h1")
			c.Sees("p1", "h2")
		}, 2},
		{"a person sees a claim of another name", func(c *ClaimCensus) {
			c.Add("p1", "gift")
			c.AddKept(5, "coupon", "h1")
			c.Sees("p1", "h1")
		}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c ClaimCensus
			tt.count(&c)
			if got := c.Count(); got != tt.want {
				t.Errorf("Count() = %d; want %d", got, tt.want)
			}
		})
	}
}
