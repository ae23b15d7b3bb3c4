// Package serveridentity publishes who podid server is in AWS and which
// cluster it speaks for, in the ConfigMap podid-server-identity of its
// namespace: the principal an association's role must trust, found with
// STS GetCallerIdentity, and the cluster name podid puts in the
// eks-cluster-name session tag. The CLI reads it to make roles for
// associations and to migrate IRSA roles; doctor reads it to check trust
// policies.
package serveridentity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/rolesanywhere"
)

// ConfigMapName is the ConfigMap podid server writes in its namespace.
const ConfigMapName = "podid-server-identity"

// Keys of the ConfigMap's data.
const (
	KeyCallerARN      = "callerArn"
	KeyPrincipalARN   = "principalArn"
	KeyAccount        = "account"
	KeyClusterName    = "clusterName"
	KeyClusterARN     = "clusterArn"
	KeyClusterAccount = "clusterAccount"
	KeyPartition      = "partition"
	KeyRegion         = "region"

	// How podid server obtains its own AWS identity, and what went wrong
	// last (empty once it works again).
	KeyIdentitySource = "identitySource"
	KeyIdentityError  = "identityError"
	// IAM Roles Anywhere's, when it is the source.
	KeyTrustAnchorARN      = "rolesAnywhereTrustAnchorArn"
	KeyProfileARN          = "rolesAnywhereProfileArn"
	KeyRoleARN             = "rolesAnywhereRoleArn"
	KeyCertificateSecret   = "rolesAnywhereCertificateSecret"
	KeyCertificateSubject  = "rolesAnywhereCertificateSubject"
	KeyCertificateSerial   = "rolesAnywhereCertificateSerial"
	KeyCertificateNotAfter = "rolesAnywhereCertificateNotAfter"
	KeySessionExpires      = "rolesAnywhereSessionExpires"
)

// Source names of KeyIdentitySource.
const (
	SourceSDK           = "sdk"
	SourceRolesAnywhere = "rolesAnywhere"
)

// Identity is what the ConfigMap says.
type Identity struct {
	// CallerARN is GetCallerIdentity's Arn: a user, or an assumed-role
	// session.
	CallerARN string
	// PrincipalARN is what a trust policy names to trust the caller: the
	// user's ARN, or for a session its role's ARN. A role's path is not in
	// a session's ARN: PrincipalARN then has none, and RolePathUnknown
	// says so (resolve it with iam:GetRole).
	PrincipalARN    string
	RolePathUnknown bool
	Account         string
	// Cluster is the cluster podid names in IDs, ARNs and session tags.
	Cluster association.Identity
	// Source is how podid server obtains its AWS identity (SourceSDK,
	// SourceRolesAnywhere), and Error its last failure ("" when none);
	// Details are the source's own keys (KeyTrustAnchorARN, …).
	Source  string
	Error   string
	Details map[string]string
	// Replicas are each replica's own view of its AWS identity, by name
	// (see Failing).
	Replicas map[string]ReplicaStatus
}

// CallerIdentityAPI is the STS call the publisher needs.
type CallerIdentityAPI interface {
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

var (
	assumedRole = regexp.MustCompile(`^arn:([a-z-]+):sts::([0-9]{12}):assumed-role/([\w+=,.@-]+)/[^/]+$`)
	iamARN      = regexp.MustCompile(`^arn:([a-z-]+):iam::([0-9]{12}):(user|role|root)(/.*)?$`)
)

// PrincipalFor turns a caller ARN into the ARN a trust policy names.
func PrincipalFor(callerARN string) (principal string, pathUnknown bool, err error) {
	if m := assumedRole.FindStringSubmatch(callerARN); m != nil {
		return fmt.Sprintf("arn:%s:iam::%s:role/%s", m[1], m[2], m[3]), true, nil
	}
	if iamARN.MatchString(callerARN) {
		return callerARN, false, nil
	}
	return "", false, fmt.Errorf("caller %q is neither an IAM user, a role nor a role session: a role's trust policy cannot name it", callerARN)
}

// Publisher keeps the ConfigMap: once at start, retrying until STS
// answers, then every Refresh (the server's credentials may change, e.g.
// a new IRSA role).
type Publisher struct {
	// Client writes the ConfigMap; Reader reads it past any cache (the
	// server may read ConfigMaps only in its namespace).
	Client    client.Client
	Reader    client.Reader
	Namespace string
	STS       CallerIdentityAPI
	Cluster   association.Identity
	Refresh   time.Duration
	Log       *slog.Logger
	// Source, when set, adds how the identity is obtained (KeyIdentitySource
	// and the source's keys) to what is published, and its last error.
	Source func() (details map[string]string, err error)
	// Now is the clock replicas' views are dated with; default time.Now.
	Now func() time.Time
}

// Start implements manager.Runnable; it runs on the leader only.
func (p *Publisher) Start(ctx context.Context) error {
	refresh := p.refresh()
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: 2 * time.Second, Factor: 2, Jitter: 0.2, Steps: 100, Cap: 5 * time.Minute}
	}
	backoff := newBackoff()
	for {
		err := p.publish(ctx)
		next := refresh
		if err != nil {
			next = backoff.Step()
			p.Log.Error("publishing podid server's AWS identity", "err", err, "retry_in", next.Round(time.Second))
		} else {
			backoff = newBackoff()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// NeedLeaderElection: one writer.
func (p *Publisher) NeedLeaderElection() bool { return true }

func (p *Publisher) publish(ctx context.Context) error {
	fresh, callErr := p.identity(ctx)
	var details map[string]string
	var sourceErr error
	if p.Source != nil {
		details, sourceErr = p.Source()
	}
	var data map[string]string
	written := false
	// The replicas write their own views meanwhile: a conflict is read again.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cm corev1.ConfigMap
		err := p.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ConfigMapName}, &cm)
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading ConfigMap %s/%s: %w", p.Namespace, ConfigMapName, err)
		}
		if callErr == nil {
			data = maps.Clone(fresh)
		} else {
			// Keep the principal last published: roles trust it still. Say
			// what fails, for doctor.
			data = map[string]string{}
			for k, v := range cm.Data {
				if !strings.HasPrefix(k, KeyReplicaPrefix) {
					data[k] = v
				}
			}
			data[KeyIdentityError] = callErr.Error()
		}
		data[KeyIdentitySource] = SourceSDK
		if p.Source != nil {
			maps.Copy(data, details)
			data[KeyIdentitySource] = SourceRolesAnywhere
			if sourceErr != nil && callErr == nil {
				// A renewal failed while the session still serves.
				data[KeyIdentityError] = sourceErr.Error()
			}
		}
		keepReplicas(data, cm.Data, p.now())
		switch {
		case exists && maps.Equal(cm.Data, data):
			return nil
		case exists:
			cm.Data = data
			err = p.Client.Update(ctx, &cm)
		default:
			cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: ConfigMapName,
				Labels: map[string]string{"app.kubernetes.io/name": "podid", "app.kubernetes.io/component": "server"}}, Data: data}
			err = p.Client.Create(ctx, &cm)
		}
		written = err == nil
		return err
	})
	if err != nil {
		return fmt.Errorf("writing ConfigMap %s/%s: %w", p.Namespace, ConfigMapName, err)
	}
	if written && callErr == nil {
		p.Log.Info("published podid server's AWS identity", "caller", data[KeyCallerARN], "principal", data[KeyPrincipalARN], "source", data[KeyIdentitySource], "configmap", p.Namespace+"/"+ConfigMapName)
	}
	return callErr
}

