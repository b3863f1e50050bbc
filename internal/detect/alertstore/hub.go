package alertstore

import (
	"sync"
	"sync/atomic"

	"twinchain/internal/detect/alert"
)

// Hub fans notifications out to live subscribers (the SSE stream). A
// subscriber that falls behind loses notifications rather than slowing the
// store; Dropped counts them.
type Hub struct {
	size    int
	mu      sync.Mutex
	subs    map[chan alert.Notification]struct{}
	dropped atomic.Uint64
}

// NewHub returns a hub whose subscribers buffer size notifications.
func NewHub(size int) *Hub {
	return &Hub{size: size, subs: map[chan alert.Notification]struct{}{}}
}

// Subscribe returns a channel of notifications and a cancel function.
func (h *Hub) Subscribe() (<-chan alert.Notification, func()) {
	ch := make(chan alert.Notification, h.size)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, ch)
			h.mu.Unlock()
		})
	}
}

// Publish sends n to every subscriber without blocking.
func (h *Hub) Publish(n *alert.Notification) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- *n:
		default:
			h.dropped.Add(1)
		}
	}
}

// Dropped counts notifications lost to slow subscribers.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }
