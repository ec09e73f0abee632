// Package ocsftest is the OCSF validator the tests of sinks/ocsf and of
// 'flowbus ocsf' check every emitted event with. It reads the vendored
// subset of the OCSF 1.8.0 schema (testdata/schema, see sinks/ocsf/doc.go),
// resolves a class the way the OCSF schema server does (base event,
// category class, class; "extends" chains of objects; "$include"d
// profiles; dictionary types, enums and siblings) and reports, per event,
// every attribute that breaks it: required attributes missing, types,
// ranges, enums and their captions, attributes the class or object does
// not have, profiles not declared.
//
// Only tests import it: the schema is read from this package's source
// directory at run time, never built into a binary.
package ocsftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// attr is one resolved attribute of a class or an object.
type attr struct {
	typ         string            // dictionary type: a *_t type, "object" (free-form) or an object name
	isArray     bool              // a JSON array of typ
	requirement string            // required, recommended, optional
	enum        map[string]string // value (decimal for integers) → caption; nil: no enum
	sibling     string            // the attribute carrying the enum value's caption
	profile     string            // the profile that adds it; "" for the class's own
}

// def is a resolved class or object.
type def struct {
	name       string
	attrs      map[string]*attr
	atLeastOne []string
	justOne    []string
}

type typeDef struct {
	Type   string    `json:"type"`
	Regex  string    `json:"regex"`
	MaxLen int       `json:"max_len"`
	Range  []float64 `json:"range"`
	re     *regexp.Regexp
}

