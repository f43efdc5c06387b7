package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/testkit"
	"wxlogin/internal/tools"
)

// The tests of this file check the recipes of deploy/ with the tools they
// are for: systemd's own analyzer on the units, nginx and Caddy on their
// configurations, and a login through a real nginx on loopback.

// The units are what systemd would load: systemd-analyze verify says
// nothing about them (an unknown key is only a warning there, so any output
// fails), and its security review rates both services' exposure at 2.0 at
// most, on its scale of 10.
func TestSystemdUnits(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"wxlogin.service", "wxlogin-backup.service", "wxlogin-backup.timer"} {
		unit := readFile(t, filepath.Join("deploy", name))
		// The binary must exist where the unit says: the test's own stands in.
		unit = strings.ReplaceAll(unit, "/usr/local/bin/wxlogin", childBinary())
		path := filepath.Join(dir, name)
		testkit.WriteFile(t, path, unit)
		units = append(units, path)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, service := range units[:2] {
		out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=20", service).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v (exposure over 2.0)\n%s", filepath.Base(service), err, out)
		}
	}
	// A oneshot with no start timeout that hangs holds the timer for good:
	// it starts nothing while the last run is still going.
	backup := readFile(t, filepath.Join("deploy", "wxlogin-backup.service"))
	if m := regexp.MustCompile(`(?m)^TimeoutStartSec=(\d+)min$`).FindStringSubmatch(backup); m == nil {
		t.Error("deploy/wxlogin-backup.service has no TimeoutStartSec=<minutes>min")
	} else if minutes, _ := strconv.Atoi(m[1]); time.Duration(minutes)*time.Minute <= tools.DefaultBackupTimeout {
		t.Errorf("deploy/wxlogin-backup.service stops a run after %s min; want longer than wxlogin backup's own -timeout, %v", m[1], tools.DefaultBackupTimeout)
	}
	service := readFile(t, filepath.Join("deploy", "wxlogin.service"))
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=wxlogin", "ProtectSystem=strict", "LoadCredential=appsecret:", "Environment=WX_APPSECRET_FILE=%d/appsecret"} {
		if !strings.Contains(service, "\n"+want) {
			t.Errorf("deploy/wxlogin.service lacks %s", want)
		}
	}
}

// The backup unit's commands, run as systemd would run them (with its
// escapes undone and STATE_DIRECTORY set), back up a running wxlogin into
// a file that checks out whole, drop backups older than 14 days, and
// remove the temporary files of runs killed halfway, this wxlogin's and
// those of a wxlogin before it.
func TestTheBackupUnitsCommandBacksUp(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-admin-addr", "127.0.0.1:0")
	admin := regexp.MustCompile(`msg="admin listening" url=(\S+)/debug/pprof/`).FindStringSubmatch(s.logs.String())
	if admin == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logs.String())
	}
	post(t, "POST", s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "alice")+`"}`)

	unit := readFile(t, filepath.Join("deploy", "wxlogin-backup.service"))
	command := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=/bin/sh -c '(.*)'$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("deploy/wxlogin-backup.service has no %s=/bin/sh -c '…'", key)
		}
		c := strings.NewReplacer("$$", "$", "%%", "%").Replace(m[1])
		c = strings.ReplaceAll(c, "/usr/local/bin/wxlogin", childBinary())
		return strings.ReplaceAll(c, "http://127.0.0.1:6060", admin[1])
	}
	backups := t.TempDir()
	old := filepath.Join(backups, "users-20000101T000000Z.jsonl")
	testkit.WriteFile(t, old, "")
	month := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(old, month, month); err != nil {
		t.Fatal(err)
	}
	killed := []string{
		filepath.Join(backups, tools.BackupTempPrefix+"users-20000102T000000Z.jsonl.tmp123"),
		filepath.Join(backups, ".users-20000101T000000Z.jsonl.tmp456"), // as a wxlogin before this one named it
	}
	for _, k := range killed {
		testkit.WriteFile(t, k, "every user's data")
	}
	for _, key := range []string{"ExecStart", "ExecStartPost"} {
		sh := exec.Command("/bin/sh", "-c", command(key))
		sh.Env = []string{"STATE_DIRECTORY=" + backups, "WXLOGIN_TEST_CHILD=1", "PATH=" + os.Getenv("PATH")}
		if out, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", key, err, out)
		}
	}
	for _, k := range killed {
		if _, err := os.Stat(k); !os.IsNotExist(err) {
			t.Errorf("%s, left by a run killed halfway, is still there (stat: %v)", filepath.Base(k), err)
		}
	}
	made, _ := filepath.Glob(filepath.Join(backups, "users-*.jsonl"))
	if len(made) != 1 || made[0] == old {
		t.Fatalf("backups after a run: %v; want the new one alone", made)
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"wxlogin", "check", "-backup", made[0]}, func(string) string { return "" }, &out, &out); err != nil {
		t.Errorf("wxlogin check -backup %s: %v\n%s", made[0], err, out.String())
	}
	if !strings.Contains(out.String(), "1 user") {
		t.Errorf("the backup holds %q; want alice", out.String())
	}
}

