package lab

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTruthWriterFillsThePodsAndReadTruthReadsItBack(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(topo, "fb", "n")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := openTruth(dir, plan, "checkout-api")
	if err != nil {
		t.Fatal(err)
	}
	w.write(TruthRecord{Time: 1, To: "ledger-svc", Family: "ipv4", Transport: "tcp", LocalPort: 40000, ServerPort: 8080,
		Proto: ProtoHTTP, Method: "GET", Path: "/v1/ledger/accounts/7/balance", Status: 200, LatencyNs: 1234})
	w.write(TruthRecord{Time: 2, To: "kube-dns", Family: "ipv6", Transport: "udp", LocalPort: 20001, ServerPort: 53,
		Proto: ProtoDNS, Method: "A", Path: "nosuch.payments.svc.cluster.local.", Status: 3, LatencyNs: 99})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := TruthPath(dir, "checkout-api"); got != filepath.Join(dir, "truth", "checkout-api.jsonl") {
		t.Fatalf("TruthPath %s", got)
	}
	recs, err := ReadTruth(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []TruthRecord{
		{Time: 1, From: "checkout-api", FromNamespace: "payments", FromWorkload: "checkout-api", To: "ledger-svc", ToNamespace: "payments",
			ToWorkload: "ledger-svc", Family: "ipv4", Transport: "tcp", LocalPort: 40000, ServerPort: 8080, Proto: "http", Method: "GET",
			Path: "/v1/ledger/accounts/7/balance", Status: 200, LatencyNs: 1234},
		{Time: 2, From: "checkout-api", FromNamespace: "payments", FromWorkload: "checkout-api", To: "kube-dns", ToNamespace: "kube-system",
			ToWorkload: "coredns", Family: "ipv6", Transport: "udp", LocalPort: 20001, ServerPort: 53, Proto: "dns", Method: "A",
			Path: "nosuch.payments.svc.cluster.local.", Status: 3, LatencyNs: 99},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Fatalf("read back:\n%+v\nwant\n%+v", recs, want)
	}

	// A second writer appends.
	w, err = openTruth(dir, plan, "checkout-api")
	if err != nil {
		t.Fatal(err)
	}
	w.write(TruthRecord{Time: 3, To: "ledger-svc", Proto: ProtoHTTP, Status: -1, Error: "timeout"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if recs, err := ReadTruth(dir); err != nil || len(recs) != 3 || recs[2].Status != -1 || recs[2].Error != "timeout" {
		t.Fatalf("after append: %+v %v; want 3 records, the last unanswered", recs, err)
	}
}

func TestReadTruthNamesTheFileAndLineOfABadLineAndKeepsTheOthers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "truth"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(dir, "truth", "a.jsonl")
	b := filepath.Join(dir, "truth", "b.jsonl")
	os.WriteFile(a, []byte(`{"time":1,"from":"a","proto":"http","status":200}
{"time":2,"from":"a","proto":"http","status":
{"time":3,"from":"a","proto":"dns","status":0}

{"time":4,"from":"a","statuss":1}
`), 0o644)
	os.WriteFile(b, []byte(`{"time":5,"from":"b","proto":"kafka","method":"Produce","status":0}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "truth", "notes.txt"), []byte("not a log\n"), 0o644)
	recs, err := ReadTruth(dir)
	var times []int64
	for _, r := range recs {
		times = append(times, r.Time)
	}
	if !reflect.DeepEqual(times, []int64{1, 3, 5}) {
		t.Errorf("records %v; want the good lines 1, 3 (a.jsonl) and 5 (b.jsonl)", times)
	}
	if err == nil {
		t.Fatal("no error for two bad lines")
	}
	for _, want := range []string{"ground truth " + a + " line 2: ", "ground truth " + a + " line 5: ", `unknown field "statuss"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q; want it to hold %q", err, want)
		}
	}
	if strings.Contains(err.Error(), b) {
		t.Errorf("error %q names the good file", err)
	}
}

func TestReadTruthOfNoLogIsNothing(t *testing.T) {
	recs, err := ReadTruth(t.TempDir())
	if err != nil || len(recs) != 0 {
		t.Fatalf("%v %v; want nothing", recs, err)
	}
}
