package local

import (
	"crypto/ed25519"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/signing"
)

// The signing key under a Secret name of the platform's choosing (--signing-key-secret, the chart's
// signingKey.secretName), each case in a namespace of its own so the running manager's key is not touched.
var _ = Describe("The certificate signing key", Label("integration", "exit"), func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signing-key-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		DeferCleanup(func(ctx SpecContext) { Expect(k8s.Delete(ctx, n)).To(Succeed()) })
	})
	keys := func(secret string) *signing.Keys {
		return &signing.Keys{Client: k8s, Reader: k8s, Namespace: ns, SecretName: secret}
	}
	published := func(ctx SpecContext) corev1.ConfigMap {
		GinkgoHelper()
		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.DefaultName}, &cm)).To(Succeed())
		return cm
	}
	noSecret := func(ctx SpecContext, name string) {
		GinkgoHelper()
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Secret %s/%s: %v", ns, name, err)
	}

	It("uses the platform's own key from the named Secret and publishes its public half", func(ctx SpecContext) {
		pub, priv, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pem, err := evidence.MarshalPrivateKey(priv)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hsm-exported-key"},
			Data: map[string][]byte{"ed25519.pem": pem}})).To(Succeed())

		got, err := keys("hsm-exported-key").Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Equal(priv)).To(BeTrue(), "the key in the Secret signs, not a generated one")

		cm := published(ctx)
		Expect(cm.Data).To(HaveKeyWithValue("keyid", evidence.KeyID(pub)))
		want, err := evidence.MarshalPublicKey(pub)
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).To(HaveKeyWithValue("public.pem", string(want)))
		noSecret(ctx, signing.DefaultName)
	})

	It("generates the key into the named Secret, immutable, when it is missing", func(ctx SpecContext) {
		got, err := keys("custos-prod-signing-key").Key(ctx)
		Expect(err).NotTo(HaveOccurred())

		var sec corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-prod-signing-key"}, &sec)).To(Succeed())
		Expect(sec.Immutable).To(HaveValue(BeTrue()))
		stored, err := evidence.ParsePrivateKey(sec.Data["ed25519.pem"])
		Expect(err).NotTo(HaveOccurred())
		Expect(stored.Equal(got)).To(BeTrue())
		Expect(published(ctx).Data).To(HaveKeyWithValue("keyid", evidence.KeyID(got.Public().(ed25519.PublicKey))))
		noSecret(ctx, signing.DefaultName)

		By("loading the same key again in a new manager")
		again, err := keys("custos-prod-signing-key").Key(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Equal(got)).To(BeTrue())
	})

	It("refuses a Secret that holds no usable key, naming the Secret, and replaces nothing", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong-key"},
			Data: map[string][]byte{"tls.key": []byte("not an ed25519 key")}})).To(Succeed())
		_, err := keys("wrong-key").Key(ctx)
		Expect(err).To(MatchError(And(ContainSubstring(ns+"/wrong-key"), ContainSubstring("ed25519.pem"))))

		var sec corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "wrong-key"}, &sec)).To(Succeed())
		Expect(sec.Data).To(Equal(map[string][]byte{"tls.key": []byte("not an ed25519 key")}))
		err = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.DefaultName}, &corev1.ConfigMap{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no public key published for a key that does not load: %v", err)
	})
})