// The nginx recipe, with only its addresses and paths changed for
// loopback: nginx -t accepts it, and a mini program's login through it
// works, with the client's address in wxlogin's access log (the client
// dials from 127.0.0.2, nginx from 127.0.0.1), and in nginx's, which holds
// neither the token nor the code.
func TestNginxRecipe(t *testing.T) {
	s := startServer(t, nil, "-data", t.TempDir(), "-trusted-proxies", "127.0.0.1")
	n := startNginx(t, strings.TrimPrefix(s.url, "http://"), "127.0.0.1:9")
	phone, site443, send := n.client, n.https, n.send
	var wxLogin struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(send("POST", site443+"/mock/wx.login", `{"user":"alice"}`).raw), &wxLogin); err != nil || wxLogin.Code == "" {
		t.Fatalf("the fake's wx.login through nginx: %v", err)
	}
	code := wxLogin.Code
	login := send("POST", site443+"/login", `{"code":"`+code+`"}`, "X-Forwarded-For", "6.6.6.6")
	token := dataOf[loginData](t, login).Token
	if login.env.Status != statusOK || token == "" {
		t.Fatalf("login through nginx = %s", login.raw)
	}
	if user := send("GET", site443+"/user", "", "Authorization", "Bearer "+token); user.env.Status != statusOK {
		t.Errorf("GET /user through nginx = %s", user.raw)
	}

	// The access log is written by a goroutine of its own.
	loginLine := regexp.MustCompile(`(?m)^.*msg=request method=POST path=/login .*$`)
	testkit.WaitFor(t, "the login's access log line", func() bool { return loginLine.MatchString(s.logs.String()) })
	if line := loginLine.FindString(s.logs.String()); !strings.Contains(line, " remote=127.0.0.2 proxy=127.0.0.1:") {
		t.Errorf("wxlogin's access log line of the login = %q; want remote=127.0.0.2, the client, and proxy=127.0.0.1, nginx", line)
	}
	access := readFile(t, filepath.Join(n.dir, "access.log"))
	if !strings.Contains(access, `127.0.0.2 [`) || !strings.Contains(access, `"POST /login HTTP/2.0" 200`) {
		t.Errorf("nginx's access log does not show the login from 127.0.0.2:\n%s", access)
	}
	for _, secret := range []string{token, code} {
		if strings.Contains(access, secret) {
			t.Errorf("nginx's access log holds %q:\n%s", secret, access)
		}
	}

	resp, err := phone.Get(n.http + "/user")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Errorf("plain HTTP = %d to %q; want a redirect to https", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, err := phone.Get(site443 + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ through nginx = %v, %v; want 404", resp, err)
	}
}

// nginxRun is deploy/nginx.conf running on loopback (startNginx).
type nginxRun struct {
	dir         string // its prefix: logs, temporary files
	http, https string // the sites' base URLs
	client      *http.Client
	// send sends a request with a JSON body and header's name, value
	// pairs, and reads wxlogin's envelope in the answer.
	send func(method, url, body string, header ...string) reply
}

