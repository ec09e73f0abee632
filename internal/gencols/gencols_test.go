package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedFilesAreFresh runs the generator in memory over the
// repository and fails when a committed file differs from what it writes:
// after a change to schemas/flow.go (or to the generator), run
// `go generate ./schemas` (make generate) and commit the result.
func TestGeneratedFilesAreFresh(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 {
		t.Fatalf("generate returned %d files, want 5", len(files))
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./schemas)", f.path, err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s is not what gencols writes from %s: run go generate ./schemas and commit it", f.path, declPath)
		}
		if strings.HasSuffix(f.path, ".go") && !bytes.HasPrefix(f.data, []byte("// Code generated ")) {
			t.Errorf("%s lacks the generated-code header", f.path)
		}
	}
}

// TestDeclarationErrors: a declaration the generator cannot honour is an
// error naming the field, not wrong code.
func TestDeclarationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"a field without a column", "type Flow struct { A int64 }", "no flowv1 tag"},
		{"an unknown kind", "type Flow struct { A int64 `flowv1:\"a,int128\" hubble:\"a\"` }", `unknown kind "int128"`},
		{"a kind of another Go type", "type Flow struct { A int64 `flowv1:\"a,dict16\" hubble:\"a\"` }", "kind dict16 wants Go type string"},
		{"a column without Hubble field", "type Flow struct { A int64 `flowv1:\"a,ts\"` }", "hubble tag names no Hubble field"},
		{"a column declared twice", "type Flow struct {\nA int64 `flowv1:\"a,ts\" hubble:\"a\"`\nB int64 `flowv1:\"a,ts\" hubble:\"b\"`\n}", "column a declared twice"},
		{"a prefix on a type that is not a struct", "type Flow struct { A X `flowv1:\"a_\" hubble:\"a\"` }", "not a struct declared beside Flow"},
		{"an option of another kind", "type Flow struct { A string `flowv1:\"a,dict16,pqdict\" hubble:\"a\"` }", `option "pqdict" does not apply`},
		{"an enum of strings", "type Flow struct { A string `flowv1:\"a,enum8\" hubble:\"a\"` }", "wants an integer enumeration type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDecl("flow.go", []byte("package schemas\n\n"+tc.src+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestColumnsFollowTheFields: columns come in field order, struct fields
// expanded in place with their prefix, and name their Go path.
func TestColumnsFollowTheFields(t *testing.T) {
	src := "package schemas\n\ntype Flow struct {\n" +
		"A int64 `flowv1:\"a,ts\" hubble:\"a\"` // the a\n" +
		"S Side `flowv1:\"s_,cached\" hubble:\"side\"` // one side\n" +
		"Z uint32 `flowv1:\"z,uint32\" hubble:\"ext:flowbus.z\"`\n}\n\n" +
		"type Side struct {\n" +
		"N string `flowv1:\"name,dict16\" hubble:\".name\"` // its name\n" +
		"L []string `flowv1:\"labels,list32\" hubble:\".labels\"`\n}\n"
	d, err := parseDecl("flow.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range d.cols {
		got = append(got, c.name+"="+strings.Join(c.path, ".")+"|"+strings.Join(c.hubble, ","))
	}
	want := []string{"a=A|`a`", "s_name=S.N|`side.name`", "s_labels=S.L|`side.labels`", "z=Z|extension `flowbus.z`"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("columns %q, want %q", got, want)
	}
	if len(d.groups) != 1 || !d.groups[0].cached || d.groups[0].doc != "one side" || d.cols[1].doc != "its name" {
		t.Fatalf("group %+v, doc %q", d.groups, d.cols[1].doc)
	}
}
