package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
// a Kafka topic (--kafka-output-topic) or NATS JetStream subjects
// (--nats-output-subject), one JSON event per record keyed by the
// destination workload as the flows are, or any of them together.
//
// Delivery is at least once. One batch is what one Poll of the consumer
// returns (at most 1000 messages). Every record of the batch is written to
// the outputs; then the outputs are made to hold it, the files flushed and
// fsynced (FileSink.Sync) and the HEC batch accepted by the collector (2xx)
// or written to the HEC spool and fsynced (--hec-spool-dir, replayed in
// order when the collector is back), the Kafka and NATS records
// acknowledged by their brokers; only then are the batch's offsets
// committed. A Kafka or NATS output that does not acknowledge within
// --output-timeout (or cannot be reached at start) stops the command with
// an error naming it, the batch uncommitted: it has no spool, and a
// restart emits the batch again. A batch
// under way when the command is stopped (SIGINT, SIGTERM) is finished and
// committed before it exits. A crash between the outputs and the commit
// leaves that batch uncommitted: the next run resumes after the last commit
// and emits it again, so a restart duplicates at most one batch and loses
// nothing. The HEC sink itself sends a batch twice only when the collector
// indexed it and the reply was lost (sinks/ocsf HECSink). On the NATS
// output an event's Nats-Msg-Id is its record's place on the bus
// (subject/partition/sequence/row), so the stream stores a re-emitted
// batch once when the restart comes within its duplicate window (2 min for
// a stream the command creates); a Kafka topic gets the repeats.
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
	instanceID  string // --kafka-instance-id as given
	rotateBytes int64
	rotateAge   time.Duration
	maxFiles    int

	hecURL, hecTokenFile, hecSourceType, hecSpoolDir string

	kafkaOutTopic, kafkaOutBrokers string
	kafkaOutCreate                 bool
	kafkaOutPartitions             int
	natsOutSubject, natsOutURL     string
	natsOutStream                  string
	natsOutPartitions              int
	outputTimeout                  time.Duration

	metricsAddr string
	metricsTLS  metricsTLS
	progress    time.Duration

	// p is the prefix of the output flags' names: "" in 'flowbus ocsf',
	// "ocsf-" in the agent.
	p string
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
		"to a Kafka topic (--kafka-output-topic) or to NATS JetStream subjects (--nats-output-subject), or to "+
		"several of them, so that a SIEM gets the flows without the agents knowing about it. On Kafka and NATS "+
		"each event is one JSON record keyed by the destination workload, as the flows are. Delivery is at least "+
		"once: a batch's offsets are committed only after the files are fsynced, the collector accepted the batch "+
		"or it is in the HEC spool, and the Kafka and NATS brokers acknowledged its records, so a restart after a "+
		"crash emits again at most the one batch that was not committed, and loses nothing. A Kafka or NATS "+
		"output that cannot be reached at start, or does not acknowledge a batch within --output-timeout, stops "+
		"the command with an error naming it (the batch stays uncommitted). A message that does not decode is "+
		"logged with its partition and offset, counted and skipped; a record the encoder refuses is counted and "+
		"skipped. Every --progress-interval a line logs the events written per class and the committed offsets. "+
		"The Kafka and NATS flags of TLS and authentication apply to the input and to the outputs alike.", cio)
	o := &ocsfOptions{}
	fs.group("Bus")
	fs.StringVar(&o.bus, "bus", nats.DefaultURL, "bus to consume: kafka://host:port[,host:port...] (consumer group) or nats://host:port (JetStream durable pull consumers)")
	fs.StringVar(&o.group, "group", defaultOCSFGroup, "Kafka consumer group, or NATS durable consumer name prefix; not the aggregator's, or the two split the messages")
	fs.StringVar(&o.topic, "kafka-topic", kafka.DefaultTopic, "Kafka topic to consume")
	addNATSPartitionFlags(fs, &o.partitions, &o.assigned, "instance of the group")

	fs.group("Kafka")
	fs.StringVar(&o.instanceID, "kafka-instance-id", "none", "Kafka static group membership: this consumer's group instance id, so that a restarted one (a crash, a SIGKILL, a rolling update) takes its partitions back at once instead of after the old member's session (45 s); a stopped one keeps them until then. "+
		"auto: flowbus-ocsf-<$POD_NAME or host name>-<digest of the absolute --data-dir or --hec-spool-dir, the topic and the group> (two on one host need their own directories); none: dynamic membership")
	fs.check("kafka-instance-id", bound{func() bool {
		return o.instanceID != "" && len(o.instanceID) <= 249 && !strings.ContainsAny(o.instanceID, " \t\n")
	}, "auto, none, or an id of 1 to 249 characters without white space"})
	o.conn.addKafkaConnFlags(fs, false)

	fs.group("NATS")
	o.conn.addNATSConnFlags(fs)

	addOCSFOutputFlags(fs, o, "", true)

	fs.group("Outputs")
	fs.DurationVar(&o.outputTimeout, "output-timeout", 30*time.Second, "how long a Kafka or NATS output may take to be reached at start, or to acknowledge a batch, before the command stops with an error (the batch stays uncommitted)")
	fs.check("output-timeout", positive(&o.outputTimeout))

	fs.group("Monitoring")
	fs.StringVar(&o.metricsAddr, "metrics-address", "127.0.0.1:9967", "serve Prometheus metrics on this address at /metrics; empty disables")
	addMetricsTLSFlags(fs, &o.metricsTLS)
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
	if err := o.checkOutputs("", scheme, hosts); err != nil {
		return nil, err
	}
	return o, nil
}

