package conform

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The results a check can have: PASS, SKIPPED, or its severity when it
// found what it looks for.
const (
	ResultPass    = "PASS"
	ResultSkipped = "SKIPPED"
)

// Result is a check's verdict, with what it saw.
type Result struct {
	Check
	Result   string        `json:"result"`
	Got      string        `json:"got,omitempty"`
	Skipped  string        `json:"skipped,omitempty"`
	Evidence []string      `json:"evidence"`
	Took     time.Duration `json:"took_ns"`
	// Expected is set when the expected-failures file lists the check;
	// Unexpected says why the result fails the run, "" if it does not.
	Expected   bool   `json:"expected,omitempty"`
	Unexpected string `json:"unexpected,omitempty"`
}

// failed reports whether the check found what it looks for.
func (r Result) failed() bool { return r.Result != ResultPass && r.Result != ResultSkipped }

// runAll runs checks one after another: they share the fake's faults.
func (r *runner) runAll(ctx context.Context, checks []Check) []Result {
	routes := r.p.routes()
	var results []Result
	for _, c := range checks {
		res := Result{Check: c, Evidence: []string{}}
		var o outcome
		for _, need := range c.needs {
			if routes[need] == nil {
				o = skip("the profile has no " + need + " route")
			}
		}
		start := time.Now()
		if o.skip == "" {
			o = c.run(ctx, r)
		}
		res.Took = time.Since(start)
		switch {
		case o.skip != "":
			res.Result, res.Skipped = ResultSkipped, o.skip
		case o.failed:
			res.Result, res.Got = string(c.Severity), r.redact(o.got)
		default:
			res.Result = ResultPass
		}
		for _, e := range o.evidence {
			res.Evidence = append(res.Evidence, r.redact(e))
		}
		results = append(results, res)
	}
	return results
}

// markExpected sets each result's Expected and Unexpected, and returns how
// many results fail the run: a FAIL not expected, or an expected failure
// that did not happen (so that a fix is noticed and its allowance removed).
func markExpected(results []Result, expected map[string]bool) int {
	n := 0
	for i := range results {
		res := &results[i]
		res.Expected = expected[res.ID]
		switch {
		case res.Expected && res.Result == ResultPass:
			res.Unexpected = "expected to fail, and passed: remove it from the expected file"
		case !res.Expected && res.Result == string(SevFail):
			res.Unexpected = "failed"
		}
		if res.Unexpected != "" {
			n++
		}
	}
	return n
}

// loadExpected reads an expected-failures file: a check id a line, with #
// comments; an id the catalogue does not have is an error, so that a typo
// allows nothing.
func loadExpected(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("conform -expected: %w", err)
	}
	defer f.Close()
	known := map[string]bool{}
	for _, c := range catalogue() {
		known[c.ID] = true
	}
	expected := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if !known[fields[0]] {
			return nil, fmt.Errorf("conform -expected: %s:%d: no check %q (wxlogin conform -list)", path, line, fields[0])
		}
		expected[fields[0]] = true
	}
	return expected, sc.Err()
}

// selectChecks returns the checks -only names (plans or ids), all for "".
func selectChecks(only string) ([]Check, error) {
	all := catalogue()
	if only == "" {
		return all, nil
	}
	names := strings.Split(only, ",")
	var picked []Check
	for _, c := range all {
		if slices.Contains(names, c.ID) || slices.Contains(names, c.Plan) {
			picked = append(picked, c)
		}
	}
	for _, name := range names {
		if !slices.ContainsFunc(all, func(c Check) bool { return c.ID == name || c.Plan == name }) {
			return nil, fmt.Errorf("conform -only: no plan or check %q (wxlogin conform -list)", name)
		}
	}
	return picked, nil
}

