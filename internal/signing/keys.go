// Package signing keeps the Ed25519 key that signs certificates of destruction: the private key in a Secret of
// the manager's namespace, the public keys (every key that ever signed) in a ConfigMap auditors read.
package signing

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
)

// The signing key of certificates: an Ed25519 key generated at first start into a Secret of the manager's
// namespace (DefaultName unless --signing-key-secret names another); its public half is published in the
// ConfigMap DefaultName of the same namespace, for auditors (`custos verify --key`, `custos pubkey --cluster`),
// together with the history of every key that ever signed (key history.json, evidence.KeyHistory), so that
// certificates signed with an earlier key still verify. A key is never replaced silently: when the Secret is
// missing or holds another key than the one in use, the manager signs nothing (certificates wait, the exit step
// says why, custos_signing_key_ready is 0) until the Secret is restored or the manager runs with
// --allow-new-signing-key; the first key of an installation (no history yet) needs no flag.
const (
	// DefaultName names the public keys' ConfigMap, and the private key's Secret unless Keys.SecretName names another.
	DefaultName    = custosv1alpha1.SigningKeyName
	privateKeyFile = "ed25519.pem"
	publicKeyFile  = custosv1alpha1.SigningPublicKeyFile
	historyFile    = "history.json"
)

// Keys loads, or makes once, the certificate signing key.
type Keys struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	// SecretName is the Secret holding the private key; empty: DefaultName. A Secret made beforehand (your own
	// key) is used as it is; a missing one is generated when no key signed before (or AllowNew).
	SecretName string
	// AllowNew lets a new key (a generated one for a missing Secret, or another key in the Secret) replace the
	// key in use; the old public keys stay in the history.
	AllowNew bool
	// Clock dates the keys' validity; nil: the wall clock.
	Clock clock.PassiveClock

	mu  sync.Mutex
	key ed25519.PrivateKey
}

// Start makes sure the key and its published public key exist (a manager.Runnable; leader only). A refused key
// is logged and shown in custos_signing_key_ready; the manager goes on (backups must not stop), signing nothing.
func (k *Keys) Start(ctx context.Context) error {
	if _, err := k.Key(ctx); err != nil {
		log.FromContext(ctx).Error(err, "No certificate signing key: certificates of destruction are not signed until this is resolved")
	}
	<-ctx.Done()
	return nil
}

// NewKeyRefusedError says why the manager does not sign with a new key.
type NewKeyRefusedError struct{ Msg string }

func (e *NewKeyRefusedError) Error() string { return e.Msg }

func (k *Keys) now() time.Time {
	if k.Clock == nil {
		return time.Now()
	}
	return k.Clock.Now()
}

// History returns the published key history (a ConfigMap without history.json: its public.pem as the only key,
// validity unknown).
func (k *Keys) History(ctx context.Context) (evidence.KeyHistory, *corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := k.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: DefaultName}, &cm)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if raw, ok := cm.Data[historyFile]; ok {
		h, err := evidence.ParseKeyHistory([]byte(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s: %w", k.Namespace, DefaultName, err)
		}
		return h, &cm, nil
	}
	if p := cm.Data[publicKeyFile]; p != "" {
		pub, err := evidence.ParsePublicKey([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s, key %s: %w", k.Namespace, DefaultName, publicKeyFile, err)
		}
		return evidence.KeyHistory{{KeyID: evidence.KeyID(pub), PublicKey: p}}, &cm, nil
	}
	return nil, &cm, nil
}

// Key returns the signing key, generating it when the Secret does not exist and no key signed before.
func (k *Keys) Key(ctx context.Context) (ed25519.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil {
		return k.key, nil
	}
	priv, err := k.load(ctx)
	if err != nil {
		metrics.SigningKeyReady(false)
		return nil, err
	}
	metrics.SigningKeyReady(true)
	k.key = priv
	return priv, nil
}

func (k *Keys) load(ctx context.Context) (ed25519.PrivateKey, error) {
	name := k.SecretName
	if name == "" {
		name = DefaultName
	}
	history, _, err := k.History(ctx)
	if err != nil {
		return nil, err
	}
	cur, inUse := history.Current()
	key := client.ObjectKey{Namespace: k.Namespace, Name: name}
	var sec corev1.Secret
	err = k.Reader.Get(ctx, key, &sec)
	switch {
	case apierrors.IsNotFound(err):
		if inUse && !k.AllowNew {
			return nil, &NewKeyRefusedError{Msg: fmt.Sprintf("the signing key Secret %s is missing, but certificates were signed with key %s (ConfigMap %s/%s): "+
				"restore the Secret from your backup, or start the manager with --allow-new-signing-key (chart: signingKey.allowNew) to sign with a new key; "+
				"the old public keys stay published", key, cur.KeyID, k.Namespace, DefaultName)}
		}
		_, priv, err := evidence.GenerateKey()
		if err != nil {
			return nil, err
		}
		pem, err := evidence.MarshalPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		sec = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: name,
			Labels: map[string]string{custosv1alpha1.LabelPurpose: "certificate-signing-key", custosv1alpha1.LabelManagedBy: "custos"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{privateKeyFile: pem}, Immutable: ptr.To(true)}
		if err := k.Client.Create(ctx, &sec); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return nil, err
			}
			if err := k.Reader.Get(ctx, key, &sec); err != nil { // another manager made it first
				return nil, err
			}
		}
	case err != nil:
		return nil, err
	}
	priv, err := evidence.ParsePrivateKey(sec.Data[privateKeyFile])
	if err != nil {
		return nil, fmt.Errorf("Secret %s, key %s: %w", key, privateKeyFile, err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if inUse && cur.KeyID != evidence.KeyID(pub) && !k.AllowNew {
		return nil, &NewKeyRefusedError{Msg: fmt.Sprintf("the signing key in Secret %s is %s, but certificates were signed with key %s (ConfigMap %s/%s): "+
			"restore the key in use, or start the manager with --allow-new-signing-key (chart: signingKey.allowNew) to sign with the new one; "+
			"the old public keys stay published", key, evidence.KeyID(pub), cur.KeyID, k.Namespace, DefaultName)}
	}
	if err := k.publish(ctx, pub); err != nil {
		return nil, err
	}
	return priv, nil
}

// publish makes pub the key in use in the published history (the previous one is closed, never removed) and its
// PEM the ConfigMap's public.pem.
func (k *Keys) publish(ctx context.Context, pub ed25519.PublicKey) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		history, cm, err := k.History(ctx)
		if err != nil {
			return err
		}
		history, err = history.With(pub, k.now())
		if err != nil {
			return err
		}
		pem, err := evidence.MarshalPublicKey(pub)
		if err != nil {
			return err
		}
		want := map[string]string{publicKeyFile: string(pem), "keyid": evidence.KeyID(pub), historyFile: string(history.Marshal())}
		if cm == nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: DefaultName,
				Labels: map[string]string{custosv1alpha1.LabelPurpose: "certificate-public-key", custosv1alpha1.LabelManagedBy: "custos"}}, Data: want}
			err := k.Client.Create(ctx, cm)
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
			}
			return err
		}
		if equality.Semantic.DeepEqual(cm.Data, want) {
			return nil
		}
		cm.Data = want
		return k.Client.Update(ctx, cm)
	})
}
