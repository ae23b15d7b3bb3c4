package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/podid/podid/internal/doctor"
)

// A cluster without podid installed: doctor says so, check by check, in
// text and JSON, and exits 1; bad arguments are refused before connecting.
func TestDoctorCommand(t *testing.T) {
	tr := newTranscript(t)
	tr.mustFail("doctor found problems", "doctor", "--no-live")
	tr.mustFail("doctor checks a pod, a serviceaccount or a deployment, not \"node\"", "doctor", "node", "x/y")
	tr.mustFail("name the pod as NAMESPACE/NAME", "doctor", "pod")
	tr.mustFail(`"a/b/c": give NAMESPACE/NAME`, "doctor", "pod", "a/b/c")
	tr.mustFail(`--output "yaml": use text or json`, "doctor", "-o", "yaml")
	tr.mustFail("no pod default/missing: name a pod that exists", "doctor", "pod", "default/missing", "--no-aws")
	tr.check("doctor.golden")

	var out bytes.Buffer
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &out})
	cmd.SetArgs([]string{"doctor", "--no-live", "-o", "json", "--kubeconfig", kubeconfig})
	if err := cmd.ExecuteContext(t.Context()); !errors.Is(err, errProblems) {
		t.Fatalf("doctor -o json: %v", err)
	}
	var r doctor.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("doctor -o json printed no report: %v\n%s", err, out.String())
	}
	if !r.Failed || len(r.Sections) != 1 || r.Sections[0].Checks[0].Name != "server" || r.Sections[0].Checks[0].Status != doctor.Fail {
		t.Errorf("report: %+v", r)
	}
}
