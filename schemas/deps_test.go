package schemas

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestContractLinksNoArrowZstdOrCgo: every flowbus package imports
// schemas, so schemas and the Hubble conversion must stay small: no Arrow,
// no zstd library, no cgo. sinks/stdout, which prints Hubble JSON and
// decodes bus messages only through a Decoder it is handed, stays as light.
// The Arrow engine is internal/flowcodec.
func TestContractLinksNoArrowZstdOrCgo(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	forbidden := []string{
		"github.com/apache/arrow-go/",
		"github.com/DataDog/zstd",
		"github.com/klauspost/compress/zstd",
		"github.com/google/flatbuffers/",
		"runtime/cgo",
	}
	for _, pkg := range []string{"./schemas", "./schemas/hubble", "./sinks/stdout"} {
		t.Run(pkg, func(t *testing.T) {
			cmd := exec.Command(goTool, "list", "-deps", pkg)
			cmd.Dir = ".." // the module root
			// With cgo on, as in the default build, so a cgo dependency shows.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", pkg, err)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("go list -deps %s listed only %q", pkg, deps)
			}
			for _, d := range deps {
				for _, f := range forbidden {
					if d == f || strings.HasPrefix(d, f) {
						t.Errorf("%s depends on %s", pkg, d)
					}
				}
			}
		})
	}
}
