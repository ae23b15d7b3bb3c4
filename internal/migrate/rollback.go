package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
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

// The record a rollback reads is an annotation on the ServiceAccount, which
// every editor of the namespace may write. So rollback never writes a
// document it finds there: it undoes the migration's trust change by the
// inverse operations, on the role's trust as IAM has it now.
//   - podid's statement for the ServiceAccount (found by its Sid) is
//     removed, if the record says the migration added it;
//   - a statement of the record's trustBefore that the role no longer has
//     is put back only if it is this ServiceAccount's own OIDC statement
//     through this cluster's provider (what --remove-oidc-trust removes),
//     and only if podid's statement for it is there: the mark of a
//     migration of this role. Anything else the record holds is reported,
//     and not written.
// When the result equals the record's trustBefore, that text is written,
// so that the role gets its document back byte for byte.

// trustUndo is what rollback does to one role's trust for one record.
type trustUndo struct {
	name string // the role's name
	// removeSid: podid's statement for the ServiceAccount goes.
	removeSid string
	// putBack are the OIDC statements put back.
	putBack int
	// refused says, for each statement of the record's trustBefore not put
	// back, why.
	refused []string
	// after is the document to write; "" when nothing changes.
	after string
	// exact: after is the record's trustBefore, byte for byte.
	exact bool
}

// trustChanged reports whether the record says the migration changed the
// role's trust (or was about to).
func (r *Record) trustChanged() bool {
	return r.TrustBefore != "" || r.Has(StepTrust) || r.Has(StepRemoveOIDCTrust) || r.Pending == StepTrust || r.Pending == StepRemoveOIDCTrust
}

// undoTrust computes the inverse of c's migration on its role's current
// trust, reading IAM once.
func (m *Migrator) undoTrust(ctx context.Context, c *Candidate) (*trustUndo, error) {
	rec := c.Record
	if !rec.trustChanged() {
		return nil, nil
	}
	name, err := m.roleOf(c)
	if err != nil {
		return nil, err
	}
	cur, d, err := m.trustParsed(ctx, c, name)
	if err != nil {
		return nil, err
	}
	u := &trustUndo{name: name}
	sid := iamrole.StatementID(m.association(c))
	marked := d.HasSid(sid)
	if rec.TrustBefore == "" {
		// Recorded as pending and interrupted before the document was
		// read: nothing was written.
		return u, nil
	}
	before, err := iampolicy.ParseDocument(rec.TrustBefore)
	if err != nil {
		u.refused = append(u.refused, fmt.Sprintf("the record's trustBefore is not a policy document (%v)", err))
		return u, nil
	}
	if marked && !before.HasSid(sid) {
		u.removeSid = sid // the migration added it
	}
	now := map[string]bool{}
	for _, raw := range d.Statement {
		now[iampolicy.Canonical(raw)] = true
	}
	var out []json.RawMessage
	kept := map[string]bool{}
	for i, raw := range before.Statement {
		key := iampolicy.Canonical(raw)
		switch {
		case now[key]:
			// Still there: kept, in the order it had.
		case !marked:
			u.refused = append(u.refused, fmt.Sprintf("statement %d of the record's trustBefore is not in the role, and the role has no podid statement for %s, so no migration of this role is there to undo (the trust was restored already, or the record does not describe this role)", i+1, c.ref()))
			continue
		case !m.Issuer.isOIDCStatementFor(raw, c.RoleARN, c.SA.Namespace, c.SA.Name):
			u.refused = append(u.refused, fmt.Sprintf("statement %d of the record's trustBefore (%s) is not in the role and is not %s's own OIDC statement through %s: the record was changed since the migration, or the statement was removed by someone else", i+1, clip(compact(raw)), c.ref(), m.Issuer.provider(c.RoleARN)))
			continue
		default:
			u.putBack++
		}
		kept[key] = true
		out = append(out, raw)
	}
	// Statements added since the migration stay, after the others; podid's
	// statement goes if the migration added it.
	for _, raw := range d.Statement {
		key := iampolicy.Canonical(raw)
		if kept[key] || (u.removeSid != "" && iampolicy.StatementSid(raw) == sid) {
			continue
		}
		out = append(out, raw)
	}
	after := &iampolicy.Document{Version: d.Version, ID: d.ID, Statement: out}
	switch {
	case iampolicy.Canonical(json.RawMessage(after.String())) == iampolicy.Canonical(json.RawMessage(rec.TrustBefore)):
		u.after, u.exact = rec.TrustBefore, true
	case iampolicy.Canonical(json.RawMessage(after.String())) != iampolicy.Canonical(json.RawMessage(cur)):
		u.after = after.String()
	}
	if u.after != "" && iampolicy.Canonical(json.RawMessage(u.after)) == iampolicy.Canonical(json.RawMessage(cur)) {
		u.after, u.exact = "", false // already as it should be
	}
	return u, nil
}