// addOCSFOutputFlags adds the flags of the OCSF outputs (files, Splunk HEC,
// Kafka topic, NATS subjects) to fs, each name prefixed with p: 'flowbus
// ocsf' has them bare, in a group per output (groups), 'flowbus agent' as
// --ocsf-*, in its one OCSF group. The help texts name the prefixed flags,
// so that the two commands read the same.
func addOCSFOutputFlags(fs *flagSet, o *ocsfOptions, p string, groups bool) {
	group := func(title string) {
		if groups {
			fs.group(title)
		}
	}
	n := func(name string) string { return p + name }
	group("Files")
	fs.StringVar(&o.dataDir, n("data-dir"), "", "write the events as JSON lines to <"+n("data-dir")+">/flowbus-ocsf.jsonl, rotated to flowbus-ocsf-<UTC time>.jsonl; empty: no files")
	fs.Int64Var(&o.rotateBytes, n("rotate-bytes"), ocsf.DefaultFileMaxBytes, "rotate the active file before it would exceed this many bytes")
	fs.check(n("rotate-bytes"), atLeast(&o.rotateBytes, 1024))
	fs.DurationVar(&o.rotateAge, n("rotate-age"), ocsf.DefaultFileMaxAge, "rotate the active file once it is this old (checked when an event is written)")
	fs.check(n("rotate-age"), positive(&o.rotateAge))
	fs.IntVar(&o.maxFiles, n("max-files"), ocsf.DefaultFileMaxFiles, "rotated files kept; the oldest are removed")
	fs.check(n("max-files"), atLeast(&o.maxFiles, 1))

	group("Splunk HEC")
	fs.StringVar(&o.hecURL, n("hec-url"), "", "send the events to this Splunk HTTP Event Collector endpoint, e.g. https://splunk:8088/services/collector/event; empty: no HEC")
	fs.StringVar(&o.hecTokenFile, n("hec-token-file"), "", "file holding the HEC token (surrounding white space ignored); required with --"+n("hec-url"))
	fs.StringVar(&o.hecSourceType, n("hec-sourcetype"), "ocsf:flowbus", "sourcetype of the events sent to the HEC")
	fs.StringVar(&o.hecSpoolDir, n("hec-spool-dir"), "", "directory of the batches the collector did not take (down, or failing), replayed in order when it is back; required with --"+n("hec-url"))

	group("Kafka output")
	fs.StringVar(&o.kafkaOutTopic, n("kafka-output-topic"), "", "publish the events to this Kafka topic, one JSON record each, keyed by the destination workload (namespace/name) as the flows are; empty: no Kafka output")
	fs.StringVar(&o.kafkaOutBrokers, n("kafka-output-brokers"), "", "host:port[,host:port...] of the output's Kafka cluster (default: the brokers of --bus when it is kafka://); the --kafka-tls* and --kafka-sasl-* flags apply to it")
	fs.BoolVar(&o.kafkaOutCreate, n("kafka-output-create-topic"), true, "create --"+n("kafka-output-topic")+" when missing")
	fs.IntVar(&o.kafkaOutPartitions, n("kafka-output-partitions"), kafka.DefaultPartitions, "partitions of an output topic the command creates")
	fs.check(n("kafka-output-partitions"), between(&o.kafkaOutPartitions, 1, math.MaxInt32))

	group("NATS output")
	fs.StringVar(&o.natsOutSubject, n("nats-output-subject"), "", "publish the events to the JetStream subjects <subject>.<partition>, one JSON message each, the partition by Kafka's partitioner over the destination workload as the flows' (header flowbus-key); empty: no NATS output")
	urlDefault := "--bus when it is nats://"
	if p != "" {
		urlDefault += ", or the embedded server"
	}
	fs.StringVar(&o.natsOutURL, n("nats-output-url"), "", "nats://host:port of the output's server (default: "+urlDefault+"); the --nats-tls-* and authentication flags apply to it")
	fs.StringVar(&o.natsOutStream, n("nats-output-stream"), "FLOWBUS_OCSF", "JetStream stream of the output subjects, created when missing (binding <subject>.>, 24h, 4 GiB; an existing stream is used as its operator configured it)")
	fs.IntVar(&o.natsOutPartitions, n("nats-output-partitions"), nats.DefaultPartitions, "partitions (subjects <subject>.<p>) of the NATS output")
	fs.check(n("nats-output-partitions"), between(&o.natsOutPartitions, 1, nats.MaxPartitions))
}

