package awsemu

// TrustPolicy is a role trust policy of one statement: principal (an AWS
// ARN) may take actions, a JSON string or array (`"sts:AssumeRole"`,
// `["sts:AssumeRole","sts:TagSession"]`), under condition, a JSON object or
// "" for none. Tests and the sandbox build their roles' trust with it.
func TrustPolicy(principal, actions, condition string) string {
	s := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":` + actions
	if condition != "" {
		s += `,"Condition":` + condition
	}
	return s + `}]}`
}

// PodidActions are what podid server needs on a role it assumes for pods.
const PodidActions = `["sts:AssumeRole","sts:TagSession"]`

// PodidTrust is the trust a role needs for podid server (principal) to
// assume it for pods, with no condition.
func PodidTrust(principal string) string { return TrustPolicy(principal, PodidActions, "") }
