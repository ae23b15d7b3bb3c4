package association

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"

	"k8s.io/apimachinery/pkg/types"
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

var idRE = regexp.MustCompile(`^a-[a-z0-9]{17}$`)

// IDFor returns the association ID of the object with this UID: "a-" and 17
// lowercase letters and digits, as EKS's IDs look.
//
// The ID is derived rather than stored first and read back, so that every
// replica, the CLI and the EKS-compatible API agree on it from the moment the
// API server has assigned the UID, with no window in which an association
// exists without an ID. A deleted and re-created association gets a new UID and
// so a new ID, as it would on EKS.
func IDFor(uid types.UID) string {
	sum := sha256.Sum256([]byte("podid.io/association-id/" + string(uid)))
	var b [19]byte
	b[0], b[1] = 'a', '-'
	for i := range 17 {
		// 87 bits of the digest: the small bias of the modulo does not matter
		// for an identifier that only has to be unique.
		b[2+i] = idAlphabet[int(sum[i])%len(idAlphabet)]
	}
	return string(b[:])
}

// IsID reports whether s has the shape of an association ID.
func IsID(s string) bool { return idRE.MatchString(s) }

// ExternalIDFor returns the external ID that podid passes to sts:AssumeRole
// for the association's target role: a UUID-shaped value derived from the
// object's UID, stable for the association's life and different for every
// association.
func ExternalIDFor(uid types.UID) string {
	sum := sha256.Sum256([]byte("podid.io/external-id/" + string(uid)))
	sum[6] = sum[6]&0x0f | 0x80 // version 8: a UUID built from a custom hash
	sum[8] = sum[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