// checkOutputs checks the output flags (named with prefix p): at least one
// output, a HEC with its token and spool, and the Kafka and NATS outputs
// (checkBusOutputs). scheme and hosts are those of --bus.
func (o *ocsfOptions) checkOutputs(p, scheme, hosts string) error {
	if o.dataDir == "" && o.hecURL == "" && o.kafkaOutTopic == "" && o.natsOutSubject == "" {
		return fmt.Errorf("%w: no output: give --%sdata-dir (JSON-lines files), --%shec-url (Splunk HEC), --%skafka-output-topic (Kafka) or --%snats-output-subject (NATS), or several", errUsage, p, p, p, p)
	}
	if err := o.checkBusOutputs(p, scheme, hosts); err != nil {
		return err
	}
	if o.hecURL != "" {
		if u, err := url.Parse(o.hecURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%w: --%shec-url %q: want http(s)://host:port/services/collector/event", errUsage, p, o.hecURL)
		}
		if o.hecTokenFile == "" {
			return fmt.Errorf("%w: --%shec-url needs --%shec-token-file, the file holding the HEC token", errUsage, p, p)
		}
		if o.hecSpoolDir == "" {
			return fmt.Errorf("%w: --%shec-url needs --%shec-spool-dir: without a spool a batch the collector does not take would be dropped", errUsage, p, p)
		}
	} else if o.hecTokenFile != "" || o.hecSpoolDir != "" {
		return fmt.Errorf("%w: --%shec-token-file and --%shec-spool-dir need --%shec-url", errUsage, p, p, p)
	}
	return nil
}

