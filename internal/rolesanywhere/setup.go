package rolesanywhere

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	ratypes "github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/iampolicy"
)

// Service is the principal Roles Anywhere assumes roles as.
const Service = "rolesanywhere.amazonaws.com"

// API is the part of Roles Anywhere's control plane setup uses.
type API interface {
	ListTrustAnchors(context.Context, *ra.ListTrustAnchorsInput, ...func(*ra.Options)) (*ra.ListTrustAnchorsOutput, error)
	CreateTrustAnchor(context.Context, *ra.CreateTrustAnchorInput, ...func(*ra.Options)) (*ra.CreateTrustAnchorOutput, error)
	UpdateTrustAnchor(context.Context, *ra.UpdateTrustAnchorInput, ...func(*ra.Options)) (*ra.UpdateTrustAnchorOutput, error)
	ListProfiles(context.Context, *ra.ListProfilesInput, ...func(*ra.Options)) (*ra.ListProfilesOutput, error)
	CreateProfile(context.Context, *ra.CreateProfileInput, ...func(*ra.Options)) (*ra.CreateProfileOutput, error)
	UpdateProfile(context.Context, *ra.UpdateProfileInput, ...func(*ra.Options)) (*ra.UpdateProfileOutput, error)
}

// IAM is the part of IAM setup uses.
type IAM interface {
	GetRole(context.Context, *iam.GetRoleInput, ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	CreateRole(context.Context, *iam.CreateRoleInput, ...func(*iam.Options)) (*iam.CreateRoleOutput, error)
	UpdateAssumeRolePolicy(context.Context, *iam.UpdateAssumeRolePolicyInput, ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error)
}

// SetupRequest says what podid server's Roles Anywhere identity is made of.
type SetupRequest struct {
	// Cluster names the trust anchor and profile (podid-<cluster>) and is
	// in the certificate's CN, which the role's trust requires.
	Cluster string
	// CommonName the certificate carries (identitycert.CommonName).
	CommonName string
	// CABundle is the PEM CA certificate(s) that issue podid's certificate:
	// podid's own CA (ConfigMap podid-identity-ca) or cert-manager's issuer's.
	CABundle []byte
	// RoleName of the role podid server acts as; made when missing.
	RoleName string
	// SessionDuration of the profile, in seconds (default 3600).
	SessionDuration int32
}

// Change is one line of a plan.
type Change struct {
	// Op is create, update or keep.
	Op, Resource, Detail string
}

func (c Change) String() string {
	mark := map[string]string{"create": "+", "update": "~", "keep": "="}[c.Op]
	return fmt.Sprintf("%s %s: %s", mark, c.Resource, c.Detail)
}

// Setup is a plan and, after Apply, its result.
type Setup struct {
	Changes []Change
	// ARNs of what exists after Apply (before it, of what exists already).
	TrustAnchorARN, ProfileARN, RoleARN string

	req          SetupRequest
	ra           API
	iam          IAM
	anchor       *ratypes.TrustAnchorDetail
	anchorStale  bool // the anchor exists without podid's CA bundle
	profile      *ratypes.ProfileDetail
	roleExists   bool
	roleTrust    string
	statementSid string
}

// StatementSid names podid's Roles Anywhere statement for a cluster.
func StatementSid(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return "PodidRolesAnywhere" + hex.EncodeToString(sum[:8])
}

// TrustStatement lets Roles Anywhere assume the role for a certificate of
// cluster's CN vouched for by this trust anchor only.
func TrustStatement(cluster, commonName, anchorARN string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"Sid":       StatementSid(cluster),
		"Effect":    "Allow",
		"Principal": map[string]any{"Service": Service},
		"Action":    []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"},
		"Condition": map[string]any{
			"ArnEquals":    map[string]string{"aws:SourceArn": anchorARN},
			"StringEquals": map[string]string{"aws:PrincipalTag/x509Subject/CN": commonName},
		},
	})
	return b
}

