package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/serveridentity"
)

// setupRolesAnywhere does what docs/on-premises.md tells a user to do after
// installing: wait for podid's CA, make the trust anchor, role and profile
// with the administrator's AWS credentials (`podid roles-anywhere setup`'s
// plan and apply), and upgrade the release with the ARNs. It returns once
// podid server has published its identity, a Roles Anywhere session.
func (s *Sandbox) setupRolesAnywhere(ctx context.Context) error {
	say, id := s.say, s.opts.Identity
	var bundle string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		cm, err := s.cs.CoreV1().ConfigMaps(systemNamespace).Get(ctx, identitycert.CAConfigMap, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		bundle = cm.Data[identitycert.KeyCA]
		return bundle != "", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for podid's Roles Anywhere CA (ConfigMap %s/%s): %w\n%s", systemNamespace, identitycert.CAConfigMap, err, s.PodsReport(ctx))
	}
	cfg := s.aws.config(s.aws.admin.AccessKeyID, s.aws.admin.SecretAccessKey, "")
	plan, err := rolesanywhere.PlanSetup(ctx, rolesanywhere.SetupRequest{Cluster: id.ClusterName, CommonName: identitycert.CommonName(id.ClusterName),
		CABundle: []byte(bundle), RoleName: "podid-server-" + id.ClusterName}, ra.NewFromConfig(cfg), iam.NewFromConfig(cfg))
	if err != nil {
		return err
	}
	if err := plan.Apply(ctx); err != nil {
		return err
	}
	if plan.RoleARN != s.aws.serverARN {
		return fmt.Errorf("podid roles-anywhere setup made role %s, not %s", plan.RoleARN, s.aws.serverARN)
	}
	say("podid roles-anywhere setup: trust anchor %s (podid's own CA), profile %s, role %s", plan.TrustAnchorARN, plan.ProfileARN, plan.RoleARN)
	// Into the values file, which later upgrades use too.
	if err := s.editValues(func(v map[string]any) {
		r := v["server"].(map[string]any)["awsIdentity"].(map[string]any)["rolesAnywhere"].(map[string]any)
		r["trustAnchorArn"], r["profileArn"], r["roleArn"] = plan.TrustAnchorARN, plan.ProfileARN, plan.RoleARN
	}); err != nil {
		return err
	}
	began := time.Now()
	if err := s.UpgradeChart(ctx); err != nil {
		return err
	}
	var published *corev1.ConfigMap
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		cm, err := s.cs.CoreV1().ConfigMaps(systemNamespace).Get(ctx, serveridentity.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		published = cm
		return cm.Data[serveridentity.KeyPrincipalARN] == plan.RoleARN && cm.Data[serveridentity.KeyIdentitySource] == serveridentity.SourceRolesAnywhere, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for podid server to act as %s through Roles Anywhere: %w (published: %v)\n%s", plan.RoleARN, err, published.Data, s.PodsReport(ctx))
	}
	s.real.identityTime = time.Since(began)
	say("podid server acts as %s (certificate %s, serial %s, until %s), %.1fs after the upgrade; no AWS access key in any pod or Secret",
		published.Data[serveridentity.KeyCallerARN], published.Data[serveridentity.KeyCertificateSubject], published.Data[serveridentity.KeyCertificateSerial],
		published.Data[serveridentity.KeyCertificateNotAfter], s.real.identityTime.Seconds())
	return nil
}

// IdentityTime is how long podid server took, after the upgrade that gave
// it the Roles Anywhere ARNs, to act as its role.
func (s *Sandbox) IdentityTime() time.Duration { return s.real.identityTime }

// editValues changes the values file the sandbox installed the chart with.
func (s *Sandbox) editValues(edit func(map[string]any)) error {
	path := filepath.Join(s.opts.Dir, "values.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("the sandbox's values file: %w", err)
	}
	edit(v)
	if data, err = json.MarshalIndent(v, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
