package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodInfo is what the exchange needs to know of a live pod.
type PodInfo struct {
	UID      string
	NodeName string
	// ServiceAccount is filled in by PodByName only: the exchange takes it
	// from the token.
	ServiceAccount string
}

// ErrPodGone means no pod of that name and UID exists any more: the token
// bound to it must stop working.
var ErrPodGone = errors.New("the pod no longer exists")

// Pods finds live pods.
type Pods interface {
	// Pod returns the pod namespace/name if it exists with uid, ErrPodGone
	// if it does not, or another error when the API server cannot say.
	Pod(ctx context.Context, namespace, name, uid string) (*PodInfo, error)
	// PodByName returns the pod namespace/name with its ServiceAccount, or
	// ErrPodGone; PodIdentityChecks name pods, not tokens.
	PodByName(ctx context.Context, namespace, name string) (*PodInfo, error)
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// KubePods reads pods from an informer cache and, when the cache does not
// have the pod with that UID (a pod younger than the watch's latency, or a
// stale cache), once from the API server.
type KubePods struct {
	Cache client.Reader
	Live  client.Reader
	// Timeout bounds the read-through; zero means 2 s.
	Timeout time.Duration
}

// Pod implements Pods.
func (k *KubePods) Pod(ctx context.Context, namespace, name, uid string) (*PodInfo, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	var pod corev1.Pod
	err := k.Cache.Get(ctx, key, &pod)
	if err == nil && string(pod.UID) == uid {
		return &PodInfo{UID: uid, NodeName: pod.Spec.NodeName}, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading pod %s from the cache: %w", key, err)
	}
	timeout := k.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pod = corev1.Pod{}
	err = k.Live.Get(ctx, key, &pod)
	switch {
	case apierrors.IsNotFound(err):
		return nil, ErrPodGone
	case err != nil:
		return nil, fmt.Errorf("reading pod %s from the API server: %w", key, err)
	case string(pod.UID) != uid:
		return nil, ErrPodGone
	}
	return &PodInfo{UID: uid, NodeName: pod.Spec.NodeName}, nil
}

// PodByName implements Pods, reading from the API server: the cache
// keeps no ServiceAccount.
func (k *KubePods) PodByName(ctx context.Context, namespace, name string) (*PodInfo, error) {
	var pod corev1.Pod
	err := k.Live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &pod)
	if apierrors.IsNotFound(err) {
		return nil, ErrPodGone
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s from the API server: %w", namespace, name, err)
	}
	return &PodInfo{UID: string(pod.UID), NodeName: pod.Spec.NodeName, ServiceAccount: pod.Spec.ServiceAccountName}, nil
}

// StripPod keeps only what KubePods reads, for the informer's transform: a
// cluster's pods in memory cost their names, UIDs and node names.
func StripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: metav1ObjectMeta(pod),
		Spec:       corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}, nil
}

func metav1ObjectMeta(pod *corev1.Pod) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp,
	}
}