// PlanSetup reads what exists and plans the rest. It writes nothing.
func PlanSetup(ctx context.Context, req SetupRequest, api API, iamc IAM) (*Setup, error) {
	if req.Cluster == "" || req.RoleName == "" || req.CommonName == "" {
		return nil, errors.New("setup needs the cluster, the role's name and the certificate's common name")
	}
	cas, err := ParseCABundle(req.CABundle)
	if err != nil {
		return nil, err
	}
	subjects := bundleSubjects(cas)
	if req.SessionDuration == 0 {
		req.SessionDuration = 3600
	}
	s := &Setup{req: req, ra: api, iam: iamc, statementSid: StatementSid(req.Cluster)}
	name := "podid-" + req.Cluster

	for anchors := ra.NewListTrustAnchorsPaginator(api, &ra.ListTrustAnchorsInput{}); anchors.HasMorePages() && s.anchor == nil; {
		page, err := anchors.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("rolesanywhere:ListTrustAnchors: %w", err)
		}
		for i := range page.TrustAnchors {
			if aws.ToString(page.TrustAnchors[i].Name) == name {
				s.anchor = &page.TrustAnchors[i]
			}
		}
	}
	s.anchorStale = s.anchor != nil && !sameBundle(anchorBundle(s.anchor), cas)
	switch {
	case s.anchor == nil:
		s.Changes = append(s.Changes, Change{"create", "trust anchor " + name, "with podid's CA bundle (" + subjects + ")"})
	case s.anchorStale:
		s.TrustAnchorARN = aws.ToString(s.anchor.TrustAnchorArn)
		s.Changes = append(s.Changes, Change{"update", "trust anchor " + name, "its CA bundle becomes podid's (" + subjects + ")"})
	default:
		s.TrustAnchorARN = aws.ToString(s.anchor.TrustAnchorArn)
		s.Changes = append(s.Changes, Change{"keep", "trust anchor " + name, "holds podid's CA bundle"})
	}
	if s.anchor != nil && !aws.ToBool(s.anchor.Enabled) {
		s.Changes = append(s.Changes, Change{"keep", "trust anchor " + name, "is DISABLED: enable it (aws rolesanywhere enable-trust-anchor) or podid's sessions are refused"})
	}

	role, err := iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(req.RoleName)})
	switch {
	case isCode(err, "NoSuchEntity"):
		s.Changes = append(s.Changes, Change{"create", "role " + req.RoleName, "trusting Roles Anywhere for certificates of CN " + req.CommonName + " from this trust anchor only"})
	case err != nil:
		return nil, fmt.Errorf("iam:GetRole %s: %w", req.RoleName, err)
	default:
		s.roleExists, s.RoleARN = true, aws.ToString(role.Role.Arn)
		if s.roleTrust, err = url.QueryUnescape(aws.ToString(role.Role.AssumeRolePolicyDocument)); err != nil {
			return nil, fmt.Errorf("role %s's trust policy: %w", req.RoleName, err)
		}
		doc, err := iampolicy.ParseDocument(s.roleTrust)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", req.RoleName, err)
		}
		i := doc.IndexOfSid(s.statementSid)
		switch {
		case i < 0:
			s.Changes = append(s.Changes, Change{"update", "role " + s.RoleARN, "add statement " + s.statementSid + " (Roles Anywhere, CN " + req.CommonName + ", this trust anchor only)"})
		case s.TrustAnchorARN == "" || iampolicy.Canonical(doc.Statement[i]) != iampolicy.Canonical(TrustStatement(req.Cluster, req.CommonName, s.TrustAnchorARN)):
			s.Changes = append(s.Changes, Change{"update", "role " + s.RoleARN, "replace statement " + s.statementSid + " (another trust anchor or CN)"})
		default:
			s.Changes = append(s.Changes, Change{"keep", "role " + s.RoleARN, "trusts Roles Anywhere for CN " + req.CommonName})
		}
	}

	for profiles := ra.NewListProfilesPaginator(api, &ra.ListProfilesInput{}); profiles.HasMorePages() && s.profile == nil; {
		page, err := profiles.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("rolesanywhere:ListProfiles: %w", err)
		}
		for i := range page.Profiles {
			if aws.ToString(page.Profiles[i].Name) == name {
				s.profile = &page.Profiles[i]
			}
		}
	}
	switch {
	case s.profile == nil:
		s.Changes = append(s.Changes, Change{"create", "profile " + name, fmt.Sprintf("enabled, for role %s, sessions of %ds", req.RoleName, req.SessionDuration)})
	case s.RoleARN == "" || !slices.Contains(s.profile.RoleArns, s.RoleARN) || aws.ToInt32(s.profile.DurationSeconds) != req.SessionDuration:
		s.ProfileARN = aws.ToString(s.profile.ProfileArn)
		s.Changes = append(s.Changes, Change{"update", "profile " + name, fmt.Sprintf("add role %s, sessions of %ds", req.RoleName, req.SessionDuration)})
	default:
		s.ProfileARN = aws.ToString(s.profile.ProfileArn)
		s.Changes = append(s.Changes, Change{"keep", "profile " + name, "lists role " + s.RoleARN})
	}
	if s.profile != nil && !aws.ToBool(s.profile.Enabled) {
		s.Changes = append(s.Changes, Change{"keep", "profile " + name, "is DISABLED: enable it (aws rolesanywhere enable-profile) or podid's sessions are refused"})
	}
	return s, nil
}

// Pending says Apply would write.
func (s *Setup) Pending() bool {
	for _, c := range s.Changes {
		if c.Op != "keep" {
			return true
		}
	}
	return false
}

