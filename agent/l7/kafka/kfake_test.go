package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowbus/flowbus/agent/l7"
)

// recorded is one connection's two byte streams as a proxy saw them: each
// read of either side is a segment with the time it was read.
type recorded struct {
	mu   sync.Mutex
	segs []seg
}

func (r *recorded) add(dir l7.Direction, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.segs = append(r.segs, seg{dir, time.Now().UnixNano(), append([]byte(nil), b...)})
}

// proxy is a TCP proxy to one broker that records every connection.
type proxy struct {
	ln     net.Listener
	broker string
	mu     sync.Mutex
	conns  []*recorded
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, broker string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, broker: broker}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", broker)
			if err != nil {
				c.Close()
				continue
			}
			rec := new(recorded)
			p.mu.Lock()
			p.conns = append(p.conns, rec)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(rec, l7.FromClient, s, c)
			go p.pipe(rec, l7.FromServer, c, s)
		}
	}()
	return p
}

func (p *proxy) pipe(rec *recorded, dir l7.Direction, dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 1+rand.IntN(4096))
	for {
		n, err := src.Read(buf)
		if n > 0 {
			rec.add(dir, buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
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
	px := newProxy(t, cluster.ListenAddrs()[0])
	defer px.ln.Close()

	var d net.Dialer
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ClientID("flowbus-kfake"),
		kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, px.ln.Addr().String()) // every broker through the proxy
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
	px.ln.Close()
	cluster.Close()
	px.wg.Wait()

	seenKeys := map[string]bool{}
	for ci, rec := range px.conns {
		var cli []byte
		for _, s := range rec.segs {
			if s.dir == l7.FromClient {
				cli = append(cli, s.data...)
			}
		}
		want := truth(t, cli)
		t.Logf("connection %d: %d client bytes, %d segments, %d exchanges", ci, len(cli), len(rec.segs), len(want))
		rng := rand.New(rand.NewPCG(uint64(ci), 7))
		for trial := range 20 {
			mss := 1 + rng.IntN(3000)
			head := mss // whole heads: every header and topic is there
			cs := chunks(rec.segs, mss, head)
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
			for _, c := range chunks(rec.segs, mss, rng.IntN(200)) {
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
