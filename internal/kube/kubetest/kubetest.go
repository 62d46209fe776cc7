// Package kubetest starts a real Kubernetes API server for tests: Debian's
// etcd and the kube-apiserver that scripts/build-kube-apiserver.sh caches,
// on free loopback ports, in the test's temporary directory. Clients
// authenticate with certificates from a CA of the test's own, so each
// agent can have its own identity (CN = user, O = groups). There is no
// kubelet or scheduler: objects are stored and watched, pods never run.
package kubetest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/leaf-ebpf/leaf/internal/testenv/pki"
)

// Version is the kube-apiserver release scripts/build-kube-apiserver.sh
// builds.
const Version = "v1.34.3"

// startTimeout bounds how long the API server may take to answer /readyz;
// generous because the tests share two cores with builds.
const startTimeout = 3 * time.Minute

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	t   testing.TB
	dir string
	// Server is the API server's URL (https://127.0.0.1:PORT).
	Server string
	// CA signs the serving certificate and every client certificate.
	CA *pki.CA
	// Admin is a client configuration in system:masters.
	Admin *rest.Config

	apiserverBin  string
	apiserverArgs []string
	mu            sync.Mutex
	apiserver     *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// APIServerPath returns the cached kube-apiserver binary (or
// $LEAF_KUBE_APISERVER), or why there is none.
func APIServerPath() (string, error) {
	if p := os.Getenv("LEAF_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "leaf", "kube-apiserver-"+Version, "kube-apiserver")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found: run scripts/build-kube-apiserver.sh (scripts/install-deps.sh does)", p)
	}
	return p, nil
}

// Start starts etcd and the API server, waits until the API server is
// ready, and stops both when the test ends. It skips the test, saying
// why, when either binary is missing.
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver, err := APIServerPath()
	if err != nil {
		t.Skipf("no kube-apiserver: %v", err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd: install Debian's etcd-server (scripts/install-deps.sh does)")
	}
	dir, err := os.MkdirTemp("", "leaf-kube-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Cluster{t: t, dir: dir, CA: pki.NewCA(t, "leaf-test-kubernetes-ca"), apiserverBin: apiserver}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peerURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	ep := c.spawn("etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--logger", "zap", "--log-level", "warn")
	t.Cleanup(func() { ep.stop() })

	serving := c.CA.Issue(t, pki.Options{CN: "kube-apiserver", DNS: []string{"localhost"}, IPs: []string{"127.0.0.1"}})
	cert, key := serving.Write(t, dir, "apiserver")
	caFile := filepath.Join(dir, "ca.crt")
	pki.WriteFile(t, caFile, c.CA.PEM())
	// The service-account keys are needed to start; the tests use
	// certificates, not service-account tokens.
	sa := c.CA.Issue(t, pki.Options{CN: "service-accounts"})
	_, saKey := sa.Write(t, dir, "sa")
	saPub := filepath.Join(dir, "sa.pub")
	pki.WriteFile(t, saPub, publicPEM(t, sa))
	port := freePort(t)
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	c.apiserverArgs = []string{
		"--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port), "--cert-dir=" + filepath.Join(dir, "pki"),
		"--tls-cert-file=" + cert, "--tls-private-key-file=" + key, "--client-ca-file=" + caFile,
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey, "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16", "--v=0",
		// As every cluster that runs privileged DaemonSets (CNI, CSI, leaf).
		"--allow-privileged=true",
	}
	c.Admin = c.Config(t, "leaf-test-admin", "system:masters")
	c.StartAPIServer()
	t.Cleanup(c.StopAPIServer)
	return c
}

// StartAPIServer (re)starts the API server on its port and waits until it
// is ready. etcd keeps the objects across restarts.
func (c *Cluster) StartAPIServer() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		return
	}
	c.apiserver = c.spawn("kube-apiserver", c.apiserverBin, c.apiserverArgs...)
	if err := c.waitReady(c.apiserver); err != nil {
		p := c.apiserver
		p.stop()
		c.apiserver = nil
		out, _ := os.ReadFile(p.log.Name())
		c.t.Fatalf("kube-apiserver: %v; its log:\n%s", err, tail(out, 4000))
	}
}

// StopAPIServer stops the API server (not etcd), as an outage would.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		c.apiserver.stop()
		c.apiserver = nil
	}
}

// PID is the API server's process ID, 0 when it is stopped.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return 0
	}
	return c.apiserver.cmd.Process.Pid
}

func (c *Cluster) waitReady(p *process) error {
	hc, err := rest.HTTPClientFor(c.Admin)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.cmd.ProcessState)
		default:
		}
		resp, err := hc.Get(c.Server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v", startTimeout)
}

// Config returns a client configuration authenticating as user in groups
// with a client certificate from the cluster's CA.
func (c *Cluster) Config(t testing.TB, user string, groups ...string) *rest.Config {
	t.Helper()
	l := c.CA.Issue(t, pki.Options{CN: user, Org: groups})
	return &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.CA.PEM(), CertData: l.ChainPEM(), KeyData: l.KeyPEM(t),
		},
		QPS: 200, Burst: 400,
	}
}

// Kubeconfig writes a kubeconfig file for user in groups and returns its
// path, for processes such as leafd.
func (c *Cluster) Kubeconfig(t testing.TB, user string, groups ...string) string {
	t.Helper()
	rc := c.Config(t, user, groups...)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: user}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Clients returns typed and dynamic clients for a configuration.
func Clients(t testing.TB, rc *rest.Config) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	k, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return k, d
}

// Eventually polls cond until it returns nil or timeout passes, then
// fails with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = cond(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %v", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) spawn(name, bin string, args ...string) *process {
	c.t.Helper()
	log, err := os.CreateTemp(c.dir, name+"-*.log")
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, and killed with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { cmd.Wait(); close(p.done) }()
	return p
}

// stop ends the process with SIGTERM, then SIGKILL after 10 seconds.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// freePort asks the kernel for a free loopback TCP port.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// publicPEM is the PKIX public key of a certificate's key.
func publicPEM(t testing.TB, l *pki.Leaf) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(l.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Apply creates or updates, by server-side apply as admin, every object
// of the YAML files (several documents each), then waits for CRDs among
// them to be established.
func (c *Cluster) Apply(t testing.TB, files ...string) {
	t.Helper()
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	_, dyn := Clients(t, c.Admin)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if u.Object == nil {
				continue
			}
			gvk := u.GroupVersionKind()
			var m *meta.RESTMapping
			Eventually(t, time.Minute, func(context.Context) error {
				m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					mapper.Reset() // a CRD applied just before: discover again
				}
				return err
			})
			r := dyn.Resource(m.Resource)
			var ri dynamic.ResourceInterface = r
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				ri = r.Namespace(u.GetNamespace())
			}
			if _, err := ri.Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "leaf-test", Force: true}); err != nil {
				t.Fatalf("%s: apply %s %s: %v", f, gvk.Kind, u.GetName(), err)
			}
			if gvk.Kind == "CustomResourceDefinition" {
				c.waitEstablished(t, dyn, u.GetName())
			}
		}
	}
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (c *Cluster) waitEstablished(t testing.TB, dyn dynamic.Interface, name string) {
	t.Helper()
	Eventually(t, time.Minute, func(ctx context.Context) error {
		u, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("CRD %s not established: %v", name, conds)
	})
}

// LeafManifests lists leaf's CRDs, namespace, RBAC and admission policy
// under deploy/kubernetes (dir), in the order they apply.
func LeafManifests(dir string) []string {
	return []string{filepath.Join(dir, "crds", "leafpolicies.yaml"), filepath.Join(dir, "crds", "leafnodes.yaml"),
		filepath.Join(dir, "namespace.yaml"), filepath.Join(dir, "rbac.yaml"), filepath.Join(dir, "admission.yaml")}
}

// Create creates the object a YAML document describes.
func Create(t testing.TB, d dynamic.Interface, gvr schema.GroupVersionResource, doc string) {
	t.Helper()
	var u unstructured.Unstructured
	if err := sigsyaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resource(gvr).Create(context.Background(), &u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}
