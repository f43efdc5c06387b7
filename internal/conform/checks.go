package conform

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/opendata"
)

// Severity is how much a check's failure matters: FAIL fails the run,
// WARN and INFO are reported only.
type Severity string

const (
	SevFail Severity = "FAIL"
	SevWarn Severity = "WARN"
	SevInfo Severity = "INFO"
)

// The rules the checks come from: a WECHAT.md section and WeChat's page,
// or OWASP ASVS 5.0's chapter on sessions.
const (
	ruleCode2Session = "WECHAT.md §1; developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html"
	ruleOpenData     = "WECHAT.md §2; developers.weixin.qq.com/miniprogram/dev/framework/open-ability/signature.html"
	rulePhone        = "WECHAT.md §3; developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-info/phone-number/getPhoneNumber.html"
	ruleAccessToken  = "WECHAT.md §4; developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-access-token/getStableAccessToken.html"
	ruleUnionID      = "WECHAT.md §7; developers.weixin.qq.com/miniprogram/dev/framework/open-ability/union-id.html"
	ruleMsgSecCheck  = "WECHAT.md §9; developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/sec-center/sec-check/msgSecCheck.html"
	ruleSessionKey   = "WECHAT.md §1 (开发者服务器不应该把会话密钥下发到小程序)"
)

// Check is one named check of the catalogue.
type Check struct {
	ID       string   `json:"id"`
	Plan     string   `json:"plan"`
	Severity Severity `json:"severity"`
	Reason   string   `json:"reason"` // what a pass means, in a line
	Rule     string   `json:"rule"`   // where the rule comes from
	Hint     string   `json:"hint"`   // how to fix a failure
	needs    []string // the profile's routes it needs, beyond login
	run      func(ctx context.Context, r *runner) outcome
}

// outcome is what a check found: failed (with what it got), or skipped.
type outcome struct {
	failed   bool
	skip     string
	got      string
	evidence []string
}

func pass(evidence ...string) outcome { return outcome{evidence: evidence} }

func fail(got string, evidence ...string) outcome {
	return outcome{failed: true, got: got, evidence: evidence}
}

func skip(why string) outcome { return outcome{skip: why} }

