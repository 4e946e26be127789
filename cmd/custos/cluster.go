package main

// This file is the only one that talks to a Kubernetes API server (export fetch, audit <tenant>, pubkey
// --cluster, status <tenant>). Everything else in custos works offline on files.

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// What the manager writes is named in api/v1alpha1 (names.go); the CLI does not import the controllers.
const (
	defaultNamespace  = "custos-system"
	labelAuditTenant  = v1alpha1.LabelAuditTenant
	labelAuditSegment = v1alpha1.LabelAuditSegment
	annotationUID     = v1alpha1.AnnotationTenantUID
	auditDataKey      = v1alpha1.AuditEntriesKey
	signingKeyName    = v1alpha1.SigningKeyName
	signingKeyPublic  = v1alpha1.SigningPublicKeyFile
	requestTimeout    = 30 * time.Second
)

var (
	dataExports  = v1alpha1.GroupVersion.WithResource("dataexports")
	tenants      = v1alpha1.GroupVersion.WithResource("tenants")
	certificates = v1alpha1.GroupVersion.WithResource("destructioncertificates")
	configMaps   = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	// events in core/v1: the manager writes events.k8s.io/v1 Events (client-go's tools/events recorder), which the
	// API server also serves as core/v1 Events (regarding as involvedObject, note as message), and core/v1 is the
	// one of the two whose field selectors (involvedObject.kind, involvedObject.name) every server supports.
	coreEvents = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

// cluster uses client-go's dynamic client (controller-runtime's would more than double the size of the binary).
// Objects are read into the typed structs; the receipt is written into the object as read, so fields this
// version of the CLI does not know are kept.
type cluster struct{ d dynamic.Interface }

// connect loads the kubeconfig the way kubectl does: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else
// the in-cluster service account.
func connect(kubeconfig string) (*cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to (set KUBECONFIG or --kubeconfig): %w", err)
	}
	cfg.Timeout = requestTimeout
	cfg.UserAgent = "custos-cli"
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return &cluster{d: d}, nil
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

func (cl *cluster) dataExport(ctx context.Context, name string) (*v1alpha1.DataExport, *unstructured.Unstructured, error) {
	u, err := cl.d.Resource(dataExports).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading DataExport %s: %w", name, err)
	}
	var de v1alpha1.DataExport
	if err := fromUnstructured(u, &de); err != nil {
		return nil, nil, fmt.Errorf("reading DataExport %s: %w", name, err)
	}
	return &de, u, nil
}

// setReceipt writes spec.receipt = {sha256, receivedBy} on fresh data, retrying on a conflict. An export already
// acknowledged with this digest is left as it is (changed false): its receipt is on record and in the audit trail.
func (cl *cluster) setReceipt(ctx context.Context, name, sha256, receivedBy string) (changed bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		de, u, err := cl.dataExport(ctx, name)
		if err != nil {
			return err
		}
		if a := de.Status.Artefact; a == nil || !strings.EqualFold(a.SHA256, sha256) {
			return fmt.Errorf("DataExport %s no longer describes a bag with sha256 %s", name, sha256)
		}
		if r := de.Spec.Receipt; r != nil && strings.EqualFold(r.SHA256, sha256) &&
			(r.ReceivedBy == receivedBy || de.Status.Phase == v1alpha1.ExportAcknowledged) {
			changed = false
			return nil
		}
		receipt := map[string]any{"sha256": sha256}
		if receivedBy != "" {
			receipt["receivedBy"] = receivedBy
		}
		if err := unstructured.SetNestedMap(u.Object, receipt, "spec", "receipt"); err != nil {
			return err
		}
		changed = true
		_, err = cl.d.Resource(dataExports).Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("writing the receipt on DataExport %s: %w", name, err)
	}
	return changed, nil
}

// auditSegments lists the audit trail ConfigMaps labelled with the tenant's name (of every tenant of that name
// there ever was; the caller groups them by UID and orders them).
func (cl *cluster) auditSegments(ctx context.Context, namespace, tenant string) ([]corev1.ConfigMap, error) {
	list, err := cl.d.Resource(configMaps).Namespace(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labelAuditTenant + "=" + tenant})
	if err != nil {
		return nil, fmt.Errorf("listing the audit trail ConfigMaps in namespace %s: %w", namespace, err)
	}
	out := make([]corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		if err := fromUnstructured(&list.Items[i], &out[i]); err != nil {
			return nil, fmt.Errorf("ConfigMap %s: %w", list.Items[i].GetName(), err)
		}
	}
	return out, nil
}

