// Package migrate moves IRSA ServiceAccounts to podid, one change at a
// time and undoably: `podid migrate irsa` and `podid migrate rollback`.
//
// For each ServiceAccount with eks.amazonaws.com/role-arn it adds podid's
// trust statement to the role (once: its Sid names the association),
// creates the association (an existing one is done), and optionally
// removes the ServiceAccount's OIDC trust statement and annotation and
// restarts its workloads. Before every change it records, on the
// ServiceAccount (annotation podid.io/irsa-migration), what was there: the
// role's trust document byte for byte, the annotations, what it created.
// A re-run resumes where a killed run stopped; rollback restores exactly
// what was there, latest migration first.
//
// eksctl's and Rafay's migrations have no rollback, add the trust
// statement again on every run, abort on role ARNs with a path, and leave
// running pods on IRSA; this one does none of that.
package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
)

// Options choose what a migration does beyond trust and association.
type Options struct {
	RemoveOIDCTrust  bool
	RemoveAnnotation bool
	Restart          bool
	// RemoveOIDCProvider deletes the cluster's IAM OIDC provider after
	// the run, when no role trusts it any more (RemoveOIDCProvider).
	RemoveOIDCProvider bool
	// Wait is how long to wait for an association to be Ready before
	// restarting its workloads.
	Wait time.Duration
}

// Migrator migrates as the user running it: Kubernetes with the user's
// credentials (PassRole applies), IAM with the user's AWS credentials.
type Migrator struct {
	Client client.Client
	IAM    IAM
	// Account is the AWS account of the user's credentials: roles of other
	// accounts are refused with the statement to add by hand.
	Account string
	// Principal is podid server's principal (path resolved); Cluster the
	// cluster name in its session tags.
	Principal, Cluster string
	// Issuer is the cluster's ServiceAccount issuer, whose IAM OIDC
	// provider IRSA trust statements name.
	Issuer Issuer
	// Unverified are ServiceAccounts ("namespace/name") to migrate although
	// their role's trust does not admit them through IRSA: the user's
	// explicit word, printed in the plan.
	Unverified map[string]bool
	Options    Options
	Out        io.Writer
	Now        func() time.Time

	// dirty: the record changed since it was last written.
	dirty bool
	// passRoleOn: podid's PassRole policy is installed (asked once).
	passRoleOn *bool
}

// Candidate is one ServiceAccount to migrate (or migrated).
type Candidate struct {
	SA      *corev1.ServiceAccount
	RoleARN string
	Record  *Record

	// verified: the role's trust was found to admit this ServiceAccount
	// (or the user vouched for it) in this run, so writes may follow.
	verified bool
}

func (c *Candidate) ref() string { return c.SA.Namespace + "/" + c.SA.Name }

// Selection picks ServiceAccounts: a namespace ("" all), a label selector,
// a name (needs a namespace).
type Selection struct {
	Namespace, Name string
	Selector        labels.Selector
}

// Discover lists the ServiceAccounts with an IRSA role, or with a record of
// an earlier migration, sorted by namespace and name.
func (m *Migrator) Discover(ctx context.Context, sel Selection) ([]*Candidate, error) {
	var list corev1.ServiceAccountList
	opts := []client.ListOption{}
	if sel.Namespace != "" {
		opts = append(opts, client.InNamespace(sel.Namespace))
	}
	if sel.Selector != nil {
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel.Selector})
	}
	if err := m.Client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing ServiceAccounts: %w", err)
	}
	var out []*Candidate
	for i := range list.Items {
		sa := &list.Items[i]
		if sel.Name != "" && sa.Name != sel.Name {
			continue
		}
		c := &Candidate{SA: sa, RoleARN: sa.Annotations[podidentity.AnnotationRoleARN]}
		if raw, ok := sa.Annotations[AnnotationRecord]; ok {
			rec, err := decodeRecord(raw)
			if err != nil {
				return nil, fmt.Errorf("ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
			}
			c.Record = rec
			if c.RoleARN == "" {
				c.RoleARN = rec.RoleARN
			}
		}
		if c.RoleARN != "" {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *Candidate) int { return strings.Compare(a.ref(), b.ref()) })
	return out, nil
}

// SkipError is a ServiceAccount the migration leaves, for a reason it
// says; the others go on.
type SkipError struct{ error }

func skipf(format string, args ...any) error { return &SkipError{fmt.Errorf(format, args...)} }