// writeTable writes the verdict for people: a line a check, then what each
// failure saw, its rule and its fix.
func writeTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLAN\tCHECK\tRESULT\tREASON")
	counts := map[string]int{}
	for _, res := range results {
		mark := res.Result
		if res.Expected && res.failed() {
			mark += " (expected)"
		}
		if res.Unexpected != "" && res.Result == ResultPass {
			mark += " (expected to fail)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Plan, res.ID, mark, res.Reason)
		counts[res.Result]++
	}
	tw.Flush()
	for _, res := range results {
		if !res.failed() && res.Result != ResultSkipped {
			continue
		}
		fmt.Fprintf(w, "\n%s %s\n", res.Result, res.ID)
		if res.Skipped != "" {
			fmt.Fprintf(w, "  skipped: %s\n", res.Skipped)
			continue
		}
		fmt.Fprintf(w, "  got:  %s\n  rule: %s\n  hint: %s\n", res.Got, res.Rule, res.Hint)
		for _, e := range res.Evidence {
			fmt.Fprintf(w, "  seen: %s\n", e)
		}
	}
	fmt.Fprintf(w, "\n%d checks: %d PASS, %d FAIL, %d WARN, %d INFO, %d SKIPPED\n", len(results),
		counts[ResultPass], counts[string(SevFail)], counts[string(SevWarn)], counts[string(SevInfo)], counts[ResultSkipped])
}

// writeTAP writes the verdict as TAP version 13. A failure the expected
// file allows, and a WARN or INFO, is a TODO: reported, not failing.
func writeTAP(w io.Writer, results []Result) {
	fmt.Fprintf(w, "TAP version 13\n1..%d\n", len(results))
	for i, res := range results {
		status, directive := "ok", ""
		switch {
		case res.Result == ResultSkipped:
			directive = " # SKIP " + res.Skipped
		case res.Unexpected != "":
			status = "not ok"
		case res.failed():
			status, directive = "not ok", " # TODO "+res.Result+": "+res.Got
		}
		fmt.Fprintf(w, "%s %d - %s%s\n", status, i+1, res.ID, directive)
		if res.failed() || res.Unexpected != "" {
			fmt.Fprintf(w, "  ---\n  severity: %s\n  got: %q\n  rule: %q\n  hint: %q\n  ...\n", res.Severity, res.Got, res.Rule, res.Hint)
		}
	}
}

// writeJUnit writes the verdict as JUnit XML: a testsuite a plan, a
// testcase a check; a FAIL is a failure, a WARN or INFO a passing case
// with the finding in system-out.
func writeJUnit(w io.Writer, results []Result) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
	type skipped struct {
		Message string `xml:"message,attr"`
	}
	type testcase struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Time      string   `xml:"time,attr"`
		Failure   *failure `xml:"failure,omitempty"`
		Skipped   *skipped `xml:"skipped,omitempty"`
		SystemOut string   `xml:"system-out,omitempty"`
	}
	type testsuite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Skipped  int        `xml:"skipped,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	type testsuites struct {
		XMLName xml.Name    `xml:"testsuites"`
		Name    string      `xml:"name,attr"`
		Suites  []testsuite `xml:"testsuite"`
	}
	all := testsuites{Name: "wxlogin conform"}
	index := map[string]int{}
	for _, res := range results {
		i, ok := index[res.Plan]
		if !ok {
			i = len(all.Suites)
			index[res.Plan] = i
			all.Suites = append(all.Suites, testsuite{Name: res.Plan})
		}
		s := &all.Suites[i]
		tc := testcase{Name: res.ID, Classname: "conform." + res.Plan, Time: fmt.Sprintf("%.3f", res.Took.Seconds())}
		detail := fmt.Sprintf("%s\ngot: %s\nrule: %s\nhint: %s\n%s", res.Reason, res.Got, res.Rule, res.Hint, strings.Join(res.Evidence, "\n"))
		switch {
		case res.Result == ResultSkipped:
			tc.Skipped = &skipped{Message: res.Skipped}
			s.Skipped++
		case res.Unexpected != "":
			tc.Failure = &failure{Message: res.Unexpected + ": " + res.Got, Type: string(res.Severity), Text: detail}
			s.Failures++
		case res.failed():
			tc.SystemOut = res.Result + " (not failing the run)\n" + detail
		}
		s.Tests++
		s.Cases = append(s.Cases, tc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// writeJSON writes the verdict with every check's evidence, its secrets
// already hidden.
func writeJSON(w io.Writer, p *Profile, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"backend": p.BaseURL, "checks": results})
}

// writeCatalogue prints every check: id, severity, reason and rule.
func writeCatalogue(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSEVERITY\tREASON\tRULE")
	for _, c := range catalogue() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Severity, c.Reason, c.Rule)
	}
	return tw.Flush()
}

// writeFileWith writes a report file whole, or fails.
func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("conform: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("conform: %s: %w", path, err)
	}
	return f.Close()
}
