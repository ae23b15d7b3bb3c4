package iampolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Document is a policy document kept as raw statements, for the commands
// that change a role's trust: the statements podid does not touch are
// written back as they were, and a change can be undone exactly.
type Document struct {
	Version   string            `json:"Version,omitempty"`
	ID        string            `json:"Id,omitempty"`
	Statement []json.RawMessage `json:"Statement"`
}

// ParseDocument reads a policy document (already URL-decoded), whose
// Statement may be a list or a single statement.
func ParseDocument(doc string) (*Document, error) {
	var d Document
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		var single struct {
			Version   string          `json:"Version,omitempty"`
			ID        string          `json:"Id,omitempty"`
			Statement json.RawMessage `json:"Statement"`
		}
		if err2 := json.Unmarshal([]byte(doc), &single); err2 != nil {
			return nil, fmt.Errorf("trust policy is not JSON: %w", err)
		}
		d = Document{Version: single.Version, ID: single.ID, Statement: []json.RawMessage{single.Statement}}
	}
	return &d, nil
}

// String is the document as IAM takes it.
func (d *Document) String() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// IndexOfSid is the index of the statement with sid, or -1.
func (d *Document) IndexOfSid(sid string) int {
	for i, raw := range d.Statement {
		if StatementSid(raw) == sid {
			return i
		}
	}
	return -1
}

// HasSid reports whether a statement with sid is in d.
func (d *Document) HasSid(sid string) bool { return d.IndexOfSid(sid) >= 0 }

// StatementSid is a raw statement's Sid ("" without one).
func StatementSid(raw json.RawMessage) string {
	var s struct{ Sid string }
	_ = json.Unmarshal(raw, &s)
	return s.Sid
}

// Canonical is a JSON value with its whitespace and key order normalised,
// to compare statements and documents.
func Canonical(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(bytes.TrimSpace(raw))
	}
	b, _ := json.Marshal(v)
	return string(b)
}