// publishedKey returns the ConfigMap in which the manager publishes its public key.
func (cl *cluster) publishedKey(ctx context.Context, namespace string) (*corev1.ConfigMap, error) {
	u, err := cl.d.Resource(configMaps).Namespace(namespace).Get(ctx, signingKeyName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, signingKeyName, err)
	}
	var cm corev1.ConfigMap
	if err := fromUnstructured(u, &cm); err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, signingKeyName, err)
	}
	return &cm, nil
}

// configMap reads one ConfigMap; nil without error when it does not exist.
func (cl *cluster) configMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	u, err := cl.d.Resource(configMaps).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	var cm corev1.ConfigMap
	if err := fromUnstructured(u, &cm); err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	return &cm, nil
}

// tenant reads a Tenant (cluster-scoped). A missing one is an error that names it (apierrors.IsNotFound holds).
func (cl *cluster) tenant(ctx context.Context, name string) (*v1alpha1.Tenant, error) {
	u, err := cl.d.Resource(tenants).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no Tenant %q in this cluster: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Tenant %s: %w", name, err)
	}
	var t v1alpha1.Tenant
	if err := fromUnstructured(u, &t); err != nil {
		return nil, fmt.Errorf("reading Tenant %s: %w", name, err)
	}
	return &t, nil
}

// dataExportIfAny reads a DataExport; nil without error when it does not exist.
func (cl *cluster) dataExportIfAny(ctx context.Context, name string) (*v1alpha1.DataExport, error) {
	de, _, err := cl.dataExport(ctx, name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return de, err
}

// certificateOf finds the tenant's DestructionCertificate: the one status.exit.certificateRef names, else the name
// the manager gives it (<tenant>-<uid8>), else one labelled custos.io/tenant=<tenant> whose spec.tenant.uid is the
// tenant's. nil without error when there is none.
func (cl *cluster) certificateOf(ctx context.Context, t *v1alpha1.Tenant) (*v1alpha1.DestructionCertificate, error) {
	name := t.CertificateName()
	if t.Status.Exit != nil && t.Status.Exit.CertificateRef != nil && t.Status.Exit.CertificateRef.Name != "" {
		name = t.Status.Exit.CertificateRef.Name
	}
	u, err := cl.d.Resource(certificates).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		var c v1alpha1.DestructionCertificate
		if err := fromUnstructured(u, &c); err != nil {
			return nil, fmt.Errorf("reading DestructionCertificate %s: %w", name, err)
		}
		return &c, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading DestructionCertificate %s: %w", name, err)
	}
	list, err := cl.d.Resource(certificates).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelTenant + "=" + t.Name})
	if err != nil {
		return nil, fmt.Errorf("listing the DestructionCertificates labelled %s=%s: %w", v1alpha1.LabelTenant, t.Name, err)
	}
	for i := range list.Items {
		var c v1alpha1.DestructionCertificate
		if err := fromUnstructured(&list.Items[i], &c); err != nil {
			return nil, fmt.Errorf("reading DestructionCertificate %s: %w", list.Items[i].GetName(), err)
		}
		if c.Spec.Tenant.UID == string(t.UID) {
			return &c, nil
		}
	}
	return nil, nil
}

// tenantEvents lists the Events about the tenant in every namespace (a cluster-scoped object's land in
// "default"), or in "default" alone when listing every namespace is forbidden. Events about an earlier tenant of
// the same name (another UID) are left out.
func (cl *cluster) tenantEvents(ctx context.Context, t *v1alpha1.Tenant) ([]corev1.Event, error) {
	opts := metav1.ListOptions{FieldSelector: "involvedObject.kind=Tenant,involvedObject.name=" + t.Name}
	list, err := cl.d.Resource(coreEvents).List(ctx, opts)
	if apierrors.IsForbidden(err) {
		list, err = cl.d.Resource(coreEvents).Namespace(metav1.NamespaceDefault).List(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("listing the Events of Tenant %s: %w", t.Name, err)
	}
	var out []corev1.Event
	for i := range list.Items {
		var e corev1.Event
		if err := fromUnstructured(&list.Items[i], &e); err != nil {
			return nil, fmt.Errorf("reading Event %s/%s: %w", list.Items[i].GetNamespace(), list.Items[i].GetName(), err)
		}
		io := e.InvolvedObject
		if io.UID != "" && io.UID != t.UID {
			continue
		}
		if gv, err := schema.ParseGroupVersion(io.APIVersion); io.APIVersion != "" && (err != nil || gv.Group != v1alpha1.GroupVersion.Group) {
			continue // another operator's kind Tenant
		}
		out = append(out, e)
	}
	return out, nil
}
