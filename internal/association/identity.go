package association

import (
	"fmt"
	"regexp"
)

// Identity names the cluster the way Amazon EKS would, so that association
// ARNs and session tags carry the values an AWS user expects. It comes from
// podid server's flags.
type Identity struct {
	// Partition is the AWS partition: aws, aws-cn, aws-us-gov, …
	Partition string
	// Region is the AWS region the cluster is said to be in, e.g. eu-west-1.
	Region string
	// AccountID is the 12-digit AWS account the cluster is said to belong to.
	AccountID string
	// ClusterName is the cluster's name in EKS API paths and ARNs.
	ClusterName string
}

var (
	partitionRE   = regexp.MustCompile(`^aws(-[a-z]+)*$`)
	regionRE      = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	accountIDRE   = regexp.MustCompile(`^[0-9]{12}$`)
	clusterNameRE = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$`)
)

// Validate reports the first field that is not in AWS's format, naming the
// flag that sets it.
func (id Identity) Validate() error {
	switch {
	case !clusterNameRE.MatchString(id.ClusterName):
		return fmt.Errorf("cluster name %q is not valid: use 1 to 100 letters, digits, '-' and '_', starting with a letter or digit (--cluster-name)", id.ClusterName)
	case !regionRE.MatchString(id.Region):
		return fmt.Errorf("region %q is not an AWS region such as us-east-1 (--region)", id.Region)
	case !accountIDRE.MatchString(id.AccountID):
		return fmt.Errorf("account ID %q is not a 12-digit AWS account ID (--account-id)", id.AccountID)
	case !partitionRE.MatchString(id.Partition):
		return fmt.Errorf("partition %q is not an AWS partition such as aws, aws-cn or aws-us-gov (--partition)", id.Partition)
	}
	return nil
}

// ClusterARN is the cluster's ARN, as EKS would have named it.
func (id Identity) ClusterARN() string {
	return fmt.Sprintf("arn:%s:eks:%s:%s:cluster/%s", id.Partition, id.Region, id.AccountID, id.ClusterName)
}

// AssociationARN is the ARN of the association with the given ID.
func (id Identity) AssociationARN(associationID string) string {
	return "arn:" + id.Partition + ":eks:" + id.Region + ":" + id.AccountID +
		":podidentityassociation/" + id.ClusterName + "/" + associationID
}
