package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/podid/podid/internal/association"
)

type jsStep struct {
	Step          string            `json:"step"`
	OK            bool              `json:"ok"`
	AssociationID string            `json:"associationId"`
	RoleARN       string            `json:"roleArn"`
	Tags          map[string]string `json:"tags"`
	CreatedAt     string            `json:"createdAt"`
	Names         []string          `json:"names"`
	Error         string            `json:"error"`
	Status        int               `json:"status"`
	Message       string            `json:"message"`
}

// TestEKSAPIWithJSClient runs js/eks.mjs: @aws-sdk/client-eks under Node,
// installed by `make test` (npm ci in test/integration/js).
func TestEKSAPIWithJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the JS client tests need Node 18 or later")
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "@aws-sdk", "client-eks")); err != nil {
		t.Fatal("@aws-sdk/client-eks is not installed: run `npm ci` in test/integration/js (make test does)")
	}
	ns := newNamespace(t)
	fromKubectl := newAssociation(ns, "from-kubectl", "arn:aws:iam::111122223333:role/k")
	if err := k8s.Create(t.Context(), fromKubectl); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), node, "eks.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(),
		"PODID_ENDPOINT="+srv.APIURL, "PODID_REGION="+identity.Region, "PODID_CLUSTER="+identity.ClusterName, "PODID_NAMESPACE="+ns,
		"PODID_ACCESS_KEY_ID="+eksAdminKey.AccessKeyID, "PODID_SECRET_ACCESS_KEY="+eksAdminKey.SecretAccessKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node eks.mjs: %v\n%s", err, stderr.String())
	}
	steps := map[string]jsStep{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var s jsStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("unreadable line %q: %v", sc.Text(), err)
		}
		steps[s.Step] = s
	}
	want := func(name string, ok bool) jsStep {
		t.Helper()
		s, found := steps[name]
		if !found || s.OK != ok {
			t.Fatalf("step %s = %+v, want ok=%v\nall output:\n%s", name, s, ok, out)
		}
		return s
	}
	created := want("create", true)
	if !association.IsID(created.AssociationID) || created.Tags["client"] != "js" || created.CreatedAt == "" {
		t.Fatalf("create = %+v", created)
	}
	if d := want("describe", true); d.AssociationID != created.AssociationID {
		t.Fatalf("describe = %+v", d)
	}
	if u := want("update", true); u.RoleARN != "arn:aws:iam::111122223333:role/js-app-v2" {
		t.Fatalf("update = %+v", u)
	}
	want("tag", true)
	want("untag", true)
	if tags := want("tags", true); len(tags.Tags) != 1 || tags.Tags["team"] != "js" {
		t.Fatalf("tags after tag and untag = %+v", tags)
	}
	if r := want("tag-reserved", false); r.Error != "BadRequestException" || r.Status != 400 {
		t.Fatalf("tag-reserved = %+v", r)
	}
	if l := want("list", true); len(l.Names) != 2 || l.Names[0] != "from-kubectl" || l.Names[1] != "js-app" {
		t.Fatalf("list = %+v (an association made with kubectl must be listed too)", l)
	}
	if d := want("duplicate", false); d.Error != "ResourceInUseException" || d.Status != 409 {
		t.Fatalf("duplicate = %+v", d)
	}
	if m := want("missing", false); m.Error != "ResourceNotFoundException" || m.Status != 404 {
		t.Fatalf("missing = %+v", m)
	}
	temp := want("create-temp", true)
	if d := want("delete", true); d.AssociationID != temp.AssociationID {
		t.Fatalf("delete = %+v", d)
	}

	// What JS created is an ordinary object, as if kubectl had made it.
	pia := getAssociation(t, ns, "js-app")
	if association.IDFor(pia.UID) != created.AssociationID || pia.Spec.RoleARN != "arn:aws:iam::111122223333:role/js-app-v2" || pia.Spec.Tags["team"] != "js" {
		t.Fatalf("object = %+v", pia.Spec)
	}
}
