package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flowbus/flowbus/agent/cluster/filesource"
)

// LabelLab marks the objects RegisterKubernetes creates other than pods,
// with the lab's prefix as value; a namespace so marked is the lab's, and
// UnregisterKubernetes deletes it.
const LabelLab = "flowbus.io/lab"

// RegisterKubernetes writes the lab into a Kubernetes API server as the
// cluster's controllers and kubelet would have: its namespaces, every pod
// (on node plan.Node, with its labels, its containers' ports named after
// its servers, and its addresses in its status) owned by its workload
// through the owner references a real cluster has (Deployment →
// ReplicaSet → Pod, CronJob → Job → Pod, StatefulSet or DaemonSet → Pod),
// the services with their EndpointSlices, and the topology's
// NetworkPolicies. The agent's Kubernetes source (--endpoints-source
// kubernetes) then sees the lab as a cluster, and the eBPF source finds
// each pod's veth by its address's route.
//
// No controller runs against these objects (an API server alone has
// none): a Deployment makes no pods, the pods run nothing; the lab's
// processes are the pods. Services get the cluster IPs of the topology when
// the API server's service range holds them, else ones it allocates.
// Objects that already exist are an error: register a lab once.
func RegisterKubernetes(ctx context.Context, c kubernetes.Interface, plan *Plan) error {
	mark := map[string]string{LabelLab: plan.Prefix}
	seen := map[string]bool{}
	for _, p := range plan.Pods {
		if seen[p.Namespace] {
			continue
		}
		seen[p.Namespace] = true
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace, Labels: mark}}
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("register namespace %s: %w", p.Namespace, err)
		}
	}
	for i := range plan.Pods {
		if err := registerPod(ctx, c, plan, i, mark); err != nil {
			return fmt.Errorf("register pod %s/%s: %w", plan.Pods[i].Namespace, plan.Pods[i].Name, err)
		}
	}
	for _, s := range plan.Topology.Services {
		if err := registerService(ctx, c, plan, s, mark); err != nil {
			return fmt.Errorf("register service %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	b, err := plan.Topology.PoliciesYAML()
	if err != nil || b == nil {
		return err
	}
	pols, err := filesource.ParsePolicies(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if len(pols.CiliumPolicies) > 0 {
		return fmt.Errorf("register policies: %d Cilium policies: the lab registers NetworkPolicies only (apply the others with kubectl)", len(pols.CiliumPolicies))
	}
	for _, np := range pols.NetworkPolicies {
		np = np.DeepCopy()
		np.ResourceVersion, np.UID = "", ""
		if np.Labels == nil {
			np.Labels = map[string]string{}
		}
		np.Labels[LabelLab] = plan.Prefix
		if _, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("register policy %s/%s: %w", np.Namespace, np.Name, err)
		}
	}
	return nil
}

// UnregisterKubernetes deletes what RegisterKubernetes created for plan,
// by name: pods at once (grace period 0: no kubelet will confirm), their
// workloads, the services and their slices, the policies, and then the
// namespaces it created (labelled LabelLab), which an API server without
// a namespace controller leaves terminating. Objects already gone are not
// an error.
func UnregisterKubernetes(ctx context.Context, c kubernetes.Interface, plan *Plan) error {
	var errs []error
	del := metav1.DeleteOptions{}
	now := int64(0)
	delNow := metav1.DeleteOptions{GracePeriodSeconds: &now}
	gone := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	for i, pp := range plan.Pods {
		n, w := pp.Namespace, plan.Topology.Pods[i].Workload
		gone("pod "+n+"/"+pp.Name, c.CoreV1().Pods(n).Delete(ctx, pp.Name, delNow))
		switch plan.Topology.Pods[i].Kind {
		case "Deployment", "":
			gone("replicaset "+n+"/"+w, c.AppsV1().ReplicaSets(n).Delete(ctx, w+"-lab", del))
			gone("deployment "+n+"/"+w, c.AppsV1().Deployments(n).Delete(ctx, w, del))
		case "StatefulSet":
			gone("statefulset "+n+"/"+w, c.AppsV1().StatefulSets(n).Delete(ctx, w, del))
		case "DaemonSet":
			gone("daemonset "+n+"/"+w, c.AppsV1().DaemonSets(n).Delete(ctx, w, del))
		case "CronJob":
			gone("job "+n+"/"+w, c.BatchV1().Jobs(n).Delete(ctx, w+"-lab", del))
			gone("cronjob "+n+"/"+w, c.BatchV1().CronJobs(n).Delete(ctx, w, del))
		case "Job":
			gone("job "+n+"/"+w, c.BatchV1().Jobs(n).Delete(ctx, w, del))
		}
	}
	if b, err := plan.Topology.PoliciesYAML(); err == nil && b != nil {
		if pols, err := filesource.ParsePolicies(bytes.NewReader(b)); err == nil {
			for _, np := range pols.NetworkPolicies {
				gone("policy "+np.Namespace+"/"+np.Name, c.NetworkingV1().NetworkPolicies(np.Namespace).Delete(ctx, np.Name, del))
			}
		}
	}
	for _, s := range plan.Topology.Services {
		gone("service "+s.Namespace+"/"+s.Name, c.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, del))
		for _, fam := range []string{"ipv4", "ipv6"} {
			gone("endpointslice "+s.Namespace+"/"+s.Name, c.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name+"-"+fam, del))
		}
	}
	done := map[string]bool{}
	for _, p := range plan.Pods {
		if done[p.Namespace] {
			continue
		}
		done[p.Namespace] = true
		ns, err := c.CoreV1().Namespaces().Get(ctx, p.Namespace, metav1.GetOptions{})
		if err == nil && ns.Labels[LabelLab] == plan.Prefix && ns.DeletionTimestamp == nil {
			gone("namespace "+p.Namespace, c.CoreV1().Namespaces().Delete(ctx, p.Namespace, del))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unregister: %w", err)
	}
	return nil
}

// portName is a server's container port name: its kind and port
// ("http-8080"), a valid IANA service name of at most 15 characters.
func portName(s ServerSpec) string {
	kind := s.Kind
	if kind == KindTCPEcho {
		kind = "echo"
	}
	return fmt.Sprintf("%s-%d", kind, s.Port)
}

func registerPod(ctx context.Context, c kubernetes.Interface, plan *Plan, i int, mark map[string]string) error {
	pp, ps := plan.Pods[i], plan.Topology.Pods[i]
	labels := map[string]string{}
	for k, v := range ps.Labels {
		labels[k] = v
	}
	var ports []corev1.ContainerPort
	for _, s := range ps.Servers {
		proto := corev1.ProtocolTCP
		if s.Kind == KindDNS {
			proto = corev1.ProtocolUDP
		}
		ports = append(ports, corev1.ContainerPort{Name: portName(s), ContainerPort: int32(s.Port), Protocol: proto})
	}
	template := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "flowbus-lab", Ports: ports}}},
	}
	selector := &metav1.LabelSelector{MatchLabels: ps.Labels}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: pp.Namespace, Labels: mark}
	}
	var owner []metav1.OwnerReference
	ctrl := func(apiVersion, kind string, m metav1.Object) {
		t := true
		owner = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: m.GetName(), UID: m.GetUID(), Controller: &t}}
	}
	workload := ps.Workload
	switch ps.Kind {
	case "Deployment", "":
		// Several pods of one Deployment (replicas) share it and its
		// ReplicaSet: the first pod creates them.
		d, err := c.AppsV1().Deployments(pp.Namespace).Create(ctx, &appsv1.Deployment{ObjectMeta: meta(workload),
			Spec: appsv1.DeploymentSpec{Selector: selector, Template: template}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			d, err = c.AppsV1().Deployments(pp.Namespace).Get(ctx, workload, metav1.GetOptions{})
		}
		if err != nil {
			return err
		}
		ctrl("apps/v1", "Deployment", d)
		rsMeta := meta(workload + "-lab")
		rsMeta.OwnerReferences = owner
		rs, err := c.AppsV1().ReplicaSets(pp.Namespace).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: rsMeta,
			Spec: appsv1.ReplicaSetSpec{Selector: selector, Template: template}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			rs, err = c.AppsV1().ReplicaSets(pp.Namespace).Get(ctx, workload+"-lab", metav1.GetOptions{})
		}
		if err != nil {
			return err
		}
		ctrl("apps/v1", "ReplicaSet", rs)
	case "StatefulSet":
		s, err := c.AppsV1().StatefulSets(pp.Namespace).Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta(workload),
			Spec: appsv1.StatefulSetSpec{Selector: selector, Template: template}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		ctrl("apps/v1", "StatefulSet", s)
	case "DaemonSet":
		d, err := c.AppsV1().DaemonSets(pp.Namespace).Create(ctx, &appsv1.DaemonSet{ObjectMeta: meta(workload),
			Spec: appsv1.DaemonSetSpec{Selector: selector, Template: template}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		ctrl("apps/v1", "DaemonSet", d)
	case "CronJob", "Job":
		jobTemplate := template
		jobTemplate.Spec.RestartPolicy = corev1.RestartPolicyNever
		jobMeta := meta(workload)
		if ps.Kind == "CronJob" {
			cj, err := c.BatchV1().CronJobs(pp.Namespace).Create(ctx, &batchv1.CronJob{ObjectMeta: meta(workload),
				Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobTemplate}}}},
				metav1.CreateOptions{})
			if err != nil {
				return err
			}
			ctrl("batch/v1", "CronJob", cj)
			jobMeta = meta(workload + "-lab")
			jobMeta.OwnerReferences = owner
		}
		manual := true
		j, err := c.BatchV1().Jobs(pp.Namespace).Create(ctx, &batchv1.Job{ObjectMeta: jobMeta,
			Spec: batchv1.JobSpec{Template: jobTemplate, ManualSelector: &manual, Selector: selector}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		ctrl("batch/v1", "Job", j)
	}
	// The pod carries its topology labels only: every label of a pod is
	// identity-relevant, and the lab's mark would change its identity.
	podMeta := metav1.ObjectMeta{Name: pp.Name, Namespace: pp.Namespace, Labels: labels, OwnerReferences: owner}
	spec := template.Spec
	spec.NodeName = plan.Node
	if ps.Kind == "CronJob" || ps.Kind == "Job" {
		spec.RestartPolicy = corev1.RestartPolicyNever
	}
	pod, err := c.CoreV1().Pods(pp.Namespace).Create(ctx, &corev1.Pod{ObjectMeta: podMeta, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: pp.IPv4.String(),
		PodIPs: []corev1.PodIP{{IP: pp.IPv4.String()}, {IP: pp.IPv6.String()}},
	}
	_, err = c.CoreV1().Pods(pp.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

func registerService(ctx context.Context, c kubernetes.Interface, plan *Plan, s ServiceSpec, mark map[string]string) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: mark},
		Spec: corev1.ServiceSpec{Selector: s.Selector}}
	for _, p := range s.Ports {
		proto := corev1.Protocol(p.Protocol)
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: int32(p.Port), TargetPort: intstr.FromInt32(int32(p.TargetPort)), Protocol: proto})
	}
	if len(s.ClusterIPs) > 0 {
		svc.Spec.ClusterIP = s.ClusterIPs[0]
	}
	_, err := c.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil && apierrors.IsInvalid(err) && svc.Spec.ClusterIP != "" {
		// Not in the API server's service range: take one it allocates.
		svc.Spec.ClusterIP = ""
		_, err = c.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	// One slice per address family, as the EndpointSlice controller makes.
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		labels := map[string]string{LabelLab: plan.Prefix, discoveryv1.LabelServiceName: s.Name}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: s.Name + "-" + strings.ToLower(string(fam)), Namespace: s.Namespace, Labels: labels},
			AddressType: fam,
		}
		for _, p := range s.Ports {
			name, port, proto := p.Name, int32(p.TargetPort), corev1.Protocol(p.Protocol)
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
		}
		for i := range plan.Topology.Pods {
			ps := &plan.Topology.Pods[i]
			if !s.Selects(ps) {
				continue
			}
			pp := plan.Pods[i]
			ip := pp.IPv4
			if fam == discoveryv1.AddressTypeIPv6 {
				ip = pp.IPv6
			}
			ready, node := true, plan.Node
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, NodeName: &node,
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pp.Namespace, Name: pp.Name},
			})
		}
		if _, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// kubeClient is a client of the API server in the kubeconfig file at path.
func kubeClient(path string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cs, nil
}
