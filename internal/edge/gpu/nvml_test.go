//go:build cgo && linux

package gpu

import (
	"context"
	"encoding/binary"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
	"twinchain/internal/testsvc"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// recordedDevice answers NVML calls with the values of a recorded snapshot
// device, and ERROR_NOT_SUPPORTED where the recording says N/A. This is a
// mock because NVML cannot run here: the test hosts have no NVIDIA driver.
func recordedDevice(d Device) *mock.Device {
	unsupported := map[string]bool{}
	for _, u := range d.Unsupported {
		unsupported[u] = true
	}
	ret := func(what string) nvml.Return {
		if unsupported[what] {
			return nvml.ERROR_NOT_SUPPORTED
		}
		return nvml.SUCCESS
	}
	var pci nvml.PciInfo
	for i, c := range []byte(d.PCIBusID) {
		pci.BusId[i] = int8(c)
	}
	return &mock.Device{
		GetUUIDFunc:                func() (string, nvml.Return) { return d.UUID, nvml.SUCCESS },
		GetNameFunc:                func() (string, nvml.Return) { return d.Name, ret("name") },
		GetSerialFunc:              func() (string, nvml.Return) { return d.Serial, ret("serial") },
		GetBoardPartNumberFunc:     func() (string, nvml.Return) { return d.BoardPart, ret("board_part") },
		GetVbiosVersionFunc:        func() (string, nvml.Return) { return d.VBIOS, ret("vbios") },
		GetInforomImageVersionFunc: func() (string, nvml.Return) { return d.InfoROM, ret("inforom") },
		GetPciInfoFunc:             func() (nvml.PciInfo, nvml.Return) { return pci, ret("pci") },
		GetTemperatureFunc:         func(nvml.TemperatureSensors) (uint32, nvml.Return) { return d.TempC, ret("temp") },
		GetPowerUsageFunc:          func() (uint32, nvml.Return) { return d.PowerMW, ret("power") },
		GetFieldValuesFunc: func(fv []nvml.FieldValue) nvml.Return {
			for i := range fv {
				if fv[i].FieldId != nvml.FI_DEV_MEMORY_TEMP {
					fv[i].NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
					continue
				}
				fv[i].ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				fv[i].NvmlReturn = uint32(ret("mem_temp"))
				binary.LittleEndian.PutUint32(fv[i].Value[:], d.MemTempC)
			}
			return nvml.SUCCESS
		},
		GetEnforcedPowerLimitFunc: func() (uint32, nvml.Return) { return d.PowerLimitMW, ret("power_limit") },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: d.UtilGPU, Memory: d.UtilMem}, ret("utilization")
		},
		GetClockInfoFunc: func(c nvml.ClockType) (uint32, nvml.Return) {
			if c == nvml.CLOCK_SM {
				return d.SMClockMHz, ret("sm_clock")
			}
			return d.MemClockMHz, ret("mem_clock")
		},
		GetTotalEccErrorsFunc: func(t nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
			if t == nvml.MEMORY_ERROR_TYPE_CORRECTED {
				return d.ECCVolatileSBE, ret("ecc_sbe")
			}
			return d.ECCVolatileDBE, ret("ecc_dbe")
		},
		GetRetiredPagesFunc: func(c nvml.PageRetirementCause) ([]uint64, nvml.Return) {
			if c == nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR {
				return make([]uint64, d.RetiredPagesDBE), ret("retired_pages_dbe")
			}
			return make([]uint64, d.RetiredPagesSBE), ret("retired_pages")
		},
		GetRemappedRowsFunc: func() (int, int, bool, bool, nvml.Return) {
			return d.RemapCorrectable, d.RemapUncorrectable, false, d.RemapFailure, ret("remapped_rows")
		},
		GetCurrentClocksEventReasonsFunc: func() (uint64, nvml.Return) { return d.ClocksEventReasons, ret("clocks_event_reasons") },
		GetPcieReplayCounterFunc:         func() (int, nvml.Return) { return int(d.PCIeReplays), ret("pcie_replays") },
		RegisterEventsFunc:               func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS },
		GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			var out []nvml.ProcessInfo
			for _, p := range d.Processes {
				out = append(out, nvml.ProcessInfo{Pid: p.PID, UsedGpuMemory: p.MemBytes})
			}
			return out, ret("processes")
		},
	}
}

// TestNVMLSourceOnRecordedValues runs the NVML source's calls against the
// recorded A100 values and checks it rebuilds the recorded snapshot, with
// NOT_SUPPORTED readings listed, and that an XID from the event set is
// counted.
func TestNVMLSourceOnRecordedValues(t *testing.T) {
	data, err := os.ReadFile("testdata/a100-sxm4-mig.snapshot.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	// The recording ran no process; give the GPU one, as NVML lists it.
	want.Devices[0].Processes = []Process{{PID: 4242, Name: "vllm", MemBytes: 38 << 30}}
	dev := recordedDevice(want.Devices[0])
	var waits atomic.Int32
	set := &mock.EventSet{
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			if waits.Add(1) == 1 {
				return nvml.EventData{Device: dev, EventType: nvml.EventTypeXidCriticalError, EventData: 79}, nvml.SUCCESS
			}
			time.Sleep(time.Duration(ms) * time.Millisecond / 10) // the fake blocks, as NVML's wait does, for a tenth of the timeout
			return nvml.EventData{}, nvml.ERROR_TIMEOUT
		},
	}
	lib := &mock.Interface{
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return want.Driver, nvml.SUCCESS },
		EventSetCreateFunc:         func() (nvml.EventSet, nvml.Return) { return set, nvml.SUCCESS },
		ErrorStringFunc:            func(r nvml.Return) string { return r.Error() },
		SystemGetProcessNameFunc: func(pid int) (string, nvml.Return) {
			if pid == 4242 {
				return "vllm", nvml.SUCCESS
			}
			return "", nvml.ERROR_NOT_FOUND
		},
	}
	src := &NVMLSource{lib: lib, log: discard(), devs: []nvml.Device{dev}, logged: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	var got Snapshot
	testsvc.Eventually(t, 10*time.Second, "a snapshot with the XID event", func() bool {
		if got, err = src.Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot = %v", err)
		}
		return len(got.Events) > 0
	})
	cancel()
	<-done
	if len(got.Events) != 1 || got.Events[0].Type != EventXID || got.Events[0].Data != 79 || got.Events[0].Index != 0 {
		t.Errorf("events = %+v, want one XID 79 on GPU 0", got.Events)
	}
	got.Events, got.Time = nil, want.Time
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NVML snapshot =\n%+v\nwant the recording\n%+v", got, want)
	}
}
