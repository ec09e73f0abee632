package aggregate

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/schemas"
)

// base is a raw HTTP request flow checkout-api → ledger-svc.
func base() schemas.Flow {
	return schemas.Flow{
		TimeNs:     1_000,
		UUID:       "u-1",
		NodeName:   "node-a",
		Verdict:    flowpb.Verdict_FORWARDED,
		Direction:  flowpb.TrafficDirection_EGRESS,
		IsReply:    schemas.False,
		SrcIP:      netip.MustParseAddr("10.0.1.5"),
		DstIP:      netip.MustParseAddr("10.0.2.7"),
		SrcPort:    40000,
		DstPort:    8080,
		L4Protocol: 6,
		TCPFlags:   schemas.FlagSYN,
		Src:        schemas.Endpoint{Identity: 100, Namespace: "payments", PodName: "checkout-api-1", Workload: "checkout-api"},
		Dst:        schemas.Endpoint{Identity: 200, Namespace: "payments", PodName: "ledger-svc-1", Workload: "ledger-svc"},
		BytesFwd:   100, BytesRev: 1000, PacketsFwd: 2, PacketsRev: 3,
		LatencyNs: 5_000_000,
		L7:        schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "/api/v1/orders/1", HTTPStatus: 200},
	}
}

func with(mod func(f *schemas.Flow)) schemas.Flow {
	f := base()
	mod(&f)
	return f
}

func hist(lat ...uint64) schemas.Histogram {
	var h schemas.Histogram
	for _, l := range lat {
		h.Add(l, 1)
	}
	return h
}

