package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/jwt"
	"wxlogin/internal/testkit"
)

// The -jwt of these tests: docs/jwt.md's example issuer and audience.
const (
	testIssuer   = "https://login.example.com"
	testAudience = "orders"
)

// jwtLoginData is POST /login's data with -jwt.
type jwtLoginData struct {
	Token        string `json:"token"`
	ExpiresIn    int64  `json:"expires_in"`
	OpenID       string `json:"openid"`
	UserID       int64  `json:"user_id"`
	NewUser      bool   `json:"new_user"`
	JWT          string `json:"jwt"`
	JWTExpiresIn int64  `json:"jwt_expires_in"`
}

// tokenData is POST /token's.
type tokenData struct {
	JWT          string `json:"jwt"`
	JWTExpiresIn int64  `json:"jwt_expires_in"`
}

func jwtOptions() *jwt.Options {
	return &jwt.Options{Issuer: testIssuer, Audience: testAudience, TTL: 10 * time.Minute, Rotate: 24 * time.Hour}
}

// tokenParts are a JWT's header and claims, decoded without checking the
// signature (the verifiers below check it).
func tokenParts(t *testing.T, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("jwt %q has %d parts; want 3", token, len(parts))
	}
	for i, v := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, v) != nil {
			t.Fatalf("jwt part %d %q is not base64url JSON", i, parts[i])
		}
	}
	return header, claims
}

// TestJWTIsOffByDefault: without -jwt a login answers as it always has,
// and the routes of -jwt do not exist.
func TestJWTIsOffByDefault(t *testing.T) {
	a := newTestApp(t, appOptions{})
	code := a.fake.IssueCode("wxapp", "alice")
	got := call(t, a.handler, http.MethodPost, "/login", `{"code":"`+code+`"}`, "Content-Type", jsonCT)
	if strings.Contains(got.raw, "jwt") {
		t.Errorf("login without -jwt = %s; want no jwt", got.raw)
	}
	token := dataOf[loginData](t, got).Token
	if got := call(t, a.handler, http.MethodPost, "/token", "", "Authorization", "Bearer "+token); got.code != http.StatusNotFound {
		t.Errorf("POST /token without -jwt = %d %s; want 404", got.code, got.raw)
	}
	for _, path := range []string{"/.well-known/jwks.json", "/.well-known/openid-configuration"} {
		if resp, _ := get(t, a.handler, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without -jwt = %d; want 404", path, resp.StatusCode)
		}
	}
}