// checkBusOutputs checks the Kafka and NATS output flags (named with prefix
// p): each needs its server (given, or that of --bus), and none may publish
// onto the flows (flowbus ocsf would read its own events back as bad
// messages; the aggregator would, behind the agent).
func (o *ocsfOptions) checkBusOutputs(p, scheme, hosts string) error {
	flowsTopic := "the topic the command reads"
	if p != "" {
		flowsTopic = "the flows' topic"
	}
	if o.kafkaOutTopic == "" {
		if o.kafkaOutBrokers != "" {
			return fmt.Errorf("%w: --%skafka-output-brokers needs --%skafka-output-topic", errUsage, p, p)
		}
	} else {
		if o.kafkaOutBrokers == "" {
			if scheme != "kafka" {
				return fmt.Errorf("%w: --%skafka-output-topic needs --%skafka-output-brokers when --bus is not kafka://", errUsage, p, p)
			}
			o.kafkaOutBrokers = hosts
		}
		if strings.Contains(o.kafkaOutBrokers, "://") {
			return fmt.Errorf("%w: --%skafka-output-brokers %q: want host:port[,host:port...], no scheme", errUsage, p, o.kafkaOutBrokers)
		}
		if scheme == "kafka" && o.kafkaOutTopic == o.topic && o.kafkaOutBrokers == hosts {
			return fmt.Errorf("%w: --%skafka-output-topic %s is %s (--kafka-topic): give the events a topic of their own, e.g. flowbus.ocsf.v1", errUsage, p, o.kafkaOutTopic, flowsTopic)
		}
	}
	if o.natsOutSubject == "" {
		if o.natsOutURL != "" {
			return fmt.Errorf("%w: --%snats-output-url needs --%snats-output-subject", errUsage, p, p)
		}
		return nil
	}
	if o.natsOutURL == "" {
		if scheme != "nats" {
			return fmt.Errorf("%w: --%snats-output-subject needs --%snats-output-url when --bus is not nats://", errUsage, p, p)
		}
		o.natsOutURL = o.bus // the agent's embedded server: set when it has started
	}
	if o.natsOutURL != "" && !strings.HasPrefix(o.natsOutURL, "nats://") && !strings.HasPrefix(o.natsOutURL, "tls://") {
		return fmt.Errorf("%w: --%snats-output-url %q: want nats://host:port", errUsage, p, nats.RedactURL(o.natsOutURL))
	}
	flows := nats.DefaultSubjectPrefix
	if o.natsOutSubject == flows || strings.HasPrefix(o.natsOutSubject, flows+".") || strings.HasPrefix(flows, o.natsOutSubject+".") {
		return fmt.Errorf("%w: --%snats-output-subject %s overlaps the flows' subjects %s.<partition>: give the events subjects of their own, e.g. flowbus.ocsf.v1", errUsage, p, o.natsOutSubject, flows)
	}
	if o.natsOutStream == nats.DefaultStream {
		return fmt.Errorf("%w: --%snats-output-stream %s is the flows' stream: give the events a stream of their own, e.g. FLOWBUS_OCSF", errUsage, p, o.natsOutStream)
	}
	return nil
}

// readHECToken reads the token from path. The token is never logged, nor
// put in an error.
func readHECToken(path string) (string, error) {
	return readHECTokenFlag("hec-token-file", path)
}

// readHECTokenFlag is readHECToken for the flag named flag.
func readHECTokenFlag(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--%s %s: the file is empty", flag, path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("--%s %s: more than one line; want the token alone", flag, path)
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
func (s *ocsfState) register(reg prometheus.Registerer, file *ocsf.FileSink, hec *ocsf.HECSink, outs []busOutput) *prometheus.GaugeVec {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("flowbus_ocsf_messages_total", "Bus messages decoded.", &s.messages),
		counter("flowbus_ocsf_records_total", "Flow records decoded from the bus messages.", &s.records),
		counter("flowbus_ocsf_bad_messages_total", "Bus messages that did not decode, skipped (logged with partition and offset).", &s.bad),
		counter("flowbus_ocsf_refused_records_total", "Flow records the OCSF encoder refused (no time, or no endpoint), skipped.", &s.refused),
	)
	registerOCSFOutputs(reg, &s.events, file, hec, outs)
	committed := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flowbus_ocsf_committed_offset",
		Help: "Next offset (Kafka) or stream sequence (NATS) to read, as committed, per partition."}, []string{"partition"})
	reg.MustRegister(committed)
	return committed
}

