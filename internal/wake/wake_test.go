package wake

import (
	"sync"
	"testing"
)

func TestBroadcastCoalescesAndNeverBlocks(t *testing.T) {
	var h Hub
	a, cancelA, n := h.Subscribe()
	if n != 1 {
		t.Fatalf("first Subscribe reported %d waiters", n)
	}
	b, cancelB, n := h.Subscribe()
	if n != 2 {
		t.Fatalf("second Subscribe reported %d waiters", n)
	}
	h.Broadcast()
	h.Broadcast() // must not block although nobody has read
	for _, c := range []<-chan struct{}{a, b} {
		select {
		case <-c:
		default:
			t.Fatal("a waiter got no signal")
		}
		select {
		case <-c:
			t.Fatal("two broadcasts left two signals; they must coalesce")
		default:
		}
	}
	if left := cancelA(); left != 1 {
		t.Fatalf("cancel left %d waiters, want 1", left)
	}
	if left := cancelA(); left != 1 {
		t.Fatalf("a second cancel left %d waiters, want 1", left)
	}
	h.Broadcast()
	select {
	case <-a:
		t.Fatal("a cancelled waiter got a signal")
	default:
	}
	<-b
	if left := cancelB(); left != 0 {
		t.Fatalf("last cancel left %d waiters", left)
	}
}

func TestConcurrentUse(t *testing.T) {
	var h Hub
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, cancel, _ := h.Subscribe()
				h.Broadcast()
				cancel()
			}
		})
	}
	wg.Wait()
	if _, cancel, n := h.Subscribe(); n != 1 {
		t.Fatalf("%d waiters after all left, want 1 (the new one)", n)
	} else {
		cancel()
	}
}
