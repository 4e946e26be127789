package chart

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// The release namespace of the renders with the default values; testdata/production-values.yaml sets its own.
const defaultNamespace = "custos-system"

// prodValues is the non-default values file.
func prodValues() string {
	return filepath.Join(root, "e2e", "chart", "testdata", "production-values.yaml")
}

// runHelm runs bin/helm and returns its standard output; the error carries standard error.
func runHelm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// rendered is the output of helm template, decoded.
type rendered []*unstructured.Unstructured

// render runs helm template for a release in a namespace with the given extra arguments (-f FILE, --include-crds).
func render(ctx context.Context, release, namespace string, args ...string) rendered {
	GinkgoHelper()
	out, err := runHelm(ctx, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	Expect(err).NotTo(HaveOccurred())
	objs, err := decode([]byte(out))
	Expect(err).NotTo(HaveOccurred())
	Expect(objs).NotTo(BeEmpty())
	return objs
}

func decode(data []byte) (rendered, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out rendered
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 { // documents holding only comments
			out = append(out, u)
		}
	}
}

// ofKind returns the objects of a kind.
func (r rendered) ofKind(kind string) rendered {
	var out rendered
	for _, o := range r {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of a kind and name, failing when there is not exactly one.
func (r rendered) one(kind, name string) *unstructured.Unstructured {
	GinkgoHelper()
	var found []*unstructured.Unstructured
	for _, o := range r.ofKind(kind) {
		if o.GetName() == name {
			found = append(found, o)
		}
	}
	Expect(found).To(HaveLen(1), "exactly one %s %q rendered", kind, name)
	return found[0]
}

// kinds lists the kinds rendered, for failure messages.
func (r rendered) kinds() []string {
	var out []string
	for _, o := range r {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// typed converts a rendered object to its Go type.
func typed[T any](u *unstructured.Unstructured) *T {
	GinkgoHelper()
	var t T
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &t)).To(Succeed())
	return &t
}

func (r rendered) deployment(name string) *appsv1.Deployment {
	GinkgoHelper()
	return typed[appsv1.Deployment](r.one("Deployment", name))
}

// manager returns the manager container of a Deployment.
func manager(d *appsv1.Deployment) corev1.Container {
	GinkgoHelper()
	Expect(d.Spec.Template.Spec.Containers).To(HaveLen(1))
	c := d.Spec.Template.Spec.Containers[0]
	Expect(c.Name).To(Equal("manager"))
	return c
}

// flagValues maps each --name=value argument to its value (the last one wins, as with Go's flag package).
func flagValues(args []string) map[string]string {
	GinkgoHelper()
	out := map[string]string{}
	for _, a := range args {
		Expect(a).To(HavePrefix("--"), "argument %q is a --flag", a)
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		Expect(ok).To(BeTrue(), "argument %q is --name=value", a)
		out[name] = value
	}
	return out
}

// port returns the containerPort of a named port.
func port(c corev1.Container, name string) int32 {
	GinkgoHelper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	Fail(fmt.Sprintf("container %s has no port %q", c.Name, name))
	return 0
}

// mountPath returns where a volume is mounted in a container, "" when it is not.
func mountPath(c corev1.Container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func volume(d *appsv1.Deployment, name string) *corev1.Volume {
	GinkgoHelper()
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	Fail(fmt.Sprintf("Deployment %s has no volume %q", d.Name, name))
	return nil
}

// managerFlags returns the names of every flag the manager defines: the flag.XxxVar calls of cmd/manager/main.go
// and the zap logging flags it binds.
func managerFlags() map[string]bool {
	GinkgoHelper()
	src, err := os.ReadFile(filepath.Join(root, "cmd", "manager", "main.go"))
	Expect(err).NotTo(HaveOccurred())
	re := regexp.MustCompile(`flag\.[A-Za-z0-9]+Var\(\s*&[^,]+,\s*"([a-z0-9-]+)"`)
	names := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
	}
	Expect(names).To(HaveKey("backup-concurrency"), "the flag definitions of main.go were found")
	Expect(string(src)).To(ContainSubstring("opts.BindFlags(flag.CommandLine)"))
	fs := flag.NewFlagSet("zap", flag.ContinueOnError)
	(&zap.Options{}).BindFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	return names
}
