package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Status is a check's verdict.
type Status string

const (
	// OK: nothing to do.
	OK Status = "ok"
	// Warn: works, or may, but something a user should know or fix.
	Warn Status = "warning"
	// Fail: stops pods getting credentials; `podid doctor` exits 1.
	Fail Status = "failed"
	// Skipped: doctor could not check (no permission, no AWS credentials).
	Skipped Status = "not-checked"
)

var marks = map[Status]string{OK: "✓", Warn: "!", Fail: "✗", Skipped: "-"}

// Check is one finding: what doctor looked at, what it saw, and, when it
// is not OK, what to do.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Fact   string `json:"fact"`
	Fix    string `json:"fix,omitempty"`
}

// Section is the checks of one subject: the cluster, a pod, a
// ServiceAccount.
type Section struct {
	Subject string  `json:"subject"`
	Checks  []Check `json:"checks"`
}

// Report is all a doctor run found.
type Report struct {
	Sections []Section `json:"sections"`
	// Failed is true when some check failed.
	Failed bool `json:"failed"`
}

func (r *Report) add(s Section) {
	for _, c := range s.Checks {
		if c.Status == Fail {
			r.Failed = true
		}
	}
	r.Sections = append(r.Sections, s)
}

// WriteText writes the report for people: one line per check, its mark, its
// name and fact, and the fix indented below it.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	width := 0
	for _, s := range r.Sections {
		for _, c := range s.Checks {
			width = max(width, len(c.Name))
		}
	}
	for i, s := range r.Sections {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s\n", s.Subject)
		for _, c := range s.Checks {
			fmt.Fprintf(&b, "  %s %-*s  %s\n", marks[c.Status], width, c.Name, c.Fact)
			if c.Fix != "" {
				fmt.Fprintf(&b, "    %*s  fix: %s\n", width, "", c.Fix)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func ok(name, fact string) Check { return Check{Name: name, Status: OK, Fact: fact} }

func warn(name, fact, fix string) Check { return Check{Name: name, Status: Warn, Fact: fact, Fix: fix} }

func failed(name, fact, fix string) Check {
	return Check{Name: name, Status: Fail, Fact: fact, Fix: fix}
}

func skipped(name, fact string) Check { return Check{Name: name, Status: Skipped, Fact: fact} }