// roleOf checks a role ARN can be migrated with the user's credentials,
// and returns its name.
func (m *Migrator) roleOf(c *Candidate) (string, error) {
	parts := strings.SplitN(c.RoleARN, ":", 6)
	if len(parts) != 6 || parts[2] != "iam" || !strings.HasPrefix(parts[5], "role/") {
		return "", fmt.Errorf("annotation %s %q is not an IAM role ARN", podidentity.AnnotationRoleARN, c.RoleARN)
	}
	if parts[4] != m.Account {
		stmt, _ := json.Marshal(iamrole.TrustStatement(m.Principal, m.association(c)))
		return "", skipf("role %s is in account %s, and your AWS credentials are for %s: run the migration of %s with credentials of %s, or add this statement to the role's trust policy yourself, then run it again: %s",
			c.RoleARN, parts[4], m.Account, c.ref(), parts[4], stmt)
	}
	return iamrole.RoleName(c.RoleARN)
}

func (m *Migrator) association(c *Candidate) iamrole.Association {
	return iamrole.Association{Cluster: m.Cluster, Namespace: c.SA.Namespace, ServiceAccount: c.SA.Name}
}

// trust reads a role's trust document, checking the ARN (path included)
// is the one the annotation names.
func (m *Migrator) trust(ctx context.Context, c *Candidate, name string) (string, error) {
	out, err := m.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("reading role %s: %w", c.RoleARN, err)
	}
	if got := aws.ToString(out.Role.Arn); got != c.RoleARN {
		return "", fmt.Errorf("the annotation names role %s, but the account's role %s is %s: fix the annotation", c.RoleARN, name, got)
	}
	doc, err := iamrole.TrustDocument(aws.ToString(out.Role.AssumeRolePolicyDocument))
	if err != nil {
		return "", fmt.Errorf("role %s's trust policy: %w", c.RoleARN, err)
	}
	return doc, nil
}

// trustParsed is trust, and the document parsed; read afresh before each
// change, so that a change made meanwhile is not written over.
func (m *Migrator) trustParsed(ctx context.Context, c *Candidate, name string) (string, *iampolicy.Document, error) {
	doc, err := m.trust(ctx, c, name)
	if err != nil {
		return "", nil, err
	}
	d, err := iampolicy.ParseDocument(doc)
	if err != nil {
		return "", nil, fmt.Errorf("role %s: %w", c.RoleARN, err)
	}
	return doc, d, nil
}

// otherRole is the refusal of a ServiceAccount whose association names
// another role than its annotation.
func otherRole(c *Candidate, pia *v1alpha1.PodIdentityAssociation) error {
	return skipf("%s already has an association with another role, %s: leave it, or delete it and migrate again", c.ref(), pia.Spec.RoleARN)
}

// oidcStatementsFor are the indexes of the statements that let only ns/sa
// in through the cluster's OIDC provider, and how many others admit it
// among others (kept, and reported).
func oidcStatementsFor(d *iampolicy.Document, issuer Issuer, roleARN, ns, sa string) (only []int, shared int) {
	for i, raw := range d.Statement {
		switch {
		case issuer.isOIDCStatementFor(raw, roleARN, ns, sa):
			only = append(only, i)
		case issuer.admitsSubject(raw, roleARN, ns, sa):
			shared++
		}
	}
	return only, shared
}

// save writes the record onto the ServiceAccount (re-reading it on
// conflict).
func (m *Migrator) save(ctx context.Context, c *Candidate) error {
	m.dirty = false
	c.Record.Updated = m.now()
	value, err := c.Record.encode()
	if err != nil {
		return err
	}
	for range 5 {
		if c.SA.Annotations == nil {
			c.SA.Annotations = map[string]string{}
		}
		c.SA.Annotations[AnnotationRecord] = value
		err = m.Client.Update(ctx, c.SA)
		if !apierrors.IsConflict(err) {
			break
		}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(c.SA), c.SA); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("recording the migration on ServiceAccount %s: %w", c.ref(), err)
	}
	return nil
}

func (m *Migrator) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Migrator) say(format string, args ...any) {
	fmt.Fprintf(m.Out, format+"\n", args...)
}

// AssociationInForce is the association of c's ServiceAccount of either
// kind (a cluster one is in force over the namespace's), or nil: the
// migration creates none where one exists.
func (m *Migrator) AssociationInForce(ctx context.Context, c *Candidate) (*v1alpha1.PodIdentityAssociation, error) {
	stored, err := associationstore.Get(ctx, m.Client, c.SA.Namespace, c.SA.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the association of %s: %w", c.ref(), err)
	}
	return stored.View(), nil
}

// existingAssociation is the namespace's association of c's ServiceAccount
// (the kind the migration creates and its rollback deletes), or nil.
func (m *Migrator) existingAssociation(ctx context.Context, c *Candidate) (*v1alpha1.PodIdentityAssociation, error) {
	var pia v1alpha1.PodIdentityAssociation
	err := m.Client.Get(ctx, client.ObjectKey{Namespace: c.SA.Namespace, Name: c.SA.Name}, &pia)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the association of %s: %w", c.ref(), err)
	}
	return &pia, nil
}