// catalogue is every check, in the order they run: the scan for the
// session_key last, so that it covers every reply of the run.
func catalogue() []Check {
	return []Check{
		{ID: "login.happy-path", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "a login with a fresh code gives a token, and the token names a user",
			Hint:   "exchange the code with jscode2session, create or find the user by (appid, openid), answer a token", run: checkHappyPath},
		{ID: "login.stable-user-id", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "two logins of one WeChat user give the same user id",
			Hint:   "find the user by (appid, openid): the openid is stable per app, the code is not", run: checkStableUserID},
		{ID: "login.one-exchange", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "a login makes exactly one jscode2session call, with appid, secret, js_code and grant_type=authorization_code",
			Hint:   "call GET /sns/jscode2session once per login; a code works once", run: checkOneExchange},
		{ID: "login.token-unique", Plan: "login", Severity: SevFail, Rule: "OWASP ASVS 5.0 7.2.4 (a new session token at each authentication)",
			Reason: "each login gives a new token",
			Hint:   "make a new random token at every login; never reuse or derive one per user", run: checkTokenUnique},
		{ID: "login.token-unpredictable", Plan: "login", Severity: SevFail, Rule: "OWASP ASVS 5.0 7.2.3 (tokens from a CSPRNG); " + ruleSessionKey,
			Reason: "the token is not WeChat's data, nor a hash of it or of the time",
			Hint:   "make the token from crypto random bytes (Go crypto/rand, Python secrets, Node crypto.randomBytes), not md5/sha1 of openid, session_key or time", run: checkTokenUnpredictable},
		{ID: "login.token-length", Plan: "login", Severity: SevFail, Rule: "OWASP ASVS 5.0 7.2.3 (at least 128 bits of entropy)",
			Reason: "the token can carry at least 128 bits",
			Hint:   "use at least 16 random bytes (32 hex or 22 base64 characters)", run: checkTokenLength},
		{ID: "login.code-reuse", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "a code sent again after its login gives no token",
			Hint:   "never cache a code's result for reuse; WeChat answers 40163 for a spent code, and the login must fail", run: checkCodeReuse},
		{ID: "login.double-tap", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "one code sent twice at once (a double tap) makes at most one user",
			Hint:   "create users under a unique (appid, openid) key or a lock", run: checkDoubleTap},
		{ID: "login.double-tap-one-call", Plan: "login", Severity: SevWarn, Rule: ruleCode2Session,
			Reason: "one code sent twice at once is exchanged with WeChat once, and both requests get its answer",
			Hint:   "share one exchange among concurrent logins with the same code (single-flight); the second call gets 40163 and fails the user's tap", run: checkDoubleTapOneCall},
		{ID: "login.concurrent-first", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "8 concurrent first logins of one new user (8 codes) give one user id",
			Hint:   "make (appid, openid) unique in the store and retry the lookup when the insert collides; a read-then-insert makes duplicates", run: checkConcurrentFirst},
		{ID: "login.invalid-code", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "a code WeChat calls invalid (40029) gives no token and is not retried",
			Hint:   "answer 40029 and 40163 as 'get a new code'; retrying a refused code cannot succeed", run: checkInvalidCode},
		{ID: "login.risk-blocked", Plan: "login", Severity: SevFail, Rule: ruleCode2Session + " (40226)",
			Reason: "a user WeChat's risk control blocks (40226) gets no token, and the code is not retried",
			Hint:   "treat 40226 as final for this login", run: checkRiskBlocked},
		{ID: "login.risk-distinct", Plan: "login", Severity: SevWarn, Rule: ruleCode2Session + " (40226: 高风险等级用户，小程序登录拦截)",
			Reason: "40226 is answered differently from 40029",
			Hint:   "give 40226 its own answer: a client told 'get a new code' calls wx.login in a loop, and every code is blocked", run: checkRiskDistinct},
		{ID: "login.system-error", Plan: "login", Severity: SevFail, Rule: ruleCode2Session + " (-1: 系统繁忙，稍候再试)",
			Reason: "WeChat busy (errcode -1) is retried a bounded number of times (at most 4 calls), and gives no token",
			Hint:   "retry -1 a few times with a backoff inside the request's deadline, then answer 'try again later'", run: checkSystemError},
		{ID: "login.wechat-hang", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "when WeChat does not answer, the backend answers an error within the profile's timeout",
			Hint:   "give the HTTP client to WeChat a timeout, and the login a deadline", run: faultCheck("hang")},
		{ID: "login.wechat-html", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "an HTML error page from WeChat's side gives no token",
			Hint:   "parse the reply strictly; an openid must be present and non-empty before a user is made", run: faultCheck("html")},
		{ID: "login.wechat-truncated", Plan: "login", Severity: SevFail, Rule: ruleCode2Session,
			Reason: "JSON cut off in the middle gives no token",
			Hint:   "treat a reply that does not parse as WeChat unavailable", run: faultCheck("truncated")},
		{ID: "login.unbound-app", Plan: "login", Severity: SevFail, Rule: ruleUnionID,
			Reason: "an app with no Open Platform account (no unionid) still logs in",
			Hint:   "unionid is optional: key users by (appid, openid), and a person by unionid only when there is one", run: checkUnboundApp},

		{ID: "opendata.genuine", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData, needs: []string{"userinfo"},
			Reason: "getUserInfo's data as WeChat signs and encrypts it is accepted",
			Hint:   "check signature = sha1(rawData + session_key); decrypt encryptedData with AES-128-CBC, key and iv base64", run: checkGenuineUserInfo},
		{ID: "opendata.tampered-rawdata", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData, needs: []string{"userinfo"},
			Reason: "rawData changed after signing (the old signature kept) is refused",
			Hint:   "compare signature with sha1(rawData + the user's session_key), in constant time, before using rawData", run: checkTamperedRawData},
		{ID: "opendata.other-users-key", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData, needs: []string{"userinfo"},
			Reason: "data signed with another user's session_key is refused",
			Hint:   "verify with the session_key of the token's user, kept per user on the server; never a shared or client-sent key", run: checkOtherUsersKey},
		{ID: "opendata.foreign-watermark", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData + " (watermark)",
			needs:  []string{"userinfo"},
			Reason: "decrypted data whose watermark names another app is refused",
			Hint:   "check watermark.appid is your AppID", run: checkForeignWatermark},
		{ID: "opendata.other-openid", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData, needs: []string{"userinfo"},
			Reason: "decrypted data carrying another user's openId is refused",
			Hint:   "check the decrypted openId is the token's user's", run: checkOtherOpenID},
		{ID: "opendata.previous-key", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData + " (a wx.login may replace the session_key)",
			needs:  []string{"userinfo"},
			Reason: "data made with the key a new login has just replaced is answered without a 5xx",
			Hint:   "a decryption failure is the client's data, not a server error: answer 4xx (or also try the previous key for a short while)", run: checkPreviousKey},
		{ID: "opendata.padding-oracle", Plan: "opendata", Severity: SevFail, Rule: ruleOpenData + "; CWE-209",
			needs:  []string{"userinfo"},
			Reason: "bad padding and bad JSON inside encryptedData get the same answer, never a 5xx",
			Hint:   "answer every decryption or parsing failure with one message: different ones are a padding oracle", run: checkPaddingOracle},

		{ID: "phone.genuine", Plan: "phone", Severity: SevFail, Rule: rulePhone, needs: []string{"phone"},
			Reason: "a phone code of the caller gives the caller's number",
			Hint:   "POST /wxa/business/getuserphonenumber?access_token=… with {\"code\": …}", run: checkPhoneGenuine},
		{ID: "phone.openid-sent", Plan: "phone", Severity: SevFail, Rule: rulePhone + " (openid: 填入后会校验openid和code的绑定关系)",
			needs:  []string{"phone"},
			Reason: "the phone code is sent to WeChat with the caller's openid, so that WeChat checks whose code it is",
			Hint:   "send {\"code\": …, \"openid\": <the token's user's openid>}", run: checkPhoneOpenID},
		{ID: "phone.other-users-code", Plan: "phone", Severity: SevFail, Rule: rulePhone, needs: []string{"phone"},
			Reason: "bob's phone code sent with alice's token does not give alice bob's number",
			Hint:   "send the caller's openid with the code; WeChat refuses another user's code", run: checkPhoneOtherUsersCode},
		{ID: "phone.replay", Plan: "phone", Severity: SevFail, Rule: rulePhone + " (a code is single-use)",
			needs:  []string{"phone"},
			Reason: "a phone code sent a second time is refused",
			Hint:   "never cache a phone code's answer", run: checkPhoneReplay},

		{ID: "phone.country-code-number", Plan: "phone", Severity: SevInfo, Rule: rulePhone + " (countryCode: a string in the field table, the number 86 in the example)",
			needs:  []string{"phone"},
			Reason: "the caller's number is still given when WeChat writes countryCode as the number 86, as its page's example does",
			Hint:   "read countryCode as a string or a number: WeChat's page shows both, and a strict decoder fails the whole answer", run: checkCountryCodeNumber},

		{ID: "session.unknown-token", Plan: "session", Severity: SevFail, needs: []string{"whoami"}, Rule: "OWASP ASVS 5.0 V7.2 (session tokens verified by the backend)",
			Reason: "a made-up token is refused",
			Hint:   "look every token up in the store; refuse what is not there", run: checkUnknownToken},
		{ID: "session.logout", Plan: "session", Severity: SevFail, Rule: "OWASP ASVS 5.0 7.4.1 (logout ends the session)",
			needs:  []string{"logout", "whoami"},
			Reason: "logout ends that token at once, and only that one: the user's other login still works",
			Hint:   "delete the token from the store on logout; keep tokens per login, not one per user", run: checkLogout},
		{ID: "session.delete", Plan: "session", Severity: SevFail, Rule: "OWASP ASVS 5.0 7.4.2 (sessions end when the account is deleted)",
			needs:  []string{"delete", "whoami"},
			Reason: "account deletion (注销) ends every token of the user",
			Hint:   "on deletion, revoke all the user's tokens, not only the caller's", run: checkDelete},
		{ID: "session.claim-once", Plan: "session", Severity: SevFail, Rule: ruleUnionID, needs: []string{"claim"},
			Reason: "a once-per-person benefit is given once",
			Hint:   "record the claim under a unique key, in the same write that checks it", run: checkClaimOnce},
		{ID: "session.claim-per-person", Plan: "session", Severity: SevFail, Rule: ruleUnionID, needs: []string{"claim"},
			Reason: "a once-per-person benefit taken in one app is refused to the same person (one unionid) in another",
			Hint:   "key claims by the person (unionid), not by the app's openid", run: checkClaimPerPerson},

		{ID: "hygiene.access-token-cached", Plan: "hygiene", Severity: SevFail, Rule: ruleAccessToken,
			Reason: "the access_token is fetched once for many calls, not per call",
			Hint:   "keep the access_token until it expires (getStableAccessToken); the daily quota is small", run: checkAccessTokenCached},
		{ID: "hygiene.access-token-refetch", Plan: "hygiene", Severity: SevFail, Rule: ruleAccessToken + " (40001)",
			Reason: "after WeChat refuses the access_token (40001), it is fetched again once and the call succeeds",
			Hint:   "on 40001 or 42001, fetch a new token once and retry the call once", run: checkAccessTokenRefetch},
		{ID: "hygiene.nickname-checked", Plan: "hygiene", Severity: SevFail, Rule: ruleMsgSecCheck, needs: []string{"nickname"},
			Reason: "a typed nickname is checked with msgSecCheck 2.0 (version 2, scene, the user's openid), and a risky one refused",
			Hint:   "POST /wxa/msg_sec_check with {\"content\", \"version\": 2, \"scene\": 1, \"openid\"}; refuse result.suggest risky", run: checkNickname},

		{ID: "login.no-session-key", Plan: "login", Severity: SevFail, Rule: ruleSessionKey,
			Reason: "no reply of the whole run holds a session_key, in base64, hex or raw bytes",
			Hint:   "keep the session_key on the server; the client never needs it", run: checkNoSessionKey},
	}
}

