package cluster

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "k8s.io/api/networking/v1"
)

// Kinds of the Cilium policies, as their manifests name them.
const (
	KindCiliumNetworkPolicy            = "CiliumNetworkPolicy"
	KindCiliumClusterwideNetworkPolicy = "CiliumClusterwideNetworkPolicy"
)

// ParseCiliumPolicy turns a CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy object, as the API server or a manifest
// gives it (apiVersion, kind, metadata, spec/specs), into a CiliumPolicy.
// The namespace of a clusterwide policy is ignored. It checks the shape
// only, what every consumer relies on, not what the rules mean: a name, a
// namespace for a namespaced policy, spec an object and specs a list of
// objects (at least one of them), and in every rule endpointSelector and
// nodeSelector objects and ingress, ingressDeny, egress and egressDeny lists.
// The returned policy shares obj's maps; neither may be modified afterwards.
func ParseCiliumPolicy(obj map[string]any) (CiliumPolicy, error) {
	var p CiliumPolicy
	switch kind, _ := obj["kind"].(string); kind {
	case KindCiliumNetworkPolicy:
	case KindCiliumClusterwideNetworkPolicy:
		p.Clusterwide = true
	default:
		return p, fmt.Errorf("kind %q: want %s or %s", kind, KindCiliumNetworkPolicy, KindCiliumClusterwideNetworkPolicy)
	}
	meta, _ := obj["metadata"].(map[string]any)
	p.Name, _ = meta["name"].(string)
	if p.Name == "" {
		return p, fmt.Errorf("metadata.name is missing")
	}
	if !p.Clusterwide {
		p.Namespace, _ = meta["namespace"].(string)
		if p.Namespace == "" {
			return p, fmt.Errorf("metadata.namespace is missing")
		}
	}
	spec, hasSpec := obj["spec"]
	specs, hasSpecs := obj["specs"]
	if (!hasSpec || spec == nil) && (!hasSpecs || specs == nil) {
		return p, fmt.Errorf("neither spec nor specs is set")
	}
	if hasSpec && spec != nil {
		m, ok := spec.(map[string]any)
		if !ok {
			return p, fmt.Errorf("spec is %s, want an object", shape(spec))
		}
		if err := checkRule(m); err != nil {
			return p, fmt.Errorf("spec: %w", err)
		}
		p.Spec = m
	}
	if hasSpecs && specs != nil {
		l, ok := specs.([]any)
		if !ok {
			return p, fmt.Errorf("specs is %s, want a list of objects", shape(specs))
		}
		for i, s := range l {
			m, ok := s.(map[string]any)
			if !ok {
				return p, fmt.Errorf("specs[%d] is %s, want an object", i, shape(s))
			}
			if err := checkRule(m); err != nil {
				return p, fmt.Errorf("specs[%d]: %w", i, err)
			}
			p.Specs = append(p.Specs, m)
		}
	}
	return p, nil
}

func checkRule(m map[string]any) error {
	for _, k := range []string{"endpointSelector", "nodeSelector"} {
		if v, ok := m[k]; ok && v != nil {
			if _, ok := v.(map[string]any); !ok {
				return fmt.Errorf("%s is %s, want an object", k, shape(v))
			}
		}
	}
	for _, k := range []string{"ingress", "ingressDeny", "egress", "egressDeny"} {
		if v, ok := m[k]; ok && v != nil {
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("%s is %s, want a list", k, shape(v))
			}
			for i, r := range l {
				if _, ok := r.(map[string]any); !ok {
					return fmt.Errorf("%s[%d] is %s, want an object", k, i, shape(r))
				}
			}
		}
	}
	return nil
}

func shape(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int32, int64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", v)
}

// SortObjects puts every list of s in the order sources publish them:
// pods, namespaces, services and policies by namespace then name, a
// service's backends by address, port and protocol. Two snapshots of the
// same cluster state then compare equal (reflect.DeepEqual), whatever order
// the source met the objects in.
func (s *Snapshot) SortObjects() {
	slices.SortFunc(s.Pods, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(s.Namespaces, func(a, b Namespace) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for i := range s.Services {
		slices.SortFunc(s.Services[i].Backends, func(a, b Backend) int {
			return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
		})
	}
	slices.SortFunc(s.NetworkPolicies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(s.CiliumPolicies, func(a, b CiliumPolicy) int {
		return cmp.Or(compareBool(a.Clusterwide, b.Clusterwide), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// RejectedObjects is the counter every source counts the objects it leaves
// out of its snapshots in, because they are invalid: a policy document or a
// Cilium policy with a malformed spec. Each rejection is also logged with
// the object's kind, namespace and name and the reason. It is registered
// on reg once; a second call with the same reg returns the same counter,
// and like MustRegister it panics when reg holds another collector of that
// name.
func RejectedObjects(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowbus_cluster_rejected_objects_total",
		Help: "Objects a cluster source left out of its snapshots because they are invalid, by source and kind.",
	}, []string{"source", "kind"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
