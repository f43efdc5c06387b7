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
	ID        int64  `json:"id"`
	AppID     string `json:"appid"`
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid,omitempty"`
	Nickname  string `json:"nickname,omitempty"`
	AvatarURL string `json:"avatar_url,omitempty"`
	Gender    int    `json:"gender,omitempty"`
	Language  string `json:"language,omitempty"`
	City      string `json:"city,omitempty"`
	Province  string `json:"province,omitempty"`
	Country   string `json:"country,omitempty"`
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
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }
