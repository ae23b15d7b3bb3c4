package migrate

import (
	"encoding/json"
	"fmt"
	"time"
)

// AnnotationRecord holds, on the ServiceAccount itself, what a migration
// changed and what was there before: written before each change, so an
// interrupted run can be resumed or rolled back, and a rollback restores
// exactly what was there.
const AnnotationRecord = "podid.io/irsa-migration"

// Record is what a migration did to one ServiceAccount.
type Record struct {
	// Seq orders migrations: rollback undoes the latest first, so that a
	// role shared by several ServiceAccounts gets each trust document back
	// byte for byte.
	Seq int64 `json:"seq"`
	// RoleARN is the IRSA role, from the annotation.
	RoleARN string `json:"roleArn"`
	// Annotations are the ServiceAccount's eks.amazonaws.com/* annotations
	// before the migration.
	Annotations map[string]string `json:"annotations"`
	// TrustBefore is the role's trust policy before the migration, exactly
	// as IAM returned it (decoded); TrustAfter what the migration wrote.
	// Both empty while the trust is untouched.
	TrustBefore string `json:"trustBefore,omitempty"`
	TrustAfter  string `json:"trustAfter,omitempty"`
	// Steps done, in order (see the Step constants); a step is recorded as
	// pending before it is taken and done after.
	Done    []Step `json:"done,omitempty"`
	Pending Step   `json:"pending,omitempty"`
	// AssociationUID is the association the migration created.
	AssociationUID string `json:"associationUID,omitempty"`
	// Restarted are the workloads restarted ("Deployment/name"), with the
	// restartedAt value each had before ("" for none).
	Restarted map[string]string `json:"restarted,omitempty"`
	Updated   time.Time         `json:"updated"`
}

// Step is one change of a migration.
type Step string

const (
	StepTrust            Step = "trust"             // podid's statement added to the role's trust
	StepAssociation      Step = "association"       // the association created
	StepRemoveOIDCTrust  Step = "remove-oidc-trust" // the ServiceAccount's OIDC statement removed
	StepRemoveAnnotation Step = "remove-annotation" // eks.amazonaws.com/role-arn removed
	StepRestart          Step = "restart"           // workloads restarted
)

// Has reports whether step is done.
func (r *Record) Has(step Step) bool {
	for _, s := range r.Done {
		if s == step {
			return true
		}
	}
	return false
}

func (r *Record) encode() (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

func decodeRecord(s string) (*Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("annotation %s is not podid's migration record: %w", AnnotationRecord, err)
	}
	return &r, nil
}