// app is the profile's first bound app, which most checks use.
func (r *runner) app() App { return r.p.bound()[0] }

func checkHappyPath(ctx context.Context, r *runner) outcome {
	token, rep := r.login(ctx, r.app(), r.user("happy"))
	if token == "" {
		return fail("no token at "+r.p.Login.Token, rep.String())
	}
	id, who := r.who(ctx, token, rep)
	if id == "" {
		return fail("no user id", rep.String(), who)
	}
	return pass(rep.String(), who)
}

// who is the id of the user a login made: what the whoami route says of
// its token, or, for a backend without one, what the login's answer says.
func (r *runner) who(ctx context.Context, token string, login reply) (id, evidence string) {
	if r.p.WhoAmI == nil {
		id = login.at(r.p.Login.UserID)
		return id, fmt.Sprintf("the login's answer: user id %q at %s", id, r.p.Login.UserID)
	}
	id, rep := r.be.whoami(ctx, token)
	return id, rep.String()
}

// loginWhoami logs user in and returns the user id the token names.
func (r *runner) loginWhoami(ctx context.Context, app App, user string) (token, id string, ev []string) {
	token, rep := r.login(ctx, app, user)
	ev = append(ev, rep.String())
	if token == "" {
		return "", "", ev
	}
	id, who := r.who(ctx, token, rep)
	return token, id, append(ev, who)
}

func checkStableUserID(ctx context.Context, r *runner) outcome {
	u := r.user("stable")
	_, id1, ev1 := r.loginWhoami(ctx, r.app(), u)
	_, id2, ev2 := r.loginWhoami(ctx, r.app(), u)
	ev := append(ev1, ev2...)
	switch {
	case id1 == "" || id2 == "":
		return fail("a login did not work", ev...)
	case id1 != id2:
		return fail(fmt.Sprintf("user ids %s and %s for one WeChat user", id1, id2), ev...)
	}
	return pass(ev...)
}

func checkOneExchange(ctx context.Context, r *runner) outcome {
	app, u := r.app(), r.user("exchange")
	code := r.code(app, u)
	mark := r.mark()
	token, rep := r.be.login(ctx, app, code)
	r.remember(token)
	calls, err := r.callsSince(mark, "/sns/jscode2session")
	if err != nil {
		return fail(err.Error(), rep.String())
	}
	ev := []string{rep.String()}
	for _, c := range calls {
		ev = append(ev, fmt.Sprintf("jscode2session %v → %s", c.Query, c.Response))
	}
	if len(calls) != 1 {
		return fail(fmt.Sprintf("%d jscode2session calls", len(calls)), ev...)
	}
	c := calls[0]
	var answer struct {
		Errcode int `json:"errcode"`
	}
	json.Unmarshal(c.Response, &answer)
	switch {
	case c.Query["appid"] != app.AppID:
		return fail(fmt.Sprintf("appid %q, not %q", c.Query["appid"], app.AppID), ev...)
	case c.Query["grant_type"] != "authorization_code":
		return fail(fmt.Sprintf("grant_type %q", c.Query["grant_type"]), ev...)
	case c.Query["js_code"] != code:
		return fail("js_code is not the code the client sent", ev...)
	case answer.Errcode != 0:
		return fail(fmt.Sprintf("WeChat answered errcode %d (40125: the AppSecret is wrong)", answer.Errcode), ev...)
	case token == "":
		return fail("no token", ev...)
	}
	return pass(ev...)
}

func checkTokenUnique(ctx context.Context, r *runner) outcome {
	u := r.user("unique")
	t1, rep1 := r.login(ctx, r.app(), u)
	t2, rep2 := r.login(ctx, r.app(), u)
	switch {
	case t1 == "" || t2 == "":
		return fail("a login gave no token", rep1.String(), rep2.String())
	case t1 == t2:
		return fail("two logins gave the same token", rep1.String(), rep2.String())
	}
	return pass(rep1.String(), rep2.String())
}

func checkTokenUnpredictable(ctx context.Context, r *runner) outcome {
	app, u := r.app(), r.user("predict")
	code := r.code(app, u)
	key, _ := r.fake.SessionKey(app.AppID, u)
	before := time.Now()
	token, rep := r.be.login(ctx, app, code)
	after := time.Now()
	r.remember(token)
	if token == "" {
		return fail("no token", rep.String())
	}
	openID, unionID := fakewechat.OpenID(app.AppID, u), fakewechat.UnionID(u)
	if from := derivedFrom(token, map[string]string{"openid": openID, "unionid": unionID, "session_key": key, "code": code}, before, after); from != "" {
		return fail("the token is "+from, rep.String())
	}
	return pass(rep.String())
}

