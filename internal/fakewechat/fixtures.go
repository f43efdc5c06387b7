package fakewechat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"wxlogin/internal/account"
	"wxlogin/internal/request"
)

// This file is the fake WeChat's fixtures file (-fake-fixtures): users
// fixed by name, with the openids, unionid, profile and phone number
// another backend's tests expect, and which apps are bound to an Open
// Platform account. A name the file does not list gets what the fake
// derives from the name, as without the file.

// Fixtures is what a fixtures file fixes (LoadFixtures), for New; the
// zero value fixes nothing.
type Fixtures struct {
	users   map[string]fixture // by user name
	unbound []string           // appids whose users get no unionid
}

// fixture is one user of the file. Empty fields are derived from the
// name, as for a user the file does not list.
type fixture struct {
	OpenIDs     map[string]string `json:"openids"` // appid → openid
	UnionID     string            `json:"unionid"`
	Nickname    string            `json:"nickname"`
	AvatarURL   string            `json:"avatar_url"`
	Phone       string            `json:"phone"`        // the number without its country code
	CountryCode string            `json:"country_code"` // "86" when empty
}

// fixturesFile is the file's format.
type fixturesFile struct {
	Apps  map[string]struct{ Unbound bool } `json:"apps"`
	Users map[string]fixture                `json:"users"`
}

// LoadFixtures reads and checks the fixtures file at path for the
// apps appIDs: every app it names must be one of them, and no two users
// may share an openid in an app, or a unionid.
func LoadFixtures(path string, appIDs []string) (Fixtures, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Fixtures{}, err
	}
	var file fixturesFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt field would silently fix nothing
	if err := dec.Decode(&file); err != nil {
		return Fixtures{}, fmt.Errorf("%s: %w", path, err)
	}
	fx := Fixtures{users: map[string]fixture{}}
	var errs []error
	known := func(appID, where string) bool {
		if !slices.Contains(appIDs, appID) {
			errs = append(errs, fmt.Errorf("%s names app %q, which is not configured (WX_APPID or -apps)", where, appID))
			return false
		}
		return true
	}
	for appID, a := range file.Apps {
		if known(appID, "apps") && a.Unbound {
			fx.unbound = append(fx.unbound, appID)
		}
	}
	openIDs, unionIDs := map[account.Ref]string{}, map[string]string{}
	names := make([]string, 0, len(file.Users))
	for name := range file.Users {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a fixed order
	for _, name := range names {
		u := file.Users[name]
		where := fmt.Sprintf("user %q", name)
		if err := request.CheckText("name", name, 64); name == "" || err != nil {
			errs = append(errs, fmt.Errorf("user name %q: 1 to 64 characters of text", name))
		}
		for appID, openID := range u.OpenIDs {
			if !known(appID, where+"'s openids") {
				continue
			}
			if openID == "" || !request.IsPrintableASCII(openID) || len(openID) > 128 {
				errs = append(errs, fmt.Errorf("%s: openid %q in %s: 1 to 128 printable ASCII characters", where, openID, appID))
			}
			if other, taken := openIDs[account.Ref{AppID: appID, OpenID: openID}]; taken {
				errs = append(errs, fmt.Errorf("%s: openid %q in %s is %s's too", where, openID, appID, other))
			}
			openIDs[account.Ref{AppID: appID, OpenID: openID}] = name
		}
		if u.UnionID != "" {
			if !request.IsPrintableASCII(u.UnionID) || len(u.UnionID) > 128 {
				errs = append(errs, fmt.Errorf("%s: unionid %q: up to 128 printable ASCII characters", where, u.UnionID))
			}
			if other, taken := unionIDs[u.UnionID]; taken {
				errs = append(errs, fmt.Errorf("%s: unionid %q is %s's too: a unionid is one person", where, u.UnionID, other))
			}
			unionIDs[u.UnionID] = name
		}
		if u.Phone != "" && !isDigits(u.Phone, 5, 20) {
			errs = append(errs, fmt.Errorf("%s: phone %q: 5 to 20 digits, without the country code", where, u.Phone))
		}
		if u.CountryCode != "" && !isDigits(u.CountryCode, 1, 4) {
			errs = append(errs, fmt.Errorf("%s: country_code %q: 1 to 4 digits", where, u.CountryCode))
		}
		// The fake's users are held to what PATCH /user takes.
		if err := request.CheckAvatarURL("avatar_url", u.AvatarURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: avatar_url %q: an http(s) URL (%v)", where, u.AvatarURL, err))
		}
		if err := request.CheckName("nickname", u.Nickname); err != nil {
			errs = append(errs, fmt.Errorf("%s: nickname: %w", where, err))
		}
		fx.users[name] = u
	}
	if err := errors.Join(errs...); err != nil {
		return Fixtures{}, fmt.Errorf("%s: %w", path, err)
	}
	return fx, nil
}

// isDigits reports whether s is between min and max ASCII digits.
func isDigits(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// openID is the openid of user in appID: the fixture's, or derived.
func (f *Fake) openID(appID, user string) string {
	if id := f.fixtures.users[user].OpenIDs[appID]; id != "" {
		return id
	}
	return OpenID(appID, user)
}

// unionID is u's unionid, or "" if u's app is not bound to an Open
// Platform account.
func (f *Fake) unionID(u appUser) string {
	if f.apps[u.appID].Unbound {
		return ""
	}
	if platform := f.platform(u.appID); platform != "" {
		return derivedID("unionid\x00" + platform + "\x00" + u.name) // another account's (MoveApp)
	}
	if id := f.fixtures.users[u.name].UnionID; id != "" {
		return id
	}
	return UnionID(u.name)
}

// profile is the nickname and avatar a user's getUserInfo gives.
func (f *Fake) profile(user string) (nickname, avatarURL string) {
	fx := f.fixtures.users[user]
	nickname, avatarURL = fx.Nickname, fx.AvatarURL
	if nickname == "" {
		nickname = user
	}
	if avatarURL == "" {
		avatarURL = AvatarURL(user)
	}
	return nickname, avatarURL
}

// phone is a user's phone number as WeChat gives it (with "+<code> " for
// a number outside mainland China: the fake's choice of form), without its
// country code, and the country code.
func (f *Fake) phone(user string) (number, pure, countryCode string) {
	fx := f.fixtures.users[user]
	pure, countryCode = fx.Phone, fx.CountryCode
	if pure == "" {
		pure = PhoneNumber(user)
	}
	if countryCode == "" {
		countryCode = "86"
	}
	number = pure
	if countryCode != "86" {
		number = "+" + countryCode + " " + pure
	}
	return number, pure, countryCode
}
