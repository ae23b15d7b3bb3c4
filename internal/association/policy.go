package association

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxPolicyLength is STS's limit on a session policy's plain text. STS also
// limits the packed size of policy and session tags together, in a form only
// AWS computes; a policy within this limit can still be refused with
// PackedPolicyTooLarge, which the credential exchange reports.
const MaxPolicyLength = 2048

// ValidatePolicy checks what the API server's CEL rules cannot: that a session
// policy is well-formed JSON and a single object. An empty policy is valid and
// means "no session policy".
func ValidatePolicy(policy string) error {
	if policy == "" {
		return nil
	}
	if len(policy) > MaxPolicyLength {
		return fmt.Errorf("policy is %d characters long; STS accepts at most %d", len(policy), MaxPolicyLength)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(policy)))
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("policy must be a JSON object (an IAM policy document), not a JSON %s", typeErr.Value)
		}
		return fmt.Errorf("policy is not valid JSON: %w", err)
	}
	if doc == nil {
		return errors.New("policy must be a JSON object (an IAM policy document), not null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("policy has text after its JSON object; give exactly one policy document")
	}
	return nil
}