// derivedFrom says how token is made from WeChat's values or the time of
// the login, "" if it is none of the ways conform tries.
func derivedFrom(token string, values map[string]string, before, after time.Time) string {
	lower := strings.ToLower(token)
	hashes := map[string]func(string) string{
		"md5":    func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) },
		"sha1":   func(s string) string { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) },
		"sha256": func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) },
	}
	seeds := map[string]string{}
	for name, v := range values {
		if v == "" {
			continue
		}
		if strings.Contains(token, v) {
			return "or holds the " + name
		}
		seeds[name] = v
		for other, w := range values {
			if other != name && w != "" {
				seeds[name+"+"+other] = v + w
			}
		}
	}
	for seed, v := range seeds {
		if token == base64.StdEncoding.EncodeToString([]byte(v)) {
			return "base64 of the " + seed
		}
		for hname, h := range hashes {
			if lower == h(v) {
				return hname + " of the " + seed
			}
		}
	}
	// The time of the login, in seconds, milliseconds or microseconds, alone
	// or after the openid or the session_key: md5(openid + time()) is a
	// tutorial favourite.
	openID, key := values["openid"], values["session_key"]
	try := func(unit string, from, to int64) string {
		if to-from > 400_000 {
			from = to - 400_000
		}
		for t := from; t <= to; t++ {
			s := strconv.FormatInt(t, 10)
			for _, v := range []string{s, openID + s, s + openID, key + s} {
				for hname, h := range hashes {
					if hname != "sha256" && lower == h(v) {
						return fmt.Sprintf("%s of the time of the login in %s", hname, unit)
					}
				}
			}
		}
		return ""
	}
	if from := try("seconds", before.Unix()-1, after.Unix()+1); from != "" {
		return from
	}
	if from := try("milliseconds", before.UnixMilli()-5, after.UnixMilli()+5); from != "" {
		return from
	}
	return try("microseconds", before.UnixMicro()-2000, after.UnixMicro()+2000)
}

func checkTokenLength(ctx context.Context, r *runner) outcome {
	token, rep := r.login(ctx, r.app(), r.user("length"))
	if token == "" {
		return fail("no token", rep.String())
	}
	if bits := tokenBits(token); bits < 128 {
		return fail(fmt.Sprintf("a token of %d characters carries at most %.0f bits", len(token), bits), rep.String())
	}
	return pass(rep.String())
}

// tokenBits is the most entropy a token's characters can carry, by the
// alphabet they are drawn from: 4 bits a hex digit, about 6 a base64 one.
// Dashes and dots (UUIDs, JWTs) carry nothing.
func tokenBits(token string) float64 {
	var digits, hexLetters, other, n int
	for _, c := range token {
		switch {
		case c == '-' || c == '.':
			continue
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hexLetters++
		default:
			other++
		}
		n++
	}
	alphabet := 64.0
	switch {
	case other == 0 && hexLetters == 0:
		alphabet = 10
	case other == 0:
		alphabet = 16
	}
	return float64(n) * math.Log2(alphabet)
}

func checkCodeReuse(ctx context.Context, r *runner) outcome {
	app, u := r.app(), r.user("reuse")
	code := r.code(app, u)
	t1, rep1 := r.be.login(ctx, app, code)
	t2, rep2 := r.be.login(ctx, app, code)
	r.remember(t1)
	r.remember(t2)
	switch {
	case t1 == "":
		return fail("the first login gave no token", rep1.String())
	case t2 != "":
		return fail("the code gave a second token", rep1.String(), rep2.String())
	}
	return pass(rep1.String(), rep2.String())
}

// doubleTap sends one code twice at once and returns the user ids the
// tokens name and the jscode2session calls made with the code (-1 if the
// fake's record could not be read).
func (r *runner) doubleTap(ctx context.Context) (ids map[string]bool, calls int, ev []string) {
	app, u := r.app(), r.user("tap")
	code := r.code(app, u)
	mark := r.mark()
	// WeChat answers in 50 to 200 ms; the fake, slowed as much, lets the
	// two taps meet inside the exchange whatever the machine's load.
	r.setFaults("slow")
	defer r.setFaults()
	var wg sync.WaitGroup
	reps := make([]reply, 2)
	tokens := make([]string, 2)
	for i := range 2 {
		wg.Go(func() { tokens[i], reps[i] = r.be.login(ctx, app, code) })
	}
	wg.Wait()
	ids = map[string]bool{}
	for i, t := range tokens {
		r.remember(t)
		ev = append(ev, reps[i].String())
		if t != "" {
			id, who := r.who(ctx, t, reps[i])
			ev = append(ev, who)
			if id != "" {
				ids[id] = true
			}
		}
	}
	made, err := r.callsSince(mark, "/sns/jscode2session")
	if err != nil {
		return ids, -1, append(ev, err.Error())
	}
	for _, c := range made {
		if c.Query["js_code"] == code {
			calls++
		}
	}
	return ids, calls, ev
}

func checkDoubleTap(ctx context.Context, r *runner) outcome {
	ids, _, ev := r.doubleTap(ctx)
	switch {
	case len(ids) == 0:
		return fail("neither login worked", ev...)
	case len(ids) > 1:
		return fail(fmt.Sprintf("%d users for one code", len(ids)), ev...)
	}
	return pass(ev...)
}

func checkDoubleTapOneCall(ctx context.Context, r *runner) outcome {
	_, calls, ev := r.doubleTap(ctx)
	if calls < 0 {
		return fail("could not be tried: the fake's record of calls could not be read", ev...)
	}
	if calls != 1 {
		return fail(fmt.Sprintf("%d jscode2session calls with the one code", calls), ev...)
	}
	return pass(ev...)
}

func checkConcurrentFirst(ctx context.Context, r *runner) outcome {
	const n = 8
	app, u := r.app(), r.user("first")
	codes := make([]string, n)
	for i := range codes {
		codes[i] = r.code(app, u) // each wx.login gives a code; all are good until used
	}
	tokens, reps := make([]string, n), make([]reply, n)
	r.setFaults("slow") // as in doubleTap
	defer r.setFaults()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { tokens[i], reps[i] = r.be.login(ctx, app, codes[i]) })
	}
	wg.Wait()
	ids := map[string]bool{}
	var ev []string
	for i, t := range tokens {
		r.remember(t)
		if t == "" {
			ev = append(ev, reps[i].String())
			continue
		}
		if id, _ := r.who(ctx, t, reps[i]); id != "" {
			ids[id] = true
		}
	}
	ev = append(ev, fmt.Sprintf("%d logins, %d user ids", n, len(ids)))
	switch {
	case len(ids) == 0:
		return fail("no login worked", ev...)
	case len(ids) > 1:
		return fail(fmt.Sprintf("%d users made for one WeChat user", len(ids)), ev...)
	}
	return pass(ev...)
}

