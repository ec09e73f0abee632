package identity

import (
	"regexp"
	"slices"
	"strings"

	"github.com/flowbus/flowbus/agent/cluster"
)

// The label keys Cilium adds to a pod's own labels (pkg/k8s/apis/cilium.io).
const (
	// LabelNamespace carries the pod's namespace.
	LabelNamespace = "io.kubernetes.pod.namespace"
	// LabelNamespaceLabels prefixes each label of the pod's namespace
	// ("io.cilium.k8s.namespace.labels.team=payments").
	LabelNamespaceLabels = "io.cilium.k8s.namespace.labels."
	// LabelServiceAccount carries the pod's service account.
	LabelServiceAccount = "io.cilium.k8s.policy.serviceaccount"
	// LabelCluster carries the cluster's name.
	LabelCluster = "io.cilium.k8s.policy.cluster"
	// LabelNamespaceName is the label Kubernetes puts on every namespace
	// with the namespace's name.
	LabelNamespaceName = "kubernetes.io/metadata.name"

	// ciliumOwned prefixes the keys Cilium owns: a pod cannot set them
	// itself (Cilium strips them before adding its own).
	ciliumOwned = "io.cilium.k8s"
)

// Label sources, the part of a Hubble label before the first colon.
const (
	SourceK8s      = "k8s"
	SourceReserved = "reserved"
	SourceCIDR     = "cidr"
)

// labelRule is one entry of Cilium's default label filter
// (pkg/labelsfilter, defaultLabelPrefixCfg): a regular expression that must
// match at the start of a label's key, including it or (ignore) leaving it
// out of the identity.
type labelRule struct {
	ignore bool
	re     *regexp.Regexp
}

// defaultLabelRules are Cilium's default label prefixes for Kubernetes
// labels, in Cilium's order. (Its one rule with a source, "reserved:.*",
// keeps every reserved label; pod labels are all of source k8s.)
var defaultLabelRules = func() []labelRule {
	exprs := []string{
		regexp.QuoteMeta(LabelNamespace),
		regexp.QuoteMeta(strings.TrimSuffix(LabelNamespaceLabels, ".")),
		regexp.QuoteMeta("app.kubernetes.io"),
		regexp.QuoteMeta(LabelCluster),
		regexp.QuoteMeta(LabelServiceAccount),
		`!io\.kubernetes`,
		`!kubernetes\.io`,
		"!" + regexp.QuoteMeta("statefulset.kubernetes.io/pod-name"),
		"!" + regexp.QuoteMeta("apps.kubernetes.io/pod-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/job-completion-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/controller-uid"),
		`!.*beta\.kubernetes\.io`,
		`!k8s\.io`,
		`!pod-template-generation`,
		`!pod-template-hash`,
		`!controller-revision-hash`,
		`!controller-uid`,
		`!annotation.*`,
		`!etcd_node`,
		`!topology\.kubernetes\.io`,
	}
	rules := make([]labelRule, len(exprs))
	for i, e := range exprs {
		ignore := strings.HasPrefix(e, "!")
		rules[i] = labelRule{ignore: ignore, re: regexp.MustCompile(strings.TrimPrefix(e, "!"))}
	}
	return rules
}()

// IdentityRelevant reports whether a Kubernetes label key (source k8s)
// counts toward a pod's identity under Cilium's default label filter: a key
// is kept unless an ignore rule matches the start of it and no include rule
// matches a longer start (so io.kubernetes.pod.namespace is kept although
// io.kubernetes is ignored).
func IdentityRelevant(key string) bool {
	included, ignored := 0, 0
	for _, r := range defaultLabelRules {
		loc := r.re.FindStringIndex(key)
		if loc == nil || loc[0] != 0 {
			continue
		}
		n := loc[1]
		if r.ignore {
			if ignored == 0 || n < ignored {
				ignored = n
			}
		} else if n > included {
			included = n
		}
	}
	return ignored == 0 || included > ignored
}

// keyFilter memoizes IdentityRelevant over one allocation: a cluster has
// few distinct label keys and many pods.
type keyFilter map[string]bool

func (f keyFilter) relevant(key string) bool {
	ok, seen := f[key]
	if !seen {
		ok = IdentityRelevant(key)
		f[key] = ok
	}
	return ok
}

// PodLabels returns the identity labels of a pod in Hubble's form
// ("k8s:key=value"), sorted: its own labels, minus those Cilium owns, plus
// the labels Cilium adds (namespace, namespace labels, cluster), each kept
// only if IdentityRelevant. ns is the pod's namespace (nil when the
// snapshot does not have it). The namespace label kubernetes.io/metadata.name,
// which Kubernetes puts on every namespace, is assumed when ns lacks it.
func PodLabels(p *cluster.Pod, ns *cluster.Namespace, clusterName string) []string {
	return podLabels(p, nsLabels(ns, p.Namespace, keyFilter{}), clusterName, keyFilter{})
}

// nsLabels returns the identity labels a namespace gives its pods, in
// Hubble's form, unsorted.
func nsLabels(ns *cluster.Namespace, name string, f keyFilter) []string {
	out := []string{SourceK8s + ":" + LabelNamespace + "=" + name}
	hasName := false
	if ns != nil {
		for k, v := range ns.Labels {
			hasName = hasName || k == LabelNamespaceName
			if key := LabelNamespaceLabels + k; f.relevant(key) {
				out = append(out, SourceK8s+":"+key+"="+v)
			}
		}
	}
	if !hasName {
		out = append(out, SourceK8s+":"+LabelNamespaceLabels+LabelNamespaceName+"="+name)
	}
	return out
}

func podLabels(p *cluster.Pod, fromNS []string, clusterName string, f keyFilter) []string {
	out := make([]string, 0, len(p.Labels)+len(fromNS)+1)
	for k, v := range p.Labels {
		if strings.HasPrefix(k, ciliumOwned) || !f.relevant(k) {
			continue
		}
		out = append(out, SourceK8s+":"+k+"="+v)
	}
	out = append(out, fromNS...)
	out = append(out, SourceK8s+":"+LabelCluster+"="+clusterName)
	slices.Sort(out)
	return out
}

// ParseLabel splits a Hubble label "source:key=value" into its parts; a
// label without a value ("reserved:host") has value "".
func ParseLabel(l string) (source, key, value string) {
	source, rest, ok := strings.Cut(l, ":")
	if !ok {
		return "", l, ""
	}
	key, value, _ = strings.Cut(rest, "=")
	return source, key, value
}
