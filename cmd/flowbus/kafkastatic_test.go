package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/kafka"
)

// TestKafkaAggregatorSIGKILLedResumesWithinTenSeconds runs two aggregators
// as processes of their own in one consumer group and SIGKILLs one of them
// four times, restarting it on its data directory each time: with static
// membership (--kafka-instance-id auto) it takes its partitions back within
// 10 s of its restart, the other keeps its own throughout, and every flow
// is in the Parquet exactly once. With dynamic membership each restart
// waited for the killed member's session to expire (45 s), and after four
// kills the survivor was left without partitions for minutes.
func TestKafkaAggregatorSIGKILLedResumesWithinTenSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: restarts two aggregator processes four times")
	}
	const topic, group, parts = kafka.DefaultTopic, "static-test", 6
	c, adm := kafkaWithTopic(t, topic, parts)
	ctx := context.Background()
	msgs, flows := staticTestMessages(t, 24000)
	p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	publish := func(ms []schemas.Message) {
		if err := p.Publish(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	sixth := len(msgs) / 6
	publish(msgs[:sixth])

	dir := t.TempDir()
	dirs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	ids := make([]string, 2)
	for i, d := range dirs {
		ids[i] = kafkaInstanceID("aggregator", "auto", d, topic, group)
	}
	if ids[0] == ids[1] {
		t.Fatalf("two data directories, one instance id %q", ids[0])
	}
	procs := make([]*exec.Cmd, 2)
	logPath := func(i int) string { return filepath.Join(dir, fmt.Sprintf("aggregator-%d.log", i)) }
	start := func(i int) {
		procs[i] = startAggregatorProcess(t, logPath(i), "--bus", "kafka://"+c.ListenAddrs()[0], "--group", group,
			"--data-dir", dirs[i], "--raw-flows", "--window", "1s", "--lateness", "1s")
	}
	defer func() {
		for _, cmd := range procs {
			if cmd != nil && cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		}
		if t.Failed() {
			for i := range procs {
				b, _ := os.ReadFile(logPath(i))
				t.Logf("aggregator %d's log:\n%s", i, b)
			}
		}
	}()
	// assigned returns the member id and partitions of each instance while
	// the group is stable (nil otherwise).
	type member struct {
		id    string
		parts []int32
	}
	assigned := func() map[string]member {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return nil
		}
		g, ok := dg[group]
		if !ok || g.Err != nil || g.State != "Stable" {
			return nil
		}
		out := map[string]member{}
		for _, m := range g.Members {
			if m.InstanceID == nil {
				continue
			}
			mb := member{id: m.MemberID}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range a.Topics {
					if tp.Topic == topic {
						mb.parts = append(mb.parts, tp.Partitions...)
					}
				}
			}
			out[*m.InstanceID] = mb
		}
		return out
	}
	// both waits until each aggregator has partitions, together all of
	// them, the second as a member other than old (the member id its killed
	// process had); it returns that member id, how long it took, and whether
	// the first was ever seen without partitions while the group was stable.
	both := func(limit time.Duration, old string) (string, time.Duration, bool) {
		t0 := time.Now()
		starved := false
		for time.Since(t0) < limit {
			a := assigned()
			if a != nil && len(a[ids[0]].parts) == 0 {
				starved = true
			}
			if a != nil && len(a[ids[0]].parts) > 0 && len(a[ids[1]].parts) > 0 && a[ids[1]].id != old &&
				len(a[ids[0]].parts)+len(a[ids[1]].parts) == parts {
				return a[ids[1]].id, time.Since(t0), starved
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "", time.Since(t0), true
	}
	start(0)
	start(1)
	memberB, took, _ := both(60*time.Second, "")
	if took >= 60*time.Second {
		t.Fatalf("the two aggregators did not share the %d partitions within 60 s: %v", parts, assigned())
	}
	for kill := 1; kill <= 4; kill++ {
		publish(msgs[kill*sixth : (kill+1)*sixth])
		time.Sleep(time.Duration(300+200*kill) * time.Millisecond) // mid-window, mid-batch
		if err := procs[1].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = procs[1].Wait()
		start(1)
		var starved bool
		memberB, took, starved = both(10*time.Second, memberB)
		t.Logf("SIGKILL %d: the restarted aggregator, a new member, had its partitions back %v after its restart; the other kept its own: %v", kill, took.Round(time.Millisecond), !starved)
		if took >= 10*time.Second {
			t.Errorf("SIGKILL %d: no partition for the restarted aggregator within 10 s: %v", kill, assigned())
		}
		if starved {
			t.Errorf("SIGKILL %d: the aggregator that was not killed lost its partitions", kill)
		}
	}
	publish(msgs[5*sixth:])
	// Both stop (SIGTERM: they write what they hold and commit); every
	// message is committed and every flow is in the Parquet once.
	time.Sleep(2 * time.Second)
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Errorf("aggregator %d: %v", i, err)
		}
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if got, _ := committed.Lookup(o.Topic, o.Partition); got.At != o.Offset {
			t.Errorf("partition %d: committed %d, end %d", o.Partition, got.At, o.Offset)
		}
	})
	db := ducktest.Open(t)
	var n int64
	if err := db.QueryRow(fmt.Sprintf(`SELECT count(*) FROM read_parquet(['%s/flows/**/*.parquet', '%s/flows/**/*.parquet'])`, dirs[0], dirs[1])).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(flows) {
		t.Errorf("raw flows in the Parquet: %d, want %d (each published flow once)", n, flows)
	}
}

// staticTestMessages is n synthetic flows as an agent would publish them:
// per partition key, in order, 100 records at most per message.
func staticTestMessages(t *testing.T, n int) ([]schemas.Message, int) {
	t.Helper()
	g, err := synthetic.NewGenerator(synthetic.Config{Seed: 5, Rate: 2000, Start: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	flows := make([]schemas.Flow, n)
	g.Fill(flows)
	byKey := map[string][]schemas.Flow{}
	var keys []string
	for _, f := range flows {
		k := f.PartitionKey()
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	slices.Sort(keys)
	enc := flowcodec.NewEncoder()
	var msgs []schemas.Message
	for _, k := range keys {
		for fs := byKey[k]; len(fs) > 0; {
			chunk := fs[:min(100, len(fs))]
			fs = fs[len(chunk):]
			v, err := enc.Encode(nil, chunk)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, schemas.Message{Key: k, Node: "node-s", Run: "static-test", Seq: uint64(len(msgs) + 1), Rows: len(chunk),
				FirstTS: chunk[0].TimeNs, LastTS: chunk[len(chunk)-1].TimeNs, Value: v})
		}
	}
	return msgs, n
}

// kafkaWithTopic starts kfake with topic (parts partitions, created with
// flowbus's max.message.bytes) and its dead-letter topic, stopped when the
// test ends, and returns it with an admin client.
func kafkaWithTopic(t *testing.T, topic string, parts int32) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic+".dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	mmb := strconv.Itoa(kafka.DefaultMaxMessageBytes)
	if _, err := adm.CreateTopic(context.Background(), parts, 1, map[string]*string{"max.message.bytes": &mmb}, topic); err != nil {
		t.Fatal(err)
	}
	return c, adm
}

// startAggregatorProcess starts 'flowbus aggregator args...' as a process
// of its own (this test binary, TestMain), its output appended to logPath,
// no metrics listener.
func startAggregatorProcess(t *testing.T, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], append(append([]string{"aggregator"}, args...), "--metrics-address", "")...)
	cmd.Env = append(os.Environ(), "FLOWBUS_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
