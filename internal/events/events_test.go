package events

import (
	"context"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

func TestRingKeepsNewestWithGrowingSeq(t *testing.T) {
	var seen []string
	l := New(3, func(e v1.Event) { seen = append(seen, e.Type) })
	for i := 0; i < 5; i++ {
		l.Add(v1.Event{Type: v1.EventDrift, Message: "x"})
	}
	got := l.Since(0)
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 {
		t.Fatalf("Since(0) = %+v, want seqs 3..5", got)
	}
	if got := l.Since(4); len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("Since(4) = %+v, want seq 5", got)
	}
	if len(seen) != 5 {
		t.Fatalf("observer saw %d events, want 5", len(seen))
	}
	if l.LastSeq() != 5 {
		t.Fatalf("LastSeq = %d", l.LastSeq())
	}
}

func TestWaitWakesOnAdd(t *testing.T) {
	l := New(10, nil)
	l.Add(v1.Event{Type: v1.EventApply})
	done := make(chan []v1.Event)
	go func() {
		evs, _ := l.Wait(context.Background(), 1)
		done <- evs
	}()
	select {
	case <-done:
		t.Fatal("Wait returned before a new event")
	case <-time.After(50 * time.Millisecond):
	}
	l.Add(v1.Event{Type: v1.EventRestored})
	select {
	case evs := <-done:
		if len(evs) != 1 || evs[0].Type != v1.EventRestored {
			t.Fatalf("Wait = %+v", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Wait(ctx, 2); err == nil {
		t.Fatal("Wait on a cancelled context returned no error")
	}
}
