package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strconv"
	"strings"
)

// The declaration: schemas.Flow, whose fields are the flow.v1 columns.
// A leaf field carries `flowv1:"name,kind[,option…]"`; a field of struct
// type (Endpoint, Service, L7, declared in the same file) carries
// `flowv1:"prefix_[,option…]"` and stands for the columns of that type's
// fields, named with the prefix. The `hubble` tag names the Hubble
// flow.Flow fields that carry the column (a leading "." continues the
// parent field's hubble path; "ext:key" is a flowbus extension key); the
// field's comment documents the column.

// kind is how a column is stored: its Arrow type and the Go types that
// hold it in the codec and in FlowRow.
type kind struct {
	goType   string // the Go type a Flow field of this kind has, "" when any named type will do
	base     string // fixed-width kinds: the Go type of a value
	arrow    string // the Arrow type, as an expression of package flowcodec
	nullable bool
	width    int    // enums: index bytes
	arrowDoc string // README: the Arrow type
	pqDoc    string // README: the Parquet type (DuckDB's name)
}

var kinds = map[string]kind{
	"ts":     {goType: "int64", arrow: "tsType", nullable: true, arrowDoc: "ts, null if 0", pqDoc: "TIMESTAMP WITH TIME ZONE (µs), null if 0"},
	"utf8":   {goType: "string", arrow: "arrow.BinaryTypes.String", arrowDoc: "utf8", pqDoc: "VARCHAR"},
	"dict16": {goType: "string", arrow: "dictStr16", arrowDoc: "dict16", pqDoc: "VARCHAR (dictionary)"},
	"dict32": {goType: "string", arrow: "dictStr", arrowDoc: "dict32", pqDoc: "VARCHAR"},
	"enum8":  {arrow: "enumType", width: 1, arrowDoc: "enum8", pqDoc: "VARCHAR (dictionary of the names)"},
	"enum16": {arrow: "enumType16", width: 2, arrowDoc: "enum16", pqDoc: "VARCHAR (dictionary of the names)"},
	"int32":  {base: "int32", arrow: "arrow.PrimitiveTypes.Int32", arrowDoc: "int32", pqDoc: "INTEGER"},
	"uint8":  {base: "uint8", arrow: "arrow.PrimitiveTypes.Uint8", arrowDoc: "uint8", pqDoc: "UTINYINT"},
	"uint16": {base: "uint16", arrow: "arrow.PrimitiveTypes.Uint16", arrowDoc: "uint16", pqDoc: "USMALLINT"},
	"uint32": {base: "uint32", arrow: "arrow.PrimitiveTypes.Uint32", arrowDoc: "uint32", pqDoc: "UINTEGER"},
	"uint64": {base: "uint64", arrow: "arrow.PrimitiveTypes.Uint64", arrowDoc: "uint64", pqDoc: "UBIGINT"},
	"bool":   {goType: "Tristate", arrow: "arrow.FixedWidthTypes.Boolean", nullable: true, arrowDoc: "bool, null if Unknown", pqDoc: "BOOLEAN, null if Unknown"},
	"ip":     {goType: "netip.Addr", arrow: "ipType", nullable: true, arrowDoc: "fixed_size_binary(16), null if none", pqDoc: "VARCHAR (text), null if none"},
	"list16": {goType: "[]string", arrow: "strList16", nullable: true, arrowDoc: "list<dict16>, null if nil", pqDoc: "VARCHAR[]"},
	"list32": {goType: "[]string", arrow: "strList", nullable: true, arrowDoc: "list<dict32>, null if nil", pqDoc: "VARCHAR[]"},
	"hist":   {goType: "Histogram", arrow: "histType", nullable: true, arrowDoc: "list<struct<bucket int16, count int64>>, null if nil", pqDoc: "STRUCT(bucket SMALLINT, count BIGINT)[]"},
}

// column is one flow.v1 column.
type column struct {
	index  int
	name   string   // flow.v1 column name
	kind   string   // a key of kinds
	pqDict bool     // dict32 column that Parquet dictionary-encodes too
	path   []string // Go field path in Flow: Src, ClusterName
	goType string   // the field's type as schemas spells it: TCPFlags, flowpb.Verdict
	doc    string   // one line
	hubble []string // Hubble flow.Flow fields, as README cells
	group  *group   // the struct field it belongs to, nil for Flow's own
}

// group is a field of Flow of struct type: its columns are that type's fields.
type group struct {
	field, typ, prefix string
	doc                string // the struct field's comment
	cached             bool   // the encoder caches the indices of its strings together
	cols               []*column
}

func (c *column) k() kind { return kinds[c.kind] }

// ident is the column's Go name: the field path, concatenated.
func (c *column) ident() string { return strings.Join(c.path, "") }

// constName is the codec's column index constant.
func (c *column) constName() string { return "col" + c.ident() }

// field is the expression of the Flow field on f.
func (c *column) field(f string) string { return f + "." + strings.Join(c.path, ".") }

