package kafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestARebalanceHandsPartitionsOverWithoutDuplicates: member A has read 30
// records without committing when member B joins; A commits from OnRevoked,
// so B starts where A stopped, and A and B together read all 60 records
// exactly once. A's callbacks must run inside its Poll, never while it
// processes records.
func TestARebalanceHandsPartitionsOverWithoutDuplicates(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs := bustest.Messages("node-r", 1, 60)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:30]); err != nil {
		t.Fatal(err)
	}

	var (
		a                  *Consumer
		aAll               []bus.Delivery
		aNext              = map[int32]int64{}
		aInPoll, badRevoke bool
		aRevoked           []int32
	)
	base := ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-rebalance", MaxPollRecords: 4}
	aCfg := base
	aCfg.OnRevoked = func(ps []int32) {
		if !aInPoll {
			badRevoke = true
		}
		aRevoked = append(aRevoked, ps...)
		commit := map[int32]int64{}
		for _, p := range ps {
			if o, ok := aNext[p]; ok {
				commit[p] = o
				delete(aNext, p)
			}
		}
		if err := a.Commit(ctx, commit); err != nil {
			t.Errorf("commit from OnRevoked: %v", err)
		}
	}
	a = newConsumer(t, aCfg)
	pollA := func() {
		aInPoll = true
		pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		ds, err := a.Poll(pctx)
		pcancel()
		aInPoll = false
		if err != nil && pctx.Err() == nil {
			t.Fatalf("poll A: %v", err)
		}
		for _, d := range ds {
			aAll = append(aAll, d)
			aNext[d.Partition] = d.Offset + 1
		}
	}
	for len(aAll) < 30 && ctx.Err() == nil {
		pollA()
	}

	var (
		mu        sync.Mutex
		bAll      []bus.Delivery
		bAssigned []int32
		stop      = make(chan struct{})
		bDone     = make(chan struct{})
	)
	bCfg := base
	bCfg.OnAssigned = func(ps []int32) { mu.Lock(); bAssigned = append(bAssigned, ps...); mu.Unlock() }
	b := newConsumer(t, bCfg)
	go func() {
		defer close(bDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			ds, _ := b.Poll(pctx)
			pcancel()
			mu.Lock()
			bAll = append(bAll, ds...)
			mu.Unlock()
		}
	}()
	bTotal := func() (int, int) { mu.Lock(); defer mu.Unlock(); return len(bAll), len(bAssigned) }
	for ctx.Err() == nil {
		pollA()
		if _, na := bTotal(); na > 0 && len(aRevoked) > 0 {
			break
		}
	}
	if len(aRevoked) == 0 {
		t.Fatal("A never had a partition revoked: no rebalance happened")
	}
	if err := p.Publish(ctx, msgs[30:]); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		pollA()
		if nb, _ := bTotal(); len(aAll)+nb >= len(msgs) {
			break
		}
	}
	for range 3 { // nothing more may come
		pollA()
	}
	aInPoll = true // Close may revoke too
	a.Close()
	aInPoll = false
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-bDone
	b.Close()

	if badRevoke {
		t.Error("OnRevoked ran while A was processing records, outside Poll and Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bAll) == 0 {
		t.Error("B read nothing after joining")
	}
	checkDeliveries(t, append(aAll, bAll...), msgs, testPartitions)
}
