package schemas

import flowpb "github.com/cilium/cilium/api/v1/flow"

// ToProto converts f to Hubble's flow.Flow. Fields Hubble has no place for
// (bytes, packets, count, first/last seen, L4 latency, histogram, Kafka client
// ID) travel in Flow.Extensions, so FromProto(ToProto(f)) == f for every f.
func ToProto(f *Flow) *flowpb.Flow {
	panic("schemas: ToProto not implemented yet")
}

// FromProto converts a Hubble flow.Flow into a Flow. Fields we do not carry
// are ignored. It fails only on values that cannot be represented (a
// malformed IP address, a malformed extension).
func FromProto(p *flowpb.Flow) (Flow, error) {
	panic("schemas: FromProto not implemented yet")
}
