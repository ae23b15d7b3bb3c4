package integration

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
)

// TestEKSAPITags runs the cycle Terraform's aws_eks_pod_identity_association
// runs — create, describe, tag, untag, update, delete — with the
// aws-sdk-go-v2 eks client, and EKS's refusals of bad ARNs and of tags over
// its limits, each leaving the association as it was.
func TestEKSAPITags(t *testing.T) {
	ctx := t.Context()
	c := eksClient(eksAdminKey)
	ns := newNamespace(t)
	created, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster,
		Namespace: aws.String(ns), ServiceAccount: aws.String("tf"), RoleArn: aws.String("arn:aws:iam::111122223333:role/tf"),
		Tags: map[string]string{"managed-by": "terraform"}})
	if err != nil {
		t.Fatal(err)
	}
	arn, id := created.Association.AssociationArn, created.Association.AssociationId
	tags := func() map[string]string {
		t.Helper()
		out, err := c.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: arn})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: id})
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(out.Tags, d.Association.Tags) && !(len(out.Tags) == 0 && len(d.Association.Tags) == 0) {
			t.Fatalf("ListTagsForResource says %v, Describe %v", out.Tags, d.Association.Tags)
		}
		return out.Tags
	}
	expect := func(want map[string]string) {
		t.Helper()
		if got := tags(); !maps.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("tags = %v, want %v", got, want)
		}
	}
	expect(map[string]string{"managed-by": "terraform"})

	if _, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"team": "payments", "env": "prod"}}); err != nil {
		t.Fatal(err)
	}
	expect(map[string]string{"managed-by": "terraform", "team": "payments", "env": "prod"})
	if _, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"env": "staging"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagResource(ctx, &eks.UntagResourceInput{ResourceArn: arn, TagKeys: []string{"team", "not-there"}}); err != nil {
		t.Fatal(err)
	}
	expect(map[string]string{"managed-by": "terraform", "env": "staging"})

	// Update leaves tags alone, as on EKS.
	if _, err := c.UpdatePodIdentityAssociation(ctx, &eks.UpdatePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: id, RoleArn: aws.String("arn:aws:iam::111122223333:role/tf-v2")}); err != nil {
		t.Fatal(err)
	}
	expect(map[string]string{"managed-by": "terraform", "env": "staging"})
	if _, err := c.UntagResource(ctx, &eks.UntagResourceInput{ResourceArn: arn, TagKeys: []string{"managed-by", "env"}}); err != nil {
		t.Fatal(err)
	}
	expect(nil)

	// Refusals: nothing changes.
	if _, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"keep": "me"}}); err != nil {
		t.Fatal(err)
	}
	fifty := map[string]string{}
	for i := range 50 {
		fifty[fmt.Sprintf("k%02d", i)] = "v"
	}
	other := strings.Replace(*arn, *id, "a-00000000000000000", 1)
	cases := []struct {
		name   string
		arn    string
		tags   map[string]string
		code   string
		status int
		says   string
	}{
		{"not an ARN", "nope", map[string]string{"a": "b"}, "BadRequestException", 400, "not a valid ARN"},
		{"another cluster's association", strings.Replace(*arn, "/"+identity.ClusterName+"/", "/elsewhere/", 1), map[string]string{"a": "b"}, "NotFoundException", 404, "not found"},
		{"an association that does not exist", other, map[string]string{"a": "b"}, "NotFoundException", 404, "not found"},
		{"aws: prefix", *arn, map[string]string{"aws:team": "x"}, "BadRequestException", 400, "reserved for AWS"},
		{"key too long", *arn, map[string]string{strings.Repeat("k", 129): "x"}, "BadRequestException", 400, "1 to 128 characters"},
		{"value too long", *arn, map[string]string{"k": strings.Repeat("v", 257)}, "BadRequestException", 400, "at most 256 characters"},
		{"51 tags with the one it has", *arn, fifty, "BadRequestException", 400, "at most 50 tags"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: aws.String(tc.arn), Tags: tc.tags})
			if errorCode(err) != tc.code || statusOf(err) != tc.status || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %s %d (%v), want %s %d saying %q", errorCode(err), statusOf(err), err, tc.code, tc.status, tc.says)
			}
		})
	}
	expect(map[string]string{"keep": "me"})
	if _, err := c.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: aws.String(other)}); errorCode(err) != "NotFoundException" {
		t.Errorf("listing the tags of nothing: %v", err)
	}
	if _, err := c.UntagResource(ctx, &eks.UntagResourceInput{ResourceArn: aws.String("arn:aws:eks"), TagKeys: []string{"x"}}); errorCode(err) != "BadRequestException" {
		t.Errorf("untagging a malformed ARN: %v", err)
	}

	// Creating with tags over the limits is refused with the association
	// operations' error, and nothing is created.
	for name, bad := range map[string]map[string]string{"aws: prefix": {"aws:x": "y"}, "51 tags": maps.Collect(func(yield func(string, string) bool) {
		for i := range 51 {
			yield(fmt.Sprintf("k%02d", i), "v")
		}
	})} {
		_, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster,
			Namespace: aws.String(ns), ServiceAccount: aws.String("bad-tags"), RoleArn: aws.String("arn:aws:iam::111122223333:role/tf"), Tags: bad})
		if errorCode(err) != "InvalidParameterException" {
			t.Errorf("create with %s: %v", name, err)
		}
	}
	l, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns)})
	if err != nil || len(l.Associations) != 1 {
		t.Fatalf("after the refusals: %+v, %v", l, err)
	}

	if _, err := c.DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: arn}); errorCode(err) != "NotFoundException" {
		t.Errorf("tags of a deleted association: %v", err)
	}
}
