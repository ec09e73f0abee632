package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/ocsf"
)

// The agent's OCSF writer: 'flowbus agent --ocsf-*' writes every record it
// reads as an OCSF event to the outputs of 'flowbus ocsf' (files, Splunk
// HEC, a Kafka topic, NATS subjects), for users without a consumer tier on
// the bus (one node, a small cluster shipping straight to a SIEM).
//
// Decisions:
//   - Which records: the raw records of the source, after its enrichment
//     (pods, workloads, labels, policies, names) and before the agent's
//     aggregation. The writer is a tap (agent.Tap), beside the Hubble ring
//     and metrics. A SIEM wants one event per connection, with its 5-tuple,
//     its own TCP flags (so open, close, reset and refuse are told apart)
//     and its flow's UUID: aggregation folds the connections of one key
//     (source ports and IPs but the first's dropped, flags OR-ed, the UUID
//     emptied), which suits the Parquet's queries, not a SIEM's. So the
//     events are the bus's records with --no-aggregate; with aggregation,
//     the sum of the bus records' counts per class equals the events per
//     class.
//   - Never slow the flow path: Observe copies each batch into a bounded
//     queue (--ocsf-queue-records) and returns; a batch that does not fit
//     is dropped and counted (flowbus_ocsf_dropped_total{reason=
//     "queue_full"}), never waited for. One writer goroutine encodes and
//     writes to every output, so a slow output (a HEC that does not answer)
//     delays the others: the queue fills and drops, counted, while the bus
//     export goes on at full rate.
//   - An output failing does not stop the agent: a file write error or a
//     HEC spool error is logged and counted per output
//     (flowbus_ocsf_output_errors_total{output}); a Kafka or NATS output
//     that does not acknowledge within --ocsf-output-timeout keeps its
//     unacknowledged events and is paused (1 s doubling to 30 s): its new
//     events are counted as errors until a retried flush succeeds. The HEC
//     output keeps its spool while the collector is down, as in 'flowbus
//     ocsf'. At start, as in 'flowbus ocsf', a Kafka or NATS output that is
//     not ready within --ocsf-output-timeout is an error: a wrong broker or
//     stream shows at once, not as a counter.
//   - Every second (and at stop) the writer flushes: the files' buffer is
//     written (fsync at rotation and at stop), the HEC batch sent (or
//     spooled), the Kafka and NATS events published. There are no offsets
//     to commit: a crash loses what was queued or buffered, as it loses
//     the Hubble ring.
//   - Stop: after the pipeline has stopped (the exporter drained), the
//     writer writes what is queued for at most --ocsf-drain-timeout; what is
//     left is counted (reason="shutdown") and logged; the outputs are then
//     closed (files fsynced; the HEC batch that was not taken goes to the
//     spool).
//   - A Kafka or NATS event's key is its record's partition key, as in
//     'flowbus ocsf'; its ID (NATS's Nats-Msg-Id) is node/run/sequence.

// Defaults of the agent's OCSF writer.
const (
	defaultAgentOCSFQueue        = 16384 // records (about 1 KiB each)
	maxAgentOCSFQueue            = 1 << 22
	agentOCSFFlushInterval       = time.Second
	agentOCSFPauseMin            = time.Second
	agentOCSFPauseMax            = 30 * time.Second
	agentOCSFQueueBatches        = 1024 // batches queued at most, whatever their size
	agentOCSFErrorLogInterval    = time.Minute
	agentOCSFDefaultDrainTimeout = 10 * time.Second
)

// agentOCSFFlags are the OCSF flags of 'flowbus agent': the output flags of
// 'flowbus ocsf' named --ocsf-<name>, and the writer's queue.
type agentOCSFFlags struct {
	o            ocsfOptions
	queue        int
	drainTimeout time.Duration
	changed      func() []string // the --ocsf-* flags given
}