// startNginx runs deploy/nginx.conf until the test ends: on free loopback
// ports, with a test certificate for both its sites, its logs in a scratch
// folder, wxlogin at wxloginAddr and the orders service at ordersAddr. Its
// client comes from 127.0.0.2 and trusts the certificate.
func startNginx(t *testing.T, wxloginAddr, ordersAddr string) nginxRun {
	t.Helper()
	nginx := needTool(t, "nginx", "nginx")
	dir := t.TempDir()
	cert, key := writeTestCertificate(t, dir, "login.example.com", "api.example.com")
	httpPort, httpsPort := freePort(t), freePort(t)
	site := readFile(t, filepath.Join("deploy", "nginx.conf"))
	for _, r := range [][2]string{
		{"listen 80;", "listen 127.0.0.1:" + strconv.Itoa(httpPort) + ";"},
		{"listen [::]:80;", ""},
		{"listen 443 ssl http2;", "listen 127.0.0.1:" + strconv.Itoa(httpsPort) + " ssl http2;"},
		{"listen [::]:443 ssl http2;", ""},
		{"/etc/letsencrypt/live/login.example.com/fullchain.pem", cert},
		{"/etc/letsencrypt/live/login.example.com/privkey.pem", key},
		{"/etc/letsencrypt/live/api.example.com/fullchain.pem", cert},
		{"/etc/letsencrypt/live/api.example.com/privkey.pem", key},
		{"/var/log/nginx/wxlogin.access.log", filepath.Join(dir, "access.log")},
		{"server 127.0.0.1:8080;", "server " + wxloginAddr + ";"},
		{"server 127.0.0.1:9000;", "server " + ordersAddr + ";"},
	} {
		if !strings.Contains(site, r[0]) {
			t.Fatalf("deploy/nginx.conf no longer has %q", r[0])
		}
		site = strings.ReplaceAll(site, r[0], r[1])
	}
	testkit.WriteFile(t, filepath.Join(dir, "site.conf"), site)
	testkit.WriteFile(t, filepath.Join(dir, "nginx.conf"), `worker_processes 1;
daemon off;
pid `+dir+`/nginx.pid;
error_log `+dir+`/error.log;
events { worker_connections 64; }
http {
	client_body_temp_path `+dir+`/body;
	proxy_temp_path `+dir+`/proxy;
	fastcgi_temp_path `+dir+`/fastcgi;
	uwsgi_temp_path `+dir+`/uwsgi;
	scgi_temp_path `+dir+`/scgi;
	include `+dir+`/site.conf;
}
`)
	conf := filepath.Join(dir, "nginx.conf")
	if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", conf) // its errors go to error.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // nginx's graceful stop
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(httpsPort))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx is not listening after 10 s (a port taken meanwhile?); its error.log:\n%s", b)
		}
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(readFile(t, cert)))
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	n := nginxRun{dir: dir, http: "http://127.0.0.1:" + strconv.Itoa(httpPort), https: "https://127.0.0.1:" + strconv.Itoa(httpsPort)}
	n.client = &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "login.example.com"},
			ForceAttemptHTTP2: true,
		},
	}
	n.send = func(method, url, body string, header ...string) reply {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", jsonCT)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := n.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return parseReply(t, resp)
	}
	return n
}

// The forward auth of deploy/nginx.conf, with the real nginx, on the file
// store and on Redis: a request with a live token reaches the service with
// the caller's identity in X-Wxlogin-* headers and without the token; one
// with no token, a made-up or a logged-out one never reaches it; and the
// X-Wxlogin-* headers a client sends are never passed on, not even the
// unionid of a user who has none.
func TestNginxForwardAuth(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		orders, ask := guardedOrders(t)
		s := startForwardAuthServer(t, store)
		n := startNginx(t, strings.TrimPrefix(s.url, "http://"), orders)
		checkForwardAuth(t, s, func(header ...string) (int, http.Header) {
			return ask(n.client, n.https+"/orders/recent", "api.example.com", header...)
		})
	})
}

// guardedOrders starts the service the forward auth recipes guard, and
// returns its address and ask, which sends it a request through a proxy
// (client, url, the Host header) with header's name, value pairs, and
// returns the proxy's status and, if the service was reached, the headers
// it got.
func guardedOrders(t *testing.T) (addr string, ask func(client *http.Client, url, host string, header ...string) (int, http.Header)) {
	t.Helper()
	seen := make(chan http.Header, 16)
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "your orders")
	}))
	t.Cleanup(orders.Close)
	return strings.TrimPrefix(orders.URL, "http://"), func(client *http.Client, url, host string, header ...string) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case h := <-seen:
			return resp.StatusCode, h
		default:
			return resp.StatusCode, nil // the service was not reached
		}
	}
}

