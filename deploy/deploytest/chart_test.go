package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor
// the chart writes; any other field is an error in the strict decode.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector          struct{ MatchLabels map[string]string } `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port      string            `json:"port"`
			Path      string            `json:"path"`
			Interval  string            `json:"interval"`
			Scheme    string            `json:"scheme"`
			TLSConfig *monitorTLSConfig `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// secretKey is a monitoring.coreos.com SecretKeySelector.
type secretKey struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// monitorTLSConfig is the part of a ServiceMonitor endpoint's tlsConfig the
// chart writes.
type monitorTLSConfig struct {
	CA struct {
		Secret secretKey `json:"secret"`
	} `json:"ca"`
	Cert *struct {
		Secret secretKey `json:"secret"`
	} `json:"cert"`
	KeySecret  *secretKey `json:"keySecret"`
	ServerName string     `json:"serverName"`
}

// rendered is a chart rendering decoded into the API types.
type rendered struct {
	names        []string // kind/name
	daemonSet    *appsv1.DaemonSet
	statefulSet  *appsv1.StatefulSet // the aggregator's
	ocsf         *appsv1.StatefulSet // flowbus ocsf's, when enabled
	deployment   *appsv1.Deployment
	clusterRole  *rbacv1.ClusterRole
	binding      *rbacv1.ClusterRoleBinding
	services     map[string]*corev1.Service
	netpols      map[string]*networkingv1.NetworkPolicy
	monitors     map[string]*serviceMonitor
	serviceAccts []*corev1.ServiceAccount
}

// decode renders the chart with valuesFiles and decodes every manifest
// strictly (an unknown or misplaced field is an error) into its type.
func decode(t *testing.T, valuesFiles ...string) *rendered {
	t.Helper()
	ms, err := Render(valuesFiles...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{services: map[string]*corev1.Service{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		monitors: map[string]*serviceMonitor{}}
	for _, m := range ms {
		r.names = append(r.names, m.Kind+"/"+m.Name)
		var obj any
		switch m.Kind {
		case "DaemonSet":
			r.daemonSet = &appsv1.DaemonSet{}
			obj = r.daemonSet
		case "StatefulSet":
			s := &appsv1.StatefulSet{}
			if strings.HasSuffix(m.Name, "-ocsf") {
				r.ocsf = s
			} else {
				r.statefulSet = s
			}
			obj = s
		case "Deployment":
			r.deployment = &appsv1.Deployment{}
			obj = r.deployment
		case "ClusterRole":
			r.clusterRole = &rbacv1.ClusterRole{}
			obj = r.clusterRole
		case "ClusterRoleBinding":
			r.binding = &rbacv1.ClusterRoleBinding{}
			obj = r.binding
		case "Service":
			s := &corev1.Service{}
			r.services[m.Name] = s
			obj = s
		case "ServiceAccount":
			s := &corev1.ServiceAccount{}
			r.serviceAccts = append(r.serviceAccts, s)
			obj = s
		case "NetworkPolicy":
			p := &networkingv1.NetworkPolicy{}
			r.netpols[m.Name] = p
			obj = p
		case "ServiceMonitor":
			s := &serviceMonitor{}
			r.monitors[m.Name] = s
			obj = s
		default:
			t.Fatalf("%s: unexpected kind %s", m.Source, m.Kind)
		}
		if err := yaml.UnmarshalStrict(m.YAML, obj); err != nil {
			t.Fatalf("%s %s/%s: %v", m.Source, m.Kind, m.Name, err)
		}
	}
	return r
}

// podSpecs are the pod templates of the workloads: agent, aggregator,
// relay, and ocsf when enabled.
func (r *rendered) podSpecs() map[string]*corev1.PodSpec {
	ps := map[string]*corev1.PodSpec{"agent": &r.daemonSet.Spec.Template.Spec,
		"aggregator": &r.statefulSet.Spec.Template.Spec, "relay": &r.deployment.Spec.Template.Spec}
	if r.ocsf != nil {
		ps["ocsf"] = &r.ocsf.Spec.Template.Spec
	}
	return ps
}

func TestChartDefaultObjects(t *testing.T) {
	r := decode(t)
	want := []string{"ClusterRole/flowbus-agent", "ClusterRoleBinding/flowbus-agent", "DaemonSet/flowbus-agent",
		"Deployment/flowbus-relay", "NetworkPolicy/flowbus-aggregator", "NetworkPolicy/flowbus-relay",
		"Service/flowbus-agent", "Service/flowbus-aggregator", "Service/flowbus-relay", "ServiceAccount/flowbus-agent",
		"StatefulSet/flowbus-aggregator"}
	if diff := cmp.Diff(want, r.names); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	for name, ps := range r.podSpecs() {
		c := ps.Containers[0]
		if c.Image != "flowbus/flowbus:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: image %s %s, want flowbus/flowbus:0.1.0 (the appVersion) IfNotPresent", name, c.Image, c.ImagePullPolicy)
		}
	}
	if got := r.statefulSet.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("50Gi")) != 0 {
		t.Errorf("aggregator PVC %s, want 50Gi", got.String())
	}
	if got := r.deployment.Spec.Template.Spec.Containers[0].Args; !slices.Contains(got, "--agents=flowbus-agent.flowbus.svc:4244") {
		t.Errorf("relay args %q lack the agents' headless Service", got)
	}
	if s := r.services["flowbus-agent"]; s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("agent Service clusterIP %q, want None (headless: the relay resolves it to every agent)", s.Spec.ClusterIP)
	}
}

// The agent is not privileged and holds exactly the capabilities
// values.yaml explains; no workload is privileged or may escalate.
func TestChartAgentLeastPrivilege(t *testing.T) {
	for _, vf := range [][]string{nil, {FullValues()}} {
		r := decode(t, vf...)
		ds := r.daemonSet.Spec.Template.Spec
		if !ds.HostNetwork {
			t.Errorf("agent: hostNetwork false")
		}
		sc := ds.Containers[0].SecurityContext
		if sc.Privileged == nil || *sc.Privileged {
			t.Errorf("agent: privileged %v, want false", sc.Privileged)
		}
		if diff := cmp.Diff(&corev1.Capabilities{Drop: []corev1.Capability{"ALL"},
			Add: []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}}, sc.Capabilities); diff != "" {
			t.Errorf("agent capabilities (-want +got):\n%s", diff)
		}
		for name, ps := range r.podSpecs() {
			for _, c := range ps.Containers {
				sc := c.SecurityContext
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || (sc.Privileged != nil && *sc.Privileged) {
					t.Errorf("%s/%s: securityContext %+v", name, c.Name, sc)
				}
				if name != "agent" && !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || name != "agent" && len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: capabilities %+v, want all dropped", name, sc.Capabilities)
				}
			}
			for _, v := range ps.Volumes {
				if v.HostPath != nil && name != "agent" {
					t.Errorf("%s: hostPath volume %s", name, v.Name)
				}
			}
		}
		var mounts []string
		for _, m := range ds.Containers[0].VolumeMounts {
			mounts = append(mounts, m.MountPath+map[bool]string{true: " ro", false: " rw"}[m.ReadOnly])
		}
		wantMounts := []string{"/var/lib/flowbus rw", "/sys/kernel/btf ro"}
		if len(vf) > 0 {
			wantMounts = append(wantMounts, "/etc/flowbus/kafka-tls ro", "/etc/flowbus/kafka-sasl ro", "/etc/flowbus/metrics-tls ro", "/etc/flowbus/observer-tls ro")
		}
		if diff := cmp.Diff(wantMounts, mounts); diff != "" {
			t.Errorf("agent mounts (-want +got):\n%s", diff)
		}
		env := ds.Containers[0].Env[0]
		if env.Name != "FLOWBUS_NODE" || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil || env.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("agent env[0] %+v, want FLOWBUS_NODE from spec.nodeName", env)
		}
	}
}

// The agent's ClusterRole reads what agent/cluster/k8s watches (its
// apiserver test's agentRules) and nothing else, and writes nothing.
func TestChartRBACIsReadOnly(t *testing.T) {
	r := decode(t)
	read := []string{"get", "list", "watch"}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "services"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: read},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: read},
		{APIGroups: []string{"cilium.io"}, Resources: []string{"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"}, Verbs: read},
	}
	if diff := cmp.Diff(want, r.clusterRole.Rules); diff != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rbacv1.Subject{{Kind: "ServiceAccount", Name: "flowbus-agent", Namespace: "flowbus"}}, r.binding.Subjects); diff != "" {
		t.Errorf("binding subjects (-want +got):\n%s", diff)
	}
	if r.binding.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "flowbus-agent"}) {
		t.Errorf("roleRef %+v", r.binding.RoleRef)
	}
	if got := r.daemonSet.Spec.Template.Spec.ServiceAccountName; got != "flowbus-agent" {
		t.Errorf("agent serviceAccountName %q", got)
	}
	for name, ps := range r.podSpecs() {
		if name != "agent" && (ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken) {
			t.Errorf("%s mounts a service account token it does not use", name)
		}
	}
}

// Every option on: images from values, the exact argument lists, TLS and
// SASL from Secrets, ServiceMonitors, NetworkPolicy peers from values.
func TestChartFullValues(t *testing.T) {
	r := decode(t, FullValues())
	if n := len(r.names); n != 17 {
		t.Errorf("%d objects %q, want 17 (with ocsf's StatefulSet, Service and NetworkPolicy, and three ServiceMonitors)", n, r.names)
	}
	for name, ps := range r.podSpecs() {
		c := ps.Containers[0]
		if c.Image != "registry.example/flowbus:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("%s: image %s %s", name, c.Image, c.ImagePullPolicy)
		}
		if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "regcred"}}, ps.ImagePullSecrets); diff != "" {
			t.Errorf("%s: imagePullSecrets (-want +got):\n%s", name, diff)
		}
	}
	wantArgs := map[string][]string{
		"agent": {"agent", "--source=ebpf", "--endpoints-source=kubernetes", "--interfaces=lxc*,cali*",
			"--policy-enforcement=default", "--cluster-name=prod-eu", "--l7=http:8080 grpc:9090 dns:53 kafka:9092",
			"--data-dir=/var/lib/flowbus", "--observer-address=:4244", "--metrics-address=:9965",
			"--metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt", "--metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key",
			"--metrics-tls-client-ca-file=/etc/flowbus/metrics-tls/ca.crt", "--metrics=flow",
			"--metrics=drop:sourceContext=namespace;destinationContext=workload-name", "--metrics=tcp",
			"--metrics=http:sourceContext=workload-name;destinationContext=workload-name", "--metrics=dns",
			"--metrics=policy:sourceContext=namespace;destinationContext=namespace",
			"--bus=kafka://kafka-0.kafka:9093,kafka-1.kafka:9093", "--kafka-topic=flows", "--kafka-tls",
			"--kafka-tls-ca-file=/etc/flowbus/kafka-tls/ca.crt", "--kafka-tls-cert-file=/etc/flowbus/kafka-tls/tls.crt",
			"--kafka-tls-key-file=/etc/flowbus/kafka-tls/tls.key", "--kafka-tls-server-name=kafka.example", "--kafka-sasl-mechanism=SCRAM-SHA-512",
			"--kafka-sasl-user=flowbus", "--kafka-sasl-password-file=/etc/flowbus/kafka-sasl/password",
			"--observer-tls-cert-file=/etc/flowbus/observer-tls/tls.crt",
			"--observer-tls-key-file=/etc/flowbus/observer-tls/tls.key",
			"--observer-tls-client-ca-file=/etc/flowbus/observer-tls/ca.crt", "--ring-size=8192"},
		"aggregator": {"aggregator", "--bus=kafka://kafka-0.kafka:9093,kafka-1.kafka:9093", "--kafka-topic=flows",
			"--kafka-tls", "--kafka-tls-ca-file=/etc/flowbus/kafka-tls/ca.crt", "--kafka-tls-cert-file=/etc/flowbus/kafka-tls/tls.crt",
			"--kafka-tls-key-file=/etc/flowbus/kafka-tls/tls.key", "--kafka-tls-server-name=kafka.example", "--kafka-sasl-mechanism=SCRAM-SHA-512",
			"--kafka-sasl-user=flowbus", "--kafka-sasl-password-file=/etc/flowbus/kafka-sasl/password",
			"--group=flowbus-aggregator", "--data-dir=/data", "--window=5m", "--lateness=30s", "--raw-flows",
			"--metrics-address=:9966", "--metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt",
			"--metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key", "--metrics-tls-client-ca-file=/etc/flowbus/metrics-tls/ca.crt",
			"--max-routes-per-workload=1000"},
		"ocsf": {"ocsf", "--bus=kafka://kafka-0.kafka:9093,kafka-1.kafka:9093", "--kafka-topic=flows",
			"--kafka-tls", "--kafka-tls-ca-file=/etc/flowbus/kafka-tls/ca.crt", "--kafka-tls-cert-file=/etc/flowbus/kafka-tls/tls.crt",
			"--kafka-tls-key-file=/etc/flowbus/kafka-tls/tls.key", "--kafka-tls-server-name=kafka.example", "--kafka-sasl-mechanism=SCRAM-SHA-512",
			"--kafka-sasl-user=flowbus", "--kafka-sasl-password-file=/etc/flowbus/kafka-sasl/password",
			"--group=flowbus-ocsf", "--kafka-instance-id=auto", "--data-dir=/data/files", "--rotate-bytes=268435456", "--rotate-age=1h", "--max-files=48",
			"--hec-url=https://splunk.example:8088/services/collector/event", "--hec-token-file=/etc/flowbus/hec/token",
			"--hec-sourcetype=ocsf:flowbus", "--hec-spool-dir=/data/hec-spool", "--kafka-output-topic=flowbus.ocsf.v1",
			"--metrics-address=:9968", "--metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt",
			"--metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key", "--metrics-tls-client-ca-file=/etc/flowbus/metrics-tls/ca.crt"},
		"relay": {"relay", "--agents=flowbus-agent.flowbus.svc:4244", "--observer-address=:4245", "--metrics-address=:9967",
			"--metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt", "--metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key",
			"--metrics-tls-client-ca-file=/etc/flowbus/metrics-tls/ca.crt",
			"--agent-tls", "--agent-tls-ca-file=/etc/flowbus/agent-tls/ca.crt",
			"--agent-tls-cert-file=/etc/flowbus/agent-tls/tls.crt", "--agent-tls-key-file=/etc/flowbus/agent-tls/tls.key",
			"--agent-tls-server-name=agent.flowbus.local", "--observer-tls-cert-file=/etc/flowbus/observer-tls/tls.crt",
			"--observer-tls-key-file=/etc/flowbus/observer-tls/tls.key", "--sort-window=1s"},
	}
	for name, ps := range r.podSpecs() {
		if diff := cmp.Diff(wantArgs[name], ps.Containers[0].Args); diff != "" {
			t.Errorf("%s args (-want +got):\n%s", name, diff)
		}
	}
	// Secrets are files: the SASL password is the Secret's key mounted
	// as /etc/flowbus/kafka-sasl/password, on agent and aggregator, and no
	// variable carries a secret.
	for _, name := range []string{"agent", "aggregator"} {
		ps := r.podSpecs()[name]
		for _, e := range ps.Containers[0].Env {
			if e.Name != "FLOWBUS_NODE" {
				t.Errorf("%s: variable %s, want FLOWBUS_NODE alone (secrets are files)", name, e.Name)
			}
		}
		var sasl *corev1.Volume
		for i, v := range ps.Volumes {
			if v.Name == "kafka-sasl" {
				sasl = &ps.Volumes[i]
			}
		}
		if sasl == nil || sasl.Secret == nil || sasl.Secret.SecretName != "kafka-sasl" ||
			!slices.Equal(sasl.Secret.Items, []corev1.KeyToPath{{Key: "password", Path: "password"}}) {
			t.Errorf("%s: kafka-sasl volume %+v, want Secret kafka-sasl's key password as the file password", name, sasl)
		}
	}
	secrets := map[string][]string{}
	for name, ps := range r.podSpecs() {
		for _, v := range ps.Volumes {
			if v.Secret != nil {
				secrets[name] = append(secrets[name], v.Secret.SecretName)
			}
		}
	}
	if diff := cmp.Diff(map[string][]string{
		"agent":      {"kafka-client-tls", "kafka-sasl", "flowbus-metrics-tls", "flowbus-agent-tls"},
		"aggregator": {"kafka-client-tls", "kafka-sasl", "flowbus-metrics-tls"},
		"ocsf":       {"splunk-hec", "kafka-client-tls", "kafka-sasl", "flowbus-metrics-tls"},
		"relay":      {"flowbus-relay-client-tls", "flowbus-relay-server-tls", "flowbus-metrics-tls"},
	}, secrets); diff != "" {
		t.Errorf("secret volumes (-want +got):\n%s", diff)
	}
	aggMounts := map[string]string{}
	for _, m := range r.statefulSet.Spec.Template.Spec.Containers[0].VolumeMounts {
		aggMounts[m.Name] = m.MountPath
	}
	if diff := cmp.Diff(map[string]string{"data": "/data", "kafka-tls": "/etc/flowbus/kafka-tls", "kafka-sasl": "/etc/flowbus/kafka-sasl",
		"metrics-tls": "/etc/flowbus/metrics-tls"}, aggMounts); diff != "" {
		t.Errorf("aggregator mounts (-want +got):\n%s", diff)
	}
	var hec *corev1.Volume
	for i, v := range r.ocsf.Spec.Template.Spec.Volumes {
		if v.Name == "hec" {
			hec = &r.ocsf.Spec.Template.Spec.Volumes[i]
		}
	}
	if hec == nil || hec.Secret == nil || !slices.Equal(hec.Secret.Items, []corev1.KeyToPath{{Key: "token", Path: "token"}}) {
		t.Errorf("ocsf hec volume %+v, want Secret splunk-hec's key token as the file token", hec)
	}
	if *r.ocsf.Spec.Replicas != 2 || r.ocsf.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().Cmp(resource.MustParse("20Gi")) != 0 {
		t.Errorf("ocsf: %d replicas, PVC %v; want 2 and 20Gi", *r.ocsf.Spec.Replicas, r.ocsf.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests)
	}
	if p := r.netpols["flowbus-ocsf"].Spec.Ingress; len(p) != 1 || len(p[0].Ports) != 1 || p[0].Ports[0].Port.IntValue() != 9968 {
		t.Errorf("ocsf NetworkPolicy ingress %+v, want the metrics port alone", p)
	}
	for _, name := range []string{"flowbus-agent", "flowbus-aggregator", "flowbus-ocsf"} {
		ep := r.monitors[name].Spec.Endpoints[0]
		if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret != (secretKey{"prometheus-flowbus-client", "ca.crt"}) ||
			ep.TLSConfig.Cert == nil || ep.TLSConfig.Cert.Secret != (secretKey{"prometheus-flowbus-client", "tls.crt"}) ||
			ep.TLSConfig.KeySecret == nil || *ep.TLSConfig.KeySecret != (secretKey{"prometheus-flowbus-client", "tls.key"}) ||
			ep.TLSConfig.ServerName != "metrics.flowbus.local" {
			t.Errorf("%s ServiceMonitor endpoint %+v (tls %+v), want https with the scraper's client certificate", name, ep, ep.TLSConfig)
		}
	}
	if *r.statefulSet.Spec.Replicas != 3 || *r.deployment.Spec.Replicas != 2 {
		t.Errorf("replicas: aggregator %d, relay %d; want 3, 2", *r.statefulSet.Spec.Replicas, *r.deployment.Spec.Replicas)
	}
	pvc := r.statefulSet.Spec.VolumeClaimTemplates[0].Spec
	if q := pvc.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("200Gi")) != 0 || pvc.StorageClassName == nil || *pvc.StorageClassName != "fast-ssd" {
		t.Errorf("aggregator PVC %s class %v, want 200Gi fast-ssd", q.String(), pvc.StorageClassName)
	}
	am := r.monitors["flowbus-agent"]
	if am == nil || am.Metadata.Labels["release"] != "kube-prometheus-stack" || am.Spec.Endpoints[0].Port != "metrics" ||
		am.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "agent" {
		t.Errorf("agent ServiceMonitor %+v", am)
	}
	relayPol := r.netpols["flowbus-relay"].Spec.Ingress
	if len(relayPol) != 2 || relayPol[0].Ports[0].Port.IntValue() != 4245 ||
		relayPol[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "observability" ||
		relayPol[1].Ports[0].Port.IntValue() != 9967 ||
		relayPol[1].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
		t.Errorf("relay NetworkPolicy ingress %+v", relayPol)
	}
	aggPol := r.netpols["flowbus-aggregator"].Spec.Ingress
	if len(aggPol) != 1 || len(aggPol[0].Ports) != 1 || aggPol[0].Ports[0].Port.IntValue() != 9966 {
		t.Errorf("aggregator NetworkPolicy ingress %+v, want the metrics port alone", aggPol)
	}
}

// A NATS bus with TLS (mTLS) and a user: agent and aggregator get the same
// NATS flags, the password a Secret's key mounted as a file; /metrics over
// TLS without client certificates, the ServiceMonitors verifying it with
// the serving Secret's CA.
func TestChartNATSTLSAndAuth(t *testing.T) {
	r := decode(t, NATSValues())
	natsArgs := []string{"--bus=nats://nats.nats.svc:4222", "--nats-partitions=32",
		"--nats-tls-ca-file=/etc/flowbus/nats-tls/ca.crt", "--nats-tls-cert-file=/etc/flowbus/nats-tls/tls.crt",
		"--nats-tls-key-file=/etc/flowbus/nats-tls/tls.key", "--nats-tls-server-name=nats.nats.svc",
		"--nats-user=flowbus", "--nats-password-file=/etc/flowbus/nats-auth/password"}
	metricsArgs := []string{"--metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt", "--metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key"}
	for name, ps := range r.podSpecs() {
		args := ps.Containers[0].Args
		if name != "relay" {
			i := slices.Index(args, natsArgs[0])
			if i < 0 || len(args) < i+len(natsArgs) || !slices.Equal(args[i:i+len(natsArgs)], natsArgs) {
				t.Errorf("%s args %q lack %q in a row", name, args, natsArgs)
			}
			vols := map[string]corev1.VolumeSource{}
			for _, v := range ps.Volumes {
				vols[v.Name] = v.VolumeSource
			}
			if v := vols["nats-tls"]; v.Secret == nil || v.Secret.SecretName != "nats-client-tls" || len(v.Secret.Items) != 0 {
				t.Errorf("%s: nats-tls volume %+v", name, v)
			}
			if v := vols["nats-auth"]; v.Secret == nil || v.Secret.SecretName != "nats-flowbus" ||
				!slices.Equal(v.Secret.Items, []corev1.KeyToPath{{Key: "password", Path: "password"}}) {
				t.Errorf("%s: nats-auth volume %+v, want Secret nats-flowbus's key password as the file password", name, v)
			}
			mounts := map[string]string{}
			for _, m := range ps.Containers[0].VolumeMounts {
				if !m.ReadOnly && m.Name != "data" && m.Name != "state" {
					t.Errorf("%s: %s mounted read-write", name, m.Name)
				}
				mounts[m.Name] = m.MountPath
			}
			if mounts["nats-tls"] != "/etc/flowbus/nats-tls" || mounts["nats-auth"] != "/etc/flowbus/nats-auth" || mounts["metrics-tls"] != "/etc/flowbus/metrics-tls" {
				t.Errorf("%s mounts %v", name, mounts)
			}
		}
		i := slices.Index(args, metricsArgs[0])
		if i < 0 || len(args) < i+2 || !slices.Equal(args[i:i+2], metricsArgs) || slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--metrics-tls-client-ca-file")
		}) {
			t.Errorf("%s args %q: want %q and no client CA", name, args, metricsArgs)
		}
	}
	for _, name := range []string{"flowbus-agent", "flowbus-aggregator"} {
		ep := r.monitors[name].Spec.Endpoints[0]
		if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret != (secretKey{"flowbus-metrics-tls", "ca.crt"}) ||
			ep.TLSConfig.Cert != nil || ep.TLSConfig.KeySecret != nil || ep.TLSConfig.ServerName != "" {
			t.Errorf("%s ServiceMonitor endpoint %+v (tls %+v), want https verified with flowbus-metrics-tls's ca.crt", name, ep, ep.TLSConfig)
		}
	}
	for _, method := range []struct{ name, flag, file string }{
		{"token", "--nats-token-file", "token"}, {"nkey", "--nats-nkey-seed-file", "user.nk"}, {"creds", "--nats-creds-file", "user.creds"},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte("bus: {nats: {auth: {method: "+method.name+", secret: {name: s}}}}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := decode(t, f)
		want := method.flag + "=/etc/flowbus/nats-auth/" + method.file
		for _, name := range []string{"agent", "aggregator"} {
			ps := r.podSpecs()[name]
			if !slices.Contains(ps.Containers[0].Args, want) {
				t.Errorf("method %s: %s args %q lack %s", method.name, name, ps.Containers[0].Args, want)
			}
			for _, v := range ps.Volumes {
				if v.Name == "nats-auth" && !slices.Equal(v.Secret.Items, []corev1.KeyToPath{{Key: method.file, Path: method.file}}) {
					t.Errorf("method %s: %s nats-auth items %+v", method.name, name, v.Secret.Items)
				}
			}
		}
	}
}

// Values the chart refuses, with the reason.
func TestChartRejects(t *testing.T) {
	for _, c := range []struct{ values, want string }{
		{"aggregator: {replicas: 2}\n", "aggregator.replicas > 1 needs a Kafka bus"},
		{"bus: {url: \"redis://x:1\"}\n", "bus.url must start with nats:// or kafka://"},
		{"bus: {url: \"kafka://k:9092\", kafka: {tls: {enabled: true}}}\n", "bus.kafka.tls.secretName is required with TLS"},
		{"observerTLS: {enabled: true, agentSecretName: a}\n", "observerTLS.relayClientSecretName is required with TLS"},
		{"bus: {nats: {tls: {enabled: true}}}\n", "bus.nats.tls.secretName is required with TLS"},
		{"bus: {nats: {auth: {method: password, secret: {name: s}}}}\n", "bus.nats.auth.user is required with method password"},
		{"bus: {nats: {auth: {method: token}}}\n", "bus.nats.auth.secret.name is required with method token"},
		{"bus: {nats: {auth: {method: jwt, secret: {name: s}}}}\n", `bus.nats.auth.method "jwt": want password, token, nkey or creds`},
		{"bus: {url: \"kafka://k:9092\", kafka: {sasl: {mechanism: PLAIN, user: u}}}\n", "bus.kafka.sasl.passwordSecret.name is required with SASL"},
		{"bus: {url: \"kafka://k:9092\", kafka: {sasl: {mechanism: PLAIN, passwordSecret: {name: s}}}}\n", "bus.kafka.sasl.user is required with SASL"},
		{"metricsTLS: {enabled: true}\n", "metricsTLS.secretName is required with metrics TLS"},
		{"ocsf: {enabled: true}\n", "ocsf.enabled needs an output: ocsf.files.enabled, ocsf.hec.url, ocsf.kafkaOutput.topic or ocsf.natsOutput.subject"},
		{"ocsf: {enabled: true, files: {enabled: true}, replicas: 2}\n", "ocsf.replicas > 1 needs a Kafka bus"},
		{"ocsf: {enabled: true, hec: {url: \"https://s:8088\"}}\n", "ocsf.hec.tokenSecret.name is required with ocsf.hec.url"},
		{"metricsTLS: {enabled: true, secretName: m, mtls: true}\nagent: {serviceMonitor: {enabled: true}}\n", "metricsTLS.scrape.clientSecretName is required with metricsTLS.mtls and a ServiceMonitor"},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(c.values), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Render(f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want one with %q", c.values, err, c.want)
		}
	}
}