func TestFolding(t *testing.T) {
	tests := []struct {
		name string
		in   []schemas.Flow
		want []schemas.Flow
	}{
		{
			name: "one flow becomes one record of count 1 with its latency in the histogram",
			in:   []schemas.Flow{base()},
			want: []schemas.Flow{with(func(f *schemas.Flow) {
				f.Count, f.FirstSeenNs, f.LastSeenNs = 1, 1_000, 1_000
				f.LatencyHist = hist(5_000_000)
			})},
		},
		{
			name: "flows with the same key fold: sums, min first, max last, OR-ed flags, max latency, histogram of all",
			in: []schemas.Flow{
				base(),
				with(func(f *schemas.Flow) {
					f.TimeNs, f.UUID, f.SrcPort, f.TCPFlags = 3_000, "u-2", 40001, schemas.FlagACK|schemas.FlagFIN
					f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 10, 20, 1, 1
					f.LatencyNs = 9_000_000
				}),
				with(func(f *schemas.Flow) {
					f.TimeNs, f.FirstSeenNs, f.LastSeenNs = 2_000, 500, 2_500
					f.Count, f.LatencyNs, f.LatencyHist = 4, 7_000_000, hist(1_000_000, 2_000_000, 3_000_000, 7_000_000)
				}),
			},
			want: []schemas.Flow{with(func(f *schemas.Flow) {
				f.UUID = ""
				f.TimeNs, f.FirstSeenNs, f.LastSeenNs = 3_000, 500, 3_000
				f.Count = 6
				f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 210, 2020, 5, 7
				f.TCPFlags = schemas.FlagSYN | schemas.FlagACK | schemas.FlagFIN
				f.LatencyNs = 9_000_000
				f.LatencyHist = hist(1_000_000, 2_000_000, 3_000_000, 5_000_000, 7_000_000, 9_000_000)
			})},
		},
		{
			name: "a different URL, status, verdict, reply flag or count_as makes a separate record, in first-seen order",
			in: []schemas.Flow{
				base(),
				with(func(f *schemas.Flow) { f.L7.HTTPURL = "/api/v1/orders/2" }),
				with(func(f *schemas.Flow) { f.L7.HTTPStatus = 503 }),
				with(func(f *schemas.Flow) {
					f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED
				}),
				with(func(f *schemas.Flow) { f.IsReply = schemas.True }),
				with(func(f *schemas.Flow) { f.CountAs = schemas.CountNone }),
				base(),
			},
			want: []schemas.Flow{
				with(func(f *schemas.Flow) {
					f.UUID, f.Count, f.FirstSeenNs, f.LastSeenNs = "", 2, 1_000, 1_000
					f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 200, 2000, 4, 6
					f.LatencyHist = schemas.Histogram{{Index: schemas.HistBucket(5_000_000), Count: 2}}
				}),
				with(func(f *schemas.Flow) {
					f.L7.HTTPURL, f.Count, f.FirstSeenNs, f.LastSeenNs = "/api/v1/orders/2", 1, 1_000, 1_000
					f.LatencyHist = hist(5_000_000)
				}),
				with(func(f *schemas.Flow) {
					f.L7.HTTPStatus, f.Count, f.FirstSeenNs, f.LastSeenNs = 503, 1, 1_000, 1_000
					f.LatencyHist = hist(5_000_000)
				}),
				with(func(f *schemas.Flow) {
					f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED
					f.Count, f.FirstSeenNs, f.LastSeenNs = 1, 1_000, 1_000
					f.LatencyHist = hist(5_000_000)
				}),
				with(func(f *schemas.Flow) {
					f.IsReply, f.Count, f.FirstSeenNs, f.LastSeenNs = schemas.True, 1, 1_000, 1_000
					f.LatencyHist = hist(5_000_000)
				}),
				with(func(f *schemas.Flow) {
					f.CountAs, f.Count, f.FirstSeenNs, f.LastSeenNs = schemas.CountNone, 1, 1_000, 1_000
					f.LatencyHist = hist(5_000_000)
				}),
			},
		},
		{
			name: "pods of one workload fold together, pods without a workload stay apart",
			in: []schemas.Flow{
				with(func(f *schemas.Flow) { f.LatencyNs = 0 }),
				with(func(f *schemas.Flow) { f.LatencyNs, f.Src.PodName = 0, "checkout-api-2" }),
				with(func(f *schemas.Flow) { f.LatencyNs, f.Src.Workload, f.Src.PodName = 0, "", "debug-1" }),
				with(func(f *schemas.Flow) { f.LatencyNs, f.Src.Workload, f.Src.PodName = 0, "", "debug-2" }),
			},
			want: []schemas.Flow{
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.UUID, f.Count, f.FirstSeenNs, f.LastSeenNs = 0, "", 2, 1_000, 1_000
					f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 200, 2000, 4, 6
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.Src.Workload, f.Src.PodName, f.Count, f.FirstSeenNs, f.LastSeenNs = 0, "", "debug-1", 1, 1_000, 1_000
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.Src.Workload, f.Src.PodName, f.Count, f.FirstSeenNs, f.LastSeenNs = 0, "", "debug-2", 1, 1_000, 1_000
				}),
			},
		},
		{
			name: "DNS queries fold by query, query types and rcode",
			in: []schemas.Flow{
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local."}
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local."}
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local.", DNSRCode: 3}
				}),
				// A and AAAA for one name in one window: the route
				// rollup counts them by query type, so they must not fold.
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "nosuch.payments.svc.cluster.local.", DNSRCode: 3, DNSQTypes: []string{"A"}}
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "nosuch.payments.svc.cluster.local.", DNSRCode: 3, DNSQTypes: []string{"AAAA"}}
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "nosuch.payments.svc.cluster.local.", DNSRCode: 3, DNSQTypes: []string{"A"}}
				}),
			},
			want: []schemas.Flow{
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local."}
					f.UUID, f.Count, f.FirstSeenNs, f.LastSeenNs = "", 2, 1_000, 1_000
					f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 200, 2000, 4, 6
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local.", DNSRCode: 3}
					f.Count, f.FirstSeenNs, f.LastSeenNs = 1, 1_000, 1_000
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "nosuch.payments.svc.cluster.local.", DNSRCode: 3, DNSQTypes: []string{"A"}}
					f.UUID, f.Count, f.FirstSeenNs, f.LastSeenNs = "", 2, 1_000, 1_000
					f.BytesFwd, f.BytesRev, f.PacketsFwd, f.PacketsRev = 200, 2000, 4, 6
				}),
				with(func(f *schemas.Flow) {
					f.LatencyNs, f.L7 = 0, schemas.L7{Protocol: schemas.L7DNS, DNSQuery: "nosuch.payments.svc.cluster.local.", DNSRCode: 3, DNSQTypes: []string{"AAAA"}}
					f.Count, f.FirstSeenNs, f.LastSeenNs = 1, 1_000, 1_000
				}),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if early := a.Add(tt.in); early != nil {
				t.Fatalf("Add returned %d records early, want none", len(early))
			}
			got := a.Flush()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("records differ\n got: %+v\nwant: %+v", got, tt.want)
			}
			if again := a.Flush(); again != nil {
				t.Errorf("second Flush returned %d records, want none", len(again))
			}
		})
	}
}

func TestAddDoesNotAliasInputHistogram(t *testing.T) {
	a, _ := New(Config{}, nil)
	in := []schemas.Flow{with(func(f *schemas.Flow) { f.LatencyHist = hist(1_000_000) })}
	a.Add(in)
	a.Add([]schemas.Flow{base()})
	a.Flush()
	if want := hist(1_000_000); !reflect.DeepEqual(in[0].LatencyHist, want) {
		t.Errorf("input histogram changed to %v, want %v", in[0].LatencyHist, want)
	}
}

func TestMaxKeysFlushesEarlyAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Config{MaxKeys: 3}, reg)
	if err != nil {
		t.Fatal(err)
	}
	var in []schemas.Flow
	for i := range 10 { // keys 0..4, each twice: k0 k1 k2 k3 k4 k0 k1 k2 k3 k4
		in = append(in, with(func(f *schemas.Flow) { f.DstPort = uint16(1000 + i%5) }))
	}
	early := a.Add(in)
	// Window 1: k0 k1 k2 (full at k3) → flushed; window 2: k3 k4 k0 (full at k1) → flushed;
	// window 3: k1 k2 k3 (full at k4) → flushed; window 4: k4 stays.
	wantPorts := []uint16{1000, 1001, 1002, 1003, 1004, 1000, 1001, 1002, 1003}
	var gotPorts []uint16
	var total uint64
	for _, r := range early {
		gotPorts = append(gotPorts, r.DstPort)
		total += r.Count
	}
	if !reflect.DeepEqual(gotPorts, wantPorts) {
		t.Errorf("early flushed ports %v, want %v", gotPorts, wantPorts)
	}
	if a.Len() != 1 {
		t.Errorf("window holds %d records, want 1", a.Len())
	}
	rest := a.Flush()
	total += rest[0].Count
	if total != 10 {
		t.Errorf("total count %d, want 10: no flow may be lost", total)
	}
	if got := testutil.ToFloat64(a.earlyFlushes); got != 3 {
		t.Errorf("flowbus_aggregate_early_flushes_total = %v, want 3", got)
	}
}

func TestDisabledPassesThrough(t *testing.T) {
	a, _ := New(Config{Disabled: true}, nil)
	in := []schemas.Flow{base(), base()}
	if got := a.Add(in); !reflect.DeepEqual(got, in) || &got[0] != &in[0] {
		t.Errorf("disabled Add did not return its input")
	}
	if got := a.Flush(); got != nil {
		t.Errorf("disabled Flush returned %d records", len(got))
	}
}

func TestHashCollisionsAreResolvedByFields(t *testing.T) {
	a, _ := New(Config{}, nil)
	// Force every key to one hash bucket by feeding flows through a table
	// whose index already maps the hash of k1 to k0's record.
	k0 := base()
	k1 := with(func(f *schemas.Flow) { f.DstPort = 9 })
	a.Add([]schemas.Flow{k0})
	a.index[a.hash(&k1)] = 0 // pretend k1 collides with k0
	a.Add([]schemas.Flow{k1, k1, k0})
	got := a.Flush()
	if len(got) != 2 || got[0].DstPort != 8080 || got[0].Count != 2 || got[1].DstPort != 9 || got[1].Count != 2 {
		t.Errorf("records %+v, want port 8080 ×2 and port 9 ×2", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{MaxKeys: -1}, {Window: 1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func BenchmarkAdd(b *testing.B) {
	a, _ := New(Config{}, nil)
	flows := make([]schemas.Flow, 1024)
	for i := range flows {
		flows[i] = with(func(f *schemas.Flow) {
			f.L7.HTTPURL = []string{"/a", "/b", "/c", "/d"}[i%4]
			f.DstPort = uint16(i % 64)
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Add(flows)
		if i%1000 == 999 {
			a.Flush()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
}

// TestFlushReturnsRecordsInTimeOrder: a window's records come out sorted
// by their time (their latest flow's), ties in first-seen order, whatever
// order their keys were first seen in; every record is kept whole.
func TestFlushReturnsRecordsInTimeOrder(t *testing.T) {
	a, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// key (port) → times of its flows, in arrival order by key first seen:
	// p1 at 10 then 90, p2 at 20, p3 at 30 then 70, p4 at 40, p5 at 50, p6 at 70.
	arrivals := []struct {
		port uint16
		t    int64
	}{{1, 10}, {2, 20}, {3, 30}, {4, 40}, {5, 50}, {3, 70}, {6, 70}, {1, 90}}
	for _, x := range arrivals {
		a.Add([]schemas.Flow{with(func(f *schemas.Flow) { f.DstPort, f.TimeNs = x.port, x.t })})
	}
	var got []string
	for _, r := range a.Flush() {
		got = append(got, fmt.Sprintf("p%d@%d/%d", r.DstPort, r.TimeNs, r.Count))
	}
	want := []string{"p2@20/1", "p4@40/1", "p5@50/1", "p3@70/2", "p6@70/1", "p1@90/2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flushed %v, want %v", got, want)
	}
}
