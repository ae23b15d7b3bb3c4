package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

// associationView is an association as the CLI prints it: the fields of
// Amazon EKS's PodIdentityAssociation, in its order and spelling, plus
// podid's Ready condition.
type associationView struct {
	Namespace          string            `json:"namespace"`
	ServiceAccount     string            `json:"serviceAccount"`
	RoleARN            string            `json:"roleArn"`
	AssociationARN     string            `json:"associationArn,omitempty"`
	AssociationID      string            `json:"associationId"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          *time.Time        `json:"createdAt,omitempty"`
	ModifiedAt         *time.Time        `json:"modifiedAt,omitempty"`
	DisableSessionTags bool              `json:"disableSessionTags"`
	TargetRoleARN      string            `json:"targetRoleArn,omitempty"`
	ExternalID         string            `json:"externalId,omitempty"`
	Policy             string            `json:"policy,omitempty"`
	Ready              string            `json:"ready"`
	Reason             string            `json:"reason,omitempty"`
	Message            string            `json:"message,omitempty"`
}

func viewOf(pia *v1alpha1.PodIdentityAssociation) associationView {
	v := associationView{
		Namespace:          pia.Namespace,
		ServiceAccount:     pia.Spec.ServiceAccount,
		RoleARN:            pia.Spec.RoleARN,
		AssociationARN:     pia.Status.AssociationARN,
		AssociationID:      association.IDFor(pia.UID),
		Tags:               pia.Spec.Tags,
		DisableSessionTags: pia.Spec.DisableSessionTags,
		TargetRoleARN:      pia.Spec.TargetRoleARN,
		ExternalID:         pia.Status.ExternalID,
		Policy:             pia.Spec.Policy,
		Ready:              "Unknown",
	}
	created := pia.CreationTimestamp.UTC()
	v.CreatedAt = &created
	if t := pia.Status.ModifiedAt; t != nil {
		modified := t.UTC()
		v.ModifiedAt = &modified
	}
	if c := meta.FindStatusCondition(pia.Status.Conditions, v1alpha1.ConditionReady); c != nil && pia.Status.ObservedGeneration == pia.Generation {
		v.Ready, v.Reason, v.Message = string(c.Status), c.Reason, c.Message
	} else {
		v.Reason, v.Message = "Pending", "podid server has not processed this version of the association yet"
	}
	return v
}

func (f *associationFlags) printOne(pia *v1alpha1.PodIdentityAssociation) error {
	if f.output == "table" {
		return printTable(f.streams.Out, []associationView{viewOf(pia)})
	}
	return printStructured(f.streams.Out, f.output, map[string]any{"association": viewOf(pia)})
}

func (f *associationFlags) printList(items []v1alpha1.PodIdentityAssociation) error {
	views := make([]associationView, len(items))
	for i := range items {
		views[i] = viewOf(&items[i])
	}
	if f.output == "table" {
		if len(views) == 0 {
			_, err := fmt.Fprintln(f.streams.Err, "No associations found.")
			return err
		}
		return printTable(f.streams.Out, views)
	}
	return printStructured(f.streams.Out, f.output, map[string]any{"associations": views})
}

// printChange reports a create, update or delete: a sentence for people, or
// the association for -o json|yaml.
func (f *associationFlags) printChange(pia *v1alpha1.PodIdentityAssociation, verb string) error {
	if f.output != "table" {
		return f.printOne(pia)
	}
	v := viewOf(pia)
	msg := fmt.Sprintf("association %s %s: ServiceAccount %s/%s → %s", v.AssociationID, verb, v.Namespace, v.ServiceAccount, v.RoleARN)
	if v.TargetRoleARN != "" {
		msg += " → " + v.TargetRoleARN
	}
	if verb != "deleted" && v.Reason != v1alpha1.ReasonAssociated {
		msg += fmt.Sprintf("\n  %s %s: %s", v.Ready, v.Reason, v.Message)
	}
	_, err := fmt.Fprintln(f.streams.Out, msg)
	return err
}

// ageOf prints how old something created at t is, as kubectl does; tests
// replace it to make tables independent of time.
var ageOf = func(t time.Time) string { return duration.HumanDuration(time.Since(t)) }

func printTable(w io.Writer, views []associationView) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSERVICE ACCOUNT\tROLE ARN\tASSOCIATION ID\tREADY\tAGE")
	for _, v := range views {
		ready := v.Ready
		if v.Reason != "" && v.Reason != v1alpha1.ReasonAssociated {
			ready += " (" + v.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Namespace, v.ServiceAccount, v.RoleARN, v.AssociationID, ready, ageOf(*v.CreatedAt))
	}
	return tw.Flush()
}

func printStructured(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
	} else {
		data = append(data, '\n')
	}
	_, err = w.Write(data)
	return err
}