// leaf is the field name within its struct.
func (c *column) leaf() string { return c.path[len(c.path)-1] }

// decl is the parsed declaration.
type decl struct {
	cols   []*column
	groups []*group
}

// parseDecl reads the columns from the Flow type of the Go file at path.
func parseDecl(path string, src []byte) (*decl, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	structs := map[string]*ast.StructType{}
	for _, d := range file.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, s := range gd.Specs {
			ts := s.(*ast.TypeSpec)
			if st, ok := ts.Type.(*ast.StructType); ok {
				structs[ts.Name.Name] = st
			}
		}
	}
	flow, ok := structs["Flow"]
	if !ok {
		return nil, fmt.Errorf("%s: no struct type Flow", path)
	}
	d := &decl{}
	errAt := func(f *ast.Field, format string, args ...any) error {
		return fmt.Errorf("%s: %s", fset.Position(f.Pos()), fmt.Sprintf(format, args...))
	}
	var walk func(st *ast.StructType, g *group, hubblePrefix string) error
	walk = func(st *ast.StructType, g *group, hubblePrefix string) error {
		for _, f := range st.Fields.List {
			if len(f.Names) != 1 {
				return errAt(f, "declare one column field per line")
			}
			name := f.Names[0].Name
			tags := reflect.StructTag("")
			if f.Tag != nil {
				t, err := strconv.Unquote(f.Tag.Value)
				if err != nil {
					return errAt(f, "tag: %v", err)
				}
				tags = reflect.StructTag(t)
			}
			spec, ok := tags.Lookup("flowv1")
			if !ok {
				return errAt(f, "field %s has no flowv1 tag: every field of Flow is a column", name)
			}
			parts := strings.Split(spec, ",")
			typ := exprString(f.Type)
			hub := tags.Get("hubble")
			if strings.HasSuffix(parts[0], "_") { // a struct of columns
				if g != nil {
					return errAt(f, "struct fields nest one level only")
				}
				sub, ok := structs[typ]
				if !ok {
					return errAt(f, "field %s: prefix tag on type %s, which is not a struct declared beside Flow", name, typ)
				}
				ng := &group{field: name, typ: typ, prefix: parts[0], doc: docOf(f)}
				for _, o := range parts[1:] {
					switch o {
					case "cached":
						ng.cached = true
					default:
						return errAt(f, "field %s: unknown option %q", name, o)
					}
				}
				d.groups = append(d.groups, ng)
				if err := walk(sub, ng, hub); err != nil {
					return err
				}
				continue
			}
			if len(parts) < 2 {
				return errAt(f, "field %s: flowv1 tag wants \"name,kind\"", name)
			}
			c := &column{name: parts[0], kind: parts[1], goType: typ, path: []string{name}, group: g, doc: docOf(f)}
			k, ok := kinds[c.kind]
			if !ok {
				return errAt(f, "field %s: unknown kind %q", name, c.kind)
			}
			for _, o := range parts[2:] {
				switch {
				case o == "pqdict" && c.kind == "dict32":
					c.pqDict = true
				default:
					return errAt(f, "field %s: option %q does not apply to kind %s", name, o, c.kind)
				}
			}
			if k.goType != "" && typ != k.goType {
				return errAt(f, "field %s: kind %s wants Go type %s, not %s", name, c.kind, k.goType, typ)
			}
			if k.width > 0 && (typ == "string" || strings.HasPrefix(typ, "[]")) {
				return errAt(f, "field %s: kind %s wants an integer enumeration type, not %s", name, c.kind, typ)
			}
			if g != nil {
				c.name = g.prefix + c.name
				c.path = []string{g.field, name}
				g.cols = append(g.cols, c)
			}
			for _, h := range strings.Split(hub, ",") {
				switch {
				case h == "":
					return errAt(f, "field %s: hubble tag names no Hubble field", name)
				case strings.HasPrefix(h, "ext:"):
					c.hubble = append(c.hubble, "extension `"+strings.TrimPrefix(h, "ext:")+"`")
				case strings.HasPrefix(h, "."):
					c.hubble = append(c.hubble, "`"+hubblePrefix+h+"`")
				default:
					c.hubble = append(c.hubble, "`"+h+"`")
				}
			}
			c.index = len(d.cols)
			d.cols = append(d.cols, c)
		}
		return nil
	}
	if err := walk(flow, nil, ""); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range d.cols {
		if seen[c.name] {
			return nil, fmt.Errorf("%s: column %s declared twice", path, c.name)
		}
		seen[c.name] = true
	}
	if len(d.cols) > 128 {
		return nil, fmt.Errorf("%s: %d columns; Projection holds 128", path, len(d.cols))
	}
	return d, nil
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	}
	return fmt.Sprintf("%T", e)
}

// docOf is a field's comment on one line: the trailing comment, else the
// doc comment above it.
func docOf(f *ast.Field) string {
	cg := f.Comment
	if cg == nil {
		cg = f.Doc
	}
	if cg == nil {
		return ""
	}
	return strings.Join(strings.Fields(cg.Text()), " ")
}
