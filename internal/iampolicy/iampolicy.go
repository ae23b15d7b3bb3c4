// Package iampolicy reads IAM policy documents and evaluates role trust
// policies. It holds the JSON shapes encoding/json does not read by itself
// (IAM accepts one value where it accepts a list: a Statement, an Action, a
// condition's values), which the emulator reads policies with too, and the
// trust evaluation doctor and migrate share: does this role's trust admit
// this principal, for this action, with these condition keys.
package iampolicy

import (
	"bytes"
	"encoding/json"
)

// OneOrMany is a JSON list that may also be written as its single element.
type OneOrMany[T any] []T

// UnmarshalJSON reads a list, or one element.
func (l *OneOrMany[T]) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] != '[' && string(b) != "null" {
		var one T
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*l = OneOrMany[T]{one}
		return nil
	}
	return json.Unmarshal(b, (*[]T)(l))
}
