package filesource

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateNetworkPolicy checks what the API server's validation checks of
// a NetworkPolicy, so that a file holds only policies a cluster could: a
// name and namespace of DNS form, valid label selectors, peers with
// either selectors or an ipBlock, CIDRs that parse with every except
// strictly inside its cidr, protocols TCP, UDP or SCTP, ports a number in
// 1-65535 or a port name, endPort only after a numeric port and not below
// it, and policyTypes Ingress or Egress, each once. Meaning (a named port
// no pod declares) is left to the policy compiler.
func validateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	for _, msg := range validation.IsDNS1123Subdomain(np.Name) {
		errs = append(errs, field.Invalid(meta.Child("name"), np.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(np.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), np.Namespace, msg))
	}
	spec := field.NewPath("spec")
	opts := metav1validation.LabelSelectorValidationOptions{}
	errs = append(errs, metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, opts, spec.Child("podSelector"))...)
	for i, r := range np.Spec.Ingress {
		p := spec.Child("ingress").Index(i)
		errs = append(errs, validatePorts(r.Ports, p.Child("ports"))...)
		for j, peer := range r.From {
			errs = append(errs, validatePeer(peer, p.Child("from").Index(j))...)
		}
	}
	for i, r := range np.Spec.Egress {
		p := spec.Child("egress").Index(i)
		errs = append(errs, validatePorts(r.Ports, p.Child("ports"))...)
		for j, peer := range r.To {
			errs = append(errs, validatePeer(peer, p.Child("to").Index(j))...)
		}
	}
	types := spec.Child("policyTypes")
	if len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(types, np.Spec.PolicyTypes, "may not have more than 2 entries"))
	}
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(types.Index(i), t, []string{"Ingress", "Egress"}))
		} else if seen[t] {
			errs = append(errs, field.Duplicate(types.Index(i), t))
		}
		seen[t] = true
	}
	return errs
}

func validatePorts(ports []networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, p := range ports {
		pp := path.Index(i)
		if p.Protocol != nil {
			switch *p.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				errs = append(errs, field.NotSupported(pp.Child("protocol"), *p.Protocol, []string{"TCP", "UDP", "SCTP"}))
			}
		}
		if p.Port != nil {
			if p.Port.Type == intstr.Int {
				for _, msg := range validation.IsValidPortNum(int(p.Port.IntVal)) {
					errs = append(errs, field.Invalid(pp.Child("port"), p.Port.IntVal, msg))
				}
			} else {
				for _, msg := range validation.IsValidPortName(p.Port.StrVal) {
					errs = append(errs, field.Invalid(pp.Child("port"), p.Port.StrVal, msg))
				}
			}
		}
		if p.EndPort != nil {
			switch {
			case p.Port == nil:
				errs = append(errs, field.Required(pp.Child("port"), "when endPort is specified"))
			case p.Port.Type == intstr.String:
				errs = append(errs, field.Forbidden(pp.Child("endPort"), "may not be specified when port is non-numeric"))
			case *p.EndPort < p.Port.IntVal:
				errs = append(errs, field.Invalid(pp.Child("endPort"), *p.EndPort, "must be greater than or equal to port"))
			}
			for _, msg := range validation.IsValidPortNum(int(*p.EndPort)) {
				errs = append(errs, field.Invalid(pp.Child("endPort"), *p.EndPort, msg))
			}
		}
	}
	return errs
}

func validatePeer(peer networkingv1.NetworkPolicyPeer, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	selectors := peer.PodSelector != nil || peer.NamespaceSelector != nil
	switch {
	case !selectors && peer.IPBlock == nil:
		errs = append(errs, field.Required(path, "must specify a peer"))
	case selectors && peer.IPBlock != nil:
		errs = append(errs, field.Forbidden(path, "may not specify more than 1 peer type"))
	}
	if peer.PodSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, path.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, path.Child("namespaceSelector"))...)
	}
	if b := peer.IPBlock; b != nil {
		bp := path.Child("ipBlock")
		cidr, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			return append(errs, field.Invalid(bp.Child("cidr"), b.CIDR, fmt.Sprintf("must be a valid CIDR: %v", err)))
		}
		for i, e := range b.Except {
			ex, err := netip.ParsePrefix(e)
			switch {
			case err != nil:
				errs = append(errs, field.Invalid(bp.Child("except").Index(i), e, fmt.Sprintf("must be a valid CIDR: %v", err)))
			case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
				errs = append(errs, field.Invalid(bp.Child("except").Index(i), e, "must be a strict subset of `cidr`"))
			}
		}
	}
	return errs
}
