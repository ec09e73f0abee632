package lab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Protocols of TruthRecord.Proto.
const (
	ProtoHTTP  = "http"
	ProtoGRPC  = "grpc"
	ProtoDNS   = "dns"
	ProtoKafka = "kafka"
)

// TruthRecord is one L7 request a lab client made, as the client saw it:
// the ground truth an L7 pipeline's records are compared with. Clients
// write one JSON line per request to <state>/truth/<pod>.jsonl (TruthPath);
// ReadTruth reads them back. See the package documentation ("Ground truth")
// for how each kind fills the fields.
type TruthRecord struct {
	Time          int64  `json:"time"`           // Unix ns when the client began writing the request
	From          string `json:"from"`           // client pod
	FromNamespace string `json:"from_namespace"` // its namespace
	FromWorkload  string `json:"from_workload"`  // its workload
	To            string `json:"to"`             // server pod
	ToNamespace   string `json:"to_namespace"`   // its namespace (topology)
	ToWorkload    string `json:"to_workload"`    // its workload (topology)
	Family        string `json:"family"`         // "ipv4" or "ipv6"
	Transport     string `json:"transport"`      // "tcp" or "udp"
	LocalPort     uint16 `json:"local_port"`     // the client's source port; 0 when no connection was made
	ServerPort    uint16 `json:"server_port"`    // the server's port
	Proto         string `json:"proto"`          // "http", "grpc", "dns" or "kafka"
	// Method: the HTTP method; the gRPC full method
	// ("/grpc.health.v1.Health/Check"); the DNS query type ("A", "AAAA");
	// the Kafka api key as Kafka names it ("Produce", "Fetch", "Metadata").
	Method string `json:"method"`
	// Path: the HTTP URL path as sent, with its concrete id; for gRPC the
	// full method again (the HTTP/2 :path); the DNS query
	// name as on the wire, with its trailing dot; the Kafka topics the
	// request names on the wire, comma-separated in request order ("" for
	// none, and for requests that name topics by ID only, see Topics).
	Path string `json:"path"`
	// Status: the HTTP status; the gRPC status code; the DNS rcode; the
	// Kafka error code (the first non-zero one of the response, else 0).
	// -1 when the request got no answer (Error says why).
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	// LatencyNs: from just before the request's write to the kernel's
	// receive time of its response's first byte at the client's socket
	// (doc.go, "Ground truth"); 0 when there was no answer.
	LatencyNs int64 `json:"latency_ns"`
	// Pipelined is the request's position (1-based) in an HTTP pipeline,
	// 0 when the request was not pipelined.
	Pipelined int `json:"pipelined,omitempty"`
	// gRPC: Stream is set for a streaming call, Messages counts the
	// response messages, DurationNs runs from the end of the request's
	// write to the end status.
	Stream     bool  `json:"stream,omitempty"`
	Messages   int   `json:"messages,omitempty"`
	DurationNs int64 `json:"duration_ns,omitempty"`
	// DNS: the answer's addresses and CNAME targets (names with their
	// trailing dot, as on the wire), in answer order, and the smallest TTL
	// of its answer records (0 when it has none).
	Answers []string `json:"answers,omitempty"`
	CNAMEs  []string `json:"cnames,omitempty"`
	TTL     uint32   `json:"ttl,omitempty"`
	// Kafka: the request's api version and correlation ID, and its topics
	// by name, including those the request names by topic ID only (the
	// names the client learned for them from Metadata).
	APIVersion    int16    `json:"api_version,omitempty"`
	CorrelationID int32    `json:"correlation_id,omitempty"`
	Topics        []string `json:"topics,omitempty"`
}

// truthDir is the state directory's subdirectory of ground-truth logs.
const truthDir = "truth"

// TruthPath returns the ground-truth log of pod's clients:
// <stateDir>/truth/<pod>.jsonl.
func TruthPath(stateDir, pod string) string {
	return filepath.Join(stateDir, truthDir, pod+".jsonl")
}

// ReadTruth reads every pod's ground-truth log in stateDir, pods in name
// order and each pod's records in the order written. A line that is not a
// TruthRecord is an error naming its file and line; the good lines around
// it are returned all the same. No truth directory is no records, no error.
func ReadTruth(stateDir string) ([]TruthRecord, error) {
	files, err := filepath.Glob(filepath.Join(stateDir, truthDir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []TruthRecord
	var errs []error
	for _, f := range files {
		recs, err := readTruthFile(f)
		out = append(out, recs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

func readTruthFile(path string) ([]TruthRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	defer f.Close()
	var out []TruthRecord
	var errs []error
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r TruthRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			errs = append(errs, fmt.Errorf("ground truth %s line %d: %w", path, line, err))
			continue
		}
		if dec.More() {
			errs = append(errs, fmt.Errorf("ground truth %s line %d: more than one JSON value", path, line))
			continue
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("ground truth %s: %w", path, err))
	}
	return out, errors.Join(errs...)
}

// truthWriter appends TruthRecords to one pod's log, buffered; Flush
// writes them out. It is safe for concurrent use.
type truthWriter struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	err  error
	from *PodSpec
	plan *Plan
}

// openTruth opens (appending) the ground-truth log of pod's clients.
func openTruth(stateDir string, plan *Plan, pod string) (*truthWriter, error) {
	path := TruthPath(stateDir, pod)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	spec, _ := plan.Spec(pod)
	return &truthWriter{f: f, w: bufio.NewWriterSize(f, 64<<10), from: spec, plan: plan}, nil
}

// write fills in the pods' names from the topology and appends r.
func (t *truthWriter) write(r TruthRecord) {
	if t == nil {
		return
	}
	if t.from != nil {
		r.From, r.FromNamespace, r.FromWorkload = t.from.Name, t.from.Namespace, t.from.Workload
	}
	if to, ok := t.plan.Spec(r.To); ok {
		r.ToNamespace, r.ToWorkload = to.Namespace, to.Workload
	}
	b, err := json.Marshal(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		b = append(b, '\n')
		_, err = t.w.Write(b)
	}
	if err != nil && t.err == nil {
		t.err = err
	}
}

// Flush writes out what is buffered and returns the first error so far.
func (t *truthWriter) Flush() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.w.Flush(); err != nil && t.err == nil {
		t.err = err
	}
	return t.err
}

// Close flushes and closes the log.
func (t *truthWriter) Close() error {
	if t == nil {
		return nil
	}
	err := t.Flush()
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ground truth %s: %w", t.f.Name(), err)
	}
	return nil
}

// familyOf is "ipv4" or "ipv6".
func familyOf(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}
