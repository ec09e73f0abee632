package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

// Release is the release name and namespace the tests render with.
const (
	ReleaseName      = "flowbus"
	ReleaseNamespace = "flowbus"
)

// Dir is the deploy directory of the repository (found from this file, so
// that any package's test can use it).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// ChartDir is the chart's directory.
func ChartDir() string { return filepath.Join(Dir(), "helm", "flowbus") }

// Manifest is one rendered Kubernetes object.
type Manifest struct {
	Source     string // template file
	APIVersion string
	Kind       string
	Name       string
	YAML       []byte
}

// Render loads the chart and renders it as `helm template` does (install,
// release ReleaseName in ReleaseNamespace, Helm's default capabilities),
// with the values files given merged over values.yaml in order. It returns
// the objects sorted by kind and name; empty documents are left out.
func Render(valuesFiles ...string) ([]Manifest, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	vals := map[string]any{}
	for _, f := range valuesFiles {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			return nil, err
		}
		vals = util.MergeTables(v, vals)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: ReleaseName, Namespace: ReleaseNamespace,
		Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	out, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	var ms []Manifest
	for src, text := range out {
		if filepath.Ext(src) != ".yaml" {
			continue // _helpers.tpl, NOTES.txt
		}
		for _, doc := range splitDocuments(text) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				return nil, fmt.Errorf("%s: %w\n%s", src, err, doc)
			}
			if head.Kind == "" {
				return nil, fmt.Errorf("%s: a document without kind:\n%s", src, doc)
			}
			ms = append(ms, Manifest{Source: src, APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, YAML: doc})
		}
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Kind != ms[j].Kind {
			return ms[i].Kind < ms[j].Kind
		}
		return ms[i].Name < ms[j].Name
	})
	return ms, nil
}

// splitDocuments splits a YAML stream at its "---" lines and drops the
// documents that hold only comments and blank lines.
func splitDocuments(text string) [][]byte {
	var docs [][]byte
	for _, d := range strings.Split("\n"+text, "\n---") {
		empty := true
		for _, l := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, bytes.TrimSpace([]byte(d)))
		}
	}
	return docs
}

// FullValues is the values file of the tests that turns everything on.
func FullValues() string { return filepath.Join(Dir(), "deploytest", "testdata", "full-values.yaml") }

// NATSValues is the values file of a NATS bus with TLS (mTLS) and a user,
// and /metrics over TLS.
func NATSValues() string { return filepath.Join(Dir(), "deploytest", "testdata", "nats-values.yaml") }

// ReadFile reads a file under deploy/.
func ReadFile(rel string) ([]byte, error) { return os.ReadFile(filepath.Join(Dir(), rel)) }