// startForwardAuthServer is a mock-mode wxlogin on store with two apps,
// wxshop bound to an Open Platform account and wxsolo not, behind a proxy
// on 127.0.0.1.
func startForwardAuthServer(t *testing.T, store storeKind) *server {
	t.Helper()
	apps := filepath.Join(t.TempDir(), "apps.json")
	testkit.WriteFile(t, apps, `{"apps": [{"appid": "wxshop", "name": "Shop", "secret_env": "SHOP_SECRET"},
		{"appid": "wxsolo", "name": "Solo", "secret_env": "SOLO_SECRET", "unbound": true}]}`)
	env := map[string]string{"SHOP_SECRET": "shop-secret", "SOLO_SECRET": "solo-secret"}
	args := []string{"-apps", apps, "-mock", "-trusted-proxies", "127.0.0.1"}
	if store == onRedis {
		env["WXLOGIN_REDIS"] = "redis://" + testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always").Addr
	} else {
		args = append(args, "-data", t.TempDir())
	}
	return startServer(t, env, args...)
}

// checkForwardAuth checks a proxy's forward auth through ask, which sends
// a request to the guarded service with the header pairs given, and
// returns the proxy's status and, if the service was reached, the headers
// it got.
func checkForwardAuth(t *testing.T, s *server, ask func(header ...string) (int, http.Header)) {
	t.Helper()
	login := func(appID, user string) (token string, who map[string]string) {
		t.Helper()
		resp, err := client.Post(s.url+"/mock/wx.login", jsonCT, strings.NewReader(`{"user": "`+user+`", "appid": "`+appID+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var code struct{ Code string }
		err = jsonDecode(resp.Body, &code)
		resp.Body.Close()
		if err != nil || code.Code == "" {
			t.Fatalf("wx.login of %s in %s: %v", user, appID, err)
		}
		token = dataOf[loginData](t, post(t, http.MethodPost, s.url+"/login", jsonCT, `{"appid": "`+appID+`", "code": "`+code.Code+`"}`)).Token
		u := dataOf[userData](t, post(t, http.MethodGet, s.url+"/user", "", "", "Authorization", "Bearer "+token))
		return token, map[string]string{"X-Wxlogin-User": fmt.Sprint(u.ID), "X-Wxlogin-Person": fmt.Sprint(u.PersonID),
			"X-Wxlogin-Appid": appID, "X-Wxlogin-Openid": u.OpenID, "X-Wxlogin-Unionid": u.UnionID}
	}
	forged := []string{"X-Wxlogin-User", "1", "X-Wxlogin-Person", "1", "X-Wxlogin-Appid", "wxforged", "X-Wxlogin-Openid", "o-forged", "X-Wxlogin-Unionid", "u-forged"}
	alice, aliceIs := login("wxshop", "alice")
	bob, bobIs := login("wxsolo", "bob") // no unionid
	if aliceIs["X-Wxlogin-Unionid"] == "" || bobIs["X-Wxlogin-Unionid"] != "" {
		t.Fatalf("alice's unionid %q, bob's %q; want one for alice only", aliceIs["X-Wxlogin-Unionid"], bobIs["X-Wxlogin-Unionid"])
	}
	for _, tt := range []struct {
		name   string
		header []string
		want   map[string]string
	}{
		{"alice's token", []string{"Authorization", "Bearer " + alice}, aliceIs},
		{"alice's token, with headers of her own", append([]string{"Authorization", "Bearer " + alice}, forged...), aliceIs},
		{"bob's token in the token header, with a unionid of his own", append([]string{"token", bob}, forged...), bobIs},
	} {
		code, got := ask(tt.header...)
		if code != http.StatusOK || got == nil {
			t.Errorf("%s: HTTP %d, the service reached: %v; want 200 from the service", tt.name, code, got != nil)
			continue
		}
		for name, want := range tt.want {
			// No unionid is the header empty (Caddy) or left out (nginx):
			// never a value the client sent.
			if got.Get(name) != want {
				t.Errorf("%s: the service got %s %q; want %q", tt.name, name, got.Get(name), want)
			}
		}
		if got.Get("Authorization") != "" || got.Get("token") != "" {
			t.Errorf("%s: the service got the token", tt.name)
		}
	}
	out, _ := login("wxshop", "carol")
	post(t, http.MethodPost, s.url+"/logout", "", "", "Authorization", "Bearer "+out)
	for name, header := range map[string][]string{
		"no token, headers of its own": forged,
		"a made-up token":              {"Authorization", "Bearer 1.made-up-token-made-up-token-made-up-tok"},
		"a logged-out token":           {"Authorization", "Bearer " + out},
	} {
		if code, got := ask(header...); code != http.StatusUnauthorized || got != nil {
			t.Errorf("%s: HTTP %d, the service reached: %v; want 401, and the service never reached", name, code, got != nil)
		}
	}
}

// The Caddy recipe, its log written to a scratch folder: caddy validate
// accepts it.
func TestCaddyRecipe(t *testing.T) {
	caddy := needTool(t, "caddy", "caddy")
	dir := t.TempDir()
	file := readFile(t, filepath.Join("deploy", "Caddyfile"))
	if !strings.Contains(file, "/var/log/caddy/wxlogin.access.log") {
		t.Fatal("deploy/Caddyfile no longer logs to /var/log/caddy/wxlogin.access.log")
	}
	path := filepath.Join(dir, "Caddyfile")
	testkit.WriteFile(t, path, strings.ReplaceAll(file, "/var/log/caddy/wxlogin.access.log", filepath.Join(dir, "access.log")))
	cmd := exec.Command(caddy, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Errorf("caddy validate: %v\n%s", err, out)
	}
}

// The forward auth of deploy/Caddyfile, with the real Caddy, on the file
// store and on Redis, as TestNginxForwardAuth checks nginx's. The sites are
// served over plain HTTP on loopback: Caddy's certificates need a domain.
func TestCaddyForwardAuth(t *testing.T) {
	caddy := needTool(t, "caddy", "caddy")
	onEachStore(t, func(t *testing.T, store storeKind) {
		orders, ask := guardedOrders(t)
		s := startForwardAuthServer(t, store)
		dir := t.TempDir()
		loginPort, apiPort := freePort(t), freePort(t)
		file := readFile(t, filepath.Join("deploy", "Caddyfile"))
		for _, r := range [][2]string{
			{"login.example.com {", "http://127.0.0.1:" + strconv.Itoa(loginPort) + " {"},
			{"api.example.com {", "http://127.0.0.1:" + strconv.Itoa(apiPort) + " {"},
			{"reverse_proxy 127.0.0.1:8080", "reverse_proxy " + strings.TrimPrefix(s.url, "http://")},
			{"forward_auth 127.0.0.1:8080", "forward_auth " + strings.TrimPrefix(s.url, "http://")},
			{"reverse_proxy 127.0.0.1:9000", "reverse_proxy " + orders},
			{"/var/log/caddy/wxlogin.access.log", filepath.Join(dir, "access.log")},
		} {
			if !strings.Contains(file, r[0]) {
				t.Fatalf("deploy/Caddyfile no longer has %q", r[0])
			}
			file = strings.ReplaceAll(file, r[0], r[1])
		}
		// The Caddy here (Debian's 2.6) overwrites a client's header even
		// with an empty answer; newer ones skip an empty one, so the
		// recipe must delete the client's first, which this Caddy cannot
		// show: the recipe is read for it.
		route := file[strings.Index(file, "route /orders/* {"):]
		for _, name := range []string{"User", "Person", "Appid", "Openid", "Unionid"} {
			if i := strings.Index(route, "request_header -X-Wxlogin-"+name+"\n"); i < 0 || i > strings.Index(route, "forward_auth") {
				t.Errorf("deploy/Caddyfile does not delete the client's X-Wxlogin-%s before forward_auth", name)
			}
		}
		path := filepath.Join(dir, "Caddyfile")
		testkit.WriteFile(t, path, "{\n\tadmin off\n\tauto_https off\n}\n\n"+file)
		cmd := exec.Command(caddy, "run", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		logs := &testkit.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			if t.Failed() {
				t.Logf("Caddy's log:\n%s", logs)
			}
		})
		api := "http://127.0.0.1:" + strconv.Itoa(apiPort)
		testkit.WaitWithin(t, 10*time.Second, "Caddy listening", func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(apiPort))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		checkForwardAuth(t, s, func(header ...string) (int, http.Header) {
			return ask(client, api+"/orders/recent", "", header...)
		})
	})
}

// writeTestCertificate writes a self-signed certificate for hosts and
// 127.0.0.1, and its key, in dir, and returns their paths.
func writeTestCertificate(t *testing.T, dir string, hosts ...string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: hosts[0]},
		DNSNames:     hosts,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testkit.WriteFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	testkit.WriteFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certPath, keyPath
}

// readFile is the content of path, or the test fails.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// freePort is a loopback port free now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
