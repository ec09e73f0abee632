//go:build unix

// Package k8stest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver on loopback, nothing else (no scheduler, controller
// manager or kubelet: tests create the objects those would, pods with
// their status included, through the API).
//
// etcd is Debian's etcd-server (/usr/bin/etcd, 3.4), which `make deps-test`
// installs when missing; kube-apiserver is bin/kube-apiserver, which `make
// kube-apiserver` builds once from k8s.io/kubernetes at the release of the
// client-go in go.mod. FLOWBUS_ETCD and FLOWBUS_KUBE_APISERVER name other
// binaries. A test skips, with a one-line reason, when either is missing;
// neither needs root.
//
// Start gives each test its own etcd (data in a temporary directory,
// in /dev/shm when there is one, so fsync costs nothing) and API server on
// free loopback ports: TLS from a CA made for the test, bearer tokens from
// a token file (an admin in system:masters and any users the test asks
// for, in no group), RBAC authorization, a generated service-account key,
// and the admission plugins that need controllers (ServiceAccount) turned
// off. Stop and Start restart the API server on the same port, certificate
// and etcd, so a client's rest.Config keeps working across the restart.
// Every process is ended and every directory removed when the test ends,
// passed or failed; on failure the end of each log is printed.
package k8stest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options says what Start sets up besides the API server.
type Options struct {
	// CiliumCRDs installs the CiliumNetworkPolicy and
	// CiliumClusterwideNetworkPolicy CRDs before Start returns.
	CiliumCRDs bool
	// Users are users with a token of their own and no group, so that no
	// RBAC rule grants them anything until the test binds one
	// (ConfigAs).
	Users []string
}

// Cluster is etcd and an API server for one test. Its methods must be
// called from the test's goroutine.
type Cluster struct {
	t        testing.TB
	dir      string
	apiBin   string
	etcd     *process
	etcdURL  string
	api      *process
	port     int
	caPEM    []byte
	tokens   map[string]string // user -> token
	started  []*process        // every API server started, for cleanup
	extraAPI int
}

// AdminUser is the user of Config: a member of system:masters, which RBAC
// lets do anything.
const AdminUser = "admin"

// Start starts etcd and kube-apiserver, waits until the API server's
// /readyz answers 200, and registers their end with t.Cleanup. It skips
// the test when a binary is missing and fails it when one does not start.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	etcdBin, apiBin := etcdBinary(t), apiServerBinary(t)
	c := &Cluster{t: t, apiBin: apiBin, tokens: map[string]string{}}
	c.dir = tempDir(t)
	if err := c.writeCredentials(opts.Users); err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	c.startEtcd(etcdBin)
	c.port = freePort(t)
	c.api = c.startAPIServer(c.port, "kube-apiserver")
	if opts.CiliumCRDs {
		c.InstallCiliumCRDs()
	}
	return c
}

// Config returns the admin's client configuration. Each call returns a new
// copy the caller may change.
func (c *Cluster) Config() *rest.Config { return c.ConfigAs(AdminUser) }

// ConfigAs returns the client configuration of user, one of
// Options.Users or AdminUser.
func (c *Cluster) ConfigAs(user string) *rest.Config {
	tok, ok := c.tokens[user]
	if !ok {
		c.t.Fatalf("k8stest: no user %q (Options.Users)", user)
	}
	return c.config(c.port, tok)
}

func (c *Cluster) config(port int, token string) *rest.Config {
	return &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(port),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		QPS:             1000,
		Burst:           2000,
	}
}

// Client returns an admin clientset.
func (c *Cluster) Client() kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		c.t.Fatalf("k8stest: clientset: %v", err)
	}
	return cs
}

// Kubeconfig writes a kubeconfig file for user (AdminUser or one of
// Options.Users) and returns its path.
func (c *Cluster) Kubeconfig(user string) string {
	cfg := c.ConfigAs(user)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: c.caPEM}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["k8stest"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: user}
	kc.CurrentContext = "k8stest"
	path := filepath.Join(c.dir, "kubeconfig-"+user)
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		c.t.Fatalf("k8stest: kubeconfig: %v", err)
	}
	return path
}

// Stop stops the API server (SIGTERM, then SIGKILL after 3 s); etcd keeps
// running, and with it every object.
func (c *Cluster) Stop() {
	c.t.Helper()
	if c.api == nil {
		c.t.Fatal("k8stest: Stop: the API server is not running")
	}
	c.api.stop()
	c.api = nil
}

// Start starts the API server again on the same port, certificate, tokens
// and etcd, and waits until it is ready.
func (c *Cluster) Start() {
	c.t.Helper()
	if c.api != nil {
		c.t.Fatal("k8stest: Start: the API server is running")
	}
	c.api = c.startAPIServer(c.port, "kube-apiserver")
}

// AddAPIServer starts a second API server on the same etcd and another
// port, and returns its admin configuration and a function that stops it
// (also called at cleanup). Changes made through it while the first one is
// stopped are changes the first one's watchers never saw as they happened.
func (c *Cluster) AddAPIServer() (*rest.Config, func()) {
	c.t.Helper()
	c.extraAPI++
	port := freePort(c.t)
	p := c.startAPIServer(port, fmt.Sprintf("kube-apiserver-%d", c.extraAPI+1))
	return c.config(port, c.tokens[AdminUser]), p.stop
}

func (c *Cluster) startEtcd(bin string) {
	t := c.t
	client, peer := freePort(t), freePort(t)
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcd = c.start("etcd", bin,
		"--name=k8stest",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=k8stest="+peerURL,
		"--logger=zap", "--log-level=warn")
	hc := &http.Client{Timeout: 2 * time.Second}
	c.waitReady(c.etcd, 60*time.Second, func() error {
		resp, err := hc.Get(c.etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health: %s", resp.Status)
		}
		return nil
	})
}

func (c *Cluster) startAPIServer(port int, name string) *process {
	d := c.dir
	p := c.start(name, c.apiBin,
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(d, "certs"),
		"--tls-cert-file="+filepath.Join(d, "serving.crt"), "--tls-private-key-file="+filepath.Join(d, "serving.key"),
		"--token-auth-file="+filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(d, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(d, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// ServiceAccount admission wants the controller manager's default
		// service accounts; the lease reconciler and priority-and-fairness
		// cost CPU the tests do not need.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0")
	c.started = append(c.started, p)
	tlsCfg := &tls.Config{RootCAs: x509.NewCertPool()}
	tlsCfg.RootCAs.AppendCertsFromPEM(c.caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	c.waitReady(p, 3*time.Minute, func() error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+c.tokens[AdminUser])
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	return p
}

// process is one started binary with its log.
type process struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

func (c *Cluster) start(name, bin string, args ...string) *process {
	t := c.t
	logPath := filepath.Join(c.dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so stop ends what it starts too; and killed
	// with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	killWithParent(cmd.SysProcAttr)
	if err := startCmd(cmd); err != nil {
		lf.Close()
		t.Fatalf("k8stest: start %s: %v", name, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("k8stest: end of %s's log:\n%s", name, tail(logPath, 25))
		}
	})
	return p
}

// stopGrace is how long stop waits after SIGTERM. An API server with
// clients watching takes longer than 10 s to shut down gracefully; a test
// learns nothing from waiting, and a disconnect is a disconnect.
const stopGrace = 3 * time.Second

// stop ends the process: SIGTERM to its group, SIGKILL after stopGrace.
// It may be called again.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (c *Cluster) waitReady(p *process, timeout time.Duration, ready func() error) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("k8stest: %s exited (%v) before it was ready; end of its log:\n%s", p.name, p.err, tail(p.log, 40))
		default:
		}
		if err = ready(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("k8stest: %s not ready after %v: %v; end of its log:\n%s", p.name, timeout, err, tail(p.log, 40))
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("k8stest: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tempDir is a directory removed at cleanup, in /dev/shm when it is
// writable (etcd's fsyncs are free there) and in the test's temporary
// directory otherwise.
func tempDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "k8stest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func etcdBinary(t testing.TB) string {
	if p := os.Getenv("FLOWBUS_ETCD"); p != "" {
		return mustExecutable(t, p, "FLOWBUS_ETCD")
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed (make deps-test installs etcd-server; or set FLOWBUS_ETCD)")
	}
	return p
}

func apiServerBinary(t testing.TB) string {
	if p := os.Getenv("FLOWBUS_KUBE_APISERVER"); p != "" {
		return mustExecutable(t, p, "FLOWBUS_KUBE_APISERVER")
	}
	root, err := repoRoot()
	if err != nil {
		t.Skipf("kube-apiserver: %v", err)
	}
	p := filepath.Join(root, "bin", "kube-apiserver")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("kube-apiserver not built (make kube-apiserver builds bin/kube-apiserver; or set FLOWBUS_KUBE_APISERVER)")
	}
	return p
}

func mustExecutable(t testing.TB, p, env string) string {
	if _, err := exec.LookPath(p); err != nil {
		t.Skipf("%s=%s: %v", env, p, err)
	}
	return p
}

// repoRoot is the nearest directory above the working directory with a
// go.mod: go test runs a package's tests in the package's directory.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("no go.mod above the working directory")
		}
		d = up
	}
}

// ctx is the context of one call to the API server from a helper.
func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