// refusedLogin sends a code the fake refuses, as made, and returns the
// token, the reply and the jscode2session calls made with it (-1 if the
// fake's record could not be read).
func (r *runner) refusedLogin(ctx context.Context, app App, code string) (string, reply, int) {
	mark := r.mark()
	token, rep := r.be.login(ctx, app, code)
	r.remember(token)
	made, err := r.callsSince(mark, "/sns/jscode2session")
	if err != nil {
		return token, rep, -1
	}
	calls := 0
	for _, c := range made {
		if c.Query["js_code"] == code {
			calls++
		}
	}
	return token, rep, calls
}

func checkInvalidCode(ctx context.Context, r *runner) outcome {
	token, rep, calls := r.refusedLogin(ctx, r.app(), "conform-invalid-"+randomHex(8))
	return refusedOnce(token, rep, calls)
}

// refusedOnce passes a login WeChat refused if it gave no token and made
// at most one call.
func refusedOnce(token string, rep reply, calls int) outcome {
	ev := []string{rep.String(), fmt.Sprintf("%d jscode2session calls", calls)}
	switch {
	case calls < 0:
		return fail("could not be tried: the fake's record of calls could not be read", ev...)
	case token != "":
		return fail("a token", ev...)
	case calls > 1:
		return fail(fmt.Sprintf("the refused code was sent %d times", calls), ev...)
	}
	return pass(ev...)
}

// blockedLogin logs in a user WeChat's risk control blocks.
func (r *runner) blockedLogin(ctx context.Context) (string, reply, int) {
	app, u := r.app(), r.user("risk")
	block := func(blocked bool) error {
		return r.fakeCall("/mock/risk-control", map[string]any{"user": u, "appid": app.AppID, "blocked": blocked}, nil)
	}
	if err := block(true); err != nil {
		return "", reply{route: "risk-control", err: err}, 0
	}
	defer block(false)
	return r.refusedLogin(ctx, app, r.code(app, u))
}

func checkRiskBlocked(ctx context.Context, r *runner) outcome {
	return refusedOnce(r.blockedLogin(ctx))
}

func checkRiskDistinct(ctx context.Context, r *runner) outcome {
	invalid := func() reply {
		_, rep, _ := r.refusedLogin(ctx, r.app(), "conform-invalid-"+randomHex(8))
		return rep
	}
	_, blocked, _ := r.blockedLogin(ctx)
	first, second := invalid(), invalid()
	ev := []string{"40029: " + first.String(), "40029 again: " + second.String(), "40226: " + blocked.String()}
	if sameAnswer(first, second, blocked) {
		return fail("the same answer", ev...)
	}
	return pass(ev...)
}

// sameAnswer reports whether b is answered as a was, where a2 is a's
// question asked again: the statuses, and the bodies too unless a's two
// differ (a time or a request id in every answer), when only the statuses
// can be compared.
func sameAnswer(a, a2, b reply) bool {
	if a.status != b.status {
		return false
	}
	return string(a.body) != string(a2.body) || string(a.body) == string(b.body)
}

func checkSystemError(ctx context.Context, r *runner) outcome {
	if err := r.setFaults("system-error"); err != nil {
		return fail("cannot set the fake's faults: " + err.Error())
	}
	token, rep := r.login(ctx, r.app(), r.user("busy"))
	calls, err := r.faultedCalls()
	r.setFaults()
	ev := []string{rep.String(), fmt.Sprintf("%d calls to WeChat, each answered -1", calls)}
	switch {
	case err != nil:
		return fail("could not be tried: the fake's count of calls: "+err.Error(), rep.String())
	case token != "":
		return fail("a token while WeChat answered -1", ev...)
	case calls > 4:
		return fail(fmt.Sprintf("%d calls: a retry storm", calls), ev...)
	}
	return pass(ev...)
}

// faultCheck is a check that WeChat failing as kind gives no token, and
// an answer within the profile's timeout.
func faultCheck(kind string) func(ctx context.Context, r *runner) outcome {
	return func(ctx context.Context, r *runner) outcome {
		if err := r.setFaults(kind); err != nil {
			return fail("cannot set the fake's faults: " + err.Error())
		}
		token, rep := r.login(ctx, r.app(), r.user(kind))
		r.setFaults()
		switch {
		case token != "":
			return fail("a token", rep.String())
		case rep.err != nil:
			return fail(fmt.Sprintf("no answer within %v", time.Duration(r.p.Timeout)), rep.String())
		}
		return pass(rep.String())
	}
}

func checkUnboundApp(ctx context.Context, r *runner) outcome {
	app, ok := r.p.unbound()
	if !ok {
		return skip("the profile has no unbound app")
	}
	_, id, ev := r.loginWhoami(ctx, app, r.user("unbound"))
	if id == "" {
		return fail("the login did not work", ev...)
	}
	return pass(ev...)
}

// userInfo is getUserInfo's result for the user, from the fake, as a body
// for the userinfo route.
func (r *runner) userInfo(app App, user string) (map[string]string, error) {
	var detail map[string]any
	if err := r.tap(app, user, "getUserInfo", &detail); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range []string{"rawData", "signature", "encryptedData", "iv"} {
		s, _ := detail[k].(string)
		if s == "" {
			return nil, fmt.Errorf("getUserInfo gave no %s", k)
		}
		out[k] = s
	}
	return out, nil
}

// sendUserInfo logs user in and sends body (made once logged in) to the
// userinfo route with the token.
func (r *runner) sendUserInfo(ctx context.Context, user string, body func(app App) (map[string]string, error)) (reply, []string) {
	app := r.app()
	token, rep := r.login(ctx, app, user)
	if token == "" {
		return reply{route: "setup", err: fmt.Errorf("the login gave no token")}, []string{rep.String()}
	}
	fields, err := body(app)
	if err != nil {
		return reply{route: "setup", err: err}, nil
	}
	got := r.be.call(ctx, "userinfo", *r.p.UserInfo, token, fields)
	return got, []string{got.String()}
}

func checkGenuineUserInfo(ctx context.Context, r *runner) outcome {
	u := r.user("info")
	rep, ev := r.sendUserInfo(ctx, u, func(app App) (map[string]string, error) { return r.userInfo(app, u) })
	if !rep.ok() {
		return fail("refused", ev...)
	}
	return pass(ev...)
}

