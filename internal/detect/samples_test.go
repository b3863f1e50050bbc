package detect

import (
	"testing"
	"time"

	"twinchain/internal/wire"
)

// samplesMsg is one telemetry message holding a sample per element of
// gpus, one second apart, the newest at end.
func samplesMsg(gw string, seq uint64, end time.Time, gpus ...wire.GPUSample) Input {
	m := msg(gw, seq, end)
	tel := &wire.Telemetry{Host: "srv"}
	for i, g := range gpus {
		tel.Samples = append(tel.Samples, wire.TelemetrySample{TS: end.Add(-time.Duration(len(gpus)-1-i) * time.Second), GPUs: []wire.GPUSample{g}})
	}
	m.Kind, m.Telemetry = wire.KindTelemetry, tel
	return Input{Message: m}
}

// TestSamplesJudgedInOrder: each sample of a several-sample message is
// judged at its own time, in order. An XID in the 3rd of 5 samples raises
// one finding at that sample's time (the later samples still show it: no
// second finding); a temperature hot only through the samples of three
// messages is sustained overheating, as it is for one-sample messages.
func TestSamplesJudgedInOrder(t *testing.T) {
	g := func(xid bool, temp float64) wire.GPUSample {
		s := wire.GPUSample{Asset: "srv.gpu0", UUID: "U", TempC: temp, PowerW: 500, PowerLimitW: 700}
		if xid {
			s.LastXID, s.XIDCount = 79, 1
		}
		return s
	}
	// a first, quiet message: a later XID is news, not history
	got := feed(t, Defaults(), nil, in(
		samplesMsg("gw", 1, at(4), g(false, 60), g(false, 60), g(false, 60), g(false, 60), g(false, 60)),
		samplesMsg("gw", 2, at(9), g(false, 60), g(false, 60), g(true, 60), g(true, 60), g(true, 60)),
	))
	check(t, "xid in the 3rd sample", got, []string{"gpu_xid srv.gpu0"})
	if len(got) == 1 {
		if want := at(7); !got[0].Time.Equal(want) {
			t.Errorf("xid finding at %s, want the 3rd sample's time %s", got[0].Time, want)
		}
		if ev := got[0].Evidence.Messages; len(ev) != 1 || ev[0].Seq != 2 {
			t.Errorf("xid evidence = %+v, want message seq 2", ev)
		}
	}

	// 60 one-second samples in 6 messages of 10, hot from the 21st on:
	// sustained overheating, as TestHardware's 60 one-sample messages.
	var ins []Input
	for m := range 6 {
		var gs []wire.GPUSample
		for i := range 10 {
			temp := 60.0
			if m*10+i >= 20 {
				temp = 95
			}
			gs = append(gs, g(false, temp))
		}
		ins = append(ins, samplesMsg("gw", uint64(m+1), at(float64(m*10+9)), gs...))
	}
	check(t, "overheating over several-sample messages", feed(t, Defaults(), nil, in(ins...)), []string{"overheating srv.gpu0"})
	// the same hot spell in one message per sample is the same finding
	var one []Input
	for i := range 60 {
		temp := 60.0
		if i >= 20 {
			temp = 95
		}
		one = append(one, telemetry("gw", uint64(i+1), at(float64(i)), g(false, temp)))
	}
	check(t, "overheating over one-sample messages", feed(t, Defaults(), nil, in(one...)), []string{"overheating srv.gpu0"})
}
