package ocsf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/internal/ocsftest"
	"github.com/flowbus/flowbus/schemas"
)

// TestAcceptance100kFlowsToFiles: 100,000 fleet flows (HTTP and DNS L7
// records, policy drops; some turned into traffic updates, resets and
// open-only connections) through the encoder into rotated files: every
// event validates against OCSF 1.8.0, and the events per class, activity
// and disposition are what the input implies.
func TestAcceptance100kFlowsToFiles(t *testing.T) {
	const n = 100_000
	s := ocsftest.Load(t)
	flows := flowtest.Fleet(7, n)
	type key struct{ class, activity, disposition int }
	want := map[key]int{}
	for i := range flows {
		f := &flows[i]
		if f.L7.Protocol == schemas.L7None {
			switch {
			case i%7 == 0:
				f.CountAs = schemas.CountTraffic
			case i%11 == 0 && f.Verdict == flowpb.Verdict_FORWARDED:
				f.TCPFlags = schemas.FlagSYN | schemas.FlagACK | schemas.FlagRST
			case i%13 == 0 && f.Verdict == flowpb.Verdict_FORWARDED:
				f.TCPFlags = schemas.FlagSYN | schemas.FlagACK
			}
		}
		// The expectation, from the mapping table in doc.go.
		k := key{class: 4001, disposition: 1}
		if f.Verdict == flowpb.Verdict_DROPPED {
			k.disposition = 2 // every fleet drop is POLICY_DENIED
		}
		switch {
		case f.L7.Protocol == schemas.L7HTTP:
			k.class, k.activity = 4002, map[string]int{"GET": 3, "POST": 6}[f.L7.HTTPMethod]
		case f.L7.Protocol == schemas.L7DNS:
			k.class, k.activity = 4003, 2 // fleet DNS records are responses
		case f.CountAs == schemas.CountTraffic:
			k.activity = 6
		case f.Verdict == flowpb.Verdict_DROPPED:
			k.activity = 5
		case f.TCPFlags&schemas.FlagRST != 0:
			k.activity = 3
		case f.TCPFlags&schemas.FlagFIN != 0:
			k.activity = 2
		default:
			k.activity = 1
		}
		want[k]++
	}

	var enc Encoder
	fs, err := OpenFile(FileConfig{Dir: t.TempDir(), MaxBytes: 16 << 20, MaxFiles: 1000, Encoder: &enc})
	if err != nil {
		t.Fatal(err)
	}
	for i := range flows {
		if err := fs.WriteFlow(&flows[i]); err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := fs.Rotated()
	files = append(files, fs.ActivePath())
	got := map[key]int{}
	events, invalid := 0, 0
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			events++
			if errs := s.Validate(sc.Bytes()); errs != nil {
				if invalid++; invalid <= 3 {
					t.Errorf("event %d: %q", events, errs)
				}
			}
			var ev struct {
				ClassUID      int `json:"class_uid"`
				ActivityID    int `json:"activity_id"`
				DispositionID int `json:"disposition_id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			got[key{ev.ClassUID, ev.ActivityID, ev.DispositionID}]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if events != n || invalid != 0 {
		t.Errorf("%d events, %d invalid; want %d, 0", events, invalid, n)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("per class/activity/disposition\n got %v\nwant %v", got, want)
	}
	if st := enc.Stats(); st != (Stats{Events: n}) {
		t.Errorf("encoder stats %+v", st)
	}
	if len(files) < 2 {
		t.Errorf("%d files: the sink never rotated", len(files))
	}
	t.Logf("%d files; %v", len(files), want)
}