// refused passes a reply that is not a 2xx. A reply from the check's own
// setup (route "setup") means the check could not be tried.
func refused(rep reply, ev []string) outcome {
	switch {
	case rep.route == "setup":
		return fail("could not be tried: "+rep.String(), ev...)
	case rep.ok():
		return fail("accepted", ev...)
	case rep.err != nil:
		return fail("no answer", ev...)
	}
	return pass(ev...)
}

func checkTamperedRawData(ctx context.Context, r *runner) outcome {
	u := r.user("tamper")
	rep, ev := r.sendUserInfo(ctx, u, func(app App) (map[string]string, error) {
		d, err := r.userInfo(app, u)
		if err != nil {
			return nil, err
		}
		var raw map[string]any
		json.Unmarshal([]byte(d["rawData"]), &raw)
		raw["nickName"] = "篡改的昵称"
		changed, _ := json.Marshal(raw)
		return map[string]string{"rawData": string(changed), "signature": d["signature"]}, nil
	})
	return refused(rep, ev)
}

func checkOtherUsersKey(ctx context.Context, r *runner) outcome {
	alice, bob := r.user("alice"), r.user("bob")
	rep, ev := r.sendUserInfo(ctx, alice, func(app App) (map[string]string, error) {
		if token, rep := r.login(ctx, app, bob); token == "" {
			return nil, fmt.Errorf("bob's login failed: %s", rep)
		}
		d, err := r.userInfo(app, bob)
		if err != nil {
			return nil, err
		}
		return map[string]string{"rawData": d["rawData"], "signature": d["signature"]}, nil
	})
	return refused(rep, ev)
}

// forged is getUserInfo's result for the user with its encryptedData
// replaced by plain, encrypted with the user's current session_key as
// WeChat would if it had made it. rawData and signature stay WeChat's, so
// that a backend that checks the signature first still gets to decrypt.
func (r *runner) forged(app App, user string, plain any) (map[string]string, error) {
	b, _ := json.Marshal(plain)
	return r.withEncrypted(app, user, func(key string, iv []byte) (string, error) { return opendata.Encrypt(key, b, iv) })
}

// withEncrypted is getUserInfo's result for the user with its
// encryptedData and iv replaced by what encrypt makes with the user's
// current session_key and a new iv.
func (r *runner) withEncrypted(app App, user string, encrypt func(key string, iv []byte) (string, error)) (map[string]string, error) {
	d, err := r.userInfo(app, user)
	if err != nil {
		return nil, err
	}
	key, ok := r.fake.SessionKey(app.AppID, user)
	if !ok {
		return nil, fmt.Errorf("%s has no session_key", user)
	}
	iv := make([]byte, 16)
	rand.Read(iv)
	if d["encryptedData"], err = encrypt(key, iv); err != nil {
		return nil, err
	}
	d["iv"] = base64.StdEncoding.EncodeToString(iv)
	return d, nil
}

// profileData is getUserInfo's decrypted data, WECHAT.md §3, for openID
// with a watermark of appID.
func profileData(openID, appID string) map[string]any {
	return map[string]any{
		"openId": openID, "nickName": "conform", "gender": 0, "language": "zh_CN",
		"city": "", "province": "", "country": "", "avatarUrl": fakewechat.AvatarURL("conform"),
		"watermark": map[string]any{"timestamp": time.Now().Unix(), "appid": appID},
	}
}

func checkForeignWatermark(ctx context.Context, r *runner) outcome {
	u := r.user("watermark")
	rep, ev := r.sendUserInfo(ctx, u, func(app App) (map[string]string, error) {
		return r.forged(app, u, profileData(fakewechat.OpenID(app.AppID, u), "wxc0f0ther0000000"))
	})
	return refused(rep, ev)
}

func checkOtherOpenID(ctx context.Context, r *runner) outcome {
	u := r.user("alice")
	rep, ev := r.sendUserInfo(ctx, u, func(app App) (map[string]string, error) {
		return r.forged(app, u, profileData(fakewechat.OpenID(app.AppID, r.user("bob")), app.AppID))
	})
	return refused(rep, ev)
}

func checkPreviousKey(ctx context.Context, r *runner) outcome {
	u := r.user("previous")
	rep, ev := r.sendUserInfo(ctx, u, func(app App) (map[string]string, error) {
		d, err := r.userInfo(app, u)
		if err != nil {
			return nil, err
		}
		// A second wx.login, as the mini program's next start may make,
		// replaces the key the data was made with.
		if token, rep := r.login(ctx, app, u); token == "" {
			return nil, fmt.Errorf("the second login failed: %s", rep)
		}
		return d, nil
	})
	if rep.serverError() || rep.err != nil {
		return fail("a server error, or none", ev...)
	}
	return pass(ev...)
}

func checkPaddingOracle(ctx context.Context, r *runner) outcome {
	app, u := r.app(), r.user("oracle")
	token, rep := r.login(ctx, app, u)
	if token == "" {
		return fail("the login gave no token", rep.String())
	}
	// Three whole blocks whose last byte, 0, is no PKCS#7 padding; and
	// text that is well padded but no JSON.
	plain := make([]byte, 48)
	copy(plain, `{"openId":"conform","nickName":"padding"}`)
	badPadding, err := r.withEncrypted(app, u, func(key string, iv []byte) (string, error) { return encryptUnpadded(key, plain, iv) })
	if err != nil {
		return fail("could not be tried: " + err.Error())
	}
	notJSON, err := r.withEncrypted(app, u, func(key string, iv []byte) (string, error) {
		return opendata.Encrypt(key, []byte("conform: not JSON at all"), iv)
	})
	if err != nil {
		return fail("could not be tried: " + err.Error())
	}
	a := r.be.call(ctx, "userinfo", *r.p.UserInfo, token, badPadding)
	a2 := r.be.call(ctx, "userinfo", *r.p.UserInfo, token, badPadding)
	b := r.be.call(ctx, "userinfo", *r.p.UserInfo, token, notJSON)
	ev := []string{"bad padding: " + a.String(), "bad padding again: " + a2.String(), "bad JSON: " + b.String()}
	switch {
	case a.serverError() || b.serverError() || a.err != nil || b.err != nil:
		return fail("a server error, or none", ev...)
	case a.ok() || b.ok():
		return fail("accepted", ev...)
	case !sameAnswer(a, a2, b):
		return fail("two different answers", ev...)
	}
	return pass(ev...)
}

