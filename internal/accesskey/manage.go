package accesskey

import (
	"crypto/rand"
	"fmt"
	"slices"

	"sigs.k8s.io/yaml"
)

// FileKey is the key of the access-keys file in the Secret the chart mounts
// (server.accessKeysSecret).
const FileKey = "access-keys.yaml"

// Entries reads an access-keys file, checked as the server checks it.
func Entries(data []byte) ([]Entry, error) {
	if len(data) == 0 {
		return nil, nil
	}
	keys, err := Parse(data)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(keys))
	for i, k := range keys {
		out[i] = k.Principal.(Entry)
	}
	return out, nil
}

// Marshal writes entries as an access-keys file, checked as the server
// will check it.
func Marshal(entries []Entry) ([]byte, error) {
	data, err := yaml.Marshal(file{Keys: entries})
	if err != nil {
		return nil, err
	}
	if _, err := Parse(data); err != nil {
		return nil, err
	}
	return data, nil
}

const (
	idAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// Generate is a new entry with a fresh key: an ID of 20 characters starting
// PODID (so that nobody mistakes it for an IAM user's AKIA key) and a
// 40-character secret, as AWS's are.
func Generate(e Entry) (Entry, error) {
	id, err := randomString(15, idAlphabet)
	if err != nil {
		return Entry{}, err
	}
	secret, err := randomString(40, secretAlphabet)
	if err != nil {
		return Entry{}, err
	}
	e.AccessKeyID, e.SecretAccessKey = "PODID"+id, secret
	return e, nil
}

func randomString(n int, alphabet string) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // both alphabets divide 256
	}
	return string(b), nil
}

// Remove is entries without the one whose access key ID or name is ref, and
// whether there was one.
func Remove(entries []Entry, ref string) ([]Entry, bool) {
	out := slices.DeleteFunc(slices.Clone(entries), func(e Entry) bool { return e.AccessKeyID == ref || e.Name == ref })
	return out, len(out) != len(entries)
}
