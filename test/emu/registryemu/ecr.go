package registryemu

import (
	"fmt"
	"strings"

	"github.com/podid/podid/test/emu/awsemu"
)

// NewECRRegistry is account's ECR registry: it admits user "AWS" with a
// password emu issued for that account, and, when allow is set, only for
// the repositories allow grants the token's role. (ECR decides that with
// the role's identity policy and the repository's policy; the emulator has
// neither, so tests say it here.)
func NewECRRegistry(emu *awsemu.Emulator, account string, allow func(tok awsemu.ECRToken, repository string) bool) *Registry {
	return NewRegistry("ECR", func(user, password, repository string) (string, bool) {
		if user != "AWS" {
			return "", false
		}
		tok, ok := emu.ECRAuthorization(password)
		if !ok || tok.Registry != account {
			return "", false
		}
		if allow != nil && repository != "" && !allow(tok, repository) {
			// ECR's own words, naming the caller and the repository.
			return fmt.Sprintf("User: %s is not authorized to perform: ecr:BatchGetImage on resource: arn:%s:ecr:%s:%s:repository/%s because no identity-based policy allows the ecr:BatchGetImage action",
				tok.Principal, partitionOf(tok.Principal), tok.Region, account, repository), false
		}
		return "", true
	})
}

// partitionOf is the partition an ARN names ("aws" if it names none).
func partitionOf(arn string) string {
	if parts := strings.SplitN(arn, ":", 3); len(parts) == 3 && parts[1] != "" {
		return parts[1]
	}
	return "aws"
}