// encryptUnpadded is AES-128-CBC of plain (whole blocks) with no padding
// added, so that its last byte decides what the padding looks like.
func encryptUnpadded(sessionKey string, plain, iv []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(sessionKey)
	if err != nil {
		return "", err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out), nil
}

// phoneCode is what the phone button gives the user: a code for
// getuserphonenumber.
func (r *runner) phoneCode(app App, user string) (string, error) {
	var detail struct {
		Code string `json:"code"`
	}
	err := r.tap(app, user, "getPhoneNumber", &detail)
	return detail.Code, err
}

// tap is the user tapping the button of a privacy interface of WeChat's
// client API (getUserInfo, getPhoneNumber): agreed to the privacy guide
// first, as WeChat asks, then the button's e.detail into out.
func (r *runner) tap(app App, user, api string, out any) error {
	who := map[string]any{"user": user, "appid": app.AppID}
	if err := r.fakeCall("/mock/wx.agreePrivacyAuthorization", who, nil); err != nil {
		return err
	}
	return r.fakeCall("/mock/wx."+api, who, out)
}

// sendPhone sends a phone code to the phone route with token.
func (r *runner) sendPhone(ctx context.Context, token, code string) reply {
	return r.be.call(ctx, "phone", *r.p.Phone, token, map[string]string{"code": code})
}

// loggedInPhone logs a new user in and sends their own phone code.
func (r *runner) loggedInPhone(ctx context.Context) (user, token, code string, rep reply, ev []string) {
	app := r.app()
	user = r.user("phone")
	token, login := r.login(ctx, app, user)
	if token == "" {
		return user, "", "", login, []string{login.String()}
	}
	code, err := r.phoneCode(app, user)
	if err != nil {
		return user, token, "", reply{route: "phone", err: err}, nil
	}
	rep = r.sendPhone(ctx, token, code)
	return user, token, code, rep, []string{rep.String()}
}

func checkPhoneGenuine(ctx context.Context, r *runner) outcome {
	_, _, _, rep, ev := r.loggedInPhone(ctx)
	if !rep.ok() {
		return fail("refused", ev...)
	}
	return pass(ev...)
}

func checkPhoneOpenID(ctx context.Context, r *runner) outcome {
	mark := r.mark()
	user, _, _, rep, ev := r.loggedInPhone(ctx)
	if !rep.ok() {
		return fail("the phone route refused the caller's own code", ev...)
	}
	want := fakewechat.OpenID(r.app().AppID, user)
	calls, err := r.callsSince(mark, "/wxa/business/getuserphonenumber")
	if err != nil || len(calls) == 0 {
		return fail(fmt.Sprintf("no getuserphonenumber call seen (%v)", err), ev...)
	}
	for _, c := range calls {
		var body struct {
			OpenID string `json:"openid"`
		}
		json.Unmarshal(c.Request, &body)
		ev = append(ev, "getuserphonenumber "+string(c.Request))
		if body.OpenID != want {
			return fail("sent without the caller's openid", ev...)
		}
	}
	return pass(ev...)
}

func checkPhoneOtherUsersCode(ctx context.Context, r *runner) outcome {
	app := r.app()
	alice, bob := r.user("alice"), r.user("bob")
	token, login := r.login(ctx, app, alice)
	if token == "" {
		return fail("alice's login gave no token", login.String())
	}
	code, err := r.phoneCode(app, bob)
	if err != nil {
		return fail(err.Error())
	}
	rep := r.sendPhone(ctx, token, code)
	ev := []string{rep.String()}
	if rep.ok() || strings.Contains(string(rep.body), fakewechat.PhoneNumber(bob)) {
		return fail("alice was given bob's number", ev...)
	}
	return pass(ev...)
}

func checkPhoneReplay(ctx context.Context, r *runner) outcome {
	_, token, code, first, ev := r.loggedInPhone(ctx)
	if !first.ok() {
		return fail("the first use was refused", ev...)
	}
	again := r.sendPhone(ctx, token, code)
	ev = append(ev, again.String())
	if again.ok() {
		return fail("the code worked twice", ev...)
	}
	return pass(ev...)
}

func checkCountryCodeNumber(ctx context.Context, r *runner) outcome {
	r.fake.SetCountryCodeText(false)
	defer r.fake.SetCountryCodeText(true)
	_, _, _, rep, ev := r.loggedInPhone(ctx)
	if !rep.ok() {
		return fail("refused when countryCode was the number 86", ev...)
	}
	return pass(ev...)
}

func checkUnknownToken(ctx context.Context, r *runner) outcome {
	id, rep := r.be.whoami(ctx, randomHex(16))
	switch {
	case rep.ok() || id != "":
		return fail("a made-up token was taken", rep.String())
	case rep.err != nil || rep.serverError():
		return fail("whoami failed: a 5xx, or no answer", rep.String())
	}
	return pass(rep.String())
}

// twoLogins logs a new user in twice, returning both tokens.
func (r *runner) twoLogins(ctx context.Context, tag string) (t1, t2 string, ev []string) {
	u := r.user(tag)
	t1, rep1 := r.login(ctx, r.app(), u)
	t2, rep2 := r.login(ctx, r.app(), u)
	return t1, t2, []string{rep1.String(), rep2.String()}
}

// alive reports whether the backend still takes token.
// alive reports whether the backend takes token: whoami names a user. A
// 5xx or no answer tells nothing either way, and inconclusive is set.
func (r *runner) alive(ctx context.Context, token string) (alive, inconclusive bool, evidence string) {
	id, rep := r.be.whoami(ctx, token)
	return id != "", id == "" && (rep.err != nil || rep.status >= 500), rep.String()
}

func checkLogout(ctx context.Context, r *runner) outcome {
	t1, t2, ev := r.twoLogins(ctx, "logout")
	if t1 == "" || t2 == "" {
		return fail("a login gave no token", ev...)
	}
	out := r.be.call(ctx, "logout", *r.p.Logout, t1, nil)
	ev = append(ev, out.String())
	first, unsure1, e1 := r.alive(ctx, t1)
	second, unsure2, e2 := r.alive(ctx, t2)
	ev = append(ev, e1, e2)
	switch {
	case !out.ok():
		return fail("logout refused", ev...)
	case unsure1 || unsure2:
		return fail("whoami failed: a 5xx, or no answer", ev...)
	case first:
		return fail("the token works after its logout", ev...)
	case !second:
		return fail("the user's other login ended too", ev...)
	}
	return pass(ev...)
}