// registerOCSFOutputs adds the metrics of the OCSF events and outputs to
// reg: flowbus_ocsf_events_total{class} (from events, indexed as
// ocsfClasses), and those of each output given. 'flowbus ocsf' and the
// agent's OCSF writer share them.
func registerOCSFOutputs(reg prometheus.Registerer, events *[len(ocsfClasses)]atomic.Uint64, file *ocsf.FileSink, hec *ocsf.HECSink, outs []busOutput) {
	for i, c := range ocsfClasses {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_events_total",
			Help: "OCSF events written to the outputs, by class.", ConstLabels: prometheus.Labels{"class": c.label}},
			func() float64 { return float64(events[i].Load()) }))
	}
	if file != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_file_rotations_total",
			Help: "JSON-lines files rotated."}, func() float64 { return float64(file.Stats().Rotations) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_file_events_total",
			Help: "Events written to the JSON-lines files."}, func() float64 { return float64(file.Stats().Events) }))
	}
	if hec != nil {
		for _, r := range []struct {
			result string
			get    func(ocsf.HECStats) uint64
		}{
			{"sent", func(st ocsf.HECStats) uint64 { return st.Sent }},
			{"spooled", func(st ocsf.HECStats) uint64 { return st.Spooled }},
			{"replayed", func(st ocsf.HECStats) uint64 { return st.Replayed }},
			{"dropped", func(st ocsf.HECStats) uint64 { return st.Dropped }},
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_hec_events_total",
				Help:        "Events through the Splunk HEC sink: sent (accepted, replays included), spooled, replayed from the spool, dropped (rejected as malformed).",
				ConstLabels: prometheus.Labels{"result": r.result}}, func() float64 { return float64(r.get(hec.Stats())) }))
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowbus_ocsf_hec_spooled_batches",
			Help: "HEC batches waiting in the spool."}, func() float64 { return float64(hec.Spooled()) }))
	}
	for _, out := range outs {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowbus_ocsf_bus_events_total",
			Help:        "Events the Kafka or NATS output's broker acknowledged.",
			ConstLabels: prometheus.Labels{"output": out.kind}}, func() float64 { return float64(out.sink.Stats().Published) }))
	}
}

// logProgress logs one progress line.
func (s *ocsfState) logProgress(cio cmdIO, msg string, hec *ocsf.HECSink, outs []busOutput) {
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
	for _, out := range outs {
		args = append(args, out.kind+"_published", out.sink.Stats().Published)
	}
	cio.Log.Info(msg, args...)
}

// serveMetrics serves reg at addr/metrics, over TLS when m says so, until
// the returned stop.
func serveMetrics(addr string, m metricsTLS, reg *prometheus.Registry, cio cmdIO) (func(), error) {
	ln, url, err := m.listen(addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(cio.Log.Handler(), slog.LevelDebug)}
	go srv.Serve(ln)
	cio.Log.Info("metrics", "url", url)
	return func() { srv.Close() }, nil
}

// busOutput is a Kafka or NATS output of 'flowbus ocsf'.
type busOutput struct {
	kind  string // "kafka" or "nats": the metric's label and the progress line's key
	what  string // where the events go, for the log and errors
	sink  *ocsf.BusSink
	ready func(context.Context) error
	close func() error
}

// timedPublisher bounds each publish of an output by --output-timeout, so
// that a broker that is down stops the command with an error rather than
// hanging it.
type timedPublisher struct {
	pub     ocsf.RecordPublisher
	timeout time.Duration
	note    string // what the timeout means, after the flag's name
}

func (p timedPublisher) PublishRecords(ctx context.Context, recs []bus.Record) error {
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	err := p.pub.PublishRecords(tctx, recs)
	if err != nil && tctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("no acknowledgement within %s (%s): %w", p.timeout, p.note, err)
	}
	return err
}

