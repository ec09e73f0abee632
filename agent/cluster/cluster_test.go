package cluster

import (
	"context"
	"testing"
	"time"
)

func TestStoreNumbersSnapshotsAndWakesWaiters(t *testing.T) {
	st := NewStore()
	if st.Latest() != nil {
		t.Fatal("a new store has a snapshot")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan *Snapshot, 1)
	go func() {
		s, err := st.Wait(ctx, 0)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	time.Sleep(10 * time.Millisecond)
	st.Publish(&Snapshot{Source: "test", Pods: []Pod{{Namespace: "a", Name: "p"}}})
	if s := <-got; s == nil || s.Revision != 1 || s.Pods[0].Name != "p" {
		t.Fatalf("waiter got %+v, want revision 1 with pod p", s)
	}
	st.Publish(&Snapshot{Source: "test"})
	if s, err := st.Wait(ctx, 1); err != nil || s.Revision != 2 {
		t.Fatalf("Wait after 1 = %+v, %v; want revision 2", s, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if s, err := st.Wait(short, 2); s != nil || err == nil {
		t.Fatalf("Wait with nothing new = %+v, %v; want the context's error", s, err)
	}
}
