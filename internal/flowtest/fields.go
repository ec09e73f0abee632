package flowtest

import (
	"net/netip"
	"reflect"
	"strings"

	"github.com/flowbus/flowbus/schemas"
)

// Field is one leaf field of schemas.Flow, that is one flow.v1 column, as
// its declaration (the flowv1 and hubble tags) names it. Tests that must
// cover every column walk Fields, so a new field is tested without
// editing them.
type Field struct {
	Name   string   // Go path: "Src.ClusterName"
	Column string   // flow.v1 column: "src_cluster_name"
	Hubble []string // Hubble fields: paths ("source.cluster_name") and "ext:" extension keys
	index  []int
}

// Fields returns every leaf field of schemas.Flow, in column order.
func Fields() []Field {
	var out []Field
	var walk func(t reflect.Type, index []int, name, prefix, hubble string)
	walk = func(t reflect.Type, index []int, name, prefix, hubble string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			spec, _, _ := strings.Cut(sf.Tag.Get("flowv1"), ",")
			idx := append(append([]int(nil), index...), i)
			if strings.HasSuffix(spec, "_") {
				walk(sf.Type, idx, name+sf.Name+".", prefix+spec, sf.Tag.Get("hubble"))
				continue
			}
			f := Field{Name: name + sf.Name, Column: prefix + spec, index: idx}
			for _, h := range strings.Split(sf.Tag.Get("hubble"), ",") {
				if strings.HasPrefix(h, ".") {
					h = hubble + h
				}
				f.Hubble = append(f.Hubble, h)
			}
			out = append(out, f)
		}
	}
	walk(reflect.TypeFor[schemas.Flow](), nil, "", "", "")
	return out
}

// Value returns the field of f.
func (fd Field) Value(f *schemas.Flow) reflect.Value {
	return reflect.ValueOf(f).Elem().FieldByIndex(fd.index)
}

// Set gives the field of f a value that is not zero and that every
// conversion must carry: 1 for numbers (a named value of every
// enumeration: FORWARDED, L7HTTP, CountTraffic, Tristate False, …), a
// short string, a one-element list ["k: v"], the address 10.0.0.1, a histogram of
// one bucket.
func (fd Field) Set(f *schemas.Flow) {
	v := fd.Value(f)
	switch x := v.Addr().Interface().(type) {
	case *netip.Addr:
		*x = netip.MustParseAddr("10.0.0.1")
		return
	case *schemas.Histogram:
		*x = schemas.Histogram{{Index: 1, Count: 1}}
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x-" + fd.Column)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		s.Index(0).SetString("k: v") // the "Key: value" form HTTP headers need
		v.Set(s)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	default:
		panic("flowtest: no sample value for field " + fd.Name + " of kind " + v.Kind().String())
	}
}
