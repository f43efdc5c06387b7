package account

import "strconv"

// ClaimCensus counts claims as persons see them, for a move between the
// stores (wxlogin to-redis and from-redis), whose two sides must agree
// however each keeps them. A claim counts once per person and name. An
// erased user's claim counts once however many hashes hold it: the file
// store finds it under each hash of the user, and Redis copies it to each
// person that finds it there (a new user's own claims, a move's). And a
// person's claim counts once with a claim of the same name kept under
// another hash of its records, which it finds: Redis keeps the earlier of
// the two in the person. Its zero value is empty.
type ClaimCensus struct {
	parent map[string]string   // a forest of claims by person and name (and erased user and name), each tree one claim
	names  map[string][]string // the names claimed under each hash
}

// Add counts a claim of name under person's hash.
func (c *ClaimCensus) Add(person, name string) { c.claim(person, name) }

// AddKept counts erased user id's claim of name, found under each of
// hashes: one claim.
func (c *ClaimCensus) AddKept(id int64, name string, hashes ...string) {
	user := c.find("u\x00" + strconv.FormatInt(id, 10) + "\x00" + name)
	for _, h := range hashes {
		c.parent[c.claim(h, name)] = user
	}
}

// Sees says that person finds the claims under hash (another hash of one
// of its records) as its own: each is one with the person's of its name.
// It is called once every claim is counted.
func (c *ClaimCensus) Sees(person, hash string) {
	if person == hash {
		return
	}
	for _, name := range c.names[hash] {
		c.parent[c.claim(person, name)] = c.find(claimNode(hash, name))
	}
}

// Count is the number of claims.
func (c *ClaimCensus) Count() int {
	n := 0
	for node, parent := range c.parent {
		if node == parent {
			n++
		}
	}
	return n
}

// claimNode is the claim of name under hash, in the forest.
func claimNode(hash, name string) string { return "p\x00" + hash + "\x00" + name }

// claim is the root of the tree of the claim of name under hash.
func (c *ClaimCensus) claim(hash, name string) string {
	node := claimNode(hash, name)
	_, seen := c.parent[node]
	root := c.find(node)
	if !seen {
		c.names[hash] = append(c.names[hash], name)
	}
	return root
}

// find is the root of node's tree, which node joins as a tree of its own
// if it is new.
func (c *ClaimCensus) find(node string) string {
	if c.parent == nil {
		c.parent, c.names = map[string]string{}, map[string][]string{}
	}
	if _, ok := c.parent[node]; !ok {
		c.parent[node] = node
	}
	for c.parent[node] != node {
		c.parent[node] = c.parent[c.parent[node]]
		node = c.parent[node]
	}
	return node
}
