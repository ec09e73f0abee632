package main

import (
	"fmt"
	"strings"
)

// FlowRow, the raw flow as a Parquet row, in package schemas: one field per
// flow.v1 column, same names and order, Parquet types where readers have a
// better one (flowRowDoc).

const flowRowDoc = `// FlowRow is one flow record as a Parquet row: the raw flows the aggregator
// writes under <out>/flows/ (aggregator.Config.RawFlows). Its columns are
// flow.v1's, same names, same order (schemas/README.md); the types differ
// where Parquet readers have a better one:
//
//   - Times (kind ts): INT64 TIMESTAMP(isAdjustedToUTC = true, MICROS),
//     null when unknown (0), nanoseconds truncated to microseconds; the
//     field's name ends in Us.
//   - Enumerations: their names as dictionary strings, as flow.v1 writes
//     them.
//   - IP addresses: text ("10.0.1.11", "fd00::1"), null when none.
//   - is_reply: BOOLEAN, null when unknown.
//   - Lists are Parquet LISTs (a nil and an empty list both read as []);
//     latency_hist is list<struct<bucket int16, count int64>> as in the
//     rollups.
//
// Strings with few distinct values are dictionary-encoded; those that can
// be as many as the rows (dict32 columns without option pqdict) are plain.
//
// Nullable columns are pointers, nil for null: parquet-go's zero-as-null for
// non-pointer optional fields writes some zero values as non-null (v0.32.x:
// an unknown first_seen read back as 1970-01-01 in DuckDB, about 1 row in
// 250), which sinks/parquet's TestFlowRowNullsSurviveBatchedWrites checks.
`

// rowName is a column's FlowRow field: the Flow path, Ns → Us for times.
func rowName(c *column) string {
	id := c.ident()
	if c.kind == "ts" {
		return strings.TrimSuffix(id, "Ns") + "Us"
	}
	return id
}

// rowField is a column's FlowRow field type, its parquet tag and the value
// set gives it from f ("" when set fills it after the literal).
func rowField(c *column) (typ, tag, val string) {
	v := c.field("f")
	switch c.kind {
	case "ts":
		return "*int64", c.name + ",optional,timestamp(microsecond:utc)", ""
	case "utf8":
		return "string", c.name, v
	case "dict16":
		return "string", c.name + ",dict", v
	case "dict32":
		if c.pqDict {
			return "string", c.name + ",dict", v
		}
		return "string", c.name, v
	case "enum8", "enum16":
		return "string", c.name + ",dict", v + ".String()"
	case "bool":
		return "*bool", c.name + ",optional", ""
	case "ip":
		return "*string", c.name + ",optional", ""
	case "list16", "list32":
		return "[]string", c.name + ",list", v
	case "hist":
		return "[]HistBucketRow", c.name + ",list", ""
	}
	if c.goType != c.k().base {
		v = c.k().base + "(" + v + ")"
	}
	return c.k().base, c.name, v
}

func genFlowRow(d *decl) string {
	var b strings.Builder
	b.WriteString(header + "package schemas\n\n" + flowRowDoc + "type FlowRow struct {\n")
	var prev *group
	for i, c := range d.cols {
		if i > 0 && c.group != prev {
			b.WriteString("\n")
		}
		prev = c.group
		typ, tag, _ := rowField(c)
		fmt.Fprintf(&b, "\t%s %s `parquet:%q`\n", rowName(c), typ, tag)
	}
	b.WriteString("}\n\n")
	b.WriteString("// set fills r from f, reusing the memory of r's histograms and nullable\n// columns.\nfunc (r *FlowRow) set(f *Flow) {\n")
	var keep []string
	for _, c := range d.cols {
		switch c.kind {
		case "hist":
			keep = append(keep, fmt.Sprintf("keep%s := r.%s[:0]", rowName(c), rowName(c)))
		case "bool", "ts", "ip":
			keep = append(keep, fmt.Sprintf("keep%s := r.%s", rowName(c), rowName(c)))
		}
	}
	for _, k := range keep {
		b.WriteString("\t" + k + "\n")
	}
	b.WriteString("\t*r = FlowRow{\n")
	for _, c := range d.cols {
		if _, _, val := rowField(c); val != "" {
			fmt.Fprintf(&b, "\t\t%s: %s,\n", rowName(c), val)
		}
	}
	b.WriteString("\t}\n")
	for _, c := range d.cols {
		n, v := rowName(c), c.field("f")
		switch c.kind {
		case "ts":
			fmt.Fprintf(&b, "\tif %s != 0 {\n\t\tr.%s = reuse(keep%s, %s/1000)\n\t}\n", v, n, n, v)
		case "ip":
			fmt.Fprintf(&b, "\tif %s.IsValid() {\n\t\tr.%s = reuse(keep%s, %s.String())\n\t}\n", v, n, n, v)
		case "bool":
			fmt.Fprintf(&b, "\tif %s != Unknown {\n\t\tr.%s = reuse(keep%s, %s == True)\n\t}\n", v, n, n, v)
		case "hist":
			fmt.Fprintf(&b, "\tr.%s = HistRows(keep%s, %s)\n", n, n, v)
		}
	}
	b.WriteString("}\n")
	return b.String()
}