// Apply makes the plan so: the trust anchor first (the role's trust names
// it), then the role, then the profile (which names the role).
func (s *Setup) Apply(ctx context.Context) error {
	name := "podid-" + s.req.Cluster
	source := &ratypes.Source{SourceType: ratypes.TrustAnchorTypeCertificateBundle,
		SourceData: &ratypes.SourceDataMemberX509CertificateData{Value: string(s.req.CABundle)}}
	switch {
	case s.anchor == nil:
		out, err := s.ra.CreateTrustAnchor(ctx, &ra.CreateTrustAnchorInput{Name: aws.String(name), Source: source, Enabled: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("rolesanywhere:CreateTrustAnchor: %w", err)
		}
		s.TrustAnchorARN = aws.ToString(out.TrustAnchor.TrustAnchorArn)
	case s.anchorStale:
		if _, err := s.ra.UpdateTrustAnchor(ctx, &ra.UpdateTrustAnchorInput{TrustAnchorId: s.anchor.TrustAnchorId, Source: source}); err != nil {
			return fmt.Errorf("rolesanywhere:UpdateTrustAnchor: %w", err)
		}
	}
	statement := TrustStatement(s.req.Cluster, s.req.CommonName, s.TrustAnchorARN)
	if !s.roleExists {
		doc := &iampolicy.Document{Version: "2012-10-17", Statement: []json.RawMessage{statement}}
		out, err := s.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(s.req.RoleName), AssumeRolePolicyDocument: aws.String(doc.String()),
			MaxSessionDuration: aws.Int32(max(3600, s.req.SessionDuration)),
			Description:        aws.String("podid server of cluster " + s.req.Cluster + ", through IAM Roles Anywhere")})
		if err != nil {
			return fmt.Errorf("iam:CreateRole %s: %w", s.req.RoleName, err)
		}
		s.RoleARN = aws.ToString(out.Role.Arn)
	} else {
		doc, err := iampolicy.ParseDocument(s.roleTrust)
		if err != nil {
			return err
		}
		if i := doc.IndexOfSid(s.statementSid); i >= 0 {
			doc.Statement[i] = statement
		} else {
			doc.Statement = append(doc.Statement, statement)
		}
		if doc.String() != s.roleTrust {
			if _, err := s.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(s.req.RoleName), PolicyDocument: aws.String(doc.String())}); err != nil {
				return fmt.Errorf("iam:UpdateAssumeRolePolicy %s: %w", s.req.RoleName, err)
			}
		}
	}
	switch {
	case s.profile == nil:
		out, err := s.ra.CreateProfile(ctx, &ra.CreateProfileInput{Name: aws.String(name), RoleArns: []string{s.RoleARN},
			DurationSeconds: aws.Int32(s.req.SessionDuration), Enabled: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("rolesanywhere:CreateProfile: %w", err)
		}
		s.ProfileARN = aws.ToString(out.Profile.ProfileArn)
	case !slices.Contains(s.profile.RoleArns, s.RoleARN) || aws.ToInt32(s.profile.DurationSeconds) != s.req.SessionDuration:
		roles := s.profile.RoleArns
		if !slices.Contains(roles, s.RoleARN) {
			roles = append(roles, s.RoleARN)
		}
		if _, err := s.ra.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: s.profile.ProfileId, RoleArns: roles, DurationSeconds: aws.Int32(s.req.SessionDuration)}); err != nil {
			return fmt.Errorf("rolesanywhere:UpdateProfile: %w", err)
		}
	}
	return nil
}

func anchorBundle(a *ratypes.TrustAnchorDetail) []byte {
	if a.Source == nil {
		return nil
	}
	if d, ok := a.Source.SourceData.(*ratypes.SourceDataMemberX509CertificateData); ok {
		return []byte(d.Value)
	}
	return nil
}

// sameBundle says a PEM bundle holds exactly the certificates cas.
func sameBundle(bundle []byte, cas []*x509.Certificate) bool {
	var want []byte
	for _, c := range cas {
		want = append(want, c.Raw...)
	}
	var have []byte
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return bytes.Equal(have, want)
		}
		have = append(have, block.Bytes...)
	}
}

// ParseCABundle reads the CA certificates of a PEM bundle, refusing one
// that holds none or a certificate that is not a CA.
func ParseCABundle(b []byte) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the CA bundle holds a certificate that does not parse: %w", err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("the CA bundle holds %q, which is not a CA", c.Subject)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("the CA bundle holds no PEM certificate")
	}
	return cas, nil
}

func bundleSubjects(cas []*x509.Certificate) string {
	names := make([]string, len(cas))
	for i, c := range cas {
		names[i] = c.Subject.CommonName + " until " + c.NotAfter.UTC().Format("2006-01-02")
	}
	return strings.Join(names, ", ")
}

func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}
