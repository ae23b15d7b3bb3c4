package sigv4

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"
)

// AlgorithmV4A is Signature Version 4A: the same canonical request as SigV4,
// signed with an ECDSA P-256 key derived from the secret key, over a
// credential scope without a region; the regions the signature is good for
// travel in the signed X-Amz-Region-Set header. JFrog's passwordless
// Artifactory exchange sends an STS GetCallerIdentity request signed this
// way, and aws-sdk-go-v2 keeps its SigV4A signer internal, so podid has its
// own. Checked against the aws-c-auth test-suite vectors in the tests.
const AlgorithmV4A = "AWS4-ECDSA-P256-SHA256"

const headerRegionSet = "X-Amz-Region-Set"

// Credentials are what SignV4A signs with.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// DeriveV4AKey derives the P-256 key of an access key pair as SigV4A
// specifies: NIST SP 800-108 counter-mode KDF with HMAC-SHA256 keyed by
// "AWS4A"+secret, label AlgorithmV4A, context accessKeyID plus a one-byte
// counter, 256 bits; the first output k ≤ n−2 gives the private scalar k+1.
func DeriveV4AKey(accessKeyID, secretAccessKey string) (*ecdsa.PrivateKey, error) {
	mac := hmac.New(sha256.New, []byte("AWS4A"+secretAccessKey))
	for counter := 1; counter <= 254; counter++ {
		mac.Reset()
		var word [4]byte
		binary.BigEndian.PutUint32(word[:], 1) // the KDF's block counter: one block is 256 bits
		mac.Write(word[:])
		mac.Write([]byte(AlgorithmV4A))
		mac.Write([]byte{0})
		mac.Write([]byte(accessKeyID))
		mac.Write([]byte{byte(counter)})
		binary.BigEndian.PutUint32(word[:], 256) // output length in bits
		mac.Write(word[:])
		k := mac.Sum(nil)
		if !increment(k) {
			continue
		}
		// ParseRawPrivateKey refuses k+1 ≥ n, which is exactly k > n−2.
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), k); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("sigv4a: no valid P-256 key could be derived from this access key")
}

// increment adds one to a big-endian number in place and reports whether it
// did not overflow.
func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// SignV4A signs r in place with SigV4A for service and the regions in
// regionSet ("*" for all), at the given time. payloadHash is the hex SHA-256
// of the body; empty means an empty body. It signs host, content-type when
// present, and every X-Amz-* header, which always includes X-Amz-Date,
// X-Amz-Region-Set and, for temporary credentials, X-Amz-Security-Token.
func SignV4A(r *http.Request, creds Credentials, service string, regionSet []string, at time.Time, payloadHash string) error {
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		return errors.New("sigv4a: credentials have no access key or secret")
	}
	if len(regionSet) == 0 {
		return errors.New("sigv4a: the region set is empty (use \"*\" for every region)")
	}
	key, err := DeriveV4AKey(creds.AccessKeyID, creds.SecretAccessKey)
	if err != nil {
		return err
	}
	if payloadHash == "" {
		payloadHash = emptyPayloadHash
	}
	amzDate := at.UTC().Format(amzDateFormat)
	r.Header.Set(headerDate, amzDate)
	r.Header.Set(headerRegionSet, strings.Join(regionSet, ","))
	if creds.SessionToken != "" {
		r.Header.Set(headerToken, creds.SessionToken)
	}
	signed := signedHeaders(r)
	s := scope{date: at.UTC().Format(shortDate), service: service, terminal: "aws4_request"}
	digest := v4aDigest(amzDate, s, canonicalRequest(r, signed, payloadHash, service))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest)
	if err != nil {
		return fmt.Errorf("sigv4a: signing: %w", err)
	}
	r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s/%s/%s, SignedHeaders=%s, Signature=%s",
		AlgorithmV4A, creds.AccessKeyID, s.date, s.service, s.terminal, strings.Join(signed, ";"), hex.EncodeToString(sig)))
	return nil
}

// emptyPayloadHash is the hex SHA-256 of no bytes.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// v4aDigest is the SHA-256 of SigV4A's string to sign, which ECDSA signs.
func v4aDigest(amzDate string, s scope, canonical string) []byte {
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := AlgorithmV4A + "\n" + amzDate + "\n" + s.date + "/" + s.service + "/" + s.terminal + "\n" + hex.EncodeToString(sum[:])
	digest := sha256.Sum256([]byte(stringToSign))
	return digest[:]
}

// verifyV4A checks a SigV4A signature with the public half of key's derived
// P-256 key.
func verifyV4A(secretAccessKey, accessKeyID, amzDate string, s scope, canonical, signatureHex string) (bool, error) {
	sig, err := hex.DecodeString(signatureHex)
	if err != nil {
		return false, nil
	}
	key, err := DeriveV4AKey(accessKeyID, secretAccessKey)
	if err != nil {
		return false, err
	}
	return ecdsa.VerifyASN1(&key.PublicKey, v4aDigest(amzDate, s, canonical), sig), nil
}

// regionSetAllows reports whether a SigV4A region set (comma-separated
// names, each possibly with '*' wildcards) covers region.
func regionSetAllows(set, region string) bool {
	for _, pattern := range strings.Split(set, ",") {
		if ok, err := path.Match(strings.TrimSpace(pattern), region); err == nil && ok {
			return true
		}
	}
	return false
}