func checkDelete(ctx context.Context, r *runner) outcome {
	t1, t2, ev := r.twoLogins(ctx, "delete")
	if t1 == "" || t2 == "" {
		return fail("a login gave no token", ev...)
	}
	del := r.be.call(ctx, "delete", *r.p.Delete, t1, nil)
	ev = append(ev, del.String())
	first, unsure1, e1 := r.alive(ctx, t1)
	second, unsure2, e2 := r.alive(ctx, t2)
	ev = append(ev, e1, e2)
	switch {
	case !del.ok():
		return fail("deletion refused", ev...)
	case unsure1 || unsure2:
		return fail("whoami failed: a 5xx, or no answer", ev...)
	case first || second:
		return fail("a token works after the account's deletion", ev...)
	}
	return pass(ev...)
}

// claim logs user in to app and takes the claim.
func (r *runner) claim(ctx context.Context, app App, user string) reply {
	token, rep := r.login(ctx, app, user)
	if token == "" {
		return rep
	}
	return r.be.call(ctx, "claim", *r.p.Claim, token, nil)
}

func checkClaimOnce(ctx context.Context, r *runner) outcome {
	u := r.user("claim")
	first := r.claim(ctx, r.app(), u)
	again := r.claim(ctx, r.app(), u)
	ev := []string{first.String(), again.String()}
	switch {
	case !first.ok():
		return fail("the first claim was refused", ev...)
	case again.ok():
		return fail("claimed twice", ev...)
	}
	return pass(ev...)
}

func checkClaimPerPerson(ctx context.Context, r *runner) outcome {
	bound := r.p.bound()
	if len(bound) < 2 {
		return skip("the profile has one bound app: a person across apps needs two")
	}
	u := r.user("person")
	first := r.claim(ctx, bound[0], u)
	other := r.claim(ctx, bound[1], u)
	ev := []string{first.String(), other.String()}
	switch {
	case !first.ok():
		return fail("the first claim was refused", ev...)
	case other.ok():
		return fail("the same person claimed again in another app", ev...)
	}
	return pass(ev...)
}

// accessTokenCall makes one call that needs an access_token at WeChat:
// a phone code, else a nickname.
func (r *runner) accessTokenCall(ctx context.Context) (reply, bool) {
	switch {
	case r.p.Phone != nil:
		_, _, _, rep, _ := r.loggedInPhone(ctx)
		return rep, true
	case r.p.Nickname != nil:
		token, rep := r.login(ctx, r.app(), r.user("nick"))
		if token == "" {
			return rep, true
		}
		return r.be.call(ctx, "nickname", *r.p.Nickname, token, map[string]string{"nickname": "conform " + randomHex(2)}), true
	}
	return reply{}, false
}

// tokenFetches counts the access_token fetches among the calls since mark.
func (r *runner) tokenFetches(mark int64) (int, error) {
	calls, err := r.callsSince(mark, "/cgi-bin/token", "/cgi-bin/stable_token")
	return len(calls), err
}

func checkAccessTokenCached(ctx context.Context, r *runner) outcome {
	var ev []string
	mark := r.mark()
	for range 3 {
		rep, ok := r.accessTokenCall(ctx)
		if !ok {
			return skip("the profile has neither a phone nor a nickname route")
		}
		ev = append(ev, rep.String())
		if !rep.ok() {
			return fail("a call that needs an access_token failed", ev...)
		}
	}
	n, err := r.tokenFetches(mark)
	switch {
	case err != nil:
		return fail(err.Error(), ev...)
	case n > 1:
		return fail(fmt.Sprintf("%d access_token fetches for 3 calls", n), ev...)
	}
	return pass(ev...)
}

func checkAccessTokenRefetch(ctx context.Context, r *runner) outcome {
	if rep, ok := r.accessTokenCall(ctx); !ok {
		return skip("the profile has neither a phone nor a nickname route")
	} else if !rep.ok() {
		return fail("a call that needs an access_token failed", rep.String())
	}
	r.fake.RevokeAccessTokens(r.app().AppID)
	mark := r.mark()
	rep, _ := r.accessTokenCall(ctx)
	n, err := r.tokenFetches(mark)
	ev := []string{rep.String(), fmt.Sprintf("%d access_token fetches after WeChat ended the token", n)}
	switch {
	case err != nil:
		return fail(err.Error(), ev...)
	case !rep.ok():
		return fail("the call failed after WeChat ended the access_token", ev...)
	case n > 2:
		return fail(fmt.Sprintf("%d fetches", n), ev...)
	}
	return pass(ev...)
}

func checkNickname(ctx context.Context, r *runner) outcome {
	app, u := r.app(), r.user("nickname")
	token, login := r.login(ctx, app, u)
	if token == "" {
		return fail("the login gave no token", login.String())
	}
	mark := r.mark()
	clean := r.be.call(ctx, "nickname", *r.p.Nickname, token, map[string]string{"nickname": "conform 昵称"})
	ev := []string{clean.String()}
	if !clean.ok() {
		return fail("a clean nickname was refused", ev...)
	}
	checks, err := r.callsSince(mark, "/wxa/msg_sec_check")
	if err != nil {
		return fail(err.Error(), ev...)
	}
	if len(checks) == 0 {
		return fail("no msgSecCheck call", ev...)
	}
	var req struct {
		Version int    `json:"version"`
		Scene   int    `json:"scene"`
		OpenID  string `json:"openid"`
	}
	json.Unmarshal(checks[0].Request, &req)
	ev = append(ev, "msg_sec_check "+string(checks[0].Request))
	if req.Version != 2 || req.Scene < 1 || req.Scene > 4 || req.OpenID != fakewechat.OpenID(app.AppID, u) {
		return fail("msgSecCheck called without version 2, a scene and the user's openid", ev...)
	}
	risky := r.be.call(ctx, "nickname", *r.p.Nickname, token, map[string]string{"nickname": "risky conform"})
	ev = append(ev, risky.String())
	if risky.ok() {
		return fail("a nickname msgSecCheck calls risky was saved", ev...)
	}
	return pass(ev...)
}

func checkNoSessionKey(ctx context.Context, r *runner) outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.leaks) > 0 {
		return fail(fmt.Sprintf("%d replies", len(r.leaks)), r.leaks...)
	}
	return pass(fmt.Sprintf("%d session_keys looked for in every reply", len(r.keys)))
}
