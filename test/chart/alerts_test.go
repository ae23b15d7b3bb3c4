package chart

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"
)

// The chart's alerting rules pass promtool's unit tests
// (testdata/alerts.test.yaml): each alert fires on the series that should
// fire it, after its `for`, with a text that says what to run, and stays
// quiet otherwise.
func TestAlertingRules(t *testing.T) {
	promtool, err := filepath.Abs("../../bin/promtool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(promtool); err != nil {
		t.Fatalf("bin/promtool is missing: run `make tools` (hack/tools.sh promtool)")
	}
	out, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", kubeVersion, "--namespace", namespace,
		"-f", "testdata/default.values.yaml", "--set", "metrics.prometheusRule.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	var spec any
	for _, obj := range objects(t, out) {
		if obj.GetKind() == "PrometheusRule" {
			spec = obj.Object["spec"]
		}
	}
	if spec == nil {
		t.Fatal("the chart rendered no PrometheusRule")
	}
	dir := t.TempDir()
	rules, err := sigsyaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("testdata/alerts.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644)
	os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o644)
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert of the chart is tested.
	for _, name := range regexp.MustCompile(`alert: (\w+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(string(tests), "alertname: "+name[1]+"\n") {
			t.Errorf("alert %s has no promtool test in testdata/alerts.test.yaml", name[1])
		}
	}
}

// The rules and the dashboard ask only for metrics podid exports (or
// kube-state-metrics'), with labels podid's metrics carry.
func TestDashboardAndRulesUsePodidsMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	dashboard, err := os.ReadFile("../../charts/podid/dashboards/podid.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dashboard, &d); err != nil || len(d.Panels) == 0 {
		t.Fatalf("the dashboard is not JSON with panels: %v", err)
	}
	rules, err := os.ReadFile("../../charts/podid/templates/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`podid_[a-z_]+`).FindAllString(string(dashboard)+string(rules), -1)
	for _, name := range slices.Compact(slices.Sorted(slices.Values(used))) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !exported[name] && !exported[base] {
			t.Errorf("%s is used by the dashboard or the alerts, but podid exports no such metric", name)
		}
	}
}

// exportedMetrics are the metric names podid's code declares.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`Name:\s*"(podid_[a-z_]+)"`)
	err := filepath.WalkDir("../../internal", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
		return err
	})
	if err != nil || len(names) == 0 {
		t.Fatalf("no metric declared under internal/: %v", err)
	}
	return names
}
