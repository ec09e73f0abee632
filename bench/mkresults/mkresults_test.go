package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/flowbus/flowbus/bpf
cpu: Intel(R) Xeon(R) Processor
BenchmarkProgram/floor/batched-2         	   20000	     15000 ns/op	        14.30 ns/pkt
BenchmarkProgram/floor/batched-2         	   20000	     16000 ns/op	        15.70 ns/pkt
BenchmarkProgram/established_with_policy/batched-2   	   20000	     44000 ns/op	        43.50 ns/pkt
BenchmarkProgram/established_with_policy/batched-2   	   20000	     47000 ns/op	        57.70 ns/pkt
BenchmarkProgram/new_flow_with_policy/single-2 	 broken output here
BenchmarkProgram/new_flow_with_policy/single
    bench_test.go:12: loaded
     1000	    241000 ns/op	       241.0 ns/pkt
--- SKIP: BenchmarkProgram/l7_captured/single
    bench_test.go:99: needs a kernel with bpf_skb_load_bytes
BenchmarkEncodeSideBySide/rows=1000-2 	     400	   2000000 ns/op	       824.0 arrow-cpu-ns/flow	      3171 proto-cpu-ns/flow	         3.848 proto/arrow	       160.0 arrow-B/flow	  1234 B/op	  5 allocs/op
BenchmarkOdd-2 	 10 	 5 ns/op 7
PASS
ok  	github.com/flowbus/flowbus/bpf	12.3s
`

func TestParse(t *testing.T) {
	o := Parse(sample)
	if o.CPU != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpu %q", o.CPU)
	}
	if len(o.Errors) != 2 {
		t.Fatalf("errors %v, want the two malformed lines", o.Errors)
	}
	if e := o.Errors[0]; e.Line != 9 || !strings.Contains(e.Error(), "line 9: no iteration count after the benchmark's name") {
		t.Errorf("first error %q", e.Error())
	}
	if e := o.Errors[1]; e.Line != 16 || e.Why != "a value without its unit" {
		t.Errorf("second error %q", e.Error())
	}
	want := map[string][]float64{
		"BenchmarkProgram/floor/batched":                   {14.30, 15.70},
		"BenchmarkProgram/established_with_policy/batched": {43.50, 57.70},
		"BenchmarkProgram/new_flow_with_policy/single":     {241}, // its result on the line after a log
	}
	for name, vs := range want {
		got := o.Values(name, "ns/pkt")
		if len(got) != len(vs) {
			t.Fatalf("%s: %v, want %v", name, got, vs)
		}
		for i := range vs {
			if got[i] != vs[i] {
				t.Errorf("%s run %d: %v, want %v", name, i, got[i], vs[i])
			}
		}
	}
	sbs := o.Get("BenchmarkEncodeSideBySide/rows=1000")
	if sbs == nil || sbs.Pkg != "github.com/flowbus/flowbus/bpf" {
		t.Fatalf("side by side: %+v", sbs)
	}
	if got := strings.Join(unitOrder([]*Bench{sbs}), " "); got != "ns/op arrow-cpu-ns/flow proto-cpu-ns/flow proto/arrow arrow-B/flow B/op allocs/op" {
		t.Errorf("units %s", got)
	}
	if v := o.Values("BenchmarkEncodeSideBySide/rows=1000", "proto/arrow"); len(v) != 1 || v[0] != 3.848 {
		t.Errorf("proto/arrow %v", v)
	}
	if o.Get("BenchmarkOdd") != nil {
		t.Errorf("the malformed BenchmarkOdd line was kept")
	}
	if len(o.Skipped) != 1 || o.Skipped[0].Name != "BenchmarkProgram/l7_captured/single" || o.Skipped[0].Text != "needs a kernel with bpf_skb_load_bytes" {
		t.Errorf("skipped %+v", o.Skipped)
	}
}

func TestFigures(t *testing.T) {
	o := Parse(sample)
	floor := Ref{"BenchmarkProgram/floor/batched", "ns/pkt"}
	pol := Ref{"BenchmarkProgram/established_with_policy/batched", "ns/pkt"}

	d := diff(pol, floor).Eval(o) // run by run: 43.5−14.3, 57.7−15.7
	if len(d) != 2 || !near(d[0], 29.2) || !near(d[1], 42.0) {
		t.Fatalf("diff %v", d)
	}
	if s := Status(atMost(40), d); s != "**NOT MET** (1 of 2 runs)" {
		t.Errorf("status %q", s)
	}
	if s := Status(atMost(45), d); s != "MET" {
		t.Errorf("status %q", s)
	}
	if s := Status(atLeast(1), nil); s != "not measured" {
		t.Errorf("status %q", s)
	}
	r := ratio(pol, floor).Eval(o)
	if len(r) != 2 || !near(r[0], 43.5/14.3) || !near(r[1], 57.7/15.7) {
		t.Errorf("ratio %v", r)
	}
	// A benchmark with fewer runs pairs only the runs both have.
	if v := diff(Ref{"BenchmarkProgram/new_flow_with_policy/single", "ns/pkt"}, floor).Eval(o); len(v) != 1 || !near(v[0], 241-14.3) {
		t.Errorf("diff with one run %v", v)
	}
	if v := inverse(1e6, Ref{"BenchmarkProgram/floor/batched", "ns/pkt"}).Eval(o); len(v) != 2 || !near(v[0], 1e6/14.3) {
		t.Errorf("inverse %v", v)
	}
	if v := scaled(Ref{"BenchmarkEncodeSideBySide/rows=1000", "proto-cpu-ns/flow"}, 1e-3).Eval(o); len(v) != 1 || !near(v[0], 3.171) {
		t.Errorf("scaled %v", v)
	}
	if v := val(Ref{"BenchmarkMissing", "ns/op"}).Eval(o); len(v) != 0 {
		t.Errorf("missing %v", v)
	}
	for v, want := range map[float64]string{0: "0", 0.1234: "0.123", 3.848: "3.85", 42: "42", 42.5: "42.5", 241: "241", 1234567: "1,235,000", -12345: "-12,350"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtRuns([]float64{35.2, 33, 29.1}); got != "35.2, 33.0, 29.1" {
		t.Errorf("fmtRuns %q", got)
	}
	for want, vs := range map[string][]float64{"43.5–57.7": {43.5, 57.7, 50}, "3.00–3.16": {3, 3.16}, "4–6": {4, 6, 5}, "12.1": {12.11, 12.09}} {
		if got := fmtRange(vs); got != want {
			t.Errorf("fmtRange(%v) = %q, want %q", vs, got, want)
		}
	}
}

func TestStormExtract(t *testing.T) {
	log := "    storm_test.go:250: flow design: 223776 connections in 10.001s (22378/s); 223790 flow records with a SYN, 12 connections without a complete record, 0 complete records without a connection; ring buffer 16 KiB: 7131 end events refused (recovered by the sweep), 14 lost packet events, 0 map insert failures; reader CPU 415.7ms = 1.858µs per flow\n"
	o := Parse(extractStorm(log))
	if len(o.Errors) != 0 {
		t.Fatal(o.Errors)
	}
	for unit, want := range map[string]float64{"conns/s": 22378, "incomplete": 12, "refused-ends": 7131, "lost-events": 14, "reader-µs/flow": 1.858} {
		if v := o.Values("BenchmarkConnectStorm", unit); len(v) != 1 || !near(v[0], want) {
			t.Errorf("%s: %v, want %v", unit, v, want)
		}
	}
}

// TestGroupsAndFigures checks the table itself: every figure reads a
// group that exists, in a known section; every benchmark function of the
// repository is run by some group.
func TestGroupsAndFigures(t *testing.T) {
	ids := map[string]Group{}
	secs := map[string]bool{}
	for _, s := range sections {
		secs[s.ID] = true
	}
	for _, g := range groups {
		if _, dup := ids[g.ID]; dup {
			t.Errorf("group %s twice", g.ID)
		}
		ids[g.ID] = g
		if !secs[g.Section] {
			t.Errorf("group %s: unknown section %q", g.ID, g.Section)
		}
	}
	for _, f := range figures {
		if !secs[f.Section] {
			t.Errorf("figure %q: unknown section %q", f.Name, f.Section)
		}
		if _, ok := ids[f.Group]; f.Group != "" && !ok {
			t.Errorf("figure %q: unknown group %q", f.Name, f.Group)
		}
		if f.Group == "" && f.Note == "" {
			t.Errorf("figure %q measured by nothing must say why", f.Name)
		}
	}

	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := "./" + filepath.ToSlash(rel)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Benchmark") {
				continue
			}
			n++
			if !covered(pkg, fn.Name.Name) {
				t.Errorf("%s: %s is run by no group of bench/mkresults (groups.go)", pkg, fn.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Errorf("found %d benchmark functions in the repository, expected more: is the walk's root the repository's?", n)
	}
}

// covered says whether a group runs benchmark fn of package pkg: the
// group names the package (or a /... pattern above it) and the first
// element of its -bench regexp matches the name, as go test matches it.
func covered(pkg, fn string) bool {
	for _, g := range groups {
		pkgs, bench := g.Pkgs, g.Bench
		if g.Cmd != nil {
			continue
		}
		for _, p := range pkgs {
			if p != pkg && !(strings.HasSuffix(p, "/...") && (pkg == strings.TrimSuffix(p, "/...") || strings.HasPrefix(pkg, strings.TrimSuffix(p, "...")))) {
				continue
			}
			first, _, _ := strings.Cut(bench, "/")
			if regexp.MustCompile(first).MatchString(fn) {
				return true
			}
		}
	}
	return false
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// The reference speed is measured, kept in run.json and read back by
// -render, and shown with its unit (or "?" when a run did not measure it).
func TestRefSpeedSavedAndShown(t *testing.T) {
	if s := refSpeed(); s < 1 {
		t.Fatalf("refSpeed() = %v MB/s, want a measured speed", s)
	}
	if got := speed(0); got != "?" {
		t.Errorf("speed(0) = %q, want ?", got)
	}
	if got := speed(987.6); got != "988 MB/s" {
		t.Errorf("speed(987.6) = %q", got)
	}
	dir := t.TempDir()
	g := groups[0]
	if err := os.WriteFile(filepath.Join(dir, g.ID+".log"), []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Machine{SpeedBefore: 1000, SpeedAfter: 500}
	if err := save(dir, m, []*Result{{Group: g, SpeedBefore: 900, SpeedAfter: 450}}); err != nil {
		t.Fatal(err)
	}
	lm, rs, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if lm.SpeedBefore != 1000 || lm.SpeedAfter != 500 || rs[0].SpeedBefore != 900 || rs[0].SpeedAfter != 450 {
		t.Fatalf("loaded machine %v/%v, group %v/%v; want 1000/500, 900/450", lm.SpeedBefore, lm.SpeedAfter, rs[0].SpeedBefore, rs[0].SpeedAfter)
	}
}
