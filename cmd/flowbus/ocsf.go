package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
	"github.com/flowbus/flowbus/sinks/ocsf"
)

// runOCSF is 'flowbus ocsf': a consumer of the flows topic that feeds a
// SIEM, so that the agents need not know about it. It decodes every bus
// message (flowcodec), encodes every record as an OCSF 1.8.0 event
// (sinks/ocsf: Network, HTTP or DNS Activity) and writes it to rotated
// JSON-lines files (--data-dir), a Splunk HTTP Event Collector (--hec-url),
// or both.
//
// Delivery is at least once. One batch is what one Poll of the consumer
// returns (at most 1000 messages). Every record of the batch is written to
// the outputs; then the outputs are made to hold it, the files flushed and
// fsynced (FileSink.Sync) and the HEC batch accepted by the collector (2xx)
// or written to the HEC spool and fsynced (--hec-spool-dir, replayed in
// order when the collector is back); only then are the batch's offsets
// committed. A batch
// under way when the command is stopped (SIGINT, SIGTERM) is finished and
// committed before it exits. A crash between the outputs and the commit
// leaves that batch uncommitted: the next run resumes after the last commit
// and emits it again, so a restart duplicates at most one batch and loses
// nothing. The HEC sink itself sends a batch twice only when the collector
// indexed it and the reply was lost (sinks/ocsf HECSink).
//
// Bad input never stops a partition: a message that does not decode is
// logged with its partition and offset, counted
// (flowbus_ocsf_bad_messages_total) and committed past with its batch; the
// records around it are written. A record the encoder refuses (no time, or
// no endpoint) is counted (flowbus_ocsf_refused_records_total) and skipped.
// Unlike the aggregator it dead-letters nothing: the aggregator, reading
// the same topic, already does.
func runOCSF(ctx context.Context, args []string, cio cmdIO) error {
	return runOCSFWith(ctx, args, cio, ocsfHooks{})
}

// ocsfHooks are what tests change of 'flowbus ocsf'.
type ocsfHooks struct {
	reg *prometheus.Registry // the command's metrics (default a new one)
	// beforeCommit runs after the outputs hold a batch, before its offsets
	// are committed; an error stops the command there, as a crash would.
	beforeCommit func(next map[int32]int64) error
	maxPoll      int // messages per batch (default the consumers', 1000)
}

// ocsfOptions are the parsed flags of 'flowbus ocsf'.
type ocsfOptions struct {
	bus, group, topic, assigned string
	partitions                  int
	conn                        busConnFlags // Kafka and NATS TLS and authentication

	dataDir     string
	rotateBytes int64
	rotateAge   time.Duration
	maxFiles    int

	hecURL, hecTokenFile, hecSourceType, hecSpoolDir string

	metricsAddr string
	progress    time.Duration
}

// defaultOCSFGroup is the consumer group (Kafka) and durable prefix (NATS)
// of 'flowbus ocsf': not the aggregator's, which would split the messages
// between the two.
const defaultOCSFGroup = "flowbus-ocsf"

