package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/journal"
)

// This file is the stores of one machine as the handlers hold them: the
// user store on the data directory and the token store in memory, each
// behind the interface store.go names, so that Redis (redisstore.Store) can
// stand in for both.

// fileUsers is the user store as a userBackend.
type fileUsers struct{ *userStore }

// storeFailedRetry is the Retry-After of a write the store refuses since
// one failed: it takes a restart, which an operator or a supervisor
// watching /healthz makes; meanwhile a load balancer sends the client to
// another instance.
const storeFailedRetry = 5 * time.Second

// storeFailed is the error of a write the file store refused because an
// earlier one failed (or it is closing): status -1, 503 with Retry-After,
// as /healthz answers meanwhile. The cause goes to the log only.
func storeFailed(err error) error {
	if errors.Is(err, journal.ErrWriteFailed) || errors.Is(err, journal.ErrClosed) {
		return &apiError{status: statusInternal, httpCode: http.StatusServiceUnavailable, msg: msgStoreFailed,
			retryAfter: storeFailedRetry, cause: err}
	}
	return err
}

func (f fileUsers) Login(_ context.Context, appID, openID, unionID string) (account.User, bool, error) {
	u, created, err := f.userStore.login(appID, openID, unionID)
	return u, created, storeFailed(err)
}

func (f fileUsers) Get(_ context.Context, id int64) (account.User, bool, error) {
	u, ok := f.userStore.get(id)
	return u, ok, nil
}

func (f fileUsers) Update(_ context.Context, id int64, change func(u *account.User)) (account.User, error) {
	u, err := f.userStore.update(id, change)
	return u, storeFailed(err)
}

func (f fileUsers) Person(_ context.Context, id int64) (account.User, []account.Member, bool, error) {
	records, ok := f.userStore.person(id)
	var u account.User
	members := make([]account.Member, len(records))
	for i, r := range records {
		members[i] = account.Member{ID: r.ID, AppID: r.AppID}
		if r.ID == id {
			u = r
		}
	}
	return u, members, ok, nil
}

func (f fileUsers) Claim(_ context.Context, id int64, name string) (account.Claim, bool, error) {
	c, taken, err := f.userStore.claim(id, name)
	return c, taken, storeFailed(err)
}

func (f fileUsers) ClaimsOf(_ context.Context, id int64) ([]account.Claim, error) {
	return f.userStore.claimsOf(id), nil
}

func (f fileUsers) Erase(_ context.Context, id int64) (account.Erasure, error) {
	r, err := f.userStore.erase(id)
	return r, storeFailed(err)
}

func (f fileUsers) Health(context.Context) error { return storeFailed(f.writeFailure()) }

// memoryTokens is the token store as a tokenBackend; it reads the user
// store to tell a login that raced an account deletion.
type memoryTokens struct {
	*tokenStore
	users *userStore
}

func (m memoryTokens) Issue(_ context.Context, who account.Identity, key string) (string, error) {
	token := m.tokenStore.issue(who, key)
	if !m.users.exists(who.UserID) {
		// The account was deleted while this login ran (on another
		// device): the deletion may have revoked the user's tokens before
		// this one was issued, so it is revoked here.
		m.tokenStore.revoke(account.Caller{Hash: account.HashToken(token)})
		return "", fmt.Errorf("user %d was deleted during the login: %w", who.UserID, account.ErrNoUser)
	}
	return token, nil
}

// Lifetime is the token store's lifetime of a fresh token.
func (m memoryTokens) Lifetime() time.Duration { return m.tokenStore.lifetime() }

func (m memoryTokens) Lookup(_ context.Context, token string) (account.Caller, bool, error) {
	who, ok := m.tokenStore.lookup(token)
	return who, ok, nil
}

func (m memoryTokens) Revoke(_ context.Context, who account.Caller) error {
	m.tokenStore.revoke(who)
	return nil
}

func (m memoryTokens) RevokeUser(_ context.Context, id int64) (int, error) {
	return m.tokenStore.revokeUser(id), nil
}
