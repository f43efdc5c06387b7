// Package account is what a user is to wxlogin, whichever store keeps
// them: the record of one user of one mini program, the persons several
// records make (one unionid across a company's mini programs), the claims
// a person takes once, and an erasure; and who calls with a token (Caller).
// The file store and the Redis store both keep these values, and the
// handlers show them.
package account

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// Member is one record of a person, as GET /user lists them: which
// user, in which app.
type Member struct {
	ID    int64
	AppID string
}

// Ref names one user of one mini program. WeChat's openid is only unique
// within an app, so every lookup is keyed by the pair.
type Ref struct {
	AppID  string
	OpenID string
}

// Identity is who a token speaks for. Its strings are the user record's
// own, not copies: a million tokens must not mean a million more openids.
type Identity struct {
	AppID  string
	OpenID string
	UserID int64
}

// User is one user of one mini program, as stored. The JSON form is the
// file store's record; handlers build the API view from it.
type User struct {
	ID      int64  `json:"id"`
	AppID   string `json:"appid"`
	OpenID  string `json:"openid"`
	UnionID string `json:"unionid,omitempty"`
	// PreviousUnionIDs are the other unionids the user's person is known
	// by, separated by spaces: those the user had before UnionID, oldest
	// first, and those of a record of the person erased since, which the
	// file store moves here so that the person stays one. A mini program
	// moved to another Open Platform account gives each of its users a new
	// unionid, as unionids are per account and openids per app (WECHAT.md
	// §7): the old ones keep the user in the person they were (SetUnionID).
	PreviousUnionIDs string `json:"previous_unionids,omitempty"`
	Nickname         string `json:"nickname,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	Gender           int    `json:"gender,omitempty"`
	Language         string `json:"language,omitempty"`
	City             string `json:"city,omitempty"`
	Province         string `json:"province,omitempty"`
	Country          string `json:"country,omitempty"`
	// The phone number the user shared with getPhoneNumber (WECHAT.md §3).
	PhoneNumber     string    `json:"phone_number,omitempty"`
	PurePhoneNumber string    `json:"pure_phone_number,omitempty"`
	CountryCode     string    `json:"country_code,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	LastLoginAt     time.Time `json:"last_login_at"`
}

// Ref is the user's (appid, openid).
func (u *User) Ref() Ref { return Ref{u.AppID, u.OpenID} }

// LastLoginEvery is how often a user's last_login_at is written: a login
// within that time of the one recorded, which changes nothing else, writes
// nothing, so that most returning logins neither write nor fsync.
const LastLoginEvery = time.Minute

// LastLoginFresh reports whether a login at now need not be recorded over
// last, the login recorded: last is less than LastLoginEvery before now. A
// clock moved back is recorded, as it says.
func LastLoginFresh(last, now time.Time) bool {
	return !now.Before(last) && now.Sub(last) < LastLoginEvery
}

// SetUnionID makes id the user's unionid; the one it replaces joins
// PreviousUnionIDs, so that the user stays one person with those who
// share either. An empty id (WeChat sent none) changes nothing. It reports
// whether anything changed.
func (u *User) SetUnionID(id string) bool {
	if id == "" || id == u.UnionID {
		return false
	}
	previous := strings.Fields(u.PreviousUnionIDs)
	if u.UnionID != "" {
		previous = append(previous, u.UnionID)
	}
	previous = slices.DeleteFunc(previous, func(p string) bool { return p == id }) // an old one back
	u.UnionID, u.PreviousUnionIDs = id, strings.Join(previous, " ")
	return true
}

// AddUnionIDs adds ids the user does not have to PreviousUnionIDs: those
// of another record of the person (an erased one's, which would otherwise
// leave the person in two), the user being the same human. It reports
// whether anything changed.
func (u *User) AddUnionIDs(ids []string) bool {
	had := u.UnionIDs()
	added := false
	for _, id := range ids {
		if !slices.Contains(had, id) {
			had = append(had, id)
			u.PreviousUnionIDs = strings.TrimSpace(u.PreviousUnionIDs + " " + id)
			added = true
		}
	}
	return added
}

// UnionIDs are every unionid the user has had, the current one last; none
// for a user of an app with no Open Platform account.
func (u *User) UnionIDs() []string {
	ids := strings.Fields(u.PreviousUnionIDs)
	if u.UnionID != "" {
		ids = append(ids, u.UnionID)
	}
	return ids
}

// ErrNoUser is the error of a change to a user who is not stored: one a
// token still names after the account was deleted. The client
// is told it is not logged in.
var ErrNoUser = errors.New("no such user")

// Meta is what a store records of itself (the file store in the header
// of each of its files, Redis under wx:meta): the mode it was created in, which it never changes,
// and the mini programs it serves.
type Meta struct {
	Mode   string   `json:"mode"` // ModeReal or ModeMock
	AppIDs []string `json:"appids"`
}

// The modes a store is created in.
const (
	ModeReal = "real"
	ModeMock = "mock"
)

