package integration

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"k8s.io/client-go/kubernetes"
)

// associationLists is the API server's count of LIST requests for
// podidentityassociations, from its own metrics.
func associationLists(t *testing.T) float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="podidentityassociations"`) || !strings.Contains(line, `verb="LIST"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		total += v
	}
	return total
}

// Describing associations that do not exist, as any key holder may, costs
// podid no LIST of every association: the watch-backed index answers.
func TestUnknownAssociationIDsCostNoList(t *testing.T) {
	ctx := t.Context()
	before := associationLists(t)
	c := eksClient(eksAdminKey)
	for i := range 5 {
		id := fmt.Sprintf("a-%017d", i+1)
		_, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: aws.String(id)})
		if errorCode(err) != "ResourceNotFoundException" {
			t.Fatalf("describing %s: %v", id, err)
		}
	}
	if n := associationLists(t) - before; n != 0 {
		t.Errorf("5 unknown IDs made %v LIST requests of every association", n)
	}
}