// TestJWTLoginAndToken: with -jwt, a login and POST /token answer with an
// access token saying exactly what docs/jwt.md says, on both stores; a
// logged-out or deleted user gets no new one.
func TestJWTLoginAndToken(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a := newTestApp(t, appOptions{apps: companyApps, store: store, jwt: jwtOptions()})
		login := func(app, user string) jwtLoginData {
			t.Helper()
			body := `{"appid":"` + app + `","code":"` + a.fake.IssueCode(app, user) + `"}`
			return dataOf[jwtLoginData](t, call(t, a.handler, http.MethodPost, "/login", body, "Content-Type", jsonCT))
		}
		shop := login("wxshop", "alice")
		game := login("wxgame", "alice") // the same person
		if shop.JWT == "" || shop.JWTExpiresIn != 600 {
			t.Fatalf("login = %+v; want a jwt of 600 s", shop)
		}
		header, claims := tokenParts(t, game.JWT)
		if header["alg"] != "ES256" || header["typ"] != "at+jwt" || header["kid"] == "" {
			t.Errorf("header = %v", header)
		}
		now := float64(a.clock.Now().Unix())
		want := map[string]any{"iss": testIssuer, "aud": testAudience, "sub": strconv.FormatInt(game.UserID, 10),
			"client_id": "wxgame", "appid": "wxgame", "person": float64(shop.UserID), "iat": now, "exp": now + 600, "jti": claims["jti"]}
		if !maps.Equal(claims, want) {
			t.Errorf("claims = %v; want exactly %v", claims, want)
		}

		got := call(t, a.handler, http.MethodPost, "/token", "", "Authorization", "Bearer "+game.Token)
		fresh := dataOf[tokenData](t, got)
		_, freshClaims := tokenParts(t, fresh.JWT)
		if fresh.JWTExpiresIn != 600 || freshClaims["sub"] != want["sub"] || freshClaims["person"] != want["person"] || freshClaims["jti"] == claims["jti"] {
			t.Errorf("POST /token = %s; want a new jwt for the same user and person", got.raw)
		}

		call(t, a.handler, http.MethodPost, "/logout", "", "Authorization", "Bearer "+game.Token)
		if got := call(t, a.handler, http.MethodPost, "/token", "", "Authorization", "Bearer "+game.Token); got.env.Status != statusNotLoggedIn || got.code != http.StatusUnauthorized {
			t.Errorf("POST /token after logout = %d %s; want 401, status 4", got.code, got.raw)
		}
		call(t, a.handler, http.MethodDelete, "/user", "", "Authorization", "Bearer "+shop.Token)
		if got := call(t, a.handler, http.MethodPost, "/token", "", "Authorization", "Bearer "+shop.Token); got.env.Status != statusNotLoggedIn {
			t.Errorf("POST /token after deletion = %s; want status 4", got.raw)
		}
		if got := call(t, a.handler, http.MethodPost, "/token", ""); got.env.Status != statusNotLoggedIn {
			t.Errorf("POST /token without a token = %s; want status 4", got.raw)
		}

		_, body := get(t, a.handler, "/.well-known/openid-configuration")
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if json.Unmarshal([]byte(body), &doc) != nil || doc.Issuer != testIssuer || doc.JWKSURI != testIssuer+"/.well-known/jwks.json" {
			t.Errorf("openid-configuration = %s", body)
		}
		resp, body := get(t, a.handler, "/.well-known/jwks.json")
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/jwk-set+json" || !strings.Contains(body, header["kid"].(string)) {
			t.Errorf("jwks.json = %d %s %s; want the key set with kid %v", resp.StatusCode, ct, body, header["kid"])
		}
		if strings.Contains(body, `"d"`) {
			t.Errorf("jwks.json = %s; holds a private key", body)
		}
		// No private key in any answer above or log line.
		kept, err := a.jwtKeys.Keys(t.Context())
		if err != nil || len(kept) == 0 {
			t.Fatalf("the kept keys: %d, %v", len(kept), err)
		}
		for slot, record := range kept {
			var k struct{ D string }
			json.Unmarshal(record, &k)
			if k.D == "" || strings.Contains(a.logs.String(), k.D) || strings.Contains(body, k.D) {
				t.Errorf("key %s: its private scalar is missing from its record, or in a log line or the key set", slot)
			}
		}
	})
}

// verifier is one of docs/jwt.md's recipes, ready to run: it verifies a
// token against the key set at jwksURL, answering the claims, or an error
// with the reason the verifier gave.
type verifier func(t *testing.T, jwksURL, token string) (map[string]any, error)

