package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
)

// AnnotationMigrated marks an association a migration created.
const AnnotationMigrated = "podid.io/migrated-from-irsa"

// restartedAt is the pod template annotation `kubectl rollout restart`
// sets; a migration's restart is one.
const restartedAt = "kubectl.kubernetes.io/restartedAt"

// Plan prints what Apply would do for c, reading only, and refuses what
// Apply would refuse, for the same reasons: it returns an error for a
// ServiceAccount that cannot be migrated (and says why).
func (m *Migrator) Plan(ctx context.Context, c *Candidate) error {
	m.say("%s (role %s):", c.ref(), c.RoleARN)
	fail := func(err error) error {
		m.say("  ✗ %v", err)
		return err
	}
	name, err := m.roleOf(c)
	if err != nil {
		return fail(err)
	}
	doc, d, err := m.trustParsed(ctx, c, name)
	if err != nil {
		return fail(err)
	}
	note, err := m.verify(c, doc, d)
	if err != nil {
		return fail(err)
	}
	m.say("  %s", note)
	if d.HasSid(iamrole.StatementID(m.association(c))) {
		m.say("  trust: podid's statement for %s is there", c.ref())
	} else {
		m.say("  trust: add podid's statement (principal %s, session tags of %s)", m.Principal, c.ref())
	}
	pia, err := m.AssociationInForce(ctx, c)
	switch {
	case err != nil:
		return err
	case pia == nil:
		if err := m.mayCreateAssociation(ctx, c); err != nil {
			return fail(err)
		}
		m.say("  association: create, role %s", c.RoleARN)
	case pia.Spec.RoleARN == c.RoleARN:
		m.say("  association: exists")
	default:
		return fail(otherRole(c, pia))
	}
	if m.Options.RemoveOIDCTrust {
		only, shared := oidcStatementsFor(d, m.Issuer, c.RoleARN, c.SA.Namespace, c.SA.Name)
		m.say("  OIDC trust: remove %d statement(s) for %s%s", len(only), subject(c.SA.Namespace, c.SA.Name), sharedNote(shared))
	}
	if m.Options.RemoveAnnotation && c.SA.Annotations[podidentity.AnnotationRoleARN] != "" {
		m.say("  annotation: remove %s", podidentity.AnnotationRoleARN)
	}
	if m.Options.Restart {
		workloads, err := m.workloads(ctx, c)
		if err != nil {
			return err
		}
		m.say("  restart: %s", orNone(workloadNames(workloads)))
	}
	pods, err := m.podsOnIRSA(ctx, c)
	if err != nil {
		return err
	}
	m.say("  pods on IRSA now: %s", orNone(pods))
	return nil
}

// mayCreateAssociation refuses, before anything is written, an
// association the API server would refuse under podid's PassRole policy.
func (m *Migrator) mayCreateAssociation(ctx context.Context, c *Candidate) error {
	refusal, err := m.passRoleRefusal(ctx, c)
	if err != nil {
		return err
	}
	if refusal != "" {
		return skipf("%s", refusal)
	}
	return nil
}

