package fakewechat

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/request"
)

// This file makes the fake WeChat fail on purpose, so that tests and the
// soak script can check what wxlogin does when WeChat misbehaves. POST
// /mock/faults sets a fraction of the server API calls (code2Session,
// stable_token, getuserphonenumber, checksession) to fail, and the ways
// they fail, taken in turn; GET /mock/faults says what was set and what
// was injected. A failed call fails before the fake looks at it, so it
// never spends a code.

// faultKinds are the ways a call can fail, as WeChat or the network in
// between has been seen to.
var faultKinds = []string{
	"system-error", // errcode -1: WeChat is busy (WECHAT.md §1), to be retried
	"rate-limit",   // errcode 45011: the app's minute quota is spent
	"http-500",     // a bare 500 from a gateway
	"html",         // 200 with an HTML error page, as a captive portal or proxy sends
	"truncated",    // 200 with JSON cut off in the middle
	"hang",         // no answer until the caller gives up
	"reset",        // the connection is reset, with no answer
}

// slowKind is not a failure but a delay: the call is answered as usual,
// after slowDelay, as WeChat answers on a slow day. It is set only by name,
// never among the default kinds: wxlogin conform makes WeChat slow so that
// two logins it sends at once meet inside the exchange, as they do against
// WeChat's 50 to 200 ms.
const (
	slowKind  = "slow"
	slowDelay = 300 * time.Millisecond
)

// FaultKinds lists the ways a call can be made to fail, all of which
// POST /mock/faults sets when it names none.
func FaultKinds() []string { return slices.Clone(faultKinds) }

// maxHang bounds a "hang", in case the caller never gives up.
const maxHang = time.Minute

// faultInjector decides which server API calls fail, and how. The choice is
// deterministic: with rate r, exactly the calls that take the running count
// of r·calls past a whole number fail, so faults are spread evenly and a test
// with rate 1 knows every call fails.
type faultInjector struct {
	mu       sync.Mutex // guards the fields below
	rate     float64
	kinds    []string
	calls    int            // server API calls since the faults were set
	next     int            // the index in kinds of the next fault
	injected map[string]int // faults injected since they were set, by kind
}

// faultSettings is the body of POST /mock/faults and part of GET's answer.
type faultSettings struct {
	Rate  float64  `json:"rate"`  // 0 to 1: the fraction of calls that fail
	Kinds []string `json:"kinds"` // default: all of faultKinds
}

// set replaces the settings and starts counting afresh.
func (fi *faultInjector) set(s faultSettings) error {
	if !(s.Rate >= 0 && s.Rate <= 1) {
		return fmt.Errorf("rate %v is not between 0 and 1", s.Rate)
	}
	if len(s.Kinds) == 0 {
		s.Kinds = faultKinds
	}
	for _, k := range s.Kinds {
		if !slices.Contains(faultKinds, k) && k != slowKind {
			return fmt.Errorf("unknown fault %q (known: %s, and %s)", k, strings.Join(faultKinds, ", "), slowKind)
		}
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.rate, fi.kinds = s.Rate, slices.Clone(s.Kinds)
	fi.calls, fi.next, fi.injected = 0, 0, map[string]int{}
	return nil
}

// pick counts a call and returns the fault it is to meet, or "".
func (fi *faultInjector) pick() string {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	before := int(float64(fi.calls) * fi.rate)
	fi.calls++
	if int(float64(fi.calls)*fi.rate) == before || len(fi.kinds) == 0 {
		return ""
	}
	kind := fi.kinds[fi.next%len(fi.kinds)]
	fi.next++
	fi.injected[kind]++
	return kind
}

// faultReport is GET /mock/faults' answer.
type faultReport struct {
	faultSettings
	Calls    int            `json:"calls"`
	Injected map[string]int `json:"injected"`
}

func (fi *faultInjector) report() faultReport {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	r := faultReport{faultSettings{fi.rate, slices.Clone(fi.kinds)}, fi.calls, map[string]int{}}
	for k, n := range fi.injected {
		r.Injected[k] = n
	}
	if r.Kinds == nil {
		r.Kinds = []string{}
	}
	return r
}

// failing makes a share of the calls to h fail, as set.
func (fi *faultInjector) failing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch fi.pick() {
		case "":
			h.ServeHTTP(w, r)
		case slowKind:
			t := time.NewTimer(slowDelay)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			h.ServeHTTP(w, r)
		case "system-error":
			writeFaultJSON(w, `{"errcode":-1,"errmsg":"system error"}`)
		case "rate-limit":
			writeFaultJSON(w, `{"errcode":45011,"errmsg":"api minute-quota reach limit  mustslower  retry next minute"}`)
		case "http-500":
			http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		case "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n"))
		case "truncated":
			writeFaultJSON(w, `{"session_key":"tiihtNczf5v6AKRyjwEUhQ==","openid":"oGZUI0egBJY1zhBYw2K`)
		case "hang":
			// The server notices the caller hanging up only once the body is
			// read: until then it does not watch the connection.
			io.Copy(io.Discard, r.Body)
			t := time.NewTimer(maxHang)
			defer t.Stop()
			select {
			case <-r.Context().Done():
			case <-t.C:
			}
		case "reset":
			resetConnection(w)
		}
	})
}

// writeFaultJSON answers as WeChat does, text/plain with a JSON body.
func writeFaultJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(body))
}

// resetConnection drops the request's connection with a TCP reset, the way
// a crashed middlebox does. Where the connection cannot be taken over, the
// response is aborted instead, which closes it.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0) // Close now sends RST, not FIN.
	}
	conn.Close()
}

// handleFaults serves /mock/faults: POST sets, GET reports. The body is
// JSON whatever its Content-Type, as for the fake's /mock/wx.* endpoints:
// curl -d sends JSON labelled as a form.
func (fi *faultInjector) handleFaults() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			var s faultSettings
			if err := request.DecodeJSONBody(r, &s); err != nil {
				writeRequestError(w, err)
				return
			}
			if err := fi.set(s); err != nil {
				writeBadRequest(w, err.Error())
				return
			}
		}
		writeOK(w, fi.report())
	})
}