// docVerifiers are docs/jwt.md's three recipes as pasted, each run with
// its own language's library: jose on Node, PyJWT on Debian's python3,
// golang-jwt with keyfunc built in the module tools/jwt/gojwt pins. A
// recipe whose tools are missing is skipped (in CI, fails).
func docVerifiers(t *testing.T) map[string]verifier {
	t.Helper()
	dir := t.TempDir()
	run := func(cmd *exec.Cmd, jwksURL string) (map[string]any, error) {
		cmd.Env = append(os.Environ(), "JWKS_URL="+jwksURL, "ISSUER="+testIssuer, "AUDIENCE="+testAudience)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, &verifierError{reason: strings.TrimSpace(stderr.String()), err: err}
		}
		var claims map[string]any
		if err := json.Unmarshal(out, &claims); err != nil {
			t.Fatalf("%v printed %q: not the claims", cmd.Args, out)
		}
		return claims, nil
	}
	block := func(heading, lang string) []byte {
		blocks := codeBlocks(t, docSection(t, "docs/jwt.md", heading), lang)
		if len(blocks) != 1 {
			t.Fatalf("docs/jwt.md %s has %d %s blocks; want one", heading, len(blocks), lang)
		}
		return []byte(blocks[0])
	}
	verifiers := map[string]verifier{}

	modules, err := filepath.Abs("tools/jwt/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "jose")); err != nil {
		testkit.SkipMissingTool(t, "jose is not installed: (cd tools/jwt && npm ci)")
	}
	needTool(t, "node", "nodejs")
	nodeDir, pyDir, goDir := filepath.Join(dir, "node"), filepath.Join(dir, "python"), filepath.Join(dir, "go")
	for _, d := range []string{nodeDir, pyDir, goDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	testkit.PutFiles(t, nodeDir, map[string][]byte{"verify.mjs": block("### Node: jose", "js")})
	if err := os.Symlink(modules, filepath.Join(nodeDir, "node_modules")); err != nil { // an ES module finds its imports beside it, not on NODE_PATH
		t.Fatal(err)
	}
	verifiers["node-jose"] = func(t *testing.T, jwksURL, token string) (map[string]any, error) {
		return run(exec.Command("node", filepath.Join(nodeDir, "verify.mjs"), token), jwksURL)
	}

	if exec.Command("/usr/bin/python3", "-c", "import jwt, cryptography").Run() != nil {
		missingTool(t, "PyJWT", "python3-jwt python3-cryptography")
	}
	testkit.PutFiles(t, pyDir, map[string][]byte{"verify.py": block("### Python: PyJWT", "python")})
	verifiers["python-pyjwt"] = func(t *testing.T, jwksURL, token string) (map[string]any, error) {
		return run(exec.Command("/usr/bin/python3", filepath.Join(pyDir, "verify.py"), token), jwksURL)
	}

	module := "tools/jwt/gojwt"
	files := map[string][]byte{"main.go": block("### Go: golang-jwt and keyfunc", "go")}
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(module, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	testkit.PutFiles(t, goDir, files)
	build := exec.Command("go", "build", "-o", "verify", ".")
	build.Dir = goDir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building docs/jwt.md's Go recipe: %v\n%s", err, out)
	}
	verifiers["go-golang-jwt"] = func(t *testing.T, jwksURL, token string) (map[string]any, error) {
		return run(exec.Command(filepath.Join(goDir, "verify"), token), jwksURL)
	}
	return verifiers
}

// verifierError is a token a recipe refused, with the reason it gave.
type verifierError struct {
	reason string
	err    error
}

func (e *verifierError) Error() string { return e.reason + " (" + e.err.Error() + ")" }