// addAgentOCSFFlags adds the group OCSF to the agent's flags.
func addAgentOCSFFlags(fs *flagSet) *agentOCSFFlags {
	a := &agentOCSFFlags{}
	a.o.p = "ocsf-"
	fs.group("OCSF")
	addOCSFOutputFlags(fs, &a.o, a.o.p, false)
	fs.DurationVar(&a.o.outputTimeout, "ocsf-output-timeout", 30*time.Second, "how long a Kafka or NATS output may take to be reached at start (the agent does not start without it), or to acknowledge a batch (past it the output is paused, its new events dropped and counted, until a retry succeeds)")
	fs.check("ocsf-output-timeout", positive(&a.o.outputTimeout))
	fs.IntVar(&a.queue, "ocsf-queue-records", defaultAgentOCSFQueue, "records (about 1 KiB each) held between the pipeline and the OCSF writer; when the writer is behind, the records that do not fit are dropped and counted (flowbus_ocsf_dropped_total), the export to the bus never slowed")
	fs.check("ocsf-queue-records", between(&a.queue, 1, maxAgentOCSFQueue))
	fs.DurationVar(&a.drainTimeout, "ocsf-drain-timeout", agentOCSFDefaultDrainTimeout, "on stop, how long the OCSF writer may take to write what is queued; what is left is counted (reason=\"shutdown\") and logged")
	fs.check("ocsf-drain-timeout", positive(&a.drainTimeout))
	a.changed = func() []string {
		var names []string
		fs.VisitAll(func(f *pflag.Flag) {
			if strings.HasPrefix(f.Name, a.o.p) && fs.Changed(f.Name) {
				names = append(names, "--"+f.Name)
			}
		})
		return names
	}
	return a
}

// enabled says whether an OCSF output is given.
func (a *agentOCSFFlags) enabled() bool {
	o := &a.o
	return o.dataDir != "" || o.hecURL != "" || o.kafkaOutTopic != "" || o.natsOutSubject != ""
}

// check checks the OCSF flags against the agent's bus (--bus, --kafka-topic):
// none given is fine (no OCSF); otherwise as 'flowbus ocsf' checks its
// outputs.
func (a *agentOCSFFlags) check(bus, topic string) error {
	if !a.enabled() {
		if set := a.changed(); len(set) > 0 {
			return fmt.Errorf("%w: %s: no OCSF output: give --ocsf-data-dir (JSON-lines files), --ocsf-hec-url (Splunk HEC), --ocsf-kafka-output-topic (Kafka) or --ocsf-nats-output-subject (NATS), or several", errUsage, strings.Join(set, ", "))
		}
		return nil
	}
	o := &a.o
	o.topic = topic
	scheme, hosts, _ := strings.Cut(bus, "://")
	o.bus = bus
	if bus == "embedded" {
		scheme, hosts, o.bus = "nats", "", "" // the URL is known once the server runs
	}
	return o.checkOutputs(o.p, scheme, hosts)
}

// agentOCSF is the agent's OCSF writer: an agent.Tap that queues the raw
// records, and the goroutine that writes them to the outputs.
type agentOCSF struct {
	log          *slog.Logger
	enc          *ocsf.Encoder
	file         *ocsf.FileSink
	hec          *ocsf.HECSink
	outs         []busOutput
	hecURL       string
	drainTimeout time.Duration

	queue, free chan []schemas.Flow
	max         int64
	queued      atomic.Int64
	stopping    atomic.Bool

	records, refused    atomic.Uint64
	events              [len(ocsfClasses)]atomic.Uint64
	queueFull, shutdown atomic.Uint64
	outErrs             map[string]*atomic.Uint64 // by output: file, hec, kafka, nats

	// Written by the writer goroutine only.
	idPrefix  string
	seq       uint64
	event, id []byte
	paused    []time.Time     // per bus output: paused until
	pause     []time.Duration // per bus output: the last pause
	lastLog   map[string]time.Time
	logged    map[string]uint64 // errors counted when last logged

	ctx    context.Context // cancelled when the drain time is up
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error
}

// openAgentOCSF opens the outputs, registers the metrics in reg and starts
// the writer. natsURL is the URL of the agent's NATS bus (embedded or not),
// the NATS output's default.
func (a *agentOCSFFlags) open(cio cmdIO, reg prometheus.Registerer, node, natsURL string) (_ *agentOCSF, err error) {
	o := &a.o
	if o.natsOutSubject != "" && o.natsOutURL == "" {
		o.natsOutURL = natsURL
	}
	enc := &ocsf.Encoder{ProductVersion: version}
	w := &agentOCSF{log: cio.Log, enc: enc, hecURL: o.hecURL, drainTimeout: a.drainTimeout,
		queue: make(chan []schemas.Flow, agentOCSFQueueBatches), free: make(chan []schemas.Flow, agentOCSFQueueBatches),
		max: int64(a.queue), outErrs: map[string]*atomic.Uint64{}, lastLog: map[string]time.Time{}, logged: map[string]uint64{},
		idPrefix: node + "/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/",
		stop:     make(chan struct{}), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			w.closeOutputs(context.Background())
			w.cancel()
		}
	}()
	if o.dataDir != "" {
		w.file, err = ocsf.OpenFile(ocsf.FileConfig{Dir: o.dataDir, MaxBytes: o.rotateBytes, MaxAge: o.rotateAge, MaxFiles: o.maxFiles, Encoder: enc})
		if err != nil {
			return nil, err
		}
		w.outErrs["file"] = new(atomic.Uint64)
	}
	if o.hecURL != "" {
		token, err := readHECTokenFlag(o.p+"hec-token-file", o.hecTokenFile)
		if err != nil {
			return nil, err
		}
		w.hec, err = ocsf.NewHEC(ocsf.HECConfig{URL: o.hecURL, Token: token, SourceType: o.hecSourceType,
			SpoolDir: o.hecSpoolDir, Encoder: enc, Logger: cio.Log})
		if err != nil {
			return nil, err
		}
		w.outErrs["hec"] = new(atomic.Uint64)
	}
	if w.outs, err = openBusOutputs(context.Background(), o, cio); err != nil {
		return nil, err
	}
	for _, out := range w.outs {
		w.outErrs[out.kind] = new(atomic.Uint64)
	}
	w.paused, w.pause = make([]time.Time, len(w.outs)), make([]time.Duration, len(w.outs))
	w.register(reg)

	outputs := []string{}
	if w.file != nil {
		outputs = append(outputs, "files "+w.file.ActivePath())
	}
	if w.hec != nil {
		outputs = append(outputs, "hec "+o.hecURL)
	}
	for _, out := range w.outs {
		outputs = append(outputs, out.what)
	}
	cio.Log.Info("ocsf: the agent writes its records as OCSF events", "outputs", strings.Join(outputs, ", "),
		"schema", ocsf.SchemaVersion, "queue_records", a.queue)
	go w.loop()
	return w, nil
}

// register adds the writer's metrics to reg: those 'flowbus ocsf' has for
// its events and outputs, and the queue's.
func (w *agentOCSF) register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("flowbus_ocsf_records_total", "Flow records the agent handed to its OCSF writer (the source's records, before aggregation).", nil, &w.records),
		counter("flowbus_ocsf_refused_records_total", "Flow records the OCSF encoder refused (no time, or no endpoint), skipped.", nil, &w.refused),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowbus_ocsf_queue_records",
			Help: "Records queued for the agent's OCSF writer (at most --ocsf-queue-records)."}, func() float64 { return float64(w.queued.Load()) }),
	)
	const droppedHelp = "Records the agent's OCSF writer dropped: queue_full (it was behind and its queue, --ocsf-queue-records, full), shutdown (still queued when --ocsf-drain-timeout ended)."
	reg.MustRegister(counter("flowbus_ocsf_dropped_total", droppedHelp, prometheus.Labels{"reason": "queue_full"}, &w.queueFull),
		counter("flowbus_ocsf_dropped_total", droppedHelp, prometheus.Labels{"reason": "shutdown"}, &w.shutdown))
	for kind, v := range w.outErrs {
		reg.MustRegister(counter("flowbus_ocsf_output_errors_total", "Events an output of the agent's OCSF writer did not take: a write error (files, the HEC spool), "+
			"or the Kafka or NATS output paused after it did not acknowledge within --ocsf-output-timeout, or not acknowledged at stop; logged.",
			prometheus.Labels{"output": kind}, v))
	}
	registerOCSFOutputs(reg, &w.events, w.file, w.hec, w.outs)
}

