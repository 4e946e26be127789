package local

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// bindCredentials adds users ("Kind/name") to the custos.io/credentials-for annotation of a Secret in the
// manager's namespace, as a platform engineer does for a second object sharing a Secret.
func bindCredentials(ctx context.Context, secret string, users ...string) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: secret}, &s); err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		list := s.Annotations[custosv1alpha1.AnnotationCredentialsFor]
		for _, u := range users {
			if list != "" {
				list += ","
			}
			list += u
		}
		s.Annotations[custosv1alpha1.AnnotationCredentialsFor] = list
		return k8s.Update(ctx, &s)
	})).To(Succeed())
}

// catcher is a listener on the loopback host standing in for a host a BackupLocation or DatabaseServer must not
// send credentials to: it records every HTTP request's basic-auth header and every TCP connection.
type catcher struct {
	mu       sync.Mutex
	auth     []string
	requests atomic.Int64
}

func (c *catcher) authorizations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.auth...)
}

var _ = Describe("Credentials Secrets are bound to the objects that may use them", Ordered, Label("integration", "security"), func() {
	var (
		mgr  *runningManager
		web  *httptest.Server
		seen *catcher
		tcp  net.Listener
		conn atomic.Int64
	)

	BeforeAll(func(ctx SpecContext) {
		seen = &catcher{}
		web = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.requests.Add(1)
			if a := r.Header.Get("Authorization"); a != "" {
				seen.mu.Lock()
				seen.auth = append(seen.auth, a)
				seen.mu.Unlock()
			}
			w.WriteHeader(http.StatusOK)
		}))
		DeferCleanup(web.Close)
		var err error
		tcp, err = net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(tcp.Close)
		go func() {
			for {
				c, err := tcp.Accept()
				if err != nil {
					return
				}
				conn.Add(1)
				_ = c.Close()
			}
		}()
		mgr = startManager()
		DeferCleanup(func() { mgr.stop() })
	})

	It("refuses a BackupLocation naming another location's Secret with SecretNotBound and sends nothing, until the Secret names it", func(ctx SpecContext) {
		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secb-victim-credentials", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "BackupLocation/secb-victim"}},
			StringData: map[string]string{"username": "victim", "password": "victim-password-13579"}})
		thief := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "secb-thief"}, Spec: custosv1alpha1.BackupLocationSpec{
			URL: "rest:" + web.URL + "/", Jurisdiction: "NL", CredentialsSecretRef: &custosv1alpha1.SecretReference{Name: "secb-victim-credentials"}}}
		Expect(k8s.Create(ctx, thief)).To(Succeed())

		c := condition(ctx, thief, custosv1alpha1.ConditionReady)
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonSecretNotBound))
		Expect(c(Default).Message).To(And(
			ContainSubstring("Secret custos-system/secb-victim-credentials is not bound to BackupLocation/secb-thief"),
			ContainSubstring("add BackupLocation/secb-thief to its annotation custos.io/credentials-for"),
			Not(ContainSubstring("victim-password-13579"))))
		Consistently(seen.requests.Load).WithTimeout(5*time.Second).WithPolling(500*time.Millisecond).Should(BeZero(),
			"the location's host was contacted before its Secret was bound")

		By("binding the Secret to the location too, which then gets it")
		bindCredentials(ctx, "secb-victim-credentials", "BackupLocation/secb-thief")
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("victim:victim-password-13579"))
		Eventually(seen.authorizations).WithTimeout(30 * time.Second).Should(ContainElement(want))
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionTrue, "Reachable"))
	})

	It("refuses S3 keys from a Secret that names no object", func(ctx SpecContext) {
		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secb-unbound-s3", Namespace: managerNamespace},
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3-secret-24680"}})
		before := seen.requests.Load()
		bl := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "secb-s3"}, Spec: custosv1alpha1.BackupLocationSpec{
			URL: "s3:" + web.URL + "/bucket", Jurisdiction: "NL", CredentialsSecretRef: &custosv1alpha1.SecretReference{Name: "secb-unbound-s3"}}}
		Expect(k8s.Create(ctx, bl)).To(Succeed())
		c := condition(ctx, bl, custosv1alpha1.ConditionReady)
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonSecretNotBound))
		Expect(c(Default).Message).To(ContainSubstring("kubectl annotate secret -n custos-system secb-unbound-s3 custos.io/credentials-for=BackupLocation/secb-s3"))
		Consistently(seen.requests.Load).WithTimeout(3 * time.Second).Should(Equal(before))
	})

	It("refuses a DatabaseServer whose admin Secret does not name it with SecretNotBound and does not connect, until the Secret names it", func(ctx SpecContext) {
		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secb-pg-admin", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/secb-other"}},
			StringData: map[string]string{"username": pg.User, "password": pg.Password}})
		port := tcp.Addr().(*net.TCPAddr).Port
		s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "secb-pg-thief"}, Spec: custosv1alpha1.DatabaseServerSpec{
			Host: "127.0.0.1", Port: int32(port), SSLMode: "disable", Jurisdiction: "NL",
			AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: "secb-pg-admin"}}}
		Expect(k8s.Create(ctx, s)).To(Succeed())
		c := condition(ctx, s, custosv1alpha1.ConditionReady)
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonSecretNotBound))
		Expect(c(Default).Message).To(And(ContainSubstring("is not bound to DatabaseServer/secb-pg-thief"), Not(ContainSubstring(pg.Password))))
		Consistently(conn.Load).WithTimeout(5*time.Second).WithPolling(500*time.Millisecond).Should(BeZero(),
			"the server's host was contacted before its Secret was bound")

		By("binding the Secret to the server, which is then contacted")
		bindCredentials(ctx, "secb-pg-admin", "DatabaseServer/secb-pg-thief")
		Eventually(conn.Load).WithTimeout(30 * time.Second).Should(BeNumerically(">", 0))
		Eventually(c).WithTimeout(30 * time.Second).Should(HaveField("Reason", Not(Equal(custosv1alpha1.ReasonSecretNotBound))))
	})

	It("lists several objects sharing one Secret with commas", func(ctx SpecContext) {
		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secb-shared-admin", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/secb-shared-a, DatabaseServer/secb-shared-b"}},
			StringData: map[string]string{"username": pg.User, "password": pg.Password}})
		for _, name := range []string{"secb-shared-a", "secb-shared-b"} {
			s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.DatabaseServerSpec{
				Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "NL",
				AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: "secb-shared-admin"}}}
			Expect(k8s.Create(ctx, s)).To(Succeed())
			Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
				Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		}
	})
})