// TestJWTVerifiersAsDocumented runs docs/jwt.md's three recipes as pasted
// against wxlogin's key set. The app's clock runs hours behind, then
// catches up with the verifiers' real one, so that its keys rotate
// between two logins: each recipe accepts a token of the key before the
// rotation and one of the key after, including one whose user has logged
// out; and refuses, the same as the docs say, alg none, HS256 keyed with
// the public key (as PEM, and as the JWK), an expired token, one for
// another audience, and one signed by a key not in the set.
func TestJWTVerifiersAsDocumented(t *testing.T) {
	opts := jwtOptions()
	opts.TTL, opts.Rotate = 3*time.Hour, time.Hour
	a := newTestApp(t, appOptions{jwt: opts})
	verifiers := docVerifiers(t)
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	jwksURL := srv.URL + "/.well-known/jwks.json"
	login := func(user string) jwtLoginData {
		t.Helper()
		got := call(t, a.handler, http.MethodPost, "/login", `{"code":"`+a.fake.IssueCode("wxapp", user)+`"}`, "Content-Type", jsonCT)
		return dataOf[jwtLoginData](t, got)
	}

	a.clock.Advance(time.Now().Add(-4 * time.Hour).Sub(a.clock.Now()))
	expired := login("erin").JWT // lives 3 h: an hour dead by now
	a.clock.Advance(2 * time.Hour)
	before := login("alice") // a key whose hour is past by now
	a.clock.Advance(time.Hour)
	after := login("bob") // the next hour's key
	a.clock.Advance(time.Hour)
	call(t, a.handler, http.MethodPost, "/logout", "", "Authorization", "Bearer "+after.Token)
	kid := func(token string) string { h, _ := tokenParts(t, token); return h["kid"].(string) }
	if kid(before.JWT) == kid(after.JWT) {
		t.Fatalf("both tokens are signed by key %s; want a rotation between them", kid(before.JWT))
	}

	own := *opts
	own.Now = a.clock.Now
	stranger := signWith(t, jwt.NewFile(filepath.Join(t.TempDir(), jwt.FileName)), own)
	other := own // the same keys, for another audience
	other.Audience = "gifts"
	otherAudience := signWith(t, a.jwtKeys, other)
	_, jwks := get(t, a.handler, "/.well-known/jwks.json")
	forged := forgeries(t, []byte(jwks), before.JWT)

	good := map[string]jwtLoginData{"signed before a rotation": before, "signed after it, its user logged out since": after}
	// Each bad token, and the reason each library gives for refusing it
	// (jose's code, PyJWT's exception, golang-jwt's and keyfunc's words):
	// a refusal for another reason is no proof.
	algorithm := `ERR_JOSE_ALG_NOT_ALLOWED|InvalidAlgorithmError|signing method (none|HS256) is invalid`
	type badToken struct{ token, reason string }
	bad := map[string]badToken{
		"expired":                        {expired, `ERR_JWT_EXPIRED|ExpiredSignatureError|token is expired`},
		"for another audience":           {otherAudience, `unexpected "aud" claim value|InvalidAudienceError|invalid audience`},
		"signed by a key not in the set": {stranger, `ERR_JWKS_NO_MATCHING_KEY|Unable to find a signing key|key not found`},
	}
	for what, token := range forged {
		bad[what] = badToken{token, algorithm}
	}
	for name, verify := range verifiers {
		t.Run(name, func(t *testing.T) {
			for what, l := range good {
				claims, err := verify(t, jwksURL, l.JWT)
				if err != nil {
					t.Errorf("a token %s: refused: %v", what, err)
					continue
				}
				if claims["sub"] != strconv.FormatInt(l.UserID, 10) || claims["aud"] != testAudience || claims["iss"] != testIssuer || claims["appid"] != "wxapp" {
					t.Errorf("a token %s: claims %v; want user %d's", what, claims, l.UserID)
				}
			}
			for what, b := range bad {
				claims, err := verify(t, jwksURL, b.token)
				switch {
				case err == nil:
					t.Errorf("a token %s: accepted, with claims %v; want it refused", what, claims)
				case !regexp.MustCompile(b.reason).MatchString(err.Error()):
					t.Errorf("a token %s: refused as %v; want the reason %q", what, err, b.reason)
				}
			}
		})
	}
}

