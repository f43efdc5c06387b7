package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignMatchesTheSpecificationsVector signs the example the Standard
// Webhooks reference libraries test with.
func TestSignMatchesTheSpecificationsVector(t *testing.T) {
	s, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s; want %s", got, want)
	}
	h := http.Header{}
	s.SetHeaders(h, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if h.Get("webhook-id") != "msg_p5jXN8AQM9LWM0D4loKWxJek" || h.Get("webhook-timestamp") != "1614265330" || h.Get("webhook-signature") != got {
		t.Errorf("SetHeaders = %v", h)
	}
}

func TestParseSecret(t *testing.T) {
	for _, tt := range []struct {
		text string
		ok   bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", true}, // a file's newline
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},         // no prefix
		{"whsec_not base64!", false},
		{"whsec_" + strings.Repeat("A", 16), false},  // 12 bytes: too short
		{"whsec_" + strings.Repeat("A", 100), false}, // 75 bytes: too long
		{"", false},
	} {
		s, err := ParseSecret(tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("ParseSecret(%q) = %v; want ok %v", tt.text, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrBadSecret) || strings.Contains(err.Error(), "MfKQ")) {
			t.Errorf("ParseSecret(%q) = %v; want ErrBadSecret, not quoting the text", tt.text, err)
		}
		if err == nil && s.Text() != strings.TrimSpace(tt.text) {
			t.Errorf("ParseSecret(%q).Text() = %q; want it back", tt.text, s.Text())
		}
	}
}

// A secret printed by mistake shows no key.
func TestSecretPrintsNoKey(t *testing.T) {
	s := NewSecret()
	for _, printed := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s", s, s)} {
		if strings.Contains(printed, strings.TrimPrefix(s.Text(), "whsec_")) {
			t.Errorf("a secret printed as %q shows its key", printed)
		}
	}
	if back, err := ParseSecret(s.Text()); err != nil || back.Text() != s.Text() {
		t.Errorf("a new secret read back = %v, %v", back.Text(), err)
	}
}

// Whatever the verb, a secret prints as whsec_…: %d of its key's bytes
// no more than %v.
func TestSecretPrintsNoKeyWhateverTheVerb(t *testing.T) {
	s := NewSecret()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%o", "%b", "%c", "%U"} {
		if got := fmt.Sprintf(verb, s); got != "whsec_…" {
			t.Errorf("%s of a secret = %s; want whsec_…", verb, got)
		}
	}
}
