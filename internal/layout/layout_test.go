package layout

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/flowbus/flowbus"

// goList runs `go list` in the module root with args and returns its
// output's fields.
func goList(t *testing.T, env []string, args ...string) []string {
	t.Helper()
	// go test puts its own GOROOT/bin first on the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	cmd := exec.Command(goTool, append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v %s", args, err, msg)
	}
	return strings.Fields(string(out))
}

func rel(pkg string) string { return strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/") }

// TestAgentAndAggregatorMeetOnlyOnTheBus: no production package of one tier
// depends on the other (tests may use the other tier's fixtures).
func TestAgentAndAggregatorMeetOnlyOnTheBus(t *testing.T) {
	for _, c := range []struct{ tier, other string }{{"agent", "aggregator"}, {"aggregator", "agent"}} {
		for _, pkg := range goList(t, nil, "./"+c.tier+"/...") {
			for _, dep := range goList(t, nil, "-deps", pkg) {
				if r := rel(dep); strings.HasPrefix(dep, module) && (r == c.other || strings.HasPrefix(r, c.other+"/")) {
					t.Errorf("%s depends on %s", rel(pkg), r)
				}
			}
		}
	}
}

// TestContractImportsNothingOfFlowbus: schemas is what every package
// imports, so it imports none of them.
func TestContractImportsNothingOfFlowbus(t *testing.T) {
	for _, dep := range goList(t, nil, "-deps", "./schemas") {
		if strings.HasPrefix(dep, module) && dep != module+"/schemas" {
			t.Errorf("schemas depends on %s", rel(dep))
		}
	}
}

// heavy are the libraries the Arrow engine and DuckDB bring.
var heavy = []string{
	"github.com/apache/arrow-go/",
	"github.com/DataDog/zstd",
	"github.com/klauspost/compress/zstd",
	"github.com/google/flatbuffers/",
	"github.com/duckdb/",
}

// TestLightPackagesLinkNoArrowZstdOrCgo: the contract and the Hubble JSON
// printer link no Arrow, no zstd and no cgo at all; the Observer API's
// packages (what `flowbus observe` and the relay link) no Arrow or zstd,
// and no cgo but the standard library's (package net's resolver, which a
// CGO_ENABLED=0 or netgo build replaces). Dependencies are listed with cgo
// on, as in the default build, so that a cgo dependency shows.
func TestLightPackagesLinkNoArrowZstdOrCgo(t *testing.T) {
	cgoOn := []string{"CGO_ENABLED=1"}
	for _, c := range []struct {
		pkg      string
		stdCgoOK bool
	}{
		{"./schemas", false}, {"./schemas/hubble", false}, {"./sinks/stdout", false},
		{"./internal/observer/...", true}, {"./aggregator/relay", true},
	} {
		for _, pkg := range goList(t, cgoOn, c.pkg) {
			deps := goList(t, cgoOn, "-deps", pkg)
			if len(deps) < 10 {
				t.Fatalf("go list -deps %s listed only %q", pkg, deps)
			}
			for _, d := range deps {
				for _, h := range heavy {
					if d == strings.TrimSuffix(h, "/") || strings.HasPrefix(d, h) {
						t.Errorf("%s depends on %s", rel(pkg), d)
					}
				}
			}
			for _, d := range goList(t, cgoOn, "-deps", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", pkg) {
				std := !strings.Contains(strings.SplitN(d, "/", 2)[0], ".")
				if !c.stdCgoOK || !std || (d != "net" && d != "runtime/cgo") {
					t.Errorf("%s depends on cgo package %s", rel(pkg), d)
				}
			}
			if !c.stdCgoOK && slices.Contains(deps, "runtime/cgo") {
				t.Errorf("%s links runtime/cgo", rel(pkg))
			}
		}
	}
}

// TestArchitectureListsEveryPackage: ARCHITECTURE.md's package table names
// every package `go list ./...` finds, once, and nothing else.
func TestArchitectureListsEveryPackage(t *testing.T) {
	f, err := os.Open("../../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z0-9/]+)` \\| (.+) \\|$")
	var listed []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Packages"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			if slices.Contains(listed, m[1]) {
				t.Errorf("ARCHITECTURE.md lists %s twice", m[1])
			}
			listed = append(listed, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for _, p := range goList(t, nil, "./...") {
		pkgs = append(pkgs, rel(p))
	}
	for _, p := range pkgs {
		if !slices.Contains(listed, p) {
			t.Errorf("package %s is not in ARCHITECTURE.md's table", p)
		}
	}
	for _, p := range listed {
		if !slices.Contains(pkgs, p) {
			t.Errorf("ARCHITECTURE.md lists %s, which is not a package", p)
		}
	}
	if len(listed) < 20 {
		t.Errorf("found only %d packages in ARCHITECTURE.md's table: %v", len(listed), listed)
	}
}
