package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/l7test"
)

// segsOf turns a recorded connection's reads into segments.
func segsOf(reads []l7test.Read) []seg {
	out := make([]seg, 0, len(reads))
	for _, r := range reads {
		out = append(out, seg{dir: r.Dir, time: r.Seq, data: r.Data})
	}
	return out
}

// truth decodes a whole client stream with kmsg: the exchanges the parser
// should find, as "key/version/correlation/topic" strings.
func truth(t *testing.T, stream []byte) []string {
	var out []string
	for len(stream) >= 4 {
		n := int(binary.BigEndian.Uint32(stream))
		if len(stream) < 4+n {
			break // the client was closed mid-frame
		}
		f := stream[4 : 4+n]
		stream = stream[4+n:]
		key, ver, corr := int16(binary.BigEndian.Uint16(f)), int16(binary.BigEndian.Uint16(f[2:])), int32(binary.BigEndian.Uint32(f[4:]))
		req := kmsg.RequestForKey(key)
		req.SetVersion(ver)
		body := f[10+int(binary.BigEndian.Uint16(f[8:])):]
		if req.IsFlexible() {
			body = body[1:] // franz-go writes no header tags
		}
		if err := req.ReadFrom(body); err != nil {
			t.Fatalf("kmsg cannot read %d v%d: %v", key, ver, err)
		}
		topics, _ := new(parser).topicsOf(req)
		if len(topics) == 0 {
			topics = []string{""}
		}
		for _, tp := range topics {
			out = append(out, fmt.Sprintf("%s/%d/%d/%s", APIKeyName(key), ver, corr, tp))
		}
	}
	return out
}

// A franz-go client producing to and fetching from kfake through a
// recording proxy: every request it made is an exchange with its key,
// version, correlation ID and topic, however the streams are cut.
func TestAgainstFranzGoAndKfake(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders", "payments"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	px := l7test.NewRecorder(t, cluster.ListenAddrs()[0])

	var d net.Dialer
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ClientID("flowbus-kfake"),
		kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, px.Addr()) // every broker through the proxy
		}),
		kgo.ConsumeTopics("orders", "payments"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 50 {
		topic := []string{"orders", "payments"}[i%2]
		r := &kgo.Record{Topic: topic, Value: make([]byte, 100+i*37)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < 50; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	cl.Close()
	cluster.Close()
	conns := px.Wait()

	seenKeys := map[string]bool{}
	for ci, reads := range conns {
		segs := segsOf(reads)
		var cli []byte
		for _, s := range segs {
			if s.dir == l7.FromClient {
				cli = append(cli, s.data...)
			}
		}
		want := truth(t, cli)
		t.Logf("connection %d: %d client bytes, %d segments, %d exchanges", ci, len(cli), len(segs), len(want))
		rng := rand.New(rand.NewPCG(uint64(ci), 7))
		for trial := range 20 {
			mss := 1 + rng.IntN(3000)
			head := mss // whole heads: every header and topic is there
			cs := chunks(segs, mss, head)
			var got []string
			var st l7.Stats
			p := New(&st, Options{})
			emit := func(e *l7.Exchange) {
				k := e.L7
				got = append(got, fmt.Sprintf("%s/%d/%d/%s", k.KafkaAPIKey, k.KafkaAPIVersion, k.KafkaCorrelationID, k.KafkaTopic))
				if k.KafkaClientID != "flowbus-kfake" {
					t.Errorf("client ID %q", k.KafkaClientID)
				}
				if e.ResponseNs != 0 && e.ResponseNs < e.RequestNs {
					t.Errorf("response before request: %+v", e)
				}
				if e.ResponseNs != 0 && k.KafkaErrorCode != 0 {
					t.Errorf("error code %d: %+v", k.KafkaErrorCode, k)
				}
			}
			for i := range cs {
				p.Feed(&cs[i], emit)
			}
			p.Close(emit)
			sort.Strings(got)
			w := append([]string(nil), want...)
			sort.Strings(w)
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Fatalf("connection %d, trial %d (segments of %d): exchanges\n%v\nwant\n%v", ci, trial, mss, got, w)
			}
			if st[l7.ReasonGap]+st[l7.ReasonMalformed]+st[l7.ReasonUnpaired]+st[l7.ReasonLost] != 0 {
				t.Fatalf("connection %d: stats %v", ci, st)
			}
			// Small heads: never a panic, never an exchange that was not
			// made (its topic may be missing).
			made := map[string]bool{}
			for _, w := range want {
				made[w[:strings.LastIndexByte(w, '/')]] = true
				seenKeys[w[:strings.IndexByte(w, '/')]] = true
			}
			small := New(&st, Options{})
			check := func(e *l7.Exchange) {
				k := e.L7
				if id := fmt.Sprintf("%s/%d/%d", k.KafkaAPIKey, k.KafkaAPIVersion, k.KafkaCorrelationID); !made[id] {
					t.Errorf("connection %d: exchange %s was not made", ci, id)
				}
			}
			for _, c := range chunks(segs, mss, rng.IntN(200)) {
				small.Feed(&c, check)
			}
			small.Close(check)
		}
	}
	for _, k := range []string{"apiversions", "metadata", "produce", "fetch"} {
		if !seenKeys[k] {
			t.Errorf("no %s request seen: %v", k, seenKeys)
		}
	}
}