func sharedNote(shared int) string {
	if shared == 0 {
		return ""
	}
	return fmt.Sprintf("; %d statement(s) that also admit others are kept", shared)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Apply migrates c, step by step, recording each step before taking it.
// Done steps are skipped, so running it again resumes.
func (m *Migrator) Apply(ctx context.Context, c *Candidate) error {
	m.dirty = false
	name, err := m.roleOf(c)
	if err != nil {
		return err
	}
	if c.Record == nil {
		annotations := map[string]string{}
		for k, v := range c.SA.Annotations {
			if strings.HasPrefix(k, podidentity.AnnotationPrefix) {
				annotations[k] = v
			}
		}
		// Written with the first change's pending step, or at the end.
		c.Record = &Record{Seq: m.now().UnixNano(), RoleARN: c.RoleARN, Annotations: annotations}
	}
	rec := c.Record
	a := m.association(c)

	// The association as it is, read once: an association the step would
	// refuse (another role's, or PassRole refused) is said before IAM is
	// changed, and the step itself uses what was read.
	var pia *v1alpha1.PodIdentityAssociation
	if !rec.Has(StepAssociation) {
		var err error
		if pia, err = m.AssociationInForce(ctx, c); err != nil {
			return err
		}
		switch {
		case pia == nil:
			if err := m.mayCreateAssociation(ctx, c); err != nil {
				return err
			}
		case pia.Spec.RoleARN != c.RoleARN:
			return otherRole(c, pia)
		}
	}

	if !rec.Has(StepTrust) {
		doc, d, err := m.trustParsed(ctx, c, name)
		if err != nil {
			return err
		}
		if _, err := m.verify(c, doc, d); err != nil {
			return err
		}
		if d.HasSid(iamrole.StatementID(a)) {
			// There already, or written by a run that stopped before
			// recording it.
			if rec.Pending == StepTrust {
				rec.TrustAfter = doc
			}
		} else {
			if rec.TrustBefore == "" {
				rec.TrustBefore = doc
			}
			rec.Pending = StepTrust
			if err := m.save(ctx, c); err != nil {
				return err
			}
			stmt, _ := json.Marshal(iamrole.TrustStatement(m.Principal, a))
			d.Statement = append(d.Statement, stmt)
			after := d.String()
			if _, err := m.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(after)}); err != nil {
				return fmt.Errorf("adding podid's statement to role %s's trust: %w", c.RoleARN, err)
			}
			rec.TrustAfter = after
			m.say("%s: role %s trusts podid server for %s", c.ref(), c.RoleARN, c.ref())
		}
		m.done(rec, StepTrust)
	}

	if !rec.Has(StepAssociation) {
		switch {
		case pia != nil:
			// Existing, with this role (another's was refused above): done. It is the migration's only if a run that
			// stopped after creating it said so.
			if rec.Pending == StepAssociation && pia.Annotations[AnnotationMigrated] == "true" {
				rec.AssociationUID = string(pia.UID)
			}
		default:
			// The trust step may have been recorded done by an earlier run,
			// or by whoever edited the record: verify the role here too.
			if err := m.verifiedTrust(ctx, c, name); err != nil {
				return err
			}
			rec.Pending = StepAssociation
			if err := m.save(ctx, c); err != nil {
				return err
			}
			pia = &v1alpha1.PodIdentityAssociation{
				ObjectMeta: metav1.ObjectMeta{Namespace: c.SA.Namespace, Name: c.SA.Name, Annotations: map[string]string{AnnotationMigrated: "true"}},
				Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: c.SA.Name, RoleARN: c.RoleARN},
			}
			if err := m.Client.Create(ctx, pia); err != nil {
				return fmt.Errorf("creating the association of %s: %w", c.ref(), err)
			}
			rec.AssociationUID = string(pia.UID)
			m.say("%s: association created", c.ref())
		}
		m.done(rec, StepAssociation)
	}

	if m.Options.RemoveOIDCTrust && !rec.Has(StepRemoveOIDCTrust) {
		doc, d, err := m.trustParsed(ctx, c, name)
		if err != nil {
			return err
		}
		if _, err := m.verify(c, doc, d); err != nil {
			return err
		}
		only, shared := oidcStatementsFor(d, m.Issuer, c.RoleARN, c.SA.Namespace, c.SA.Name)
		if len(only) == 0 && rec.Pending == StepRemoveOIDCTrust {
			// Removed by a run that stopped before recording it.
			rec.TrustAfter = doc
		}
		if len(only) > 0 {
			if rec.TrustBefore == "" {
				rec.TrustBefore = doc
			}
			rec.Pending = StepRemoveOIDCTrust
			if err := m.save(ctx, c); err != nil {
				return err
			}
			for i := len(only) - 1; i >= 0; i-- {
				d.Statement = append(d.Statement[:only[i]], d.Statement[only[i]+1:]...)
			}
			after := d.String()
			if _, err := m.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(after)}); err != nil {
				return fmt.Errorf("removing %s's OIDC statement from role %s: %w", c.ref(), c.RoleARN, err)
			}
			rec.TrustAfter = after
		}
		m.say("%s: removed %d OIDC trust statement(s)%s", c.ref(), len(only), sharedNote(shared))
		m.done(rec, StepRemoveOIDCTrust)
	}

	if m.Options.RemoveAnnotation && !rec.Has(StepRemoveAnnotation) {
		delete(c.SA.Annotations, podidentity.AnnotationRoleARN)
		m.done(rec, StepRemoveAnnotation)
		if err := m.save(ctx, c); err != nil { // one write: the record and the removal
			return err
		}
		m.say("%s: annotation %s removed", c.ref(), podidentity.AnnotationRoleARN)
	}

	if m.Options.Restart && !rec.Has(StepRestart) {
		// The steps before are recorded done before waiting.
		if err := m.save(ctx, c); err != nil {
			return err
		}
		if err := m.waitReady(ctx, c); err != nil {
			return err
		}
		workloads, err := m.workloads(ctx, c)
		if err != nil {
			return err
		}
		if rec.Restarted == nil {
			rec.Restarted = map[string]string{}
		}
		for _, w := range workloads {
			key := workloadName(w)
			tmpl := template(w)
			if _, ok := rec.Restarted[key]; !ok {
				rec.Restarted[key] = tmpl.Annotations[restartedAt]
			}
		}
		rec.Pending = StepRestart
		if err := m.save(ctx, c); err != nil {
			return err
		}
		at := m.now().UTC().Format(time.RFC3339)
		for _, w := range workloads {
			if err := m.setRestartedAt(ctx, w, at); err != nil {
				return err
			}
		}
		m.say("%s: restarted %s", c.ref(), orNone(workloadNames(workloads)))
		m.done(rec, StepRestart)
	}
	if m.dirty {
		return m.save(ctx, c)
	}
	return nil
}

// done marks step done, to be written with the next change or at the end:
// a step done but not recorded is found done again by a re-run.
func (m *Migrator) done(rec *Record, step Step) {
	if !rec.Has(step) {
		rec.Done = append(rec.Done, step)
	}
	rec.Pending = ""
	m.dirty = true
}

// waitReady waits for the association podid server marks Ready: pods
// restarted before it is would get no credentials.
func (m *Migrator) waitReady(ctx context.Context, c *Candidate) error {
	wait := m.Options.Wait
	if wait == 0 {
		wait = time.Minute
	}
	var last string
	err := pollUntil(ctx, wait, func(ctx context.Context) (bool, error) {
		pia, err := m.AssociationInForce(ctx, c)
		if err != nil || pia == nil {
			return false, err
		}
		for _, cond := range pia.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady {
				last = cond.Reason + ": " + cond.Message
				return cond.Status == metav1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the association of %s is not Ready after %s (%s): its workloads are not restarted; fix it and run again", c.ref(), wait, last)
	}
	return nil
}

func pollUntil(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond)
}

// workloads are the Deployments, StatefulSets and DaemonSets whose pods
// run as c's ServiceAccount.
func (m *Migrator) workloads(ctx context.Context, c *Candidate) ([]client.Object, error) {
	var out []client.Object
	in := client.InNamespace(c.SA.Namespace)
	var deps appsv1.DeploymentList
	var sts appsv1.StatefulSetList
	var dss appsv1.DaemonSetList
	for _, l := range []client.ObjectList{&deps, &sts, &dss} {
		if err := m.Client.List(ctx, l, in); err != nil {
			return nil, fmt.Errorf("listing the workloads of %s: %w", c.ref(), err)
		}
	}
	runsAs := func(spec corev1.PodSpec) bool {
		sa := spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		return sa == c.SA.Name
	}
	for i := range deps.Items {
		if runsAs(deps.Items[i].Spec.Template.Spec) {
			out = append(out, &deps.Items[i])
		}
	}
	for i := range sts.Items {
		if runsAs(sts.Items[i].Spec.Template.Spec) {
			out = append(out, &sts.Items[i])
		}
	}
	for i := range dss.Items {
		if runsAs(dss.Items[i].Spec.Template.Spec) {
			out = append(out, &dss.Items[i])
		}
	}
	return out, nil
}

func template(w client.Object) *corev1.PodTemplateSpec {
	switch w := w.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	}
	return nil
}

func workloadName(w client.Object) string {
	kind := strings.TrimPrefix(fmt.Sprintf("%T", w), "*v1.")
	return kind + "/" + w.GetName()
}

func workloadNames(ws []client.Object) []string {
	var out []string
	for _, w := range ws {
		out = append(out, workloadName(w))
	}
	return out
}

// setRestartedAt sets (or, for "", removes) the template annotation, as
// `kubectl rollout restart` does.
func (m *Migrator) setRestartedAt(ctx context.Context, w client.Object, value string) error {
	base := w.DeepCopyObject().(client.Object)
	tmpl := template(w)
	if value == "" {
		delete(tmpl.Annotations, restartedAt)
	} else {
		if tmpl.Annotations == nil {
			tmpl.Annotations = map[string]string{}
		}
		tmpl.Annotations[restartedAt] = value
	}
	if err := m.Client.Patch(ctx, w, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("restarting %s/%s: %w", w.GetNamespace(), workloadName(w), err)
	}
	return nil
}

// podsOnIRSA are c's running pods that have IRSA's variables: the SDK
// chain tries web identity before container credentials, so they stay on
// IRSA until restarted.
func (m *Migrator) podsOnIRSA(ctx context.Context, c *Candidate) ([]string, error) {
	var pods corev1.PodList
	if err := m.Client.List(ctx, &pods, client.InNamespace(c.SA.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", c.ref(), err)
	}
	var out []string
	for _, p := range pods.Items {
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		if sa != c.SA.Name || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, ctr := range p.Spec.Containers {
			if hasEnv(ctr, podidentity.EnvWebIdentityTokenFile) || hasEnv(ctr, podidentity.EnvRoleARN) {
				out = append(out, p.Name)
				break
			}
		}
	}
	return out, nil
}

func hasEnv(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// PodsOnIRSA reports c's pods still on IRSA after a migration.
func (m *Migrator) PodsOnIRSA(ctx context.Context, c *Candidate) ([]string, error) {
	return m.podsOnIRSA(ctx, c)
}
