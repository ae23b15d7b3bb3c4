package sigv4

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// scope is the credential scope: date/region/service/aws4_request.
type scope struct {
	date, region, service, terminal string
}

func (s scope) String() string {
	return s.date + "/" + s.region + "/" + s.service + "/" + s.terminal
}

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	algorithm     string // Algorithm or AlgorithmV4A
	accessKeyID   string
	scope         scope
	signedHeaders []string // lower case, as the client listed them
	signature     string
}

func (a *authorization) hasHeader(name string) bool {
	for _, h := range a.signedHeaders {
		if h == name {
			return true
		}
	}
	return false
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/eks/aws4_request, SignedHeaders=host;x-amz-date, Signature=hex",
// whose algorithm must be one of algorithms. X.509 signatures name the
// certificate's serial number where SigV4 names an access key.
func parseAuthorization(header string, algorithms ...string) (*authorization, error) {
	if header == "" {
		return nil, refuse(MissingAuthentication, "the request is not signed: sign it with AWS Signature Version 4")
	}
	var a authorization
	var rest string
	ok := false
	for _, alg := range algorithms {
		if rest, ok = strings.CutPrefix(header, alg+" "); ok {
			a.algorithm = alg
			break
		}
	}
	if !ok {
		return nil, refuse(IncompleteSignature, "the Authorization header must use %s", strings.Join(algorithms, " or "))
	}
	var seen int
	for _, part := range strings.Split(rest, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, refuse(IncompleteSignature, "the Authorization header has a component without '=': %q", clip(part))
		}
		switch name {
		case "Credential":
			fields := strings.Split(value, "/")
			if a.algorithm == AlgorithmV4A {
				// SigV4A's scope has no region: X-Amz-Region-Set carries it.
				if len(fields) != 4 || fields[0] == "" {
					return nil, refuse(IncompleteSignature, "Credential must be AccessKeyId/date/service/aws4_request")
				}
				fields = []string{fields[0], fields[1], "", fields[2], fields[3]}
			}
			if len(fields) != 5 || fields[0] == "" {
				return nil, refuse(IncompleteSignature, "Credential must be AccessKeyId/date/region/service/aws4_request")
			}
			a.accessKeyID = fields[0]
			a.scope = scope{date: fields[1], region: fields[2], service: fields[3], terminal: fields[4]}
			seen |= 1
		case "SignedHeaders":
			if value == "" {
				return nil, refuse(IncompleteSignature, "SignedHeaders is empty")
			}
			a.signedHeaders = strings.Split(value, ";")
			for _, h := range a.signedHeaders {
				if h == "" || h != strings.ToLower(h) {
					return nil, refuse(IncompleteSignature, "SignedHeaders must be lower-case names separated by ';'")
				}
			}
			seen |= 2
		case "Signature":
			if a.algorithm == Algorithm && len(value) != 64 {
				return nil, refuse(IncompleteSignature, "Signature must be 64 hexadecimal characters")
			}
			// A DER-encoded P-256 ECDSA signature is at most 72 bytes.
			if a.algorithm == AlgorithmV4A && (len(value) < 16 || len(value) > 144 || len(value)%2 != 0) {
				return nil, refuse(IncompleteSignature, "Signature must be a hex-encoded DER ECDSA signature")
			}
			// An RSA-4096 signature is 512 bytes.
			if (a.algorithm == AlgorithmX509RSA || a.algorithm == AlgorithmX509ECDSA) && (len(value) < 16 || len(value) > 1024 || len(value)%2 != 0) {
				return nil, refuse(IncompleteSignature, "Signature must be a hex-encoded RSA or DER ECDSA signature")
			}
			a.signature = value
			seen |= 4
		default:
			return nil, refuse(IncompleteSignature, "the Authorization header has an unknown component %q", clip(name))
		}
	}
	if seen != 7 {
		return nil, refuse(IncompleteSignature, "the Authorization header must carry Credential, SignedHeaders and Signature")
	}
	return &a, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// signedHeaders are the headers podid's signers sign: host, content-type
// when present, and every X-Amz-* header. It sets r.Host from the URL when
// unset, as net/http sends it.
func signedHeaders(r *http.Request) []string {
	if r.Host == "" {
		r.Host = r.URL.Host
	}
	signed := []string{"host"}
	for name := range r.Header {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-amz-") || lower == "content-type" {
			signed = append(signed, lower)
		}
	}
	sort.Strings(signed)
	return signed
}

// canonicalRequest builds the canonical request over the headers the client
// chose to sign.
func canonicalRequest(r *http.Request, signedHeaders []string, payloadHash, service string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if service != "s3" {
		// Every service but S3 escapes the already escaped path once more.
		path = escape(path, false)
	}
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.Query()))
	b.WriteByte('\n')
	for _, name := range signedHeaders {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// headerValue is a signed header's canonical value: values joined by ',',
// each trimmed with inner runs of spaces folded to one.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return foldSpaces(r.Host)
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v
		}
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
		return ""
	}
	values := r.Header.Values(name)
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = strings.TrimSpace(foldSpaces(v))
	}
	return strings.Join(parts, ",")
}

func foldSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// canonicalQuery sorts by name, then value, each escaped as AWS escapes.
func canonicalQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	var pairs []string
	for name, values := range q {
		for _, v := range values {
			pairs = append(pairs, escape(name, true)+"="+escape(v, true))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// escape percent-encodes everything but A-Z a-z 0-9 - . _ ~ (and '/' unless
// encodeSlash), upper-case hex, as SigV4 requires.
func escape(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
