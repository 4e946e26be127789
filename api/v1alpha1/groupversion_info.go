// Package v1alpha1 contains the custos.io/v1alpha1 API: the custom resources that turn the clauses of a
// data-processing agreement into objects a Kubernetes operator can keep.
// +kubebuilder:object:generate=true
// +groupName=custos.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every custos resource.
	GroupVersion = schema.GroupVersion{Group: "custos.io", Version: "v1alpha1"}

	// SchemeBuilder registers the custos types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the custos types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
