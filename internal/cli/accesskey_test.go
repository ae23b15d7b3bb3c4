package cli

import (
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/accesskey"
)

// TestAccessKeys creates, lists and revokes keys in the Secret podid server
// reads, and checks that what is written is what the server will parse and
// that the secret is printed once, by create only.
func TestAccessKeys(t *testing.T) {
	ns := "access-keys-test"
	if err := cluster.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	tr := newTranscript(t)
	tr.mustRun("access-key", "list", "--podid-namespace", ns)
	tr.mustRun("access-key", "create", "--podid-namespace", ns, "--user", "terraform", "--group", "podid:association-admins")
	printed := regexp.MustCompile(`aws_access_key_id = (PODID\w+)\naws_secret_access_key = (\S+)\n`).FindStringSubmatch(tr.out.String())
	tr.mustRun("access-key", "create", "--podid-namespace", ns, "--name", "agent-node-1", "--node", "node-1")
	tr.mustFail("an access key named terraform exists", "access-key", "create", "--podid-namespace", ns, "--user", "terraform")
	tr.mustFail("give --user", "access-key", "create", "--podid-namespace", ns)
	tr.mustRun("access-key", "list", "--podid-namespace", ns)

	var secret corev1.Secret
	if err := cluster.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "podid-access-keys"}, &secret); err != nil {
		t.Fatal(err)
	}
	keys, err := accesskey.Parse(secret.Data[accesskey.FileKey])
	if err != nil || len(keys) != 2 {
		t.Fatalf("the Secret holds %d keys the server would read (%v)", len(keys), err)
	}
	if printed == nil || keys[0].AccessKeyID != printed[1] || keys[0].SecretAccessKey != printed[2] {
		t.Fatalf("create printed %q; the Secret holds %s", printed, keys[0].AccessKeyID)
	}
	if user, groups := keys[0].Principal.(accesskey.Entry).KubernetesUser(); user != "terraform" || len(groups) != 1 || groups[0] != "podid:association-admins" {
		t.Fatalf("the key acts as %s %v", user, groups)
	}
	if keys[1].Principal.(accesskey.Entry).Node != "node-1" {
		t.Fatalf("the agent's key is not pinned to its node: %+v", keys[1].Principal)
	}

	tr.mustRun("access-key", "revoke", "--podid-namespace", ns, "terraform")
	tr.mustFail("no access key has ID or name terraform", "access-key", "revoke", "--podid-namespace", ns, "terraform")
	tr.mustRun("access-key", "revoke", "--podid-namespace", ns, keys[1].AccessKeyID)
	tr.mustRun("access-key", "list", "--podid-namespace", ns)
	tr.check("access-keys.golden")
}
