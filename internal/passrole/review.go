package passrole

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MayUse asks the API server whether the user of c may use roleARN in
// namespace (a SelfSubjectAccessReview of the permission above). The
// commands that act with the user's own AWS rights for an association
// (a role's trust changed for it, a migration) ask before any write, so
// that they never grant with IAM what podid's PassRole would refuse.
// refusal says what to grant when the answer is no.
func MayUse(ctx context.Context, c client.Client, namespace, roleARN string) (refusal string, err error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Group: Group, Resource: Resource, Verb: Verb, Name: roleARN},
	}}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server whether you may use role %s in namespace %s: %w", roleARN, namespace, err)
	}
	if review.Status.Allowed {
		return "", nil
	}
	return fmt.Sprintf("you may not use IAM role %s in namespace %s (podid's PassRole): grant RBAC verb %q on resource %q of API group %s with resourceNames [%q]",
		roleARN, namespace, Verb, Resource, Group, roleARN), nil
}
