package registryemu

import (
	"github.com/podid/podid/internal/awsemu"
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
			return tok.Principal, false
		}
		return tok.Principal, true
	})
}
