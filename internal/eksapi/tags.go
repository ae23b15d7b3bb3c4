package eksapi

import (
	"maps"
	"slices"
	"strings"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationstore"
)

// EKS's tag limits, which the CRD's CEL rules hold too; checked here first so
// the caller gets EKS's error and nothing is written.
const (
	maxTags           = 50
	maxTagKeyLength   = 128
	maxTagValueLength = 256
)

// validateTags checks tags against EKS's limits, failing with code (the
// association operations' InvalidParameterException, the tagging
// operations' BadRequestException).
func validateTags(tags map[string]string, code string) error {
	if len(tags) > maxTags {
		return fail(code, "an association may have at most %d tags; this request would give it %d", maxTags, len(tags))
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		switch {
		case k == "" || len(k) > maxTagKeyLength:
			return fail(code, "tag key %q must be 1 to %d characters long", k, maxTagKeyLength)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fail(code, "tag key %q: keys starting with aws: are reserved for AWS use", k)
		case len(tags[k]) > maxTagValueLength:
			return fail(code, "the value of tag %q must be at most %d characters long", k, maxTagValueLength)
		}
	}
	return nil
}

type tagRequest struct {
	Tags map[string]string `json:"tags"`
}

type tagsResponse struct {
	Tags map[string]string `json:"tags"`
}

// taggedID is the association ID an ARN names. EKS answers
// BadRequestException for what is not an ARN and NotFoundException for an
// ARN of nothing it holds.
func (h *Handler) taggedID(c *call) (arn, id string, err error) {
	arn = c.r.PathValue("resourceArn")
	if !strings.HasPrefix(arn, "arn:") || strings.Count(arn, ":") < 5 {
		return arn, "", fail(BadRequest, "%q is not a valid ARN", arn)
	}
	prefix := h.opts.Identity.AssociationARN("")
	id, ok := strings.CutPrefix(arn, prefix)
	if !ok || !association.IsID(id) {
		return arn, "", fail(NotFound, "resource %s not found: podid serves the tags of this cluster's Pod Identity associations (%s<association ID>) only", arn, prefix)
	}
	return arn, id, nil
}

// notTagged gives an association that is not there the tagging operations'
// NotFoundException.
func notTagged(err error, arn string) error {
	if e, isAPI := err.(*apiError); isAPI && e.Code == ResourceNotFound {
		return fail(NotFound, "resource %s not found", arn)
	}
	return err
}

func (h *Handler) listTags(c *call) (any, error) {
	arn, id, err := h.taggedID(c)
	if err != nil {
		return nil, err
	}
	stored, err := h.find(c, id)
	if err != nil {
		return nil, notTagged(err, arn)
	}
	tags := stored.Spec().Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return tagsResponse{Tags: tags}, nil
}

func (h *Handler) tag(c *call) (any, error) {
	var req tagRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	if len(req.Tags) == 0 {
		return nil, fail(BadRequest, "tags is required and must hold at least one tag")
	}
	if err := validateTags(req.Tags, BadRequest); err != nil {
		return nil, err
	}
	arn, id, err := h.taggedID(c)
	if err != nil {
		return nil, err
	}
	_, err = h.change(c, id, func(stored associationstore.Stored) (bool, error) {
		spec := stored.Spec()
		merged := association.EditTags(spec.Tags, req.Tags, nil)
		if err := validateTags(merged, BadRequest); err != nil {
			return false, err
		}
		if maps.Equal(merged, spec.Tags) {
			return false, nil
		}
		spec.Tags = merged
		return true, nil
	}, tagKubeError)
	if err != nil {
		return nil, notTagged(err, arn)
	}
	return struct{}{}, nil
}

func (h *Handler) untag(c *call) (any, error) {
	keys := c.r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		return nil, fail(BadRequest, "tagKeys is required: name at least one tag key to remove")
	}
	arn, id, err := h.taggedID(c)
	if err != nil {
		return nil, err
	}
	_, err = h.change(c, id, func(stored associationstore.Stored) (bool, error) {
		spec := stored.Spec()
		left := association.EditTags(spec.Tags, nil, keys)
		if len(left) == len(spec.Tags) {
			return false, nil
		}
		spec.Tags = left
		return true, nil
	}, tagKubeError)
	if err != nil {
		return nil, notTagged(err, arn)
	}
	return struct{}{}, nil
}

// tagKubeError is kubeError with the tagging operations' codes.
func tagKubeError(err error, doing string) error {
	e := kubeError(err, doing).(*apiError)
	switch e.Code {
	case InvalidParameter:
		e = wrap(BadRequest, e.Message, e.Err)
	case ResourceNotFound:
		e = wrap(NotFound, e.Message, e.Err)
	}
	return e
}
