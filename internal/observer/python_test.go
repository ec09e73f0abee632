package observer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/internal/servetest"
)

// pythonClient checks the server with Hubble's Python gRPC stubs, generated
// here from cilium's own .proto files (as Hubble's Python users generate
// them), over a real connection. Needs protoc, grpc_python_plugin and a
// python3 with grpcio (Debian: protobuf-compiler protobuf-compiler-grpc
// python3-grpcio python3-protobuf).
const pythonClient = `
import sys
import grpc
sys.path.insert(0, sys.argv[2])
from flow import flow_pb2
from observer import observer_pb2, observer_pb2_grpc

stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(sys.argv[1]))
st = stub.ServerStatus(observer_pb2.ServerStatusRequest())
print("status", st.num_flows, st.max_flows, st.seen_flows)
req = observer_pb2.GetFlowsRequest(number=10, whitelist=[flow_pb2.FlowFilter(
    destination_pod=["data/redis"], verdict=[flow_pb2.DROPPED])])
for res in stub.GetFlows(req):
    print("flow", res.flow.uuid, res.node_name, flow_pb2.DropReason.Name(res.flow.drop_reason_desc))
req = observer_pb2.GetFlowsRequest(number=3, blacklist=[flow_pb2.FlowFilter(protocol=["tcp"])])
print("notcp", " ".join(r.flow.uuid for r in stub.GetFlows(req)))
try:
    list(stub.GetFlows(observer_pb2.GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(node_labels=["a=b"])])))
except grpc.RpcError as e:
    print("error", e.code().name, "node_labels" in e.details())
`

func TestHubblePythonStubs(t *testing.T) {
	protoc, err1 := exec.LookPath("protoc")
	plugin, err2 := exec.LookPath("grpc_python_plugin")
	python := "/usr/bin/python3"
	if err1 != nil || err2 != nil || exec.Command(python, "-c", "import grpc").Run() != nil {
		t.Skip("needs protoc, grpc_python_plugin and python3-grpcio (Debian: protobuf-compiler protobuf-compiler-grpc python3-grpcio)")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cilium/cilium").Output()
	if err != nil {
		t.Skipf("cilium module source not available: %v", err)
	}
	apiDir := filepath.Join(strings.TrimSpace(string(out)), "api", "v1")
	stubs := t.TempDir()
	gen := exec.Command(protoc, "-I", apiDir, "-I", "/usr/include", "--python_out="+stubs, "--grpc_python_out="+stubs,
		"--plugin=protoc-gen-grpc_python="+plugin, "flow/flow.proto", "relay/relay.proto", "observer/observer.proto")
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	script := filepath.Join(stubs, "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o600); err != nil {
		t.Fatal(err)
	}

	srv, err := NewServer(Config{NodeName: "node-a"}, fixtureRing(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, srv.Serve)

	cmd := exec.Command(python, script, addr, stubs)
	cmd.Env = append(os.Environ(), "PYTHONPATH=")
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, got)
	}
	want := "status 10 64 10\n" +
		"flow f03 node-b POLICY_DENIED\n" +
		"notcp f04 f05 f08\n" +
		"error INVALID_ARGUMENT True\n"
	if string(got) != want {
		t.Errorf("python client printed:\n%s\nwant:\n%s", got, want)
	}
}