// Observe queues a copy of flows, or the part that fits; it never blocks.
// It is called from the agent's aggregation goroutine only.
func (w *agentOCSF) Observe(flows []schemas.Flow) {
	n := int64(len(flows))
	if n == 0 {
		return
	}
	w.records.Add(uint64(n))
	if w.stopping.Load() {
		w.shutdown.Add(uint64(n))
		return
	}
	k := min(n, w.max-w.queued.Load())
	if k <= 0 {
		w.queueFull.Add(uint64(n))
		return
	}
	var b []schemas.Flow
	select {
	case b = <-w.free:
	default:
	}
	b = append(b[:0], flows[:k]...)
	w.queued.Add(k)
	select {
	case w.queue <- b:
		w.queueFull.Add(uint64(n - k))
	default: // as many batches queued as the channel holds
		w.queued.Add(-k)
		w.queueFull.Add(uint64(n))
	}
}

// Lost is part of agent.Tap: lost events are no records.
func (w *agentOCSF) Lost(flowpb.LostEventSource, uint64) {}

// loop is the writer goroutine.
func (w *agentOCSF) loop() {
	defer close(w.done)
	tick := time.NewTicker(agentOCSFFlushInterval)
	defer tick.Stop()
	for {
		select {
		case b := <-w.queue:
			w.write(b)
		case <-tick.C:
			w.flush()
		case <-w.stop:
			for {
				select {
				case b := <-w.queue:
					if w.ctx.Err() != nil {
						w.shutdown.Add(uint64(len(b)))
						w.queued.Add(-int64(len(b)))
						continue
					}
					w.write(b)
				default:
					if w.ctx.Err() == nil {
						w.flush()
					}
					return
				}
			}
		}
	}
}

// write encodes the records of b and writes each event to every output.
func (w *agentOCSF) write(b []schemas.Flow) {
	var counts [len(ocsfClasses)]uint64
	now := time.Now()
	for i := range b {
		f := &b[i]
		var err error
		w.event, err = w.enc.Append(w.event[:0], f)
		if err != nil {
			w.refused.Add(1)
			continue
		}
		if w.file != nil {
			if err := w.file.Write(w.event); err != nil {
				w.outputError("file", 1, err)
			}
		}
		if w.hec != nil {
			if err := w.hec.Write(w.ctx, w.event, f.TimeNs/int64(time.Millisecond)); err != nil && w.ctx.Err() == nil {
				w.outputError("hec", 1, err)
			}
		}
		class := ocsf.Class(f)
		if len(w.outs) > 0 {
			w.seq++
			w.id = strconv.AppendUint(append(w.id[:0], w.idPrefix...), w.seq, 10)
			key, id := f.PartitionKey(), string(w.id)
			for j, out := range w.outs {
				if now.Before(w.paused[j]) {
					w.outputError(out.kind, 1, nil)
					continue
				}
				if err := out.sink.Write(w.ctx, w.event, key, class, id); err != nil {
					w.pauseOutput(j, err) // logs err
					w.outputError(out.kind, 1, nil)
				}
			}
		}
		counts[ocsfClassIndex(class)]++
	}
	for i, n := range counts {
		w.events[i].Add(n)
	}
	w.queued.Add(-int64(len(b)))
	clear(b) // the pool keeps no record's strings alive
	select {
	case w.free <- b:
	default:
	}
}

// flush makes the outputs take what was written: the files' buffer, the
// HEC batch (and a replay of its spool), the Kafka and NATS events, but
// those of a paused output before its pause ends.
func (w *agentOCSF) flush() {
	if w.file != nil {
		if err := w.file.Flush(); err != nil {
			w.outputError("file", 0, err)
		}
	}
	if w.hec != nil {
		if err := w.hec.Flush(w.ctx); err != nil && w.ctx.Err() == nil {
			w.outputError("hec", 0, err)
		}
	}
	now := time.Now()
	for j, out := range w.outs {
		if now.Before(w.paused[j]) {
			continue
		}
		if err := out.sink.Flush(w.ctx); err != nil {
			w.pauseOutput(j, err) // logs err
			continue
		}
		if w.pause[j] > 0 {
			w.log.Info("ocsf: output back", "output", out.what)
			w.pause[j] = 0
		}
	}
}

