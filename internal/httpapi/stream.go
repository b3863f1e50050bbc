package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"twinchain/internal/twin"
)

// EventLog is the event log the stream reads; *twinstore.Store is one.
type EventLog interface {
	EventsAfter(id uint64, limit int) ([]twin.Event, error)
	LastEventID() uint64
}

const streamBatch = 256

func (s *Server) registerStream(api router) {
	if s.opts.Events == nil {
		api.unavailable("/stream", "the event log")
		return
	}
	api.get("/stream", s.stream)
}

// GET /api/v1/stream?after=&asset= : server-sent events of twin changes.
//
// Each event is "id: {event id}\nevent: twin\ndata: {twin.Event JSON}". The
// stream starts after ?after=, the Last-Event-ID header, or else at the
// newest event. Every client reads the event log from its own position, so
// a slow client never holds up the ingest; one that falls more than
// StreamMaxLag events behind gets an "event: resync" (data
// {"last_event_id":N}) and continues from the newest event. A comment line
// is sent every StreamHeartbeat; the stream ends when a write fails (the
// client went away) or the server shuts down.
func (s *Server) stream(c *fiber.Ctx) error {
	start := s.opts.Events.LastEventID()
	from := c.Query("after")
	if from == "" {
		from = c.Get("Last-Event-ID")
	}
	if from != "" {
		n, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, fmt.Sprintf("after %q: want an event id", from))
		}
		start = n
	}
	asset := c.Query("asset") // Immutable app: safe to keep after the handler
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderConnection, "keep-alive")
	c.Set("X-Accel-Buffering", "no")
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		s.streamLoop(w, start, asset)
	})
	return nil
}

func (s *Server) streamLoop(w *bufio.Writer, cursor uint64, asset string) {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	var wake <-chan struct{}
	if s.opts.Ingest != nil {
		ch, cancel := s.opts.Ingest.Subscribe()
		defer cancel()
		wake = ch
	}
	heartbeat := time.NewTicker(s.opts.StreamHeartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(time.Second) // catches events written without a wake-up
	defer poll.Stop()
	if _, err := fmt.Fprintf(w, ": twinchain stream after event %d\nretry: 2000\n\n", cursor); err != nil || w.Flush() != nil {
		return
	}
	for {
		if head := s.opts.Events.LastEventID(); head > cursor && head-cursor > s.opts.StreamMaxLag {
			fmt.Fprintf(w, "event: resync\ndata: {\"last_event_id\":%d}\n\n", head)
			if w.Flush() != nil {
				return
			}
			cursor = head
		}
		events, err := s.opts.Events.EventsAfter(cursor, streamBatch)
		if err != nil {
			s.opts.Log.Error("stream: read event log", "err", err)
			fmt.Fprintf(w, "event: error\ndata: {\"error\":{\"code\":%q,\"message\":\"event log unavailable\"}}\n\n", CodeInternal)
			_ = w.Flush() // the stream ends either way
			return
		}
		for i := range events {
			e := &events[i]
			cursor = e.ID
			if asset != "" && e.Asset != asset {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: twin\ndata: %s\n\n", e.ID, data)
		}
		if len(events) > 0 {
			if w.Flush() != nil {
				return
			}
			if len(events) == streamBatch {
				continue
			}
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-heartbeat.C:
			if _, err := w.WriteString(": ping\n\n"); err != nil || w.Flush() != nil {
				return
			}
		case <-s.done:
			return
		}
	}
}