func (p *Publisher) refresh() time.Duration {
	if p.Refresh == 0 {
		return 10 * time.Minute
	}
	return p.Refresh
}

func (p *Publisher) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// identity asks STS who podid server is.
func (p *Publisher) identity(ctx context.Context) (map[string]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := p.STS.GetCallerIdentity(cctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("sts:GetCallerIdentity: %w", err)
	}
	if out.Arn == nil || out.Account == nil {
		return nil, errors.New("sts:GetCallerIdentity answered without an ARN")
	}
	principal, _, err := PrincipalFor(*out.Arn)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		KeyCallerARN: *out.Arn, KeyPrincipalARN: principal, KeyAccount: *out.Account,
		KeyClusterName: p.Cluster.ClusterName, KeyClusterARN: p.Cluster.ClusterARN(),
		KeyPartition: p.Cluster.Partition, KeyRegion: p.Cluster.Region, KeyClusterAccount: p.Cluster.AccountID,
	}, nil
}

// Read returns the identity podid server published in namespace, or an
// error that says what to do.
func Read(ctx context.Context, c client.Reader, namespace string) (*Identity, error) {
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ConfigMapName}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("podid server has not published its AWS identity (ConfigMap %s/%s): is podid server running in namespace %s (--podid-namespace), and can it call sts:GetCallerIdentity? Its log says why", namespace, ConfigMapName, namespace)
		}
		return nil, fmt.Errorf("reading ConfigMap %s/%s, where podid server publishes its AWS identity: %w", namespace, ConfigMapName, err)
	}
	d := cm.Data
	id := &Identity{CallerARN: d[KeyCallerARN], PrincipalARN: d[KeyPrincipalARN], Account: d[KeyAccount],
		Cluster: association.Identity{ClusterName: d[KeyClusterName], Partition: d[KeyPartition], Region: d[KeyRegion], AccountID: d[KeyClusterAccount]},
		Source:  d[KeyIdentitySource], Error: d[KeyIdentityError], Details: d, Replicas: replicas(d)}
	if id.PrincipalARN == "" || id.Cluster.ClusterName == "" {
		if id.Error != "" {
			return nil, fmt.Errorf("podid server has no AWS identity yet: %s", id.Error)
		}
		return nil, fmt.Errorf("ConfigMap %s/%s lacks %s or %s: it is podid server's to write; delete it and podid server writes it again", namespace, ConfigMapName, KeyPrincipalARN, KeyClusterName)
	}
	_, id.RolePathUnknown, _ = PrincipalFor(id.CallerARN)
	return id, nil
}

// RolesAnywhereSource is a Publisher.Source for a Roles Anywhere identity:
// the trust anchor, profile and role, the certificate (its Secret, ""
// when read from files), the session's expiry, and the provider's last
// failure.
func RolesAnywhereSource(p *rolesanywhere.Provider, trustAnchorARN, profileARN, roleARN, secret string) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		st := p.Status()
		d := map[string]string{
			KeyTrustAnchorARN: trustAnchorARN, KeyProfileARN: profileARN, KeyRoleARN: roleARN,
			KeyCertificateSubject: st.Subject, KeyCertificateSerial: st.Serial,
		}
		if secret != "" {
			d[KeyCertificateSecret] = secret
		}
		if !st.CertificateNotAfter.IsZero() {
			d[KeyCertificateNotAfter] = st.CertificateNotAfter.UTC().Format(time.RFC3339)
		}
		if !st.SessionExpires.IsZero() {
			d[KeySessionExpires] = st.SessionExpires.UTC().Format(time.RFC3339)
		}
		return d, st.Err
	}
}
