package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"
)

// memFigures are the runtime/metrics figures -mem-profile logs: the
// live heap, the heap goal, the goroutines and every /memory/classes/
// figure (heap objects, free and released pages, goroutine stacks, OS
// stacks, runtime metadata, other). Their total is the memory the Go
// runtime has mapped; RSS above it is not Go's (cgo, file-backed pages
// such as bbolt's mmap).
var memFigures = func() []string {
	names := []string{"/gc/heap/live:bytes", "/gc/heap/goal:bytes", "/sched/goroutines:goroutines"}
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") {
			names = append(names, d.Name)
		}
	}
	return names
}()

// memTotal is the memory the Go runtime has mapped, the figure whose
// peak -mem-profile follows.
const memTotal = "/memory/classes/total:bytes"

// readMemFigures reads memFigures into s (nil: new samples).
func readMemFigures(s []metrics.Sample) []metrics.Sample {
	if s == nil {
		s = make([]metrics.Sample, len(memFigures))
		for i, name := range memFigures {
			s[i].Name = name
		}
	}
	metrics.Read(s)
	return s
}

// memAttrs is s as log attributes, bytes in MiB (name without its unit).
func memAttrs(s []metrics.Sample) []any {
	attrs := make([]any, 0, 2*len(s))
	for _, m := range s {
		name, unit, _ := strings.Cut(m.Name, ":")
		if m.Value.Kind() != metrics.KindUint64 {
			continue
		}
		v := m.Value.Uint64()
		if unit == "bytes" {
			attrs = append(attrs, name+"_mib", fmt.Sprintf("%.1f", float64(v)/(1<<20)))
		} else {
			attrs = append(attrs, name, v)
		}
	}
	return attrs
}

// figure is the value of the named figure in s.
func figure(s []metrics.Sample, name string) uint64 {
	for _, m := range s {
		if m.Name == name && m.Value.Kind() == metrics.KindUint64 {
			return m.Value.Uint64()
		}
	}
	return 0
}

// watchMemory is -mem-profile: it answers the context the service runs
// in, which ends after ctx does and after the memory at that moment is
// recorded, while the service still holds its connections and queues:
// the heap profile (after a GC) to path, and the figures, logged once.
// While it runs it reads the figures every second and keeps those of
// the most memory mapped (logged with the ones at stop), and whenever that
// grew a tenth above the last profile's, writes the heap profile of the
// last GC to path+".peak" (so within a tenth of the peak). stop ends the watch (the service returned on its
// own) and waits for it.
//
// The figures are logged at warn level: asked for with -mem-profile, they
// show with the benchmarks' -log-level warn.
func watchMemory(ctx context.Context, path string, log *slog.Logger) (svcCtx context.Context, stop func()) {
	svcCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		defer cancel()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var peak, now []metrics.Sample
		var written uint64
		for {
			select {
			case <-ctx.Done():
			case <-done:
			case <-tick.C:
				now = readMemFigures(now)
				total := figure(now, memTotal)
				if total > figure(peak, memTotal) {
					peak = append(peak[:0], now...)
				}
				if total > written+written/10 {
					if err := writeHeapProfile(path + ".peak"); err != nil {
						log.Error("mem profile", "err", err)
					}
					written = total
				}
				continue
			}
			break
		}
		runtime.GC()
		if err := writeHeapProfile(path); err != nil {
			log.Error("mem profile", "err", err)
		}
		log.Warn("memory at stop (-mem-profile)", memAttrs(readMemFigures(nil))...)
		if peak != nil {
			log.Warn("memory at its peak (-mem-profile)", memAttrs(peak)...)
		}
	}()
	return svcCtx, func() {
		close(done)
		<-finished
	}
}

// writeHeapProfile writes the heap profile (pprof, as of the last GC) to
// path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
