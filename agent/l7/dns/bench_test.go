package dns

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/l7"
)

// benchMessages are 1,000 queries and their answers, in batches of 8
// queries then their 8 answers: a quarter A with two addresses, a quarter
// AAAA, a quarter a two-CNAME chain to an A, a quarter NXDOMAIN.
func benchMessages(b *testing.B) (msgs [][]byte, dirs []l7.Direction) {
	const n = 1000
	for base := 0; base < n; base += 8 {
		var rs [][]byte
		for i := base; i < base+8; i++ {
			name := fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local.", i%97, i%7)
			id := uint16(i)
			switch i % 4 {
			case 0:
				msgs = append(msgs, query(b, id, name, dnsmessage.TypeA))
				rs = append(rs, build(b, id, true, 0, name, dnsmessage.TypeA, []rr{{name: name, ttl: 30, a: "10.96.1.1"}, {name: name, ttl: 30, a: "10.96.1.2"}}, true))
			case 1:
				msgs = append(msgs, query(b, id, name, dnsmessage.TypeAAAA))
				rs = append(rs, build(b, id, true, 0, name, dnsmessage.TypeAAAA, []rr{{name: name, ttl: 30, a: "fd00::1"}}, true))
			case 2:
				msgs = append(msgs, query(b, id, name, dnsmessage.TypeA))
				rs = append(rs, build(b, id, true, 0, name, dnsmessage.TypeA, []rr{
					{name: name, ttl: 300, cname: "edge.example.net."}, {name: "edge.example.net.", ttl: 60, cname: "lb.example.net."},
					{name: "lb.example.net.", ttl: 20, a: "192.0.2.7"}}, true))
			default:
				msgs = append(msgs, query(b, id, name, dnsmessage.TypeA))
				rs = append(rs, build(b, id, true, dnsmessage.RCodeNameError, name, dnsmessage.TypeA, nil, true))
			}
			dirs = append(dirs, l7.FromClient)
		}
		for range rs {
			dirs = append(dirs, l7.FromServer)
		}
		msgs = append(msgs, rs...)
	}
	return msgs, dirs
}

// cpuTime is the CPU time the process used so far: on a shared machine it
// measures the work, where wall time also counts waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report puts the rate (queries and answers a second, wall and CPU) and the
// cost per message; cpu0 is cpuTime before the loop.
func report(b *testing.B, msgs int, cpu0 time.Duration) {
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N*msgs)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*msgs)/cpu.Seconds(), "msgs/cpu-s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*msgs), "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*msgs), "cpu-ns/msg")
}

// BenchmarkParserUDP: the parser over datagrams (whole heads), exchanges
// emitted and dropped.
func BenchmarkParserUDP(b *testing.B) {
	msgs, dirs := benchMessages(b)
	var st l7.Stats
	p := New(17, &st, Options{})
	var off [2]uint64
	var n int
	emit := func(*l7.Exchange) { n++ }
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for i, m := range msgs {
			c := l7.Chunk{Dir: dirs[i], TimeNs: int64(i + 1), Offset: off[dirs[i]], Len: uint32(len(m)), Head: m}
			p.Feed(&c, emit)
			off[dirs[i]] += uint64(len(m))
		}
	}
	report(b, len(msgs), cpu0)
	if st != (l7.Stats{}) || n != b.N*len(msgs)/2 {
		b.Fatalf("stats %v, %d exchanges", st, n)
	}
}

// BenchmarkParserTCP: the parser over TCP streams cut in 1,460-byte
// segments (messages across segments are copied).
func BenchmarkParserTCP(b *testing.B) {
	msgs, dirs := benchMessages(b)
	var streams [2][]byte
	var order []l7.Direction // a segment per batch of 8 messages of a direction
	for i := 0; i < len(msgs); i += 8 {
		streams[dirs[i]] = append(streams[dirs[i]], tcpStream(msgs[i:i+8]...)...)
		order = append(order, dirs[i])
	}
	var st l7.Stats
	p := New(6, &st, Options{})
	var base [2]uint64
	var n int
	emit := func(*l7.Exchange) { n++ }
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		var pos [2]int
		for _, d := range order {
			// this batch's bytes, in segments of at most 1,460
			end := pos[d]
			for k := 0; k < 8; k++ {
				end += 2 + (int(streams[d][end])<<8 | int(streams[d][end+1]))
			}
			for pos[d] < end {
				to := min(pos[d]+1460, end)
				c := l7.Chunk{Dir: d, TimeNs: 1, Offset: base[d] + uint64(pos[d]), Len: uint32(to - pos[d]), Head: streams[d][pos[d]:to]}
				p.Feed(&c, emit)
				pos[d] = to
			}
		}
		base[0] += uint64(len(streams[0]))
		base[1] += uint64(len(streams[1]))
	}
	report(b, len(msgs), cpu0)
	if st != (l7.Stats{}) || n != b.N*len(msgs)/2 {
		b.Fatalf("stats %v, %d exchanges", st, n)
	}
}

// BenchmarkFloorDNSMessage is the floor: dnsmessage.Parser over the same
// messages reading what the parser reads (header, question, answers: A,
// AAAA and CNAME bodies), without pairing or strings.
func BenchmarkFloorDNSMessage(b *testing.B) {
	msgs, _ := benchMessages(b)
	var sink int
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for _, m := range msgs {
			var dp dnsmessage.Parser
			if _, err := dp.Start(m); err != nil {
				b.Fatal(err)
			}
			q, err := dp.Question()
			if err != nil {
				b.Fatal(err)
			}
			sink += int(q.Name.Length)
			if err := dp.SkipAllQuestions(); err != nil {
				b.Fatal(err)
			}
			for {
				h, err := dp.AnswerHeader()
				if err != nil {
					break
				}
				switch h.Type {
				case dnsmessage.TypeA:
					r, _ := dp.AResource()
					sink += int(r.A[3])
				case dnsmessage.TypeAAAA:
					r, _ := dp.AAAAResource()
					sink += int(r.AAAA[15])
				case dnsmessage.TypeCNAME:
					r, _ := dp.CNAMEResource()
					sink += int(r.CNAME.Length)
				default:
					_ = dp.SkipAnswer()
				}
			}
		}
	}
	report(b, len(msgs), cpu0)
	if sink == 0 {
		b.Fatal("sink")
	}
}