// ValidClaimName reports whether name is 1 to 32 of a-z, 0-9 and -.
func ValidClaimName(name string) bool {
	if len(name) < 1 || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Claim is a claim as callers see it: the claim and the app it was made in.
type Claim struct {
	Name      string    `json:"name"`
	AppID     string    `json:"appid"`
	UserID    int64     `json:"user_id"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// Erasure is what an erasure answers: what went, and what was kept.
type Erasure struct {
	UserID     int64    `json:"user_id"`
	ClaimsKept []string `json:"claims_kept"` // names only, under the person's keyed hash
}

// PersonHash is the person of (appID, openID, unionID) under key: the
// HMAC of the unionid, or of the app and openid when there is none. Both
// stores key persons by it: the file store the claims an erasure keeps,
// Redis every person.
func PersonHash(key []byte, appID, openID, unionID string) string {
	mac := hmac.New(sha256.New, key)
	if unionID != "" {
		mac.Write([]byte("unionid\x00" + unionID))
	} else {
		mac.Write([]byte("openid\x00" + appID + "\x00" + openID))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// Caller is who sent a request with a valid token: the user the token
// speaks for, with the newest session_key WeChat gave for that user (it
// never leaves the server), and the token's hash, so that it can be revoked.
type Caller struct {
	Identity
	SessionKey string
	// PreviousKey is the session_key the newest login replaced, while it is
	// in its window (the open data may have been fetched just before the
	// login), and ReplacedAt when that was.
	PreviousKey string
	ReplacedAt  time.Time

	Hash TokenHash // the key the token is stored under, so it can be revoked

	// ReadWithToken is the user as the token's store read it in the same
	// step as the token, where that costs nothing more (on Redis, one round
	// trip for both); nil otherwise. GET /user shows it; a route that
	// changes the user reads the user again.
	ReadWithToken *StoredUser
}

// StoredUser is a user's record and the records of its person, the
// earliest first, as the store held them at one moment.
type StoredUser struct {
	Record User
	Person []Member
}

// TokenHash is the SHA-256 of a token. Tokens are stored and saved only by
// their hash, so a memory or file dump does not yield tokens anyone can use.
type TokenHash [sha256.Size]byte

// HashToken is the hash a token is stored and saved under.
func HashToken(token string) TokenHash {
	var room [64]byte // a token's bytes, without an allocation (wxlogin's are 43)
	return sha256.Sum256(append(room[:0], token...))
}

// Persons groups users into the persons they are, as both stores see
// them: records that share a unionid, now or before (SetUnionID), are one
// person, and so are those that share one with them in turn; a record that
// never had one is a person alone. It maps each user's id to its person's
// first record's id, and each unionid of a person to that id too.
func Persons(users []User) (byUser map[int64]int64, byUnionID map[string]int64) {
	parent := map[int64]int64{} // a forest of record ids, each tree one person
	root := func(id int64) int64 {
		for parent[id] != id {
			parent[id] = parent[parent[id]]
			id = parent[id]
		}
		return id
	}
	first := map[string]int64{} // the first record seen with each unionid
	for _, u := range users {
		parent[u.ID] = u.ID
	}
	for _, u := range users {
		for _, union := range u.UnionIDs() {
			other, seen := first[union]
			if !seen {
				first[union] = u.ID
				continue
			}
			a, b := root(u.ID), root(other)
			parent[max(a, b)] = min(a, b) // the earliest record names the person
		}
	}
	byUser = make(map[int64]int64, len(users))
	for _, u := range users {
		byUser[u.ID] = root(u.ID)
	}
	byUnionID = make(map[string]int64, len(first))
	for union, id := range first {
		byUnionID[union] = root(id)
	}
	return byUser, byUnionID
}

// PersonHashes are the keyed hashes (PersonHash, under the store's key, as
// hash makes them) the persons of users are kept under, as the store in
// Redis keeps them: each user's person's, that
// of the first unionid its first record had (or of that record's app and
// openid, if it never had one); and the hash of each other unionid of a
// person, which is an alias of the person's.
func PersonHashes(hash func(appID, openID, unionID string) string, users []User) (byUser map[int64]string, aliases map[string]string) {
	byUserID, byUnionID := Persons(users)
	records := make(map[int64]*User, len(users))
	for i := range users {
		records[users[i].ID] = &users[i]
	}
	of := func(first int64) string {
		r := records[first]
		if unions := r.UnionIDs(); len(unions) > 0 {
			return hash(r.AppID, r.OpenID, unions[0])
		}
		return hash(r.AppID, r.OpenID, "")
	}
	byUser = make(map[int64]string, len(users))
	for id, first := range byUserID {
		byUser[id] = of(first)
	}
	aliases = map[string]string{}
	for union, first := range byUnionID {
		if h, person := hash("", "", union), of(first); h != person {
			aliases[h] = person
		}
	}
	return byUser, aliases
}

// UserHashes are the hashes (PersonHash, as hash makes them) under which
// user u finds claims kept of erased users as its own, as the file store
// finds them: each of its unionids', and its app's and openid's.
func UserHashes(hash func(appID, openID, unionID string) string, u User) []string {
	hashes := []string{hash(u.AppID, u.OpenID, "")}
	for _, union := range u.UnionIDs() {
		hashes = append(hashes, hash(u.AppID, u.OpenID, union))
	}
	return hashes
}
