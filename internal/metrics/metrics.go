// Package metrics is what wxlogin counts while it serves, for GET /metrics
// on the admin address: counters, gauges and histograms in Prometheus's
// text format (version 0.0.4), written with the standard library. Callers
// say what happened in plain values (a route, a status, an API's name): it
// reads none of their types. Labels hold only what wxlogin defines
// (routes, status codes, WeChat's API names and errcodes), never a token,
// openid or address, and each family keeps at most maxSeries of them, so
// that no input can grow it without bound. The build the binary knows of
// itself (BuildInfo) is here too: -version prints it, and
// wxlogin_build_info shows it.
package metrics

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics is what wxlogin counts while it serves. A nil *Metrics counts
// nothing, for the tests and tools that need none.
type Metrics struct {
	build BuildInfo

	requests     *counterVec // route, code
	logins       *counterVec // status, errcode
	limited      atomic.Uint64
	wechatCalls  *counterVec   // api, outcome, errcode
	wechatTime   *histogramVec // api
	fsyncTime    *histogramVec // no labels
	fsyncFailing atomic.Uint64
	webhookPosts *counterVec // outcome

	// The webhook's state, as its sender last saw it (-webhook).
	webhookOn       atomic.Bool
	webhookCursor   atomic.Int64
	webhookOldestAt atomic.Int64 // Unix ns of the oldest event not taken; 0 for none

	// Users and LiveTokens, set before the admin listener starts, are read
	// when scraped; nil where the store does not count them cheaply (Redis).
	Users, LiveTokens func() int
}

// New is a Metrics of the binary build, with nothing counted yet.
func New(build BuildInfo) *Metrics {
	return &Metrics{
		build:        build,
		requests:     newCounterVec("route", "code"),
		logins:       newCounterVec("status", "errcode"),
		wechatCalls:  newCounterVec("api", "outcome", "errcode"),
		wechatTime:   newHistogramVec([]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "api"),
		fsyncTime:    newHistogramVec([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}),
		webhookPosts: newCounterVec("outcome"),
	}
}

// WebhookPosted counts one post of an event to -webhook: "taken" (2xx),
// "refused" (another status) or "failed" (no answer).
func (m *Metrics) WebhookPosted(outcome string) {
	if m == nil {
		return
	}
	m.webhookOn.Store(true)
	m.webhookPosts.inc(outcome)
}

// WebhookState records how far -webhook has delivered (the cursor), and
// when the oldest event it has not delivered was made (zero for none).
func (m *Metrics) WebhookState(cursor int64, oldest time.Time) {
	if m == nil {
		return
	}
	m.webhookOn.Store(true)
	m.webhookCursor.Store(cursor)
	if oldest.IsZero() {
		m.webhookOldestAt.Store(0)
	} else {
		m.webhookOldestAt.Store(oldest.UnixNano())
	}
}

// Request counts one answered request: its route (the mux's pattern, ""
// where none matched) and HTTP status.
func (m *Metrics) Request(route string, code int) {
	if m == nil {
		return
	}
	var room [96]byte // the series' key, without an allocation
	key := strconv.AppendInt(append(append(room[:0], routeLabel(route)...), '\xff'), int64(code), 10)
	m.requests.incJoined(key, func() []string { return []string{routeLabel(route), strconv.Itoa(code)} })
}

// Login counts one answer to POST /login: its envelope status and WeChat's
// errcode (0 for none).
func (m *Metrics) Login(status, errcode int) {
	if m == nil {
		return
	}
	var room [48]byte // the series' key, without an allocation
	key := strconv.AppendInt(append(strconv.AppendInt(room[:0], int64(status), 10), '\xff'), int64(errcode), 10)
	m.logins.incJoined(key, func() []string { return []string{strconv.Itoa(status), strconv.Itoa(errcode)} })
}

// LoginLimited counts one login refused by the login limit.
func (m *Metrics) LoginLimited() {
	if m == nil {
		return
	}
	m.limited.Add(1)
}

// routeLabel is a request's route as a label: the mux's pattern, or
// "unmatched" for the requests no route matched.
func routeLabel(route string) string {
	if route == "" {
		return "unmatched"
	}
	return route
}