// newOCSFFlags returns the flags of 'flowbus ocsf'.
func newOCSFFlags(cio cmdIO) (*flagSet, *ocsfOptions) {
	fs := newFlagSet("ocsf", "ocsf [flags]", "Consume the flows of the bus (a Kafka consumer group, or NATS "+
		"JetStream durable consumers) and write every record as an OCSF 1.8.0 event (Network, HTTP or DNS "+
		"Activity) to rotated JSON-lines files under --data-dir, to a Splunk HTTP Event Collector (--hec-url), "+
		"or both, so that a SIEM gets the flows without the agents knowing about it. Delivery is at least once: "+
		"a batch's offsets are committed only after the files are fsynced and the collector accepted the batch "+
		"or it is in the HEC spool, so a restart after a crash emits again at most the one batch that was not "+
		"committed, and loses nothing. A message that does not decode is logged with its partition and offset, "+
		"counted and skipped; a record the encoder refuses is counted and skipped. Every --progress-interval a "+
		"line logs the events written per class and the committed offsets.", cio)
	o := &ocsfOptions{}
	fs.group("Bus")
	fs.StringVar(&o.bus, "bus", nats.DefaultURL, "bus to consume: kafka://host:port[,host:port...] (consumer group) or nats://host:port (JetStream durable pull consumers)")
	fs.StringVar(&o.group, "group", defaultOCSFGroup, "Kafka consumer group, or NATS durable consumer name prefix; not the aggregator's, or the two split the messages")
	fs.StringVar(&o.topic, "kafka-topic", kafka.DefaultTopic, "Kafka topic to consume")
	addNATSPartitionFlags(fs, &o.partitions, &o.assigned, "instance of the group")

	fs.group("Kafka")
	o.conn.addKafkaConnFlags(fs, false)

	fs.group("NATS")
	o.conn.addNATSConnFlags(fs)

	fs.group("Files")
	fs.StringVar(&o.dataDir, "data-dir", "", "write the events as JSON lines to <data-dir>/flowbus-ocsf.jsonl, rotated to flowbus-ocsf-<UTC time>.jsonl; empty: no files")
	fs.Int64Var(&o.rotateBytes, "rotate-bytes", ocsf.DefaultFileMaxBytes, "rotate the active file before it would exceed this many bytes")
	fs.check("rotate-bytes", atLeast(&o.rotateBytes, 1024))
	fs.DurationVar(&o.rotateAge, "rotate-age", ocsf.DefaultFileMaxAge, "rotate the active file once it is this old (checked when an event is written)")
	fs.check("rotate-age", positive(&o.rotateAge))
	fs.IntVar(&o.maxFiles, "max-files", ocsf.DefaultFileMaxFiles, "rotated files kept; the oldest are removed")
	fs.check("max-files", atLeast(&o.maxFiles, 1))

	fs.group("Splunk HEC")
	fs.StringVar(&o.hecURL, "hec-url", "", "send the events to this Splunk HTTP Event Collector endpoint, e.g. https://splunk:8088/services/collector/event; empty: no HEC")
	fs.StringVar(&o.hecTokenFile, "hec-token-file", "", "file holding the HEC token (surrounding white space ignored); required with --hec-url")
	fs.StringVar(&o.hecSourceType, "hec-sourcetype", "ocsf:flowbus", "sourcetype of the events sent to the HEC")
	fs.StringVar(&o.hecSpoolDir, "hec-spool-dir", "", "directory of the batches the collector did not take (down, or failing), replayed in order when it is back; required with --hec-url")

	fs.group("Monitoring")
	fs.StringVar(&o.metricsAddr, "metrics-address", "127.0.0.1:9967", "serve Prometheus metrics on this address at /metrics; empty disables")
	fs.DurationVar(&o.progress, "progress-interval", 5*time.Second, "how often a line logs the events written per class and the committed offsets")
	fs.check("progress-interval", positive(&o.progress))
	return fs, o
}

// parseOCSFFlags parses the flags of 'flowbus ocsf' and checks that they
// make a command that can run: a bus, at least one output.
func parseOCSFFlags(args []string, cio cmdIO) (*ocsfOptions, error) {
	fs, o := newOCSFFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	scheme, hosts, ok := strings.Cut(o.bus, "://")
	if !ok || hosts == "" || scheme != "kafka" && scheme != "nats" {
		return nil, fmt.Errorf("%w: --bus %q: want kafka://host:port[,host:port...] or nats://host:port", errUsage, o.bus)
	}
	if o.dataDir == "" && o.hecURL == "" {
		return nil, fmt.Errorf("%w: no output: give --data-dir (JSON-lines files), --hec-url (Splunk HEC), or both", errUsage)
	}
	if o.hecURL != "" {
		if u, err := url.Parse(o.hecURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("%w: --hec-url %q: want http(s)://host:port/services/collector/event", errUsage, o.hecURL)
		}
		if o.hecTokenFile == "" {
			return nil, fmt.Errorf("%w: --hec-url needs --hec-token-file, the file holding the HEC token", errUsage)
		}
		if o.hecSpoolDir == "" {
			return nil, fmt.Errorf("%w: --hec-url needs --hec-spool-dir: without a spool a batch the collector does not take would be dropped after its offsets are committed", errUsage)
		}
	} else if o.hecTokenFile != "" || o.hecSpoolDir != "" {
		return nil, fmt.Errorf("%w: --hec-token-file and --hec-spool-dir need --hec-url", errUsage)
	}
	return o, nil
}

// readHECToken reads the token from path. The token is never logged, nor
// put in an error.
func readHECToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--hec-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--hec-token-file %s: the file is empty", path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("--hec-token-file %s: more than one line; want the token alone", path)
	}
	return tok, nil
}

// busConsumer is what 'flowbus ocsf' needs of the Kafka and NATS consumers.
type busConsumer interface {
	Poll(ctx context.Context) ([]bus.Delivery, error)
	Commit(ctx context.Context, next map[int32]int64) error
	Close() error
}

// ocsfClasses are the classes the encoder writes, in the order of the
// counters and of the progress line.
var ocsfClasses = [...]struct {
	uid   int
	label string // metric label and log key
}{
	{ocsf.ClassNetworkActivity, "network_activity"},
	{ocsf.ClassHTTPActivity, "http_activity"},
	{ocsf.ClassDNSActivity, "dns_activity"},
}

func ocsfClassIndex(uid int) int {
	switch uid {
	case ocsf.ClassHTTPActivity:
		return 1
	case ocsf.ClassDNSActivity:
		return 2
	}
	return 0
}

// ocsfState is what the command counted, read by the metrics and the
// progress line while the loop writes it.
type ocsfState struct {
	events                          [len(ocsfClasses)]atomic.Uint64
	messages, records, bad, refused atomic.Uint64

	mu        sync.Mutex
	committed map[int32]int64 // next offset per partition, as committed
}

// committedString is the committed offsets as "p:offset" items in
// partition order ("none" before the first commit).
func (s *ocsfState) committedString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.committed) == 0 {
		return "none"
	}
	ps := slices.Sorted(func(yield func(int32) bool) {
		for p := range s.committed {
			if !yield(p) {
				return
			}
		}
	})
	items := make([]string, len(ps))
	for i, p := range ps {
		items[i] = strconv.Itoa(int(p)) + ":" + strconv.FormatInt(s.committed[p], 10)
	}
	return strings.Join(items, " ")
}

// register adds the command's metrics to reg.
func (s *ocsfState) register(reg prometheus.Registerer, file *ocsf.FileSink, hec *ocsf.HECSink) *prometheus.GaugeVec {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("flowbus_ocsf_messages_total", "Bus messages decoded.", &s.messages),
		counter("flowbus_ocsf_records_total", "Flow records decoded from the bus messages.", &s.records),
		counter("flowbus_ocsf_bad_messages_total", "Bus messages that did not decode, skipped (logged with partition and offset).", &s.bad),
		counter("flowbus_ocsf_refused_records_total", "Flow records the OCSF encoder refused (no time, or no endpoint), skipped.", &s.refused),
	)
	for i, c := range ocsfClasses {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_events_total",
			Help: "OCSF events written to the outputs, by class.", ConstLabels: prometheus.Labels{"class": c.label}},
			func() float64 { return float64(s.events[i].Load()) }))
	}
	if file != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_file_rotations_total",
			Help: "JSON-lines files rotated."}, func() float64 { return float64(file.Stats().Rotations) }))
	}
	if hec != nil {
		for _, r := range []struct {
			result string
			get    func(ocsf.HECStats) uint64
		}{
			{"sent", func(s ocsf.HECStats) uint64 { return s.Sent }},
			{"spooled", func(s ocsf.HECStats) uint64 { return s.Spooled }},
			{"replayed", func(s ocsf.HECStats) uint64 { return s.Replayed }},
			{"dropped", func(s ocsf.HECStats) uint64 { return s.Dropped }},
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_hec_events_total",
				Help:        "Events through the Splunk HEC sink: sent (accepted, replays included), spooled, replayed from the spool, dropped (rejected as malformed).",
				ConstLabels: prometheus.Labels{"result": r.result}}, func() float64 { return float64(r.get(hec.Stats())) }))
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowbus_ocsf_hec_spooled_batches",
			Help: "HEC batches waiting in the spool."}, func() float64 { return float64(hec.Spooled()) }))
	}
	committed := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flowbus_ocsf_committed_offset",
		Help: "Next offset (Kafka) or stream sequence (NATS) to read, as committed, per partition."}, []string{"partition"})
	reg.MustRegister(committed)
	return committed
}

