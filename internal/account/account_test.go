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