// pauseOutput pauses bus output j after err: 1 s, doubling to 30 s.
func (w *agentOCSF) pauseOutput(j int, err error) {
	w.pause[j] = min(max(2*w.pause[j], agentOCSFPauseMin), agentOCSFPauseMax)
	w.paused[j] = time.Now().Add(w.pause[j])
	w.log.Warn("ocsf: output paused; its events are dropped and counted meanwhile", "output", w.outs[j].what,
		"pause", w.pause[j], "held", w.outs[j].sink.Held(), "err", err)
}

// outputError counts n events output kind did not take and logs err, at
// most once a minute per output with the count since the last line.
func (w *agentOCSF) outputError(kind string, n uint64, err error) {
	c := w.outErrs[kind]
	c.Add(n)
	if err == nil || time.Since(w.lastLog[kind]) < agentOCSFErrorLogInterval {
		return
	}
	w.lastLog[kind] = time.Now()
	total := c.Load()
	w.log.Warn("ocsf: output error", "output", kind, "events_not_taken", total-w.logged[kind], "err", err)
	w.logged[kind] = total
}

// close stops the writer once the pipeline has stopped (no Observe after
// it): it writes what is queued for at most the drain timeout, counts
// what is left, closes the outputs and logs the totals. Safe to call more
// than once.
func (w *agentOCSF) close() error {
	w.once.Do(func() {
		w.stopping.Store(true)
		start := time.Now()
		timer := time.AfterFunc(w.drainTimeout, w.cancel)
		close(w.stop)
		<-w.done
		timer.Stop()
		// The outputs get what remains of the drain time, or a moment
		// (the HEC's batch then goes to its spool).
		ctx, cancel := context.WithTimeout(context.Background(), max(w.drainTimeout-time.Since(start), 100*time.Millisecond))
		w.err = w.closeOutputs(ctx)
		cancel()
		w.cancel()
		args := make([]any, 0, 2*len(ocsfClasses)+12)
		for i, c := range ocsfClasses {
			args = append(args, c.label, w.events[i].Load())
		}
		args = append(args, "records", w.records.Load(), "refused_records", w.refused.Load(),
			"dropped_queue_full", w.queueFull.Load(), "left_at_stop", w.shutdown.Load())
		for _, kind := range []string{"file", "hec", "kafka", "nats"} {
			if c := w.outErrs[kind]; c != nil {
				args = append(args, kind+"_errors", c.Load())
			}
		}
		if w.hec != nil {
			args = append(args, "hec_sent", w.hec.Stats().Sent, "hec_spooled_batches", w.hec.Spooled())
		}
		if n := w.shutdown.Load(); n > 0 {
			w.log.Warn("ocsf: records left unwritten at stop (--ocsf-drain-timeout)", "records", n, "drain_timeout", w.drainTimeout)
		}
		w.log.Info("ocsf stopped", args...)
	})
	return w.err
}

// closeOutputs flushes and closes the outputs that are open: files
// fsynced, the HEC's batch sent or spooled, the Kafka and NATS events
// published (those not acknowledged are counted as errors).
func (w *agentOCSF) closeOutputs(ctx context.Context) error {
	var errs []error
	if w.file != nil {
		errs = append(errs, w.file.Close())
	}
	if w.hec != nil {
		if err := w.hec.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("ocsf hec %s: %w", w.hecURL, err))
		}
	}
	for _, out := range w.outs {
		if err := out.sink.Flush(ctx); err != nil {
			n := uint64(out.sink.Held())
			w.outErrs[out.kind].Add(n)
			w.log.Warn("ocsf: events not acknowledged at stop", "output", out.what, "events", n, "err", err)
		}
		errs = append(errs, out.close())
	}
	return errors.Join(errs...)
}