// WechatCall counts one call to WeChat's api: how it ended ("ok",
// "errcode", "http_status", "timeout", "error") and WeChat's errcode (0
// for none), and how long it took.
func (m *Metrics) WechatCall(api, outcome string, errcode int, took time.Duration) {
	if m == nil {
		return
	}
	m.wechatCalls.inc(api, outcome, strconv.Itoa(errcode))
	m.wechatTime.observe(took.Seconds(), api)
}

// Fsynced records one fsync of the user store's journal.
func (m *Metrics) Fsynced(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.fsyncTime.observe(took.Seconds())
	if err != nil {
		m.fsyncFailing.Add(1)
	}
}

// Handler serves the metrics in the text format.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(m.appendText(nil))
	})
}

// appendText writes every family, in a fixed order.
func (m *Metrics) appendText(b []byte) []byte {
	b = appendFamily(b, "wxlogin_build_info", "gauge", "The build: module version, VCS revision and Go release; always 1.")
	b = appendSample(b, "wxlogin_build_info", []string{"version", "revision", "goversion"},
		[]string{m.build.version, m.build.revision, m.build.goVersion}, 1)
	b = m.requests.appendText(b, "wxlogin_http_requests_total", "Requests answered, by route (the mux's pattern) and HTTP status.")
	b = m.logins.appendText(b, "wxlogin_logins_total", "POST /login answers, by envelope status and WeChat's errcode (0: none).")
	b = appendFamily(b, "wxlogin_login_limited_total", "counter", "Logins refused by the login limit (status 7).")
	b = appendSample(b, "wxlogin_login_limited_total", nil, nil, float64(m.limited.Load()))
	b = m.wechatCalls.appendText(b, "wxlogin_wechat_calls_total", "Calls to WeChat, by API, outcome (ok, errcode, http_status, timeout, error) and errcode.")
	b = m.wechatTime.appendText(b, "wxlogin_wechat_call_duration_seconds", "How long calls to WeChat took, by API.")
	b = m.fsyncTime.appendText(b, "wxlogin_store_fsync_duration_seconds", "How long the user store's journal fsyncs took.")
	b = appendFamily(b, "wxlogin_store_fsync_failures_total", "counter", "Failed fsyncs of the user store's journal; after one, writes are refused until a restart.")
	b = appendSample(b, "wxlogin_store_fsync_failures_total", nil, nil, float64(m.fsyncFailing.Load()))
	if m.webhookOn.Load() {
		b = m.webhookPosts.appendText(b, "wxlogin_webhook_posts_total", "Posts of events to -webhook, by outcome: taken (2xx), refused (another status), failed (no answer).")
		b = appendFamily(b, "wxlogin_webhook_delivered_seq", "gauge", "The seq through which every event is delivered, as this instance last saw it.")
		b = appendSample(b, "wxlogin_webhook_delivered_seq", nil, nil, float64(m.webhookCursor.Load()))
		age := 0.0
		if at := m.webhookOldestAt.Load(); at != 0 {
			age = max(0, time.Since(time.Unix(0, at)).Seconds())
		}
		b = appendFamily(b, "wxlogin_webhook_oldest_undelivered_seconds", "gauge", "How old the oldest event not yet delivered is (0: none waits); it grows while the receiver refuses.")
		b = appendSample(b, "wxlogin_webhook_oldest_undelivered_seconds", nil, nil, age)
	}
	if m.Users != nil {
		b = appendFamily(b, "wxlogin_users", "gauge", "Users in the store, erased ones not counted.")
		b = appendSample(b, "wxlogin_users", nil, nil, float64(m.Users()))
	}
	if m.LiveTokens != nil {
		b = appendFamily(b, "wxlogin_tokens_live", "gauge", "Live tokens, as the last sweep (every minute) counted them.")
		b = appendSample(b, "wxlogin_tokens_live", nil, nil, float64(m.LiveTokens()))
	}
	return b
}

// maxSeries bounds the label sets of one family; past it, new ones are
// counted under the value "other" for every label.
const maxSeries = 500

// counterVec is a family of counters, one per label set.
type counterVec struct {
	labels []string
	mu     sync.Mutex
	series map[string]*counterSeries // by the label values, joined by \xff
}

