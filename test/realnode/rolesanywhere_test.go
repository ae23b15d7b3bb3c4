package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/serveridentity"
)

// identityAtStart is podid server's certificate serial and the Roles
// Anywhere sessions so far when the checks began, to see renewals later.
var identityAtStart struct {
	serial   string
	sessions int
	at       time.Time
}

// testNoAWSKey: podid server acts as its role through IAM Roles Anywhere,
// and no pod of the cluster is given an AWS access key, nor does any
// Secret hold one under the names the SDKs read.
func testNoAWSKey(t *testing.T) {
	ctx := t.Context()
	cm, err := cs.CoreV1().ConfigMaps("podid-system").Get(ctx, serveridentity.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := cm.Data
	role := "arn:aws:iam::" + identity.AccountID + ":role/podid-server-" + identity.ClusterName
	if d[serveridentity.KeyIdentitySource] != serveridentity.SourceRolesAnywhere || d[serveridentity.KeyPrincipalARN] != role || !strings.Contains(d[serveridentity.KeyCallerARN], ":assumed-role/podid-server-"+identity.ClusterName+"/") {
		t.Fatalf("podid server's published identity: %v", d)
	}
	if d[serveridentity.KeyCertificateSubject] != "CN="+identitycert.CommonName(identity.ClusterName)+",O=podid" {
		t.Errorf("certificate subject %q", d[serveridentity.KeyCertificateSubject])
	}
	identityAtStart.serial, identityAtStart.sessions, identityAtStart.at = d[serveridentity.KeyCertificateSerial], sb.Emulator().CreateSessionCalls(), time.Now()
	t.Logf("figure: podid server acting as %s through Roles Anywhere %.1fs after the upgrade that gave it the ARNs", d[serveridentity.KeyCallerARN], sb.IdentityTime().Seconds())

	keyNames := map[string]bool{"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			for _, e := range c.Env {
				if keyNames[e.Name] {
					t.Errorf("pod %s/%s container %s is given %s", p.Namespace, p.Name, c.Name, e.Name)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					t.Errorf("pod %s/%s container %s takes its environment from Secret %s", p.Namespace, p.Name, c.Name, ef.SecretRef.Name)
				}
			}
		}
	}
	secrets, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			if keyNames[strings.ToUpper(k)] || strings.Contains(string(v), "aws_secret_access_key") {
				t.Errorf("Secret %s/%s holds %s", s.Namespace, s.Name, k)
			}
		}
	}
	t.Logf("%d pods and %d Secrets: no AWS access key given to a pod or kept under the SDKs' names (the sandbox's podid-access-keys Secret holds the keys SigV4 callers sign podid's own APIs with)", len(pods.Items), len(secrets.Items))
}

// testIdentityRenewed runs last: podid's certificate (3 minutes in these
// values) was renewed during the run, under the load of the checks before
// it, whose exchanges did not fail.
func testIdentityRenewed(t *testing.T) {
	ctx := t.Context()
	var d map[string]string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps("podid-system").Get(ctx, serveridentity.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		d = cm.Data
		return d[serveridentity.KeyCertificateSerial] != identityAtStart.serial && d[serveridentity.KeyIdentityError] == "", nil
	})
	if err != nil {
		t.Fatalf("podid server's certificate was not renewed since the start (serial %s; published %v): %v", identityAtStart.serial, d, err)
	}
	secret, err := cs.CoreV1().Secrets("podid-system").Get(ctx, identitycert.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret %s is of type %s", identitycert.SecretName, secret.Type)
	}
	elapsed := time.Since(identityAtStart.at)
	sessions := sb.Emulator().CreateSessionCalls() - identityAtStart.sessions
	t.Logf("figure: over %s of checks (server restarts among them), podid's certificate renewed (serial %s → %s) and %d Roles Anywhere sessions created by the server replicas, with every exchange above served",
		elapsed.Round(time.Second), identityAtStart.serial, d[serveridentity.KeyCertificateSerial], sessions)
}
