package filesource

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/flowbus/flowbus/agent/cluster"
)

// Policies are the policies of a policies file.
type Policies struct {
	NetworkPolicies []*networkingv1.NetworkPolicy
	CiliumPolicies  []cluster.CiliumPolicy
	// Rejected are the documents left out, in file order.
	Rejected []Rejection
}

// Rejection is a document of a policies file that was left out.
type Rejection struct {
	Document  int    // 1-based, counting the documents that are not empty
	Line      int    // where the document starts in the file
	Item      int    // 1-based within a List document, else 0
	Kind      string // as the document says, when it says
	Namespace string
	Name      string
	Err       error
}

func (r Rejection) Error() string {
	where := fmt.Sprintf("document %d (line %d)", r.Document, r.Line)
	if r.Item > 0 {
		where += fmt.Sprintf(" item %d", r.Item)
	}
	obj := r.Name
	if r.Namespace != "" {
		obj = r.Namespace + "/" + r.Name
	}
	switch {
	case r.Kind != "" && obj != "":
		where += fmt.Sprintf(" %s %s", r.Kind, obj)
	case r.Kind != "":
		where += " " + r.Kind
	}
	return where + ": " + r.Err.Error()
}

func (r Rejection) Unwrap() error { return r.Err }

// DefaultNamespace is the namespace of a namespaced policy that names
// none, as kubectl apply would give it.
const DefaultNamespace = "default"

// ParsePolicies reads a policies file: YAML documents separated by "---"
// lines (JSON is YAML too; empty documents are skipped), each a networking.k8s.io/v1 NetworkPolicy, a
// cilium.io/v2 CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy, or a
// v1 List of them (what kubectl get -o yaml prints). Each document is
// judged alone: one that does not decode (strictly: unknown fields are an
// error), is of another kind, fails the API server's validation of its
// kind (validateNetworkPolicy, cluster.ParseCiliumPolicy) or repeats a
// policy already read is rejected with its document's number and first
// line and the reason, and the others are kept. Only an unreadable file is
// an error.
func ParsePolicies(r io.Reader) (*Policies, error) {
	out := &Policies{}
	seen := map[string]int{} // kind/namespace/name -> document
	docs, err := splitDocuments(r)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	doc := 0
	for _, d := range docs {
		if isEmpty(d.text) {
			continue
		}
		doc++
		at := func(item int, kind, ns, name string, err error) Rejection {
			return Rejection{Document: doc, Line: d.line, Item: item, Kind: kind, Namespace: ns, Name: name, Err: err}
		}
		js, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			out.Rejected = append(out.Rejected, at(0, "", "", "", fmt.Errorf("not YAML: %w", err)))
			continue
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			out.Rejected = append(out.Rejected, at(0, "", "", "", fmt.Errorf("not an object: %w", err)))
			continue
		}
		if head.Kind == "List" && head.APIVersion == "v1" {
			for i, item := range head.Items {
				if r, ok := out.add(item, doc, seen); !ok {
					out.Rejected = append(out.Rejected, at(i+1, r.Kind, r.Namespace, r.Name, r.Err))
				}
			}
			continue
		}
		if r, ok := out.add(js, doc, seen); !ok {
			out.Rejected = append(out.Rejected, at(0, r.Kind, r.Namespace, r.Name, r.Err))
		}
	}
	return out, nil
}

// document is one YAML document of a stream and the line it starts on.
type document struct {
	text []byte
	line int
}

// splitDocuments splits a YAML stream at its "---" lines (which may carry
// a comment), as kubectl does, keeping each document's first line.
func splitDocuments(r io.Reader) ([]document, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var docs []document
	cur := document{line: 1}
	for n := 1; sc.Scan(); n++ {
		l := sc.Bytes()
		if rest, ok := bytes.CutPrefix(l, []byte("---")); ok {
			if t := bytes.TrimSpace(rest); len(t) == 0 || t[0] == '#' {
				docs = append(docs, cur)
				cur = document{line: n + 1}
				continue
			}
		}
		cur.text = append(cur.text, l...)
		cur.text = append(cur.text, '\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return append(docs, cur), nil
}

// add judges one object (JSON) of document doc and keeps it, or returns
// why not.
func (p *Policies) add(js []byte, doc int, seen map[string]int) (Rejection, bool) {
	var rej Rejection
	reject := func(err error) (Rejection, bool) { rej.Err = err; return rej, false }
	// Integers as int64, as the API server's unstructured objects have them.
	var obj map[string]any
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return reject(fmt.Errorf("not an object: %w", err))
	}
	apiVersion, _ := obj["apiVersion"].(string)
	rej.Kind, _ = obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	rej.Name, _ = meta["name"].(string)
	rej.Namespace, _ = meta["namespace"].(string)
	kind, name := rej.Kind, rej.Name
	if rej.Namespace == "" && kind != cluster.KindCiliumClusterwideNetworkPolicy {
		rej.Namespace = DefaultNamespace
	}
	ns := rej.Namespace
	key := kind + "/" + ns + "/" + name
	if first, dup := seen[key]; dup {
		return reject(fmt.Errorf("already defined by document %d", first))
	}
	switch {
	case apiVersion == "networking.k8s.io/v1" && kind == "NetworkPolicy":
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict(js, np); err != nil {
			return reject(fmt.Errorf("decode: %w", err))
		}
		np.Namespace = ns
		if errs := validateNetworkPolicy(np); len(errs) > 0 {
			return reject(errs.ToAggregate())
		}
		p.NetworkPolicies = append(p.NetworkPolicies, np)
	case apiVersion == "cilium.io/v2" && (kind == cluster.KindCiliumNetworkPolicy || kind == cluster.KindCiliumClusterwideNetworkPolicy):
		if kind == cluster.KindCiliumNetworkPolicy && meta != nil {
			meta["namespace"] = ns
		}
		cp, err := cluster.ParseCiliumPolicy(obj)
		if err != nil {
			return reject(err)
		}
		p.CiliumPolicies = append(p.CiliumPolicies, cp)
	default:
		return reject(fmt.Errorf("apiVersion %q kind %q is not a policy: want networking.k8s.io/v1 NetworkPolicy or cilium.io/v2 %s or %s",
			apiVersion, kind, cluster.KindCiliumNetworkPolicy, cluster.KindCiliumClusterwideNetworkPolicy))
	}
	seen[key] = doc
	return rej, true
}

// isEmpty: only blank lines and comments.
func isEmpty(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := strings.TrimSpace(string(l)); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}
