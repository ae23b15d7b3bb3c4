package migrate

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/passrole"
	"github.com/podid/podid/internal/podidentity"
)

// verify decides, from the role's trust document as IAM has it now,
// whether c may be migrated with the user's rights: its trust admits c
// through IRSA, or already trusts podid server for c (a migration that
// went this far, or an administrator's statement), or the user vouched for
// c with --allow-unverified. It is called on the document read before the
// first write for c, whatever c's record says was done: the record is on
// the ServiceAccount, where any editor of the namespace may change it.
// note is what the plan prints besides.
func (m *Migrator) verify(c *Candidate, doc string, d *iampolicy.Document) (note string, err error) {
	if c.verified {
		return "", nil
	}
	if d.HasSid(iamrole.StatementID(m.association(c))) {
		c.verified = true
		return fmt.Sprintf("role %s already trusts podid server for %s", c.RoleARN, c.ref()), nil
	}
	sid, why := m.Issuer.admits(doc, c.RoleARN, c.SA.Namespace, c.SA.Name)
	if why == "" {
		c.verified = true
		return fmt.Sprintf("role %s admits %s through IRSA (statement %s)", c.RoleARN, subject(c.SA.Namespace, c.SA.Name), sid), nil
	}
	if m.Unverified[c.ref()] {
		c.verified = true
		return fmt.Sprintf("! not verified: role %s's trust %s; migrated because you passed --allow-unverified %s", c.RoleARN, why, c.ref()), nil
	}
	return "", skipf("not verified: role %s's trust %s. Under IRSA the annotation %s grants nothing by itself and anyone who may edit the ServiceAccount may write it, so nothing is written for %s. If it should have this role, run again with --allow-unverified %s",
		c.RoleARN, why, podidentity.AnnotationRoleARN, c.ref(), c.ref())
}

// verifiedTrust reads c's role's trust and verifies c against it, once
// per run: the step that creates the association needs it when the trust
// step was not taken in this run.
func (m *Migrator) verifiedTrust(ctx context.Context, c *Candidate, name string) error {
	if c.verified {
		return nil
	}
	doc, d, err := m.trustParsed(ctx, c, name)
	if err != nil {
		return err
	}
	_, err = m.verify(c, doc, d)
	return err
}

// passRoleRefusal says why the user may not create c's association with
// its role under podid's PassRole policy, or "" when they may (or the
// policy is not installed). Asked before any write, so that a migration
// the API server would refuse half-way never changes IAM first.
func (m *Migrator) passRoleRefusal(ctx context.Context, c *Candidate) (string, error) {
	if m.passRoleOn == nil {
		var policy admissionregistrationv1.ValidatingAdmissionPolicy
		err := m.Client.Get(ctx, client.ObjectKey{Name: passrole.Name}, &policy)
		on := !apierrors.IsNotFound(err) // unreadable: assume it is there
		m.passRoleOn = &on
	}
	if !*m.passRoleOn {
		return "", nil
	}
	refusal, err := passrole.MayUse(ctx, m.Client, c.SA.Namespace, c.RoleARN)
	if refusal != "" {
		refusal += ", or run the migration as someone who may"
	}
	return refusal, err
}
