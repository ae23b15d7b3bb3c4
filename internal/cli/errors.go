package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
)

// explain turns an error from the API server into one that says what went
// wrong and what to do, naming what (e.g. "ServiceAccount shop/billing").
// Errors that are not from the API pass through unchanged.
func explain(err error, host, what string) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	switch {
	case meta.IsNoMatchError(err) || isMissingResource(err):
		return errors.New("this cluster has no PodIdentityAssociation API: install podid's CRDs first (kubectl apply -f config/crd/, or the Helm chart)")
	case apierrors.IsAlreadyExists(err):
		ns, sa := splitRef(what)
		return fmt.Errorf("%s already has an association, and a ServiceAccount can have only one; change it with `podid association update -n %s --service-account %s --role-arn …`, or delete it first", what, ns, sa)
	case apierrors.IsNotFound(err):
		ns, _ := splitRef(what)
		return fmt.Errorf("%s has no association; list them with `podid association list -n %s`", what, ns)
	case apierrors.IsInvalid(err) && errors.As(err, &status):
		var b strings.Builder
		b.WriteString("the API server refused the association:")
		for _, c := range status.Status().Details.Causes {
			field := strings.TrimPrefix(c.Field, "spec.")
			if c.Field == "" || c.Field == "<nil>" {
				field = "association"
			}
			fmt.Fprintf(&b, "\n  %s: %s", field, strings.TrimPrefix(c.Message, "Invalid value: "))
		}
		return errors.New(b.String())
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you are not allowed to do this (%s): an association hands its IAM role to every pod of the ServiceAccount, so only cluster administrators may manage associations unless one has granted you access (see docs/architecture.md, \"Who may create associations\")", status0(err))
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server at %s did not accept your credentials: check --kubeconfig and --context, or log in again", host)
	case isUnreachable(err):
		return fmt.Errorf("cannot reach the Kubernetes API server at %s: check --kubeconfig and --context, and that the cluster is running (%v)", host, err)
	case errors.As(err, &status):
		return fmt.Errorf("the API server answered: %w", err)
	}
	return err
}

func status0(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

// isMissingResource reports a 404 for the resource type itself, which is what
// a list or create gets when the CRD is not installed.
func isMissingResource(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsNotFound(err) {
		return false
	}
	d := status.Status().Details
	return d == nil || d.Name == ""
}

func isUnreachable(err error) bool {
	var netErr *net.OpError
	return errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused")
}

// splitRef takes "ServiceAccount ns/name" apart.
func splitRef(what string) (namespace, name string) {
	ref := what[strings.LastIndex(what, " ")+1:]
	namespace, name, _ = strings.Cut(ref, "/")
	return namespace, name
}