// logProgress logs one progress line.
func (s *ocsfState) logProgress(cio cmdIO, msg string, hec *ocsf.HECSink) {
	args := make([]any, 0, 2*len(ocsfClasses)+12)
	for i, c := range ocsfClasses {
		args = append(args, c.label, s.events[i].Load())
	}
	args = append(args, "messages", s.messages.Load(), "bad_messages", s.bad.Load(),
		"refused_records", s.refused.Load(), "committed", s.committedString())
	if hec != nil {
		st := hec.Stats()
		args = append(args, "hec_sent", st.Sent, "hec_spooled_batches", hec.Spooled())
	}
	cio.Log.Info(msg, args...)
}

// serveMetrics serves reg at http://addr/metrics until the returned stop.
func serveMetrics(addr string, reg *prometheus.Registry, cio cmdIO) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener (--metrics-address): %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	cio.Log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}

// runOCSFWith runs 'flowbus ocsf' with hooks (see runOCSF).
func runOCSFWith(ctx context.Context, args []string, cio cmdIO, h ocsfHooks) (err error) {
	o, err := parseOCSFFlags(args, cio)
	if err != nil {
		return err
	}
	reg := h.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	enc := &ocsf.Encoder{ProductVersion: version}

	// Outputs.
	var file *ocsf.FileSink
	if o.dataDir != "" {
		file, err = ocsf.OpenFile(ocsf.FileConfig{Dir: o.dataDir, MaxBytes: o.rotateBytes, MaxAge: o.rotateAge, MaxFiles: o.maxFiles, Encoder: enc})
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, file.Close()) }()
	}
	var hec *ocsf.HECSink
	if o.hecURL != "" {
		token, err := readHECToken(o.hecTokenFile)
		if err != nil {
			return err
		}
		hec, err = ocsf.NewHEC(ocsf.HECConfig{URL: o.hecURL, Token: token, SourceType: o.hecSourceType,
			SpoolDir: o.hecSpoolDir, Encoder: enc, Logger: cio.Log})
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err = errors.Join(err, hec.Close(cctx))
		}()
	}

	st := &ocsfState{committed: map[int32]int64{}}
	committedGauge := st.register(reg, file, hec)
	if o.metricsAddr != "" {
		stop, err := serveMetrics(o.metricsAddr, reg, cio)
		if err != nil {
			return err
		}
		defer stop()
	}

	// Input.
	var c busConsumer
	scheme, hosts, _ := strings.Cut(o.bus, "://") // checked with the flags
	switch scheme {
	case "kafka":
		kc, cerr := o.conn.kafkaConn(strings.Split(hosts, ","))
		if cerr != nil {
			return cerr
		}
		c, err = kafka.NewConsumer(kafka.ConsumerConfig{Conn: kc, Topic: o.topic,
			Group: o.group, MaxPollRecords: h.maxPoll, Logger: cio.Log})
	default: // nats
		nc, cerr := o.conn.natsConn(o.bus)
		if cerr != nil {
			return cerr
		}
		assigned, _ := assignedPartitions(o.assigned, o.partitions) // checked with the flags
		c, err = nats.NewConsumer(nats.ConsumerConfig{Conn: nc, Partitions: o.partitions,
			Assigned: assigned, Durable: o.group, MaxPollRecords: h.maxPoll, Logger: cio.Log})
	}
	if err != nil {
		return err
	}
	defer c.Close()

	outputs := []string{}
	if file != nil {
		outputs = append(outputs, "files "+file.ActivePath())
	}
	if hec != nil {
		outputs = append(outputs, "hec "+o.hecURL)
	}
	cio.Log.Info("ocsf starting", "bus", o.bus, "group", o.group, "outputs", strings.Join(outputs, ", "), "schema", ocsf.SchemaVersion)

	// Progress, and the replay of the HEC spool while the bus is quiet.
	pctx, stopProgress := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		tick := time.NewTicker(o.progress)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
				st.logProgress(cio, "ocsf progress", hec)
				if hec != nil && hec.Spooled() > 0 {
					if err := hec.Flush(pctx); err != nil && pctx.Err() == nil {
						cio.Log.Warn("ocsf: HEC spool replay", "err", err)
					}
				}
			}
		}
	}()
	defer func() {
		stopProgress()
		pwg.Wait()
		st.logProgress(cio, "ocsf stopped", hec)
	}()

	dec := flowcodec.NewDecoder()
	var flows []schemas.Flow
	var event []byte
	// A batch under way is finished and committed even when ctx is done.
	bctx := context.WithoutCancel(ctx)
	for {
		ds, err := c.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(ds) == 0 {
			continue
		}
		next := map[int32]int64{}
		var counts [len(ocsfClasses)]uint64
		for _, d := range ds {
			next[d.Partition] = d.Offset + 1
			flows, err = dec.Decode(flows[:0], d.Value)
			if err != nil {
				st.bad.Add(1)
				cio.Log.Warn("ocsf: bad message skipped", "topic", d.Topic, "partition", d.Partition, "offset", d.Offset,
					"node", d.Headers[schemas.HeaderNode], "bytes", len(d.Value), "err", err)
				continue
			}
			st.messages.Add(1)
			st.records.Add(uint64(len(flows)))
			for i := range flows {
				f := &flows[i]
				event, err = enc.Append(event[:0], f)
				if err != nil {
					st.refused.Add(1)
					cio.Log.Debug("ocsf: record refused", "partition", d.Partition, "offset", d.Offset, "row", i, "err", err)
					continue
				}
				if file != nil {
					if err := file.Write(event); err != nil {
						return err
					}
				}
				if hec != nil {
					if err := hec.Write(bctx, event, f.TimeNs/int64(time.Millisecond)); err != nil {
						return err
					}
				}
				counts[ocsfClassIndex(ocsf.Class(f))]++
			}
		}
		// The outputs hold the batch, then its offsets are committed.
		if file != nil {
			if err := file.Sync(); err != nil {
				return err
			}
		}
		if hec != nil {
			if err := hec.Flush(bctx); err != nil {
				return err
			}
			if hec.Spooled() > 0 {
				if err := hec.Sync(); err != nil {
					return err
				}
			}
		}
		for i, n := range counts {
			st.events[i].Add(n)
		}
		if h.beforeCommit != nil {
			if err := h.beforeCommit(next); err != nil {
				return err
			}
		}
		cctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		err = c.Commit(cctx, next)
		cancel()
		if err != nil {
			return fmt.Errorf("commit (the batch is emitted again after a restart): %w", err)
		}
		st.mu.Lock()
		for p, n := range next {
			st.committed[p] = n
			committedGauge.WithLabelValues(strconv.Itoa(int(p))).Set(float64(n))
		}
		st.mu.Unlock()
	}
}