type rawDef struct {
	Name        string                     `json:"name"`
	Caption     string                     `json:"caption"`
	Extends     string                     `json:"extends"`
	Category    string                     `json:"category"`
	UID         int                        `json:"uid"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	Constraints struct {
		AtLeastOne []string `json:"at_least_one"`
		JustOne    []string `json:"just_one"`
	} `json:"constraints"`
}

type rawAttr struct {
	Type        string `json:"type"`
	IsArray     bool   `json:"is_array"`
	Requirement string `json:"requirement"`
	Sibling     string `json:"sibling"`
	Enum        map[string]struct {
		Caption string `json:"caption"`
	} `json:"enum"`
}

// Schema is the vendored schema, resolved as the validator needs it.
type Schema struct {
	dir        string
	version    string
	dict       map[string]rawAttr
	types      map[string]*typeDef
	objects    map[string]*rawDef // every vendored object file, by name
	resolved   map[string]*def
	classes    map[int64]*def // by class_uid
	categories map[string]struct {
		UID     int    `json:"uid"`
		Caption string `json:"caption"`
	}
}

var (
	schemaOnce sync.Once
	schemaVal  *Schema
	schemaErr  error
)

// Load returns the vendored schema (read once per process), failing the
// test if it is unreadable.
func Load(t testing.TB) *Schema {
	t.Helper()
	schemaOnce.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			schemaErr = errors.New("ocsftest: cannot locate the package's source directory")
			return
		}
		schemaVal, schemaErr = readSchema(filepath.Join(filepath.Dir(file), "testdata", "schema"))
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaVal
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func readSchema(dir string) (*Schema, error) {
	s := &Schema{dir: dir, objects: map[string]*rawDef{}, resolved: map[string]*def{}, classes: map[int64]*def{}}
	var ver struct {
		Version string `json:"version"`
	}
	if err := readJSON(filepath.Join(dir, "version.json"), &ver); err != nil {
		return nil, err
	}
	s.version = ver.Version
	var dict struct {
		Attributes map[string]rawAttr `json:"attributes"`
		Types      struct {
			Attributes map[string]*typeDef `json:"attributes"`
		} `json:"types"`
	}
	if err := readJSON(filepath.Join(dir, "dictionary.json"), &dict); err != nil {
		return nil, err
	}
	s.dict, s.types = dict.Attributes, dict.Types.Attributes
	for name, td := range s.types {
		if td.Regex != "" {
			re, err := regexp.Compile(td.Regex)
			if err != nil {
				return nil, fmt.Errorf("dictionary type %s: regex: %w", name, err)
			}
			td.re = re
		}
	}
	var cats struct {
		Attributes map[string]struct {
			UID     int    `json:"uid"`
			Caption string `json:"caption"`
		} `json:"attributes"`
	}
	if err := readJSON(filepath.Join(dir, "categories.json"), &cats); err != nil {
		return nil, err
	}
	s.categories = cats.Attributes
	files, _ := filepath.Glob(filepath.Join(dir, "objects", "*.json"))
	for _, f := range files {
		var o rawDef
		if err := readJSON(f, &o); err != nil {
			return nil, err
		}
		s.objects[o.Name] = &o
	}
	events := map[string]*rawDef{}
	err := filepath.WalkDir(filepath.Join(dir, "events"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var e rawDef
		if err := readJSON(p, &e); err != nil {
			return err
		}
		events[e.Name] = &e
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		if e.UID == 0 {
			continue // base_event and the category classes
		}
		chain := []*rawDef{e}
		for p := e; p.Extends != ""; {
			p = events[p.Extends]
			if p == nil {
				return nil, fmt.Errorf("event class %s: extends a class that is not vendored", e.Name)
			}
			chain = append(chain, p)
		}
		slices.Reverse(chain)
		cat := ""
		for _, c := range chain {
			if c.Category != "" && c.Category != "other" {
				cat = c.Category
			}
		}
		cc, ok := s.categories[cat]
		if !ok {
			return nil, fmt.Errorf("event class %s: category %q not in categories.json", e.Name, cat)
		}
		d := &def{name: e.Name, attrs: map[string]*attr{}}
		for _, c := range chain {
			if err := s.apply(d, c); err != nil {
				return nil, err
			}
		}
		uid := int64(cc.UID*1000 + e.UID)
		d.attrs["class_uid"].enum = map[string]string{strconv.FormatInt(uid, 10): e.Caption}
		d.attrs["category_uid"].enum = map[string]string{strconv.Itoa(cc.UID): cc.Caption}
		types := map[string]string{}
		for k, caption := range d.attrs["activity_id"].enum {
			a, _ := strconv.ParseInt(k, 10, 64)
			types[strconv.FormatInt(uid*100+a, 10)] = e.Caption + ": " + caption
		}
		d.attrs["type_uid"].enum = types
		d.attrs["type_uid"].sibling = "type_name"
		d.attrs["class_uid"].sibling = "class_name"
		d.attrs["category_uid"].sibling = "category_name"
		s.classes[uid] = d
	}
	return s, nil
}

// apply adds raw's included profiles and own attributes to d, and its
// constraints if it has any.
func (s *Schema) apply(d *def, raw *rawDef) error {
	var own []string
	for name, msg := range raw.Attributes {
		if name != "$include" {
			own = append(own, name)
			continue
		}
		var incs []string
		if err := json.Unmarshal(msg, &incs); err != nil {
			return fmt.Errorf("%s: $include: %w", raw.Name, err)
		}
		for _, inc := range incs {
			var p rawDef
			if err := readJSON(filepath.Join(s.dir, inc), &p); err != nil {
				return fmt.Errorf("%s: $include: %w", raw.Name, err)
			}
			for an, am := range p.Attributes {
				if err := s.merge(d, an, am, p.Name); err != nil {
					return err
				}
			}
		}
	}
	for _, name := range own {
		if err := s.merge(d, name, raw.Attributes[name], ""); err != nil {
			return fmt.Errorf("%s: %w", raw.Name, err)
		}
	}
	if len(raw.Constraints.AtLeastOne) > 0 || len(raw.Constraints.JustOne) > 0 {
		d.atLeastOne, d.justOne = raw.Constraints.AtLeastOne, raw.Constraints.JustOne
	}
	return nil
}

func (s *Schema) merge(d *def, name string, msg json.RawMessage, profile string) error {
	var ra rawAttr
	if err := json.Unmarshal(msg, &ra); err != nil {
		return fmt.Errorf("attribute %s: %w", name, err)
	}
	a := d.attrs[name]
	if a == nil {
		da, ok := s.dict[name]
		if !ok {
			return fmt.Errorf("attribute %s: not in the dictionary", name)
		}
		a = &attr{typ: da.Type, isArray: da.IsArray, sibling: da.Sibling, profile: profile}
		for k, v := range da.Enum {
			if a.enum == nil {
				a.enum = map[string]string{}
			}
			a.enum[k] = v.Caption
		}
		d.attrs[name] = a
	}
	if ra.Requirement != "" {
		a.requirement = ra.Requirement
	}
	if ra.Type != "" {
		a.typ = ra.Type
	}
	for k, v := range ra.Enum {
		if a.enum == nil {
			a.enum = map[string]string{}
		}
		a.enum[k] = v.Caption
	}
	return nil
}

// object resolves the object named name along its extends chain.
func (s *Schema) object(name string) (*def, error) {
	if d := s.resolved[name]; d != nil {
		return d, nil
	}
	var chain []*rawDef
	for n := name; n != ""; {
		raw := s.objects[n]
		if raw == nil {
			return nil, fmt.Errorf("the schema subset lacks object %q: vendor objects/%s.json from OCSF %s", n, n, s.version)
		}
		chain = append(chain, raw)
		n = raw.Extends
	}
	slices.Reverse(chain)
	d := &def{name: name, attrs: map[string]*attr{}}
	for _, raw := range chain {
		if err := s.apply(d, raw); err != nil {
			return nil, err
		}
	}
	s.resolved[name] = d
	return d, nil
}

// Version is the vendored schema's version (version.json), "1.8.0".
func (s *Schema) Version() string { return s.version }

// Validate checks one event and returns its problems, one line each, in
// attribute order; nil means it is valid.
func (s *Schema) Validate(event []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		return []string{"not a JSON object: " + err.Error()}
	}
	if dec.More() {
		return []string{"trailing data after the event"}
	}
	cn, ok := ev["class_uid"].(json.Number)
	if !ok {
		return []string{"class_uid: required attribute missing or not a number"}
	}
	uid, _ := cn.Int64()
	cls := s.classes[uid]
	if cls == nil {
		var have []int64
		for u := range s.classes {
			have = append(have, u)
		}
		slices.Sort(have)
		return []string{fmt.Sprintf("class_uid %d: not a vendored class (have %v)", uid, have)}
	}
	profiles := map[string]bool{}
	if md, ok := ev["metadata"].(map[string]any); ok {
		if ps, ok := md["profiles"].([]any); ok {
			for _, p := range ps {
				if p, ok := p.(string); ok {
					profiles[p] = true
				}
			}
		}
		if v, ok := md["version"].(string); ok && v != s.version {
			return []string{fmt.Sprintf("metadata.version: %q, but the vendored schema is %q", v, s.version)}
		}
	}
	v := &validation{s: s, profiles: profiles}
	v.object("", ev, cls)
	return v.errs
}

type validation struct {
	s        *Schema
	profiles map[string]bool
	errs     []string
}

func (v *validation) errorf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Sprintf(format, args...))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (v *validation) object(path string, m map[string]any, d *def) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := join(path, k)
		a := d.attrs[k]
		if a == nil {
			v.errorf("%s: unknown attribute of %s", p, d.name)
			continue
		}
		if a.profile != "" && !v.profiles[a.profile] {
			v.errorf("%s: attribute of profile %q, which metadata.profiles does not declare", p, a.profile)
			continue
		}
		v.value(p, m[k], a)
		if a.enum != nil && a.sibling != "" {
			key := enumKey(m[k])
			if sib, ok := m[a.sibling].(string); ok && key != "99" {
				if caption, ok := a.enum[key]; ok && sib != caption {
					v.errorf("%s: %q is not %s %s's caption %q", join(path, a.sibling), sib, k, key, caption)
				}
			}
		}
	}
	var req []string
	for name, a := range d.attrs {
		if a.requirement == "required" && (a.profile == "" || v.profiles[a.profile]) {
			if _, ok := m[name]; !ok {
				req = append(req, name)
			}
		}
	}
	sort.Strings(req)
	for _, name := range req {
		v.errorf("%s: required attribute missing", join(path, name))
	}
	if len(d.atLeastOne) > 0 && count(m, d.atLeastOne) == 0 {
		v.errorf("%s: %s needs at least one of %s", orTop(path), d.name, strings.Join(d.atLeastOne, ", "))
	}
	if len(d.justOne) > 0 && count(m, d.justOne) != 1 {
		v.errorf("%s: %s needs exactly one of %s", orTop(path), d.name, strings.Join(d.justOne, ", "))
	}
}

func orTop(path string) string {
	if path == "" {
		return "event"
	}
	return path
}

func count(m map[string]any, names []string) int {
	n := 0
	for _, name := range names {
		if _, ok := m[name]; ok {
			n++
		}
	}
	return n
}

func enumKey(x any) string {
	switch x := x.(type) {
	case json.Number:
		return x.String()
	case string:
		return x
	}
	return fmt.Sprint(x)
}

func (v *validation) value(path string, x any, a *attr) {
	if a.isArray {
		xs, ok := x.([]any)
		if !ok {
			v.errorf("%s: %s is not an array", path, describe(x))
			return
		}
		for i, e := range xs {
			v.single(fmt.Sprintf("%s[%d]", path, i), e, a)
		}
		return
	}
	v.single(path, x, a)
}

func (v *validation) single(path string, x any, a *attr) {
	if x == nil {
		v.errorf("%s: null (omit the attribute instead)", path)
		return
	}
	if !strings.HasSuffix(a.typ, "_t") {
		m, ok := x.(map[string]any)
		if !ok {
			v.errorf("%s: %s is not an object (%s)", path, describe(x), a.typ)
			return
		}
		if a.typ == "object" {
			return // free-form, such as unmapped
		}
		d, err := v.s.object(a.typ)
		if err != nil {
			v.errorf("%s: %v", path, err)
			return
		}
		v.object(path, m, d)
		return
	}
	if !v.scalar(path, x, a.typ) {
		return
	}
	if a.enum != nil {
		if _, ok := a.enum[enumKey(x)]; !ok {
			v.errorf("%s: %s is not in its enum (%s)", path, enumKey(x), enumList(a.enum))
		}
	}
}

func enumList(e map[string]string) string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+e[k])
	}
	return strings.Join(parts, ", ")
}

func describe(x any) string {
	switch x := x.(type) {
	case json.Number:
		return "number " + x.String()
	case string:
		return strconv.Quote(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", x)
}

// maxMillis is the largest timestamp_t the validator accepts: year 5138 in
// milliseconds; a time in micro- or nanoseconds is far above it.
const maxMillis = 1e14

// scalar checks x against the dictionary type typ and its base types.
func (v *validation) scalar(path string, x any, typ string) bool {
	td := v.s.types[typ]
	if td == nil {
		v.errorf("%s: type %s is not in the dictionary", path, typ)
		return false
	}
	if td.Type != "" && !v.scalar(path, x, td.Type) {
		return false
	}
	switch typ {
	case "string_t":
		if _, ok := x.(string); !ok {
			v.errorf("%s: %s is not a string", path, describe(x))
			return false
		}
	case "integer_t", "long_t":
		n, ok := x.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			v.errorf("%s: %s is not an integer (%s)", path, describe(x), typ)
			return false
		}
		if typ == "integer_t" && (i < math.MinInt32 || i > math.MaxInt32) {
			v.errorf("%s: %d does not fit integer_t (32 bits)", path, i)
			return false
		}
	case "float_t":
		if _, ok := x.(json.Number); !ok {
			v.errorf("%s: %s is not a number", path, describe(x))
			return false
		}
	case "boolean_t":
		if _, ok := x.(bool); !ok {
			v.errorf("%s: %s is not a boolean", path, describe(x))
			return false
		}
	case "timestamp_t":
		if i, _ := x.(json.Number).Int64(); i < 0 || i > maxMillis {
			v.errorf("%s: %d is not milliseconds since the epoch", path, i)
			return false
		}
	}
	if s, ok := x.(string); ok {
		if td.re != nil && !td.re.MatchString(s) {
			v.errorf("%s: %q is not a valid %s", path, s, typ)
			return false
		}
		if td.MaxLen > 0 && len(s) > td.MaxLen {
			v.errorf("%s: %d characters, longer than %s's %d", path, len(s), typ, td.MaxLen)
			return false
		}
	}
	if len(td.Range) == 2 {
		i, _ := x.(json.Number).Float64()
		if i < td.Range[0] || i > td.Range[1] {
			v.errorf("%s: %s is out of %s's range [%g, %g]", path, x, typ, td.Range[0], td.Range[1])
			return false
		}
	}
	return true
}
