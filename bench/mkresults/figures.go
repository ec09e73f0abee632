package main

import (
	"fmt"
	"math"
	"strconv"
)

// A Ref names one measure: a benchmark's full name (GOMAXPROCS suffix
// removed) and one of its units.
type Ref struct{ Bench, Unit string }

type exprKind int

const (
	kindValue   exprKind = iota // A × K (K 0 means 1)
	kindDiff                    // A − B
	kindRatio                   // A ÷ B
	kindInverse                 // K ÷ A
)

// An Expr computes a figure from one run's measures.
type Expr struct {
	kind exprKind
	A, B Ref
	K    float64
}

func val(a Ref) Expr                { return Expr{kind: kindValue, A: a} }
func scaled(a Ref, k float64) Expr  { return Expr{kind: kindValue, A: a, K: k} }
func diff(a, b Ref) Expr            { return Expr{kind: kindDiff, A: a, B: b} }
func ratio(a, b Ref) Expr           { return Expr{kind: kindRatio, A: a, B: b} }
func inverse(k float64, a Ref) Expr { return Expr{kind: kindInverse, A: a, K: k} }

// String is the figure's definition as the tables show it.
func (e Expr) String() string {
	r := func(x Ref) string { return fmt.Sprintf("%s `%s`", x.Bench, x.Unit) }
	switch e.kind {
	case kindDiff:
		return r(e.A) + " − " + r(e.B)
	case kindRatio:
		return r(e.A) + " ÷ " + r(e.B)
	case kindInverse:
		return fmtNum(e.K) + " ÷ " + r(e.A)
	}
	if e.K != 0 && e.K < 1 {
		return r(e.A) + " ÷ " + fmtNum(1/e.K)
	}
	if e.K != 0 && e.K != 1 {
		return r(e.A) + " × " + fmtNum(e.K)
	}
	return r(e.A)
}

// Eval computes the figure for every run in which its measures are all
// present, pairing the i-th run of A with the i-th run of B: the same
// command, the same process, side by side.
func (e Expr) Eval(o *Output) []float64 {
	a := o.Values(e.A.Bench, e.A.Unit)
	var b []float64
	if e.kind == kindDiff || e.kind == kindRatio {
		b = o.Values(e.B.Bench, e.B.Unit)
		if len(b) < len(a) {
			a = a[:len(b)]
		}
	}
	out := make([]float64, 0, len(a))
	for i, x := range a {
		var v float64
		switch e.kind {
		case kindValue:
			v = x
			if e.K != 0 {
				v *= e.K
			}
		case kindDiff:
			v = x - b[i]
		case kindRatio:
			v = x / b[i]
		case kindInverse:
			v = e.K / x
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// A Target is a goal for a figure: at most (Max) or at least its value.
type Target struct {
	Max   bool
	Value float64
	Text  string // shown instead of the bare bound when set, e.g. "≤ 1/40"
}

func atMost(v float64) *Target  { return &Target{Max: true, Value: v} }
func atLeast(v float64) *Target { return &Target{Value: v} }

func (t *Target) String() string {
	if t.Text != "" {
		return t.Text
	}
	if t.Max {
		return "≤ " + strconv.FormatFloat(t.Value, 'g', -1, 64)
	}
	return "≥ " + strconv.FormatFloat(t.Value, 'g', -1, 64)
}

// Met says whether v meets the target.
func (t *Target) Met(v float64) bool {
	if t.Max {
		return v <= t.Value
	}
	return v >= t.Value
}

// A Figure is a derived or targeted number of one group's output.
type Figure struct {
	Section string // component it is listed under
	Group   string // the group whose output it reads
	Name    string
	Unit    string
	Expr    Expr
	Target  *Target
	Note    string
}

// Status is the target column: MET when every run meets the target,
// NOT MET with how many runs miss it otherwise, "" without a target.
func Status(t *Target, vs []float64) string {
	if t == nil {
		return ""
	}
	if len(vs) == 0 {
		return "not measured"
	}
	miss := 0
	for _, v := range vs {
		if !t.Met(v) {
			miss++
		}
	}
	if miss == 0 {
		return "MET"
	}
	return fmt.Sprintf("**NOT MET** (%d of %d runs)", miss, len(vs))
}