// openBusOutputs connects the Kafka and NATS outputs the flags ask for,
// with the bus's TLS and authentication flags, and waits until each has
// its topic or stream (at most --output-timeout each).
func openBusOutputs(ctx context.Context, o *ocsfOptions, cio cmdIO) (outs []busOutput, err error) {
	defer func() {
		if err != nil {
			for _, out := range outs {
				out.close()
			}
			outs = nil
		}
	}()
	note := "--output-timeout; the batch stays uncommitted and a restart emits it again"
	if o.p != "" {
		note = "--" + o.p + "output-timeout; the output is tried again after a pause, its events dropped and counted meanwhile"
	}
	if o.kafkaOutTopic != "" {
		kc, err := o.conn.kafkaConn(strings.Split(o.kafkaOutBrokers, ","))
		if err != nil {
			return outs, err
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kc, Topic: o.kafkaOutTopic, CreateTopic: o.kafkaOutCreate,
			Partitions: int32(o.kafkaOutPartitions), Logger: cio.Log})
		if err != nil {
			return outs, fmt.Errorf("kafka output (--%skafka-output-topic): %w", o.p, err)
		}
		what := "kafka topic " + o.kafkaOutTopic + " on " + o.kafkaOutBrokers
		sink, _ := ocsf.NewBus(ocsf.BusConfig{Publisher: timedPublisher{p, o.outputTimeout, note}, Name: what})
		outs = append(outs, busOutput{kind: "kafka", what: what, sink: sink, ready: p.Ready, close: p.Close})
	}
	if o.natsOutSubject != "" {
		nc, err := o.conn.natsConn(o.natsOutURL)
		if err != nil {
			return outs, err
		}
		p, err := nats.NewPublisher(nats.PublisherConfig{Conn: nc, Partitions: o.natsOutPartitions, Logger: cio.Log,
			Stream: nats.StreamConfig{Name: o.natsOutStream, SubjectPrefix: o.natsOutSubject,
				Description: "flowbus OCSF " + ocsf.SchemaVersion + " events, JSON, one subject per partition"}})
		if err != nil {
			return outs, fmt.Errorf("nats output (--%snats-output-subject): %w", o.p, err)
		}
		what := "nats subjects " + o.natsOutSubject + ".<partition> (stream " + o.natsOutStream + ") on " + nats.RedactURL(o.natsOutURL)
		sink, _ := ocsf.NewBus(ocsf.BusConfig{Publisher: timedPublisher{p, o.outputTimeout, note}, Name: what})
		outs = append(outs, busOutput{kind: "nats", what: what, sink: sink, ready: p.Ready, close: p.Close})
	}
	for _, out := range outs {
		rctx, cancel := context.WithTimeout(ctx, o.outputTimeout)
		err := out.ready(rctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return outs, fmt.Errorf("ocsf output %s: not ready within %s (--%soutput-timeout): %w", out.what, o.outputTimeout, o.p, err)
			}
			return outs, fmt.Errorf("ocsf output %s: %w", out.what, err)
		}
	}
	return outs, nil
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

	outs, err := openBusOutputs(ctx, o, cio)
	if err != nil {
		if ctx.Err() != nil { // stopped while waiting for an output
			return nil
		}
		return err
	}
	defer func() {
		for _, out := range outs {
			err = errors.Join(err, out.close())
		}
	}()

	st := &ocsfState{committed: map[int32]int64{}}
	committedGauge := st.register(reg, file, hec, outs)
	if o.metricsAddr != "" {
		stop, err := serveMetrics(o.metricsAddr, o.metricsTLS, reg, cio)
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
		dir := o.dataDir
		if dir == "" {
			dir = o.hecSpoolDir
		}
		c, err = kafka.NewConsumer(kafka.ConsumerConfig{Conn: kc, Topic: o.topic,
			Group: o.group, MaxPollRecords: h.maxPoll, Logger: cio.Log,
			InstanceID: kafkaInstanceID("ocsf", o.instanceID, dir, o.topic, o.group)})
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
	for _, out := range outs {
		outputs = append(outputs, out.what)
	}
	cio.Log.Info("ocsf starting", "bus", nats.RedactURL(o.bus), "group", o.group, "outputs", strings.Join(outputs, ", "), "schema", ocsf.SchemaVersion)

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
				st.logProgress(cio, "ocsf progress", hec, outs)
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
		st.logProgress(cio, "ocsf stopped", hec, outs)
	}()

	dec := flowcodec.NewDecoder()
	var flows []schemas.Flow
	var event, id []byte
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
				class := ocsf.Class(f)
				if len(outs) > 0 {
					// The record's place on the bus: the same when a restart
					// emits it again, so NATS stores it once.
					id = append(append(id[:0], d.Topic...), '/')
					id = append(strconv.AppendInt(id, int64(d.Partition), 10), '/')
					id = append(strconv.AppendInt(id, d.Offset, 10), '/')
					id = strconv.AppendInt(id, int64(i), 10)
					key, sid := f.PartitionKey(), string(id)
					for _, out := range outs {
						if err := out.sink.Write(bctx, event, key, class, sid); err != nil {
							return err
						}
					}
				}
				counts[ocsfClassIndex(class)]++
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
		for _, out := range outs {
			if err := out.sink.Flush(bctx); err != nil {
				return err
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
