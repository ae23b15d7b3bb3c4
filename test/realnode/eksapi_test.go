package realnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// testEKSAPIFromTheHost drives podid's EKS-compatible API from this host as
// the README's quick start does — sandbox.env's PODID_SERVER_URL, access key
// and CA bundle, nothing else — with the Go and JS SDKs, and follows EKS's
// lifecycle on the real node: an association made before its namespace, in
// force when the namespace appears, kept when the namespace controller
// deletes the namespace, in force again when it is created anew.
func testEKSAPIFromTheHost(t *testing.T) {
	ctx := t.Context()
	env := sb.Env
	if env["PODID_SERVER_URL"] == "" || env["AWS_CA_BUNDLE"] == "" {
		t.Fatalf("sandbox.env gives PODID_SERVER_URL=%q AWS_CA_BUNDLE=%q; the quick start needs both", env["PODID_SERVER_URL"], env["AWS_CA_BUNDLE"])
	}
	// The SDK's default configuration, from the environment alone.
	for _, k := range []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE"} {
		t.Setenv(k, env[k])
	}
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := eks.NewFromConfig(cfg, func(o *eks.Options) { o.BaseEndpoint = aws.String(env["PODID_SERVER_URL"]); o.RetryMaxAttempts = 1 })
	cluster := aws.String(env["PODID_CLUSTER_NAME"])

	const ns, sa = "later", "app"
	created, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: cluster,
		Namespace: aws.String(ns), ServiceAccount: aws.String(sa), RoleArn: aws.String(env["PODID_SAMPLE_ROLE_ARN"])})
	if err != nil {
		t.Fatalf("creating %s/%s before its namespace, through %s: %v", ns, sa, env["PODID_SERVER_URL"], err)
	}
	id, arn := created.Association.AssociationId, created.Association.AssociationArn
	if _, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"owner": "platform", "tmp": "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagResource(ctx, &eks.UntagResourceInput{ResourceArn: arn, TagKeys: []string{"tmp"}}); err != nil {
		t.Fatal(err)
	}
	described := func(stage string) {
		t.Helper()
		d, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: cluster, AssociationId: id})
		if err != nil || *d.Association.Namespace != ns || len(d.Association.Tags) != 1 || d.Association.Tags["owner"] != "platform" {
			t.Fatalf("%s: described %+v, %v", stage, d, err)
		}
		l, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: cluster, Namespace: aws.String(ns)})
		if err != nil || len(l.Associations) != 1 || *l.Associations[0].AssociationId != *id {
			t.Fatalf("%s: listed %+v, %v", stage, l, err)
		}
	}
	described("before the namespace")

	runs := func(stage string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		d := sb.WorkloadDeployment(ns, "app", sa, 1)
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = aws.Int64(0)
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		pod, err := sb.WaitDeploymentPod(ctx, ns, "app")
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		got, err := sb.PodIdentity(ctx, pod)
		if err != nil || !strings.Contains(got.ARN, ":assumed-role/demo-app/eks-"+identity.ClusterName+"-"+pod.Name+"-") {
			t.Fatalf("%s: pod %s is %+v, %v", stage, pod.Name, got, err)
		}
	}
	runs("namespace created")
	began := time.Now()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("namespace %s not deleted: %v", ns, err)
	}
	t.Logf("figure: namespace %s deleted by the namespace controller in %.1fs", ns, time.Since(began).Seconds())
	described("after the namespace's deletion")
	runs("namespace created again")

	// The JS SDK, configured the same way (Node reads NODE_EXTRA_CA_CERTS).
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the JS SDK check needs Node 18 or later")
	}
	js := exec.CommandContext(ctx, node, "eks.mjs")
	js.Dir = filepath.Join("..", "integration", "js")
	js.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+env["NODE_EXTRA_CA_CERTS"],
		"PODID_ENDPOINT="+env["PODID_SERVER_URL"], "PODID_REGION="+env["AWS_REGION"], "PODID_CLUSTER="+env["PODID_CLUSTER_NAME"], "PODID_NAMESPACE=js-later",
		"PODID_ACCESS_KEY_ID="+env["AWS_ACCESS_KEY_ID"], "PODID_SECRET_ACCESS_KEY="+env["AWS_SECRET_ACCESS_KEY"])
	var stderr bytes.Buffer
	js.Stderr = &stderr
	out, err := js.Output()
	if err != nil {
		t.Fatalf("node eks.mjs: %v\n%s", err, stderr.String())
	}
	wantOK := map[string]bool{"create": true, "describe": true, "update": true, "tag": true, "untag": true, "tags": true, "list": true,
		"create-temp": true, "delete": true, "duplicate": false, "missing": false, "tag-reserved": false}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var step struct {
			Step  string `json:"step"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &step); err != nil {
			t.Fatalf("eks.mjs printed %q", sc.Text())
		}
		want, known := wantOK[step.Step]
		if !known || step.OK != want {
			t.Errorf("JS SDK step %s: %s", step.Step, sc.Text())
		}
		delete(wantOK, step.Step)
	}
	if len(wantOK) != 0 {
		t.Errorf("JS SDK steps missing: %v\n%s", wantOK, out)
	}

	if _, err := c.DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{ClusterName: cluster, AssociationId: id}); err != nil {
		t.Fatal(err)
	}
	var apiErr smithy.APIError
	if _, err := c.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: arn}); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "NotFoundException" {
		t.Errorf("tags of the deleted association: %v", err)
	}
}
