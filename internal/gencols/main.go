// Command gencols writes everything that is per column and mechanical
// about the flow record from its one declaration, the fields of
// schemas.Flow (schemas/flow.go; the tags are explained there and in
// decl.go):
//
//   - internal/flowcodec/columns_gen.go: the column indices, names, Arrow
//     fields and enum tables of flow.v1;
//   - internal/flowcodec/encode_gen.go: the encoder's column buffers and
//     its per-row, per-column code;
//   - internal/flowcodec/decode_gen.go: the decoded columns of a record
//     batch, full or projected, and the row that fills a Flow;
//   - schemas/flowrow_gen.go: FlowRow, the record as a Parquet row, and
//     its set;
//   - the column table of schemas/README.md, between its marker lines.
//
// It runs as `go generate ./schemas` (make generate), from the schemas
// directory or with -root naming the module root. The Hubble conversion
// (schemas/hubble) is written by hand: which Hubble field carries a
// column is a decision per column, and a test there proves that every
// Flow field is mapped. TestGeneratedFilesAreFresh fails when a committed
// file differs from what gencols writes.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
)

func main() {
	root := flag.String("root", "", "module root (default: the nearest directory at or above the working directory that holds go.mod)")
	flag.Parse()
	if *root == "" {
		r, err := findRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gencols:", err)
			os.Exit(1)
		}
		*root = r
	}
	files, err := generate(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencols:", err)
		os.Exit(1)
	}
	for _, f := range files {
		path := filepath.Join(*root, f.path)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gencols:", err)
			os.Exit(1)
		}
	}
}

// findRoot returns the nearest directory at or above the working directory
// that holds go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// output is one generated file, by its path from the module root.
type output struct {
	path string
	data []byte
}

// declPath is the declaration, from the module root.
const declPath = "schemas/flow.go"

// generate returns every file gencols writes, from the sources under root.
func generate(root string) ([]output, error) {
	src, err := os.ReadFile(filepath.Join(root, declPath))
	if err != nil {
		return nil, err
	}
	d, err := parseDecl(declPath, src)
	if err != nil {
		return nil, err
	}
	var out []output
	for _, g := range []struct {
		path string
		gen  func(*decl) string
	}{
		{"internal/flowcodec/columns_gen.go", genColumns},
		{"internal/flowcodec/encode_gen.go", genEncode},
		{"internal/flowcodec/decode_gen.go", genDecode},
		{"schemas/flowrow_gen.go", genFlowRow},
	} {
		code, err := format.Source([]byte(g.gen(d)))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", g.path, err)
		}
		out = append(out, output{g.path, code})
	}
	readme, err := os.ReadFile(filepath.Join(root, "schemas/README.md"))
	if err != nil {
		return nil, err
	}
	if readme, err = genReadme(d, readme); err != nil {
		return nil, err
	}
	return append(out, output{"schemas/README.md", readme}), nil
}
