package eksapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

func TestWireTimestampsAreEpochSeconds(t *testing.T) {
	id := association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "c"}
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "sa", UID: types.UID("u"), CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "sa", RoleARN: "arn:aws:iam::111122223333:role/r"},
	}
	b, err := json.Marshal(toWire(id, pia))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"createdAt":1795428000`, `"modifiedAt":1795428000`, `"associationArn":"arn:aws:eks:us-east-1:111122223333:podidentityassociation/c/a-`, `"clusterName":"c"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

// FuzzDecode: any body decodes or is refused with InvalidParameter or
// InvalidRequest, never a panic or another error.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"namespace":"n","serviceAccount":"s","roleArn":"arn:aws:iam::1:role/r","tags":{"a":"b"},"disableSessionTags":true,"policy":"{}","targetRoleArn":"x","clientRequestToken":"t"}`,
		`{"roleArn":"x","clientRequestToken":"t"}`, `{}`, ``, `{"tags":[]}`, `{"unknown":1}`, `{"namespace":5}`, `{} x`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&createRequest{}, &updateRequest{}} {
			err := decode(body, v)
			if err == nil {
				continue
			}
			var e *apiError
			if !errors.As(err, &e) || (e.Code != InvalidParameter && e.Code != InvalidRequest) {
				t.Fatalf("decode(%q) = %v", body, err)
			}
		}
	})
}