type counterSeries struct {
	values []string
	n      atomic.Uint64
}

func newCounterVec(labels ...string) *counterVec {
	return &counterVec{labels: labels, series: map[string]*counterSeries{}}
}

func (v *counterVec) inc(values ...string) {
	v.mu.Lock()
	key, values := seriesKey(v.series, values)
	s, ok := v.series[key]
	if !ok {
		s = &counterSeries{values: values}
		v.series[key] = s
	}
	v.mu.Unlock()
	s.n.Add(1)
}

// incJoined is inc for label values that key holds already joined: a
// series already held is counted without an allocation; values makes
// them for one that is not.
func (v *counterVec) incJoined(key []byte, values func() []string) {
	v.mu.Lock()
	s, ok := v.series[string(key)]
	v.mu.Unlock()
	if !ok {
		v.inc(values()...)
		return
	}
	s.n.Add(1)
}

// seriesKey is the key, and the label values, that an observation with
// values counts under in a family: its own, unless the family is full and
// does not hold it yet, where it counts as "other" for every label.
func seriesKey[S any](series map[string]S, values []string) (string, []string) {
	key := strings.Join(values, "\xff")
	if _, held := series[key]; held || len(series) < maxSeries {
		return key, values
	}
	other := slices.Repeat([]string{"other"}, len(values))
	return strings.Join(other, "\xff"), other
}

func (v *counterVec) appendText(b []byte, name, help string) []byte {
	b = appendFamily(b, name, "counter", help)
	v.mu.Lock()
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := v.series[k]
		b = appendSample(b, name, v.labels, s.values, float64(s.n.Load()))
	}
	v.mu.Unlock()
	return b
}

// histogramVec is a family of histograms, one per label set, with the
// same buckets (upper bounds, in seconds).
type histogramVec struct {
	labels  []string
	buckets []float64
	mu      sync.Mutex // guards series and each histogram's counts
	series  map[string]*histogram
}

type histogram struct {
	values []string
	counts []uint64 // per bucket, not cumulative; the last is past every bound
	sum    float64
	count  uint64
}

func newHistogramVec(buckets []float64, labels ...string) *histogramVec {
	return &histogramVec{labels: labels, buckets: buckets, series: map[string]*histogram{}}
}

func (v *histogramVec) observe(x float64, values ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key, values := seriesKey(v.series, values)
	h, ok := v.series[key]
	if !ok {
		h = &histogram{values: values, counts: make([]uint64, len(v.buckets)+1)}
		v.series[key] = h
	}
	i, _ := slices.BinarySearch(v.buckets, x) // the first bound ≥ x
	h.counts[i]++
	h.sum += x
	h.count++
}

func (v *histogramVec) appendText(b []byte, name, help string) []byte {
	b = appendFamily(b, name, "histogram", help)
	v.mu.Lock()
	defer v.mu.Unlock()
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	labels := append(slices.Clip(v.labels), "le")
	for _, k := range keys {
		h := v.series[k]
		var cumulative uint64
		for i, bound := range append(slices.Clip(v.buckets), math.Inf(1)) {
			cumulative += h.counts[i]
			b = appendSample(b, name+"_bucket", labels, append(slices.Clip(h.values), formatFloat(bound)), float64(cumulative))
		}
		b = appendSample(b, name+"_sum", v.labels, h.values, h.sum)
		b = appendSample(b, name+"_count", v.labels, h.values, float64(h.count))
	}
	return b
}

func appendFamily(b []byte, name, kind, help string) []byte {
	return fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// appendSample writes one line: name{label="value",…} value.
func appendSample(b []byte, name string, labels, values []string, v float64) []byte {
	b = append(b, name...)
	if len(labels) > 0 {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l...)
			b = append(b, `="`...)
			b = appendLabelValue(b, values[i])
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = append(b, formatFloat(v)...)
	return append(b, '\n')
}

// appendLabelValue escapes a label value as the text format requires:
// backslash, double quote and line feed.
func appendLabelValue(b []byte, v string) []byte {
	for i := range len(v) {
		switch v[i] {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, v[i])
		}
	}
	return b
}

func formatFloat(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