// signWith is a token for user 1 signed by an issuer of opts on keys.
func signWith(t *testing.T, keys jwt.Store, opts jwt.Options) string {
	t.Helper()
	is, err := jwt.New(t.Context(), keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	token, err := is.Sign(t.Context(), jwt.Claims{UserID: 1, AppID: "wxapp", PersonID: 1})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// forgeries are good's claims under forged signatures, each naming the
// first key of the set jwks: alg none, and HS256 with the public key as
// the HMAC secret, as PEM and as the JWK served, the classic confusion of
// a verifier that takes the algorithm from the token.
func forgeries(t *testing.T, jwks []byte, good string) map[string]string {
	t.Helper()
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks = %s", jwks)
	}
	var k struct{ Kid, X, Y string }
	json.Unmarshal(set.Keys[0], &k)
	x, _ := base64.RawURLEncoding.DecodeString(k.X)
	y, _ := base64.RawURLEncoding.DecodeString(k.Y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	payload := strings.Split(good, ".")[1]
	header := func(alg string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + alg + `","kid":"` + k.Kid + `","typ":"at+jwt"}`))
	}
	hs256 := func(secret []byte) string {
		input := header("HS256") + "." + payload
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	return map[string]string{
		"with alg none":                          header("none") + "." + payload + ".",
		"signed HS256 with the public key's PEM": hs256(pemKey),
		"signed HS256 with the public JWK":       hs256(set.Keys[0]),
	}
}

// TestJWTAcrossTwoInstancesOnOneRedis: two wxlogins on one Redis sign with
// the same keys, so a token one signed verifies (with docs/jwt.md's jose
// recipe) against the key set the other serves, both ways.
func TestJWTAcrossTwoInstancesOnOneRedis(t *testing.T) {
	verify := docVerifiers(t)["node-jose"]
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	env := map[string]string{"WXLOGIN_REDIS": "redis://" + srv.Addr}
	args := []string{"-jwt", "-jwt-issuer", testIssuer, "-jwt-audience", testAudience, "-login-rate", "0"}
	a := startServer(t, env, args...)
	b := startServer(t, env, args...)
	alice := liveLogin(t, a.url, "alice")
	fromB := dataOf[tokenData](t, post(t, http.MethodPost, b.url+"/token", "", "", "Authorization", "Bearer "+alice.Token))
	for _, c := range []struct{ what, token, jwks string }{
		{"signed by A, B's key set", alice.JWT, b.url},
		{"signed by B (POST /token), A's key set", fromB.JWT, a.url},
	} {
		claims, err := verify(t, c.jwks+"/.well-known/jwks.json", c.token)
		if err != nil || claims["sub"] != strconv.FormatInt(alice.UserID, 10) {
			t.Errorf("%s: claims %v, %v; want user %d's", c.what, claims, err, alice.UserID)
		}
	}
}

// liveLogin logs user in to the live server at url, in mock mode.
func liveLogin(t *testing.T, url, user string) jwtLoginData {
	t.Helper()
	resp, err := http.Post(url+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"`+user+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var code struct{ Code string }
	jsonDecode(resp.Body, &code)
	resp.Body.Close()
	if code.Code == "" {
		t.Fatalf("wx.login gave no code")
	}
	return dataOf[jwtLoginData](t, post(t, http.MethodPost, url+"/login", jsonCT, `{"code":"`+code.Code+`"}`))
}

// TestJWTKeysSurviveARestart restarts wxlogin on its data directory: it
// publishes the same keys, so a token issued before the restart still
// verifies, and the key file is its owner's alone.
func TestJWTKeysSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, nil, "-data", dir, "-jwt")
	token := liveLogin(t, s.url, "alice").JWT
	keys := func(url string) []string {
		t.Helper()
		resp, err := http.Get(url + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set struct{ Keys []struct{ Kid string } }
		jsonDecode(resp.Body, &set)
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.Kid)
		}
		return kids
	}
	before := keys(s.url)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, jwt.FileName))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v, %v; want it, 0600", info, err)
	}
	s = startServer(t, nil, "-data", dir, "-jwt")
	after := keys(s.url)
	h, _ := tokenParts(t, token)
	if !slices.Equal(before, after) || !slices.Contains(after, h["kid"].(string)) {
		t.Errorf("keys before the restart %v, after %v; want the same, with the token's %v", before, after, h["kid"])
	}
}
