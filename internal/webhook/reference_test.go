package webhook

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// verifyScript is the receiver's check with the Standard Webhooks
// project's own JavaScript library: the secret in WEBHOOK_SECRET, the body
// and the headers (as JSON) as arguments; "ok", or why not and exit 1.
const verifyScript = `
const { Webhook } = require('standardwebhooks');
try {
  new Webhook(process.env.WEBHOOK_SECRET).verify(process.argv[1], JSON.parse(process.argv[2]));
  console.log('ok');
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
`

// TestTheReferenceLibraryVerifiesOurSignatures signs messages here and has
// the standardwebhooks npm package (pinned, test-only, in tools/webhooks)
// check them: it accepts each as sent, and refuses one whose body, id or
// secret differ, and one sent too long ago.
func TestTheReferenceLibraryVerifiesOurSignatures(t *testing.T) {
	modules, err := filepath.Abs("../../tools/webhooks/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "standardwebhooks")); err != nil {
		if os.Getenv("WXLOGIN_REQUIRE_TOOLS") != "" {
			t.Fatal("standardwebhooks is not installed (cd tools/webhooks && npm ci), and WXLOGIN_REQUIRE_TOOLS is set")
		}
		testkit.SkipMissingTool(t, "standardwebhooks is not installed: (cd tools/webhooks && npm ci)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		testkit.SkipMissingTool(t, "node is not installed")
	}
	verify := func(secret Secret, body string, h http.Header) error {
		t.Helper()
		headers := map[string]string{}
		for name := range h {
			headers[strings.ToLower(name)] = h.Get(name)
		}
		encoded, _ := json.Marshal(headers)
		cmd := exec.Command("node", "-e", verifyScript, body, string(encoded))
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "WEBHOOK_SECRET="+secret.Text())
		if out, err := cmd.CombinedOutput(); err != nil {
			return &refusal{strings.TrimSpace(string(out))}
		}
		return nil
	}
	secret, other := NewSecret(), NewSecret()
	body := `{"type":"user.created","timestamp":"2026-12-07T10:00:00Z","data":{"user_id":1,"appid":"wxapp","person_id":1}}`
	now := time.Now()
	signed := func(id string, at time.Time) http.Header {
		h := http.Header{}
		secret.SetHeaders(h, id, at, []byte(body))
		return h
	}
	if err := verify(secret, body, signed("msg_1", now)); err != nil {
		t.Errorf("a message as sent: refused: %v", err)
	}
	otherID := signed("msg_1", now)
	otherID.Set(HeaderID, "msg_2")
	for what, c := range map[string]struct {
		secret Secret
		body   string
		h      http.Header
	}{
		"another body":         {secret, strings.Replace(body, `"user_id":1`, `"user_id":2`, 1), signed("msg_1", now)},
		"another id":           {secret, body, otherID},
		"another secret":       {other, body, signed("msg_1", now)},
		"sent ten minutes ago": {secret, body, signed("msg_1", now.Add(-10*time.Minute))},
	} {
		if err := verify(c.secret, c.body, c.h); err == nil {
			t.Errorf("a message with %s: accepted; want it refused", what)
		}
	}
}

// refusal is why the reference library refused a message.
type refusal struct{ why string }

func (r *refusal) Error() string { return r.why }
