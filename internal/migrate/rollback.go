package migrate

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RollbackOrder sorts migrated candidates latest first: a role shared by
// several ServiceAccounts then gets each trust document back as it was
// before that ServiceAccount's migration, down to the first.
func RollbackOrder(cs []*Candidate) []*Candidate {
	var out []*Candidate
	for _, c := range cs {
		if c.Record != nil {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *Candidate) int { return -cmpInt(a.Record.Seq, b.Record.Seq) })
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Rollback restores what c's migration changed, from its record: the
// trust document byte for byte (refused if someone changed it since), the
// association it created deleted, the annotations back, restarted
// workloads' templates back (which restarts them onto IRSA). The record
// goes last, so an interrupted rollback can run again.
func (m *Migrator) Rollback(ctx context.Context, c *Candidate) error {
	rec := c.Record
	if rec == nil {
		return nil
	}
	if len(rec.Restarted) > 0 {
		workloads, err := m.workloads(ctx, c)
		if err != nil {
			return err
		}
		for _, w := range workloads {
			if before, ok := rec.Restarted[workloadName(w)]; ok {
				if err := m.setRestartedAt(ctx, w, before); err != nil {
					return err
				}
			}
		}
	}
	if rec.AssociationUID != "" {
		pia, err := m.existingAssociation(ctx, c)
		if err != nil {
			return err
		}
		if pia != nil && string(pia.UID) == rec.AssociationUID {
			uid := types.UID(rec.AssociationUID)
			if err := m.Client.Delete(ctx, pia, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting the association of %s: %w", c.ref(), err)
			}
			m.say("%s: association deleted", c.ref())
		}
	}
	if rec.TrustAfter != "" && rec.TrustBefore != "" {
		name, err := m.roleOf(c)
		if err != nil {
			return err
		}
		cur, err := m.trust(ctx, c, name)
		if err != nil {
			return err
		}
		switch cur {
		case rec.TrustBefore:
		case rec.TrustAfter:
			if _, err := m.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(rec.TrustBefore)}); err != nil {
				return fmt.Errorf("restoring role %s's trust policy: %w", c.RoleARN, err)
			}
			m.say("%s: role %s's trust policy restored", c.ref(), c.RoleARN)
		default:
			return fmt.Errorf("role %s's trust policy changed since %s was migrated, so restoring it would lose that change; the policy before the migration is in annotation %s of ServiceAccount %s (trustBefore): restore it by hand, then remove the annotation", c.RoleARN, c.ref(), AnnotationRecord, c.ref())
		}
	}
	// The annotations, and the record, in one write.
	if err := m.Client.Get(ctx, client.ObjectKeyFromObject(c.SA), c.SA); err != nil {
		return err
	}
	if c.SA.Annotations == nil {
		c.SA.Annotations = map[string]string{}
	}
	for k, v := range rec.Annotations {
		c.SA.Annotations[k] = v
	}
	delete(c.SA.Annotations, AnnotationRecord)
	if err := m.Client.Update(ctx, c.SA); err != nil {
		return fmt.Errorf("restoring ServiceAccount %s's annotations: %w", c.ref(), err)
	}
	m.say("%s: rolled back", c.ref())
	c.Record = nil
	return nil
}
