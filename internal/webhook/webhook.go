// Package webhook signs what wxlogin posts to other services as the
// Standard Webhooks specification (standardwebhooks.com) has it, so that a
// receiver checks it with the specification's own libraries: a secret
// written "whsec_" and the key in base64, and three headers, webhook-id,
// webhook-timestamp (Unix seconds) and webhook-signature, "v1," and the
// base64 of the HMAC-SHA256 of "<id>.<timestamp>.<body>" under the key.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed message.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// secretPrefix starts a secret as the specification writes it.
const secretPrefix = "whsec_"

// Key lengths the specification allows: at least 24 bytes, at most 64.
const (
	minKeyBytes = 24
	maxKeyBytes = 64
)

// Secret is the key messages are signed with. Printed, it shows no key
// (String); Text is its whsec_ form, for the receiver's configuration.
type Secret struct{ key []byte }

// ErrBadSecret is a secret that is not "whsec_" and 24 to 64 bytes in
// base64. It never quotes the text.
var ErrBadSecret = errors.New(`not a webhook secret: want "whsec_" and 24 to 64 bytes in base64`)

// ParseSecret reads a secret in its whsec_ form; white space around it (a
// secret file's newline) is ignored.
func ParseSecret(text string) (Secret, error) {
	encoded, ok := strings.CutPrefix(strings.TrimSpace(text), secretPrefix)
	if !ok {
		return Secret{}, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) < minKeyBytes || len(key) > maxKeyBytes {
		return Secret{}, ErrBadSecret
	}
	return Secret{key: key}, nil
}

// NewSecret is a new random secret of 32 bytes.
func NewSecret() Secret {
	key := make([]byte, 32)
	rand.Read(key) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return Secret{key: key}
}

// Text is the secret in its whsec_ form.
func (s Secret) Text() string { return secretPrefix + base64.StdEncoding.EncodeToString(s.key) }

// String shows that there is a secret, never the key: a secret printed in
// a log line or an error by mistake leaks nothing.
func (s Secret) String() string { return secretPrefix + "…" }

// Sign is the webhook-signature header of a message: its id, when it is
// sent, and its body, exactly as sent.
func (s Secret) Sign(id string, at time.Time, body []byte) string {
	return string(newSigner(s).appendSignature(nil, id, at, body))
}

// signer signs message after message with one secret, its HMAC and
// buffer reused: the sender signs each event it posts.
type signer struct {
	mac     hash.Hash
	scratch []byte
}

func newSigner(s Secret) *signer { return &signer{mac: hmac.New(sha256.New, s.key)} }

// appendSignature appends to buf the webhook-signature header of a
// message, as Sign has it.
func (g *signer) appendSignature(buf []byte, id string, at time.Time, body []byte) []byte {
	g.mac.Reset()
	g.scratch = append(strconv.AppendInt(append(append(g.scratch[:0], id...), '.'), at.Unix(), 10), '.')
	g.mac.Write(g.scratch)
	g.mac.Write(body)
	g.scratch = g.mac.Sum(g.scratch[:0])
	return base64.StdEncoding.AppendEncode(append(buf, "v1,"...), g.scratch)
}

// SetHeaders sets the three headers of a message on h.
func (s Secret) SetHeaders(h http.Header, id string, at time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, at, body))
}

// Format is String, whatever the verb: %#v, %d or %x of a secret shows no
// key either.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }
