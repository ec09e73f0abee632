package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/internal/promtest"
	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/sinks/nats"
)

// scrapeMetrics GETs url with client and parses the body with Prometheus'
// text parser.
func scrapeMetrics(client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue is the value of the series of family name whose labels
// include labels (name/value pairs); ok is false when there is none.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	return promtest.SeriesValue(mfs[name], labels...)
}

// TestMetricsOverTLS: agent, aggregator, relay and ocsf serve /metrics over
// TLS with --metrics-tls-cert-file and --metrics-tls-key-file, and with
// --metrics-tls-client-ca-file only to scrapers with a client certificate
// of that CA. Prometheus' text parser reads what they serve, with the
// values each command has at rest; a plain HTTP scrape and, under mTLS, a
// scrape without a client certificate are refused.
func TestMetricsOverTLS(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	natsSrv, natsURL, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { natsSrv.Shutdown(); natsSrv.WaitForShutdown() }()
	goInfo := []string{"go_info", "version", runtime.Version()}

	type want struct {
		metric []string // name, then label pairs
		value  float64
	}
	commands := []struct {
		name string
		run  func(context.Context, []string, cmdIO) error
		args func() []string
		want []want
	}{
		{"agent", runAgent, func() []string {
			return []string{"--source", "synthetic", "--rate", "50", "--bus", "stdout", "--observer-address", "", "--data-dir", t.TempDir()}
		}, []want{{goInfo, 1}, {[]string{"hubble_lost_events_total", "source", "hubble_ring_buffer"}, 0}}},
		{"aggregator", runAggregator, func() []string {
			return []string{"--bus", natsURL, "--data-dir", t.TempDir(), "--group", "metrics-tls-" + fmt.Sprint(time.Now().UnixNano())}
		}, []want{{goInfo, 1}}},
		{"relay", runRelay, func() []string {
			return []string{"--agents", "127.0.0.1:1", "--observer-address", "127.0.0.1:0"}
		}, []want{{[]string{"flowbus_relay_flows_total"}, 0}, {[]string{"flowbus_relay_agents"}, 1}}},
		{"ocsf", runOCSF, func() []string {
			return []string{"--bus", natsURL, "--data-dir", t.TempDir(), "--group", "metrics-tls-" + fmt.Sprint(time.Now().UnixNano())}
		}, []want{{goInfo, 1}, {[]string{"flowbus_ocsf_events_total", "class", "dns_activity"}, 0}, {[]string{"flowbus_ocsf_messages_total"}, 0}}},
	}
	caOnly := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}}
	clientCert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{clientCert}}}}
	plain := &http.Client{Timeout: 5 * time.Second}

	for _, c := range commands {
		for _, mtls := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s mTLS=%v", c.name, mtls), func(t *testing.T) {
				addr := freeAddr(t)
				args := append(c.args(), "--metrics-address", addr,
					"--metrics-tls-cert-file", pki.ServerCertFile, "--metrics-tls-key-file", pki.ServerKey)
				client := caOnly
				if mtls {
					args = append(args, "--metrics-tls-client-ca-file", pki.CAFile)
					client = withCert
				}
				log := &syncbuf.Buffer{}
				ctx, cancel := context.WithCancel(context.Background())
				exited := make(chan error, 1)
				go func() {
					exited <- c.run(ctx, args, cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.NewTextHandler(log, nil))})
				}()
				defer func() {
					cancel()
					select {
					case err := <-exited:
						if err != nil && !errors.Is(err, context.Canceled) {
							t.Errorf("flowbus %s: %v", c.name, err)
						}
					case <-time.After(15 * time.Second):
						t.Errorf("flowbus %s did not stop within 15s", c.name)
					}
				}()
				url := "https://" + addr + "/metrics"
				var mfs map[string]*dto.MetricFamily
				deadline := time.Now().Add(20 * time.Second)
				for {
					mfs, err = scrapeMetrics(client, url)
					ok := err == nil
					for _, w := range c.want {
						v, found := metricValue(mfs, w.metric[0], w.metric[1:]...)
						ok = ok && found && v == w.value
					}
					if ok {
						break
					}
					if time.Now().After(deadline) {
						got := []string{}
						for _, w := range c.want {
							v, found := metricValue(mfs, w.metric[0], w.metric[1:]...)
							got = append(got, fmt.Sprintf("%v=%v (found %v, want %v)", w.metric, v, found, w.value))
						}
						t.Fatalf("scrape %s: %v; %s\n%s", url, err, strings.Join(got, "; "), log)
					}
					select {
					case err := <-exited:
						t.Fatalf("flowbus %s stopped: %v\n%s", c.name, err, log)
					case <-time.After(50 * time.Millisecond):
					}
				}
				if !strings.Contains(log.String(), `msg=metrics url=`+url) && !strings.Contains(log.String(), "url="+url) {
					t.Errorf("no log line with the metrics URL %s:\n%s", url, log)
				}
				if _, err := scrapeMetrics(plain, "http://"+addr+"/metrics"); err == nil {
					t.Error("a plain HTTP scrape got the metrics")
				}
				if mtls {
					if _, err := scrapeMetrics(caOnly, url); err == nil {
						t.Error("a scrape without a client certificate got the metrics")
					}
				}
			})
		}
	}
}

// TestMetricsTLSFlagErrors: incomplete or missing TLS files for /metrics
// stop the command at start, naming the flag.
func TestMetricsTLSFlagErrors(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, c := range []struct {
		tls  metricsTLS
		want string
	}{
		{metricsTLS{certFile: pki.ServerCertFile}, "--metrics-tls-cert-file and --metrics-tls-key-file go together"},
		{metricsTLS{keyFile: pki.ServerKey}, "--metrics-tls-cert-file and --metrics-tls-key-file go together"},
		{metricsTLS{clientCAFile: pki.CAFile}, "--metrics-tls-client-ca-file needs --metrics-tls-cert-file and --metrics-tls-key-file"},
		{metricsTLS{certFile: missing, keyFile: pki.ServerKey}, "metrics TLS (--metrics-tls-*): tls: stat " + missing + ": no such file or directory"},
		{metricsTLS{certFile: pki.ServerKey, keyFile: pki.ServerKey}, "metrics TLS: --metrics-tls-cert-file " + pki.ServerKey + " with --metrics-tls-key-file " + pki.ServerKey + ": tls:"},
		{metricsTLS{certFile: pki.ServerCertFile, keyFile: pki.ServerKey, clientCAFile: pki.ServerKey}, "metrics TLS: --metrics-tls-client-ca-file " + pki.ServerKey + ": no PEM certificate found"},
	} {
		_, _, err := c.tls.listen("127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.tls, err, c.want)
		}
	}
	// Through a command: a usage error, exit 2.
	code, _, errOut := runCommand("relay", "--agents", "a:4244", "--metrics-address", "127.0.0.1:0", "--metrics-tls-cert-file", pki.ServerCertFile)
	if code != 2 || !strings.Contains(errOut, "--metrics-tls-cert-file and --metrics-tls-key-file go together") {
		t.Errorf("relay: exit %d, stderr %q", code, errOut)
	}
}

// TestMetricsTLSCertificateRotates: a certificate renewed in place (the
// files rewritten, as a Kubernetes Secret volume or a renewal job does) is
// served from the next handshake after keyPairCheckEvery, with no restart;
// a half-written pair leaves the last good one in use.
func TestMetricsTLSCertificateRotates(t *testing.T) {
	old := keyPairCheckEvery
	keyPairCheckEvery = 0
	defer func() { keyPairCheckEvery = old }()
	dir := t.TempDir()
	a, b := pkitest.New(t, t.TempDir()), pkitest.New(t, t.TempDir())
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(p pkitest.PKI) {
		t.Helper()
		for src, dst := range map[string]string{p.ServerCertFile: cert, p.ServerKey: key} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst+".new", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dst+".new", dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(a)
	ln, url, err := metricsTLS{certFile: cert, keyFile: key}.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "up 1") })}
	go srv.Serve(ln)
	defer srv.Close()
	served := func(pool *x509.CertPool) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		_, err := scrapeMetrics(c, url)
		return err
	}
	if err := served(a.Pool); err != nil {
		t.Fatalf("the first certificate: %v", err)
	}
	install(b)
	if err := served(b.Pool); err != nil {
		t.Fatalf("after the renewal: %v", err)
	}
	if err := served(a.Pool); err == nil {
		t.Error("the old certificate is still served after the renewal")
	}
	if err := os.WriteFile(key, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := served(b.Pool); err != nil {
		t.Errorf("a key that does not load: %v, want the last good certificate served", err)
	}
}
