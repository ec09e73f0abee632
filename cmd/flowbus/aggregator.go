package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowbus/flowbus/aggregator"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// aggregatorFlags are the parsed flags of 'flowbus aggregator'.
type aggregatorFlags struct {
	cfg                    aggregator.Config
	bus, group, topic, dlq string
	instanceID             string // Kafka static membership; "" none
	partitions             int
	assigned, metricsAddr  string
	metricsTLS             metricsTLS
	conn                   *busConnFlags
	cpuProfile             string // --cpuprofile: pprof CPU profile written until exit
}

// runAggregator consumes flows from Kafka or NATS and writes the Parquet
// rollups until ctx is done, then writes what it holds and commits.
func runAggregator(ctx context.Context, args []string, io cmdIO) error {
	af, err := parseAggregatorFlags(args, io)
	if err != nil {
		return err
	}
	cfg := af.cfg
	if af.cpuProfile != "" {
		stop, err := startCPUProfile(af.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	reg := newProcessRegistry()
	a, err := aggregator.New(cfg, io.Log, reg)
	if err != nil {
		return err
	}
	if af.metricsAddr != "" {
		ln, url, err := af.metricsTLS.listen(af.metricsAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(io.Log.Handler(), slog.LevelDebug)}
		go srv.Serve(ln)
		defer srv.Close()
		io.Log.Info("metrics", "url", url)
	}
	io.Log.Info("aggregator starting", "bus", nats.RedactURL(af.bus), "out", cfg.Out, "window", cfg.Window, "lateness", cfg.Lateness, "raw_flows", cfg.RawFlows)
	switch scheme, _, _ := strings.Cut(af.bus, "://"); scheme {
	case "kafka":
		cc, err := af.kafkaConsumerConfig()
		if err != nil {
			return err
		}
		return aggregator.RunKafka(ctx, a, cc)
	default:
		cc, err := af.natsConsumerConfig()
		if err != nil {
			return err
		}
		return aggregator.RunNATS(ctx, a, cc)
	}
}

// startCPUProfile writes a pprof CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// checkBus checks the scheme and hosts of --bus.
func checkBus(bus string) error {
	scheme, hosts, ok := strings.Cut(bus, "://")
	if !ok || hosts == "" {
		return fmt.Errorf("%w: --bus %q: want kafka://host:port or nats://host:port", errUsage, nats.RedactURL(bus))
	}
	if scheme != "kafka" && scheme != "nats" {
		return fmt.Errorf("%w: --bus %q: scheme must be kafka or nats", errUsage, nats.RedactURL(bus))
	}
	return nil
}

// kafkaConsumerConfig is the consumer of a kafka:// --bus.
func (af aggregatorFlags) kafkaConsumerConfig() (kafka.ConsumerConfig, error) {
	_, hosts, _ := strings.Cut(af.bus, "://")
	conn, err := af.conn.kafkaConn(strings.Split(hosts, ","))
	if err != nil {
		return kafka.ConsumerConfig{}, err
	}
	return kafka.ConsumerConfig{Conn: conn, Topic: af.topic, Group: af.group, DLQTopic: af.dlq, CreateDLQTopic: true,
		InstanceID: af.instanceID}, nil
}

// kafkaInstanceID is a consumer's Kafka group instance id (static
// membership) as --kafka-instance-id gives it: "none" for none, "auto" for
// flowbus-<role>-, the pod's name ($POD_NAME, else the host name, which is
// the pod's name in Kubernetes) and a digest of the absolute data directory,
// the topic and the group, so that the same consumer restarted on the same
// data gets the same id, two on one host with their own directories get
// their own, and one moved to another topic joins as a new member (a static
// member keeps its old assignment when it comes back).
func kafkaInstanceID(role, flag, dataDir, topic, group string) string {
	switch flag {
	case "none":
		return ""
	case "auto":
	default:
		return flag
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		name = h
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs + "\x00" + topic + "\x00" + group))
	return fmt.Sprintf("flowbus-%s-%s-%x", role, name, sum[:4])
}

// natsConsumerConfig is the consumer of a nats:// --bus.
func (af aggregatorFlags) natsConsumerConfig() (nats.ConsumerConfig, error) {
	conn, err := af.conn.natsConn(af.bus)
	if err != nil {
		return nats.ConsumerConfig{}, err
	}
	assigned, err := assignedPartitions(af.assigned, af.partitions)
	if err != nil { // checked with the flags
		return nats.ConsumerConfig{}, fmt.Errorf("%w: --nats-assigned: %v", errUsage, err)
	}
	return nats.ConsumerConfig{Conn: conn, Partitions: af.partitions, Durable: af.group, Assigned: assigned}, nil
}

// newProcessRegistry returns the metrics registry of a flowbus process
// (agent, aggregator) with the Go runtime's and the process's collectors.
func newProcessRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// aggregatorOptions are the values of the flags of 'flowbus aggregator'
// as parsed, before they are turned into aggregatorFlags.
type aggregatorOptions struct {
	bus, dataDir, group, topic, dlq, assigned, metricsAddr string
	instanceID                                             string
	window, lateness                                       time.Duration
	partitions, maxRoutes, routeLen, rowGroup              int
	templates                                              []string
	rawFlows                                               bool
	conn                                                   busConnFlags
	metricsTLS                                             metricsTLS
	cpuProfile                                             string
}

// newAggregatorFlags returns the flags of 'flowbus aggregator'.
func newAggregatorFlags(io cmdIO) (*flagSet, *aggregatorOptions) {
	fs := newFlagSet("aggregator", "aggregator [flags]", "Consume the flows of the bus (a Kafka consumer group, "+
		"or NATS JetStream durable consumers) and write exact per-pair and per-route rollups, and with --raw-flows "+
		"every record, as Parquet with Hive partitions date=/hour= under --data-dir. A window's files are committed "+
		"before its offsets, so a crash neither loses nor duplicates rows.", io)
	o := &aggregatorOptions{}
	fs.group("Bus")
	fs.StringVar(&o.bus, "bus", nats.DefaultURL, "bus to consume: kafka://host:port[,host:port...] (consumer group) or nats://host:port (JetStream durable pull consumers)")
	fs.StringVar(&o.group, "group", kafka.DefaultGroup, "Kafka consumer group, or NATS durable consumer name prefix")
	fs.StringVar(&o.topic, "kafka-topic", kafka.DefaultTopic, "Kafka topic to consume")
	fs.alias("topic", "kafka-topic")
	fs.StringVar(&o.dlq, "kafka-dlq-topic", "", "Kafka topic for bad messages (default <kafka-topic>.dlq); NATS uses subject "+nats.DefaultDLQSubject)
	fs.alias("dlq-topic", "kafka-dlq-topic")
	addNATSPartitionFlags(fs, &o.partitions, &o.assigned, "aggregator")

	fs.group("Kafka")
	fs.StringVar(&o.instanceID, "kafka-instance-id", "auto", "Kafka static group membership: this aggregator's group instance id. "+
		"A restarted aggregator (a crash, a SIGKILL, a rolling update) with the same id takes its partitions back at once, "+
		"without a rebalance or waiting for the old member's session to expire (45 s); a stopped one keeps them until "+
		"then. auto: flowbus-aggregator-<$POD_NAME or host name>-<digest of the absolute --data-dir, the topic and the group>; none: dynamic membership")
	fs.check("kafka-instance-id", bound{func() bool {
		return o.instanceID != "" && len(o.instanceID) <= 249 && !strings.ContainsAny(o.instanceID, " \t\n")
	}, "auto, none, or an id of 1 to 249 characters without white space"})
	o.conn.addKafkaConnFlags(fs, false)

	fs.group("NATS")
	o.conn.addNATSConnFlags(fs)

	fs.group("Output")
	fs.StringVar(&o.dataDir, "data-dir", "./flowbus-data", "output directory: Parquet under <data-dir>/pair_rollup, <data-dir>/route_rollup and, with --raw-flows, <data-dir>/flows (Hive partitions date=/hour=)")
	fs.alias("out", "data-dir")
	fs.DurationVar(&o.window, "window", aggregator.DefaultWindow, "event-time window of a rollup row (whole seconds, dividing 24h)")
	fs.check("window", bound{func() bool {
		return o.window >= time.Second && o.window%time.Second == 0 && (24*time.Hour)%o.window == 0
	},
		"whole seconds from 1s to 24h0m0s that divide 24h"})
	fs.DurationVar(&o.lateness, "lateness", aggregator.DefaultLateness, "allowed lateness: a window is written when the latest event time seen passes its end by this much; later records go to late files")
	fs.check("lateness", positive(&o.lateness))
	fs.StringArrayVar(&o.templates, "route-template", nil, "extra HTTP route rule REGEX=>REPLACEMENT applied after the built-in ones (query dropped, ids → {id}); repeatable")
	fs.IntVar(&o.maxRoutes, "max-routes-per-workload", aggregator.DefaultMaxRoutesPerWorkload, "distinct routes per destination workload per window; more are written as {other}")
	fs.check("max-routes-per-workload", atLeast(&o.maxRoutes, 1))
	fs.IntVar(&o.routeLen, "route-max-len", aggregator.DefaultRouteMaxLen, "maximum length of a route in bytes")
	fs.check("route-max-len", atLeast(&o.routeLen, aggregator.MinRouteMaxLen))
	fs.IntVar(&o.rowGroup, "row-group-rows", 0, "maximum rows per Parquet row group (0: 122880, DuckDB's row group)")
	fs.check("row-group-rows", atLeast(&o.rowGroup, 0))
	fs.BoolVar(&o.rawFlows, "raw-flows", false, "also write every flow record, one row each (flow.v1 columns), under <data-dir>/flows/date=/hour=/, committed exactly once with its window's rollups; decodes every column and costs disk")

	fs.group("Metrics")
	fs.StringVar(&o.metricsAddr, "metrics-address", "127.0.0.1:9966", "serve Prometheus metrics on this address at /metrics; empty disables")
	fs.alias("metrics-addr", "metrics-address")
	addMetricsTLSFlags(fs, &o.metricsTLS)
	fs.group("Profiling")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the whole run to this file, until the aggregator exits (go tool pprof reads it); empty: none")
	return fs, o
}

// parseAggregatorFlags parses the flags of 'flowbus aggregator' (command
// line, then FLOWBUS_* environment, then the --config YAML file: see
// parseFlags) into a validated aggregator.Config and the transport settings.
func parseAggregatorFlags(args []string, io cmdIO) (aggregatorFlags, error) {
	fs, o := newAggregatorFlags(io)
	if err := parseFlags(fs, args); err != nil {
		return aggregatorFlags{}, err
	}
	if fs.NArg() > 0 {
		return aggregatorFlags{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := checkBus(o.bus); err != nil {
		return aggregatorFlags{}, err
	}
	cfg := aggregator.Config{Out: o.dataDir, Window: o.window, Lateness: o.lateness,
		MaxRoutesPerWorkload: o.maxRoutes, RouteMaxLen: o.routeLen, RowGroupRows: o.rowGroup, RawFlows: o.rawFlows}
	for _, s := range o.templates {
		rt, err := aggregator.ParseRouteTemplate(s)
		if err != nil {
			return aggregatorFlags{}, fmt.Errorf("%w: --route-template: %v", errUsage, err)
		}
		cfg.RouteTemplates = append(cfg.RouteTemplates, rt)
	}
	if err := cfg.Validate(); err != nil {
		return aggregatorFlags{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return aggregatorFlags{cfg: cfg, bus: o.bus, group: o.group, topic: o.topic, dlq: o.dlq, instanceID: kafkaInstanceID("aggregator", o.instanceID, o.dataDir, o.topic, o.group),
		partitions: o.partitions, assigned: o.assigned, metricsAddr: o.metricsAddr, metricsTLS: o.metricsTLS, conn: &o.conn,
		cpuProfile: o.cpuProfile}, nil
}

// assignedPartitions parses --nats-assigned: comma-separated partitions,
// each in [0, partitions); empty is every partition (nil).
func assignedPartitions(list string, partitions int) ([]int32, error) {
	if list == "" {
		return nil, nil
	}
	var out []int32
	for _, s := range strings.Split(list, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p < 0 || p >= partitions {
			return nil, fmt.Errorf("%q is not a partition in [0, %d)", s, partitions)
		}
		out = append(out, int32(p))
	}
	return out, nil
}
