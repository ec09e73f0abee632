package hubbletest

import (
	"context"
	"net"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Response is the GetFlowsResponse a Hubble server sends for f.
func Response(f *schemas.Flow) *observerpb.GetFlowsResponse {
	pf := hubble.ToProto(f)
	return &observerpb.GetFlowsResponse{Time: pf.GetTime(), NodeName: pf.GetNodeName(),
		ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: pf}}
}

// Encode encodes each flow as the GetFlowsResponse a Hubble server sends.
func Encode(flows []schemas.Flow) ([][]byte, error) {
	out := make([][]byte, len(flows))
	for i := range flows {
		b, err := proto.Marshal(Response(&flows[i]))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// Replay serves, on a local TCP port, an Observer whose GetFlows sends n
// responses (encoded, from Encode, over again) as fast as the client reads
// them, then holds the stream open as a follow stream does; ServerStatus
// answers, GetNodes is Unimplemented (as on a Cilium agent). It encodes
// nothing per response, so a benchmark of a client measures the client.
// It returns the address and a function that stops it.
func Replay(encoded [][]byte, n int) (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	g := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	observerpb.RegisterObserverServer(g, &replayServer{encoded: encoded, n: n})
	go g.Serve(lis)
	return lis.Addr().String(), g.Stop, nil
}

// rawCodec sends pre-encoded responses as they are, everything else as
// protobuf.
type rawCodec struct{}

type rawMessage []byte

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(rawMessage); ok {
		return r, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

type replayServer struct {
	observerpb.UnimplementedObserverServer
	encoded [][]byte
	n       int
}

func (r *replayServer) ServerStatus(context.Context, *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	return &observerpb.ServerStatusResponse{Version: "hubbletest-replay", MaxFlows: uint64(len(r.encoded))}, nil
}

func (r *replayServer) GetFlows(_ *observerpb.GetFlowsRequest, s observerpb.Observer_GetFlowsServer) error {
	for i := range r.n {
		if err := s.SendMsg(rawMessage(r.encoded[i%len(r.encoded)])); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}
