// Package wake fans a wake-up signal out to many waiters: the one
// mechanism by which a store's LISTEN connection wakes every subscription
// partition of the process.
//
// Contract:
//
//   - The zero Hub is ready to use, and a Hub is safe for concurrent use.
//   - Subscribe returns a channel with room for one signal. Broadcast puts
//     a signal on every subscribed channel that has room and never blocks:
//     a waiter that has not taken the previous signal yet gets no second
//     one. Signals coalesce, so a signal means "look again", never "one
//     more event".
//   - Once the cancel function Subscribe returned has returned, the channel
//     gets no more signals. It is never closed.
//   - Subscribe and cancel report how many waiters the Hub has afterwards,
//     so that a caller can start a source of signals with the first waiter
//     and stop it after the last.
package wake

import "sync"

// Hub is a set of waiters that Broadcast signals.
type Hub struct {
	mu      sync.Mutex
	waiters map[chan struct{}]struct{}
}

// Subscribe adds a waiter. It returns the waiter's channel, a function that
// removes it (idempotent), and the number of waiters including it.
func (h *Hub) Subscribe() (ch <-chan struct{}, cancel func() (left int), n int) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters == nil {
		h.waiters = map[chan struct{}]struct{}{}
	}
	h.waiters[c] = struct{}{}
	var once sync.Once
	cancel = func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		once.Do(func() { delete(h.waiters, c) })
		return len(h.waiters)
	}
	return c, cancel, len(h.waiters)
}

// Broadcast signals every waiter that has no signal pending.
func (h *Hub) Broadcast() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.waiters {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