// describe says what u does, for the plan and the run.
func (u *trustUndo) describe(c *Candidate) []string {
	var out []string
	switch {
	case u == nil:
		out = append(out, "trust: not changed by the migration")
	case u.after == "":
		out = append(out, "trust: nothing to write")
	default:
		var parts []string
		if u.removeSid != "" {
			parts = append(parts, "remove podid's statement "+u.removeSid)
		}
		if u.putBack > 0 {
			parts = append(parts, fmt.Sprintf("put back %d OIDC statement(s) for %s", u.putBack, subject(c.SA.Namespace, c.SA.Name)))
		}
		line := "trust of " + c.RoleARN + ": " + strings.Join(parts, "; ")
		if u.exact {
			line += " (the document before the migration, byte for byte)"
		} else {
			line += " (statements changed since the migration are kept)"
		}
		out = append(out, line)
	}
	if u != nil {
		for _, r := range u.refused {
			out = append(out, "✗ not written: "+r)
		}
	}
	return out
}

// PlanRollback prints what Rollback would do for c, reading only. It
// returns false when the record holds something rollback will not write,
// or the role cannot be read.
func (m *Migrator) PlanRollback(ctx context.Context, c *Candidate) bool {
	m.say("%s (role %s): roll back %v", c.ref(), c.RoleARN, c.Record.Done)
	u, err := m.undoTrust(ctx, c)
	if err != nil {
		m.say("  ✗ %v", err)
		return false
	}
	for _, line := range u.describe(c) {
		m.say("  %s", line)
	}
	if c.Record.AssociationUID != "" {
		m.say("  association: delete %s if it is still the one the migration created", c.ref())
	}
	if len(c.Record.Restarted) > 0 {
		m.say("  restart: %s, with their templates as before", strings.Join(sortedKeys(c.Record.Restarted), ", "))
	}
	if a := restorable(c.Record.Annotations); len(a) > 0 {
		m.say("  annotations: put back %s", strings.Join(sortedKeys(a), ", "))
	}
	return u == nil || len(u.refused) == 0
}

// Rollback undoes c's migration: restarted workloads' templates back (which
// restarts them onto IRSA), the association it created deleted, the
// trust's inverse operations (see undoTrust), the eks.amazonaws.com/*
// annotations back, and the record removed last, so that an interrupted
// rollback can run again. A record holding what rollback will not write is
// left on the ServiceAccount, and refused is true.
func (m *Migrator) Rollback(ctx context.Context, c *Candidate) (refused bool, err error) {
	rec := c.Record
	if rec == nil {
		return false, nil
	}
	if len(rec.Restarted) > 0 {
		workloads, err := m.workloads(ctx, c)
		if err != nil {
			return false, err
		}
		for _, w := range workloads {
			if before, ok := rec.Restarted[workloadName(w)]; ok {
				if err := m.setRestartedAt(ctx, w, before); err != nil {
					return false, err
				}
			}
		}
	}
	if rec.AssociationUID != "" {
		pia, err := m.existingAssociation(ctx, c)
		if err != nil {
			return false, err
		}
		// Only the association the migration made (by UID, and marked).
		if pia != nil && string(pia.UID) == rec.AssociationUID && pia.Annotations[AnnotationMigrated] == "true" {
			uid := types.UID(rec.AssociationUID)
			if err := m.Client.Delete(ctx, pia, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("deleting the association of %s: %w", c.ref(), err)
			}
			m.say("%s: association deleted", c.ref())
		}
	}
	u, err := m.undoTrust(ctx, c)
	if err != nil {
		return false, err
	}
	if u != nil && u.after != "" {
		if _, err := m.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(u.name), PolicyDocument: aws.String(u.after)}); err != nil {
			return false, fmt.Errorf("restoring role %s's trust policy: %w", c.RoleARN, err)
		}
	}
	for _, line := range u.describe(c) {
		m.say("%s: %s", c.ref(), line)
	}
	refused = u != nil && len(u.refused) > 0

	// The annotations, and the record, in one write.
	if err := m.Client.Get(ctx, client.ObjectKeyFromObject(c.SA), c.SA); err != nil {
		return refused, err
	}
	if c.SA.Annotations == nil {
		c.SA.Annotations = map[string]string{}
	}
	for k, v := range restorable(rec.Annotations) {
		c.SA.Annotations[k] = v
	}
	if !refused {
		delete(c.SA.Annotations, AnnotationRecord)
	}
	if err := m.Client.Update(ctx, c.SA); err != nil {
		return refused, fmt.Errorf("restoring ServiceAccount %s's annotations: %w", c.ref(), err)
	}
	if refused {
		m.say("%s: rolled back, except what is marked ✗ above; the record is left in annotation %s for you to read: remove it once done", c.ref(), AnnotationRecord)
		return true, nil
	}
	m.say("%s: rolled back", c.ref())
	c.Record = nil
	return false, nil
}

// restorable are the record's annotations rollback puts back: IRSA's own,
// which the migration removed; nothing else a record could name.
func restorable(annotations map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		if strings.HasPrefix(k, podidentity.AnnotationPrefix) {
			out[k] = v
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compact is raw as written, without its whitespace.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
