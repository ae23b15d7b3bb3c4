package rotator

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podid/podid/api/v1alpha1"
)

// The JFrog exchange is signed for a regional STS when AWS's own setting
// asks, and always in partitions without the global endpoint.
func TestSTSRegion(t *testing.T) {
	cases := []struct {
		region, env, want string
	}{
		{"us-east-1", "", ""},
		{"eu-west-1", "legacy", ""},
		{"eu-west-1", "regional", "eu-west-1"},
		{"eu-west-1", "REGIONAL", "eu-west-1"},
		{"cn-north-1", "", "cn-north-1"},
		{"us-gov-west-1", "", "us-gov-west-1"},
	}
	for _, tc := range cases {
		f := &ExchangerFactory{AWS: aws.Config{Region: "us-east-1"}, Getenv: func(k string) string {
			if k == "AWS_STS_REGIONAL_ENDPOINTS" {
				return tc.env
			}
			return ""
		}}
		rot := &v1alpha1.SecretRotator{Spec: v1alpha1.SecretRotatorSpec{AWSRegion: tc.region}}
		if got := f.STSRegion(rot); got != tc.want {
			t.Errorf("region %s, AWS_STS_REGIONAL_ENDPOINTS=%q: %q, want %q", tc.region, tc.env, got, tc.want)
		}
	}
}
