package webhook

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookName is the webhook's name inside its configuration.
const WebhookName = "pods.podid.io"

// ConfigurationOptions describe where the API server reaches the webhook.
type ConfigurationOptions struct {
	// Name of the MutatingWebhookConfiguration.
	Name string
	// Service, or URL when the webhook runs outside the cluster (sandbox).
	Service *admissionregistrationv1.ServiceReference
	URL     string
	// CABundle signs the webhook's serving certificate; podid fills it in
	// itself when it manages the certificate.
	CABundle []byte
	// FailurePolicy: Fail unless set (see docs/architecture.md).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// ExcludeNamespaces are never sent to the webhook: podid's own, and the
	// system namespaces, so that the cluster and podid can start while podid
	// is down.
	ExcludeNamespaces []string
	// TimeoutSeconds bounds a call; default 10.
	TimeoutSeconds int32
}

// Configuration is the MutatingWebhookConfiguration for podid's webhook. The
// Helm chart renders the same object.
func Configuration(o ConfigurationOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	if o.FailurePolicy == "" {
		o.FailurePolicy = admissionregistrationv1.Fail
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 10
	}
	path := Path
	if o.Service != nil {
		o.Service.Path = &path
	}
	var url *string
	if o.URL != "" {
		u := o.URL + Path
		url = &u
	}
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	optOut := metav1.LabelSelectorRequirement{Key: LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}
	nsSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{optOut}}
	if len(o.ExcludeNamespaces) > 0 {
		nsSelector.MatchExpressions = append(nsSelector.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: o.ExcludeNamespaces,
		})
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    WebhookName,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: o.Service, URL: url, CABundle: o.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &o.FailurePolicy,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       nsSelector,
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{optOut}},
			SideEffects:             &none,
			TimeoutSeconds:          &o.TimeoutSeconds,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
		}},
	}
}
