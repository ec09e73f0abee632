package main

import (
	"bufio"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A Bench is one benchmark (its full name, GOMAXPROCS suffix removed) and
// its results, one map of unit → value per run, in the order of the output.
type Bench struct {
	Name  string
	Pkg   string   // from the "pkg:" line before it
	Units []string // in the order they first appeared
	Runs  []map[string]float64
}

// Output is what Parse read from one command's output.
type Output struct {
	Benches []*Bench // in order of first appearance
	CPU     string   // the "cpu:" line go test prints, if any
	Errors  []ParseError
	Skipped []Note // benchmarks that skipped, with the reason they logged
	Failed  []Note // benchmarks that failed, with their first log line
	byName  map[string]*Bench
}

// A Note is a benchmark and what it logged.
type Note struct{ Name, Text string }

// A ParseError is a line that looks like a benchmark result and is not one.
type ParseError struct {
	Line int
	Text string
	Why  string
}

func (e ParseError) Error() string {
	return fmt.Sprintf("line %d: %s: %q", e.Line, e.Why, e.Text)
}

// Get returns the benchmark called name (the first package's, if several
// have one of that name), or nil.
func (o *Output) Get(name string) *Bench {
	if o == nil {
		return nil
	}
	for _, b := range o.Benches {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Values returns the values of unit of benchmark name, one per run that
// reported it.
func (o *Output) Values(name, unit string) []float64 {
	b := o.Get(name)
	if b == nil {
		return nil
	}
	var vs []float64
	for _, r := range b.Runs {
		if v, ok := r[unit]; ok {
			vs = append(vs, v)
		}
	}
	return vs
}

var procsSuffix = regexp.MustCompile(`-[0-9]+$`)

// Parse reads the standard `go test -bench` output format: result lines
// "BenchmarkName-P  N  v1 unit1  v2 unit2 …", custom units from
// b.ReportMetric included. Other lines (logs, PASS, ok …) are skipped. A
// line that starts like a result and is not one is a ParseError; the lines
// after it are still read. A result printed on the line after its name (a
// benchmark that wrote to stdout while it ran) is attributed to that name.
func Parse(text string) *Output {
	o := &Output{byName: map[string]*Bench{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pending, pkg := "", ""
	var note *[]Note // the list whose last entry wants its log line
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) >= 3 && f[0] == "---" && (f[1] == "SKIP:" || f[1] == "FAIL:") {
			note = &o.Skipped
			if f[1] == "FAIL:" {
				note = &o.Failed
			}
			*note = append(*note, Note{Name: procsSuffix.ReplaceAllString(f[2], "")})
			continue
		}
		if note != nil {
			if l := len(*note); l > 0 && (*note)[l-1].Text == "" && (line[0] == ' ' || line[0] == '\t') {
				(*note)[l-1].Text = logText(line)
				continue
			}
			note = nil
		}
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			if o.CPU == "" {
				o.CPU = strings.TrimSpace(cpu)
			}
			continue
		}
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		name := ""
		switch {
		case strings.HasPrefix(f[0], "Benchmark") && line[0] == 'B':
			name = procsSuffix.ReplaceAllString(f[0], "")
			f = f[1:]
			if len(f) == 0 {
				pending = name // its results follow on a later line
				continue
			}
		case pending != "" && isInt(f[0]) && len(f)%2 == 1:
			name = pending
		default:
			continue
		}
		run, units, why := parseFields(f)
		if why != "" {
			o.Errors = append(o.Errors, ParseError{Line: n, Text: line, Why: why})
			pending = name
			continue
		}
		pending = ""
		b := o.byName[pkg+" "+name]
		if b == nil {
			b = &Bench{Name: name, Pkg: pkg}
			o.byName[pkg+" "+name] = b
			o.Benches = append(o.Benches, b)
		}
		for _, u := range units {
			if !slices.Contains(b.Units, u) {
				b.Units = append(b.Units, u)
			}
		}
		b.Runs = append(b.Runs, run)
	}
	return o
}

// logText drops the "file_test.go:NN: " a test log line starts with.
func logText(line string) string {
	t := strings.TrimSpace(line)
	if i := strings.Index(t, ": "); i > 0 && strings.Contains(t[:i], ".go:") {
		t = t[i+2:]
	}
	return t
}

func isInt(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// parseFields reads "N v1 unit1 v2 unit2 …".
func parseFields(f []string) (map[string]float64, []string, string) {
	if !isInt(f[0]) {
		return nil, nil, "no iteration count after the benchmark's name"
	}
	f = f[1:]
	if len(f) == 0 {
		return nil, nil, "no measurement after the iteration count"
	}
	if len(f)%2 != 0 {
		return nil, nil, "a value without its unit"
	}
	run := map[string]float64{}
	var units []string
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, nil, fmt.Sprintf("value %q is not a number", f[i])
		}
		if _, dup := run[f[i+1]]; dup {
			return nil, nil, fmt.Sprintf("unit %q twice", f[i+1])
		}
		run[f[i+1]] = v
		units = append(units, f[i+1])
	}
	return run, units, ""
}
