//go:build cgo && linux

package gpu

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"twinchain/internal/wire"
)

// NVMLSource reads GPUs through NVML. go-nvml loads libnvidia-ml.so with
// dlopen, so the agent builds and runs on hosts without a driver; OpenNVML
// then fails and the caller picks another source.
type NVMLSource struct {
	lib  nvml.Interface
	log  *slog.Logger
	devs []nvml.Device

	mu     sync.Mutex
	events []Event
	nextID uint64
	logged map[string]bool // NVML errors already logged once
}

// OpenNVML initialises NVML; it fails without a driver.
func OpenNVML(log *slog.Logger) (Source, error) {
	lib := nvml.New()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml init: %s", lib.ErrorString(ret))
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown() // the error being returned says more
		return nil, fmt.Errorf("nvml device count: %s", lib.ErrorString(ret))
	}
	s := &NVMLSource{lib: lib, log: log, logged: map[string]bool{}}
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			_ = lib.Shutdown() // the error being returned says more
			return nil, fmt.Errorf("nvml device %d: %s", i, lib.ErrorString(ret))
		}
		s.devs = append(s.devs, d)
	}
	return s, nil
}

// String names the source for logs.
func (s *NVMLSource) String() string { return "nvml" }

// Close shuts NVML down.
func (s *NVMLSource) Close() error {
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", s.lib.ErrorString(ret))
	}
	return nil
}

// Run waits on an NVML event set for XID and ECC events until ctx ends.
func (s *NVMLSource) Run(ctx context.Context) error {
	set, ret := s.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		s.log.Warn("nvml: no event set, XID/ECC events off", "err", s.lib.ErrorString(ret))
		<-ctx.Done()
		return nil
	}
	defer func() { _ = set.Free() }() // nothing to do if freeing fails
	types := uint64(nvml.EventTypeXidCriticalError | nvml.EventTypeDoubleBitEccError | nvml.EventTypeSingleBitEccError)
	index := map[string]int{}
	for i, d := range s.devs {
		if ret := d.RegisterEvents(types, set); ret != nvml.SUCCESS {
			// ECC events are not supported everywhere; XID alone then.
			if ret := d.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
				s.log.Warn("nvml: cannot register events", "gpu", i, "err", s.lib.ErrorString(ret))
			}
		}
		if uuid, ret := d.GetUUID(); ret == nvml.SUCCESS {
			index[uuid] = i
		}
	}
	for ctx.Err() == nil {
		data, ret := set.Wait(500)
		if ret == nvml.ERROR_TIMEOUT {
			continue
		}
		if ret != nvml.SUCCESS {
			s.log.Warn("nvml: event wait failed, events off", "err", s.lib.ErrorString(ret))
			<-ctx.Done()
			return nil
		}
		uuid, _ := data.Device.GetUUID()
		e := Event{Index: index[uuid], Data: data.EventData}
		switch data.EventType {
		case nvml.EventTypeXidCriticalError:
			e.Type = EventXID
		case nvml.EventTypeDoubleBitEccError:
			e.Type = EventECCDBE
		case nvml.EventTypeSingleBitEccError:
			e.Type = EventECCSBE
		default:
			continue
		}
		s.mu.Lock()
		s.nextID++
		e.ID = s.nextID
		s.events = append(s.events, e)
		if len(s.events) > 256 {
			s.events = s.events[len(s.events)-256:]
		}
		s.mu.Unlock()
	}
	return nil
}

// Snapshot reads every GPU. A reading NVML does not support on a GPU is
// listed in Device.Unsupported; any other NVML error is logged once and the
// reading left zero.
func (s *NVMLSource) Snapshot(context.Context) (Snapshot, error) {
	var snap Snapshot
	drv, ret := s.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return snap, fmt.Errorf("nvml driver version: %s", s.lib.ErrorString(ret))
	}
	snap.Driver = drv
	for i, d := range s.devs {
		dev := Device{Index: i}
		check := func(what string, ret nvml.Return) bool {
			switch ret {
			case nvml.SUCCESS:
				return true
			case nvml.ERROR_NOT_SUPPORTED:
				dev.Unsupported = append(dev.Unsupported, what)
			default:
				key := fmt.Sprint(i, what, ret)
				if !s.logged[key] {
					s.logged[key] = true
					s.log.Warn("nvml reading failed (logged once)", "gpu", i, "reading", what, "err", s.lib.ErrorString(ret))
				}
			}
			return false
		}
		var ret nvml.Return
		if dev.UUID, ret = d.GetUUID(); !check("uuid", ret) {
			return snap, fmt.Errorf("nvml gpu %d uuid: %s", i, s.lib.ErrorString(ret))
		}
		dev.Name, ret = d.GetName()
		check("name", ret)
		dev.Serial, ret = d.GetSerial()
		check("serial", ret)
		dev.BoardPart, ret = d.GetBoardPartNumber()
		check("board_part", ret)
		dev.VBIOS, ret = d.GetVbiosVersion()
		check("vbios", ret)
		dev.InfoROM, ret = d.GetInforomImageVersion()
		check("inforom", ret)
		if pci, ret := d.GetPciInfo(); check("pci", ret) {
			dev.PCIBusID = cString(pci.BusId[:])
		}
		dev.TempC, ret = d.GetTemperature(nvml.TEMPERATURE_GPU)
		check("temp", ret)
		fv := []nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}
		if ret := d.GetFieldValues(fv); check("mem_temp", ret) && check("mem_temp", nvml.Return(fv[0].NvmlReturn)) {
			dev.MemTempC = uint32(fieldValue(fv[0]))
		}
		dev.PowerMW, ret = d.GetPowerUsage()
		check("power", ret)
		dev.PowerLimitMW, ret = d.GetEnforcedPowerLimit()
		check("power_limit", ret)
		if u, ret := d.GetUtilizationRates(); check("utilization", ret) {
			dev.UtilGPU, dev.UtilMem = u.Gpu, u.Memory
		}
		dev.SMClockMHz, ret = d.GetClockInfo(nvml.CLOCK_SM)
		check("sm_clock", ret)
		dev.MemClockMHz, ret = d.GetClockInfo(nvml.CLOCK_MEM)
		check("mem_clock", ret)
		dev.ECCVolatileSBE, ret = d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC)
		check("ecc_sbe", ret)
		dev.ECCVolatileDBE, ret = d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
		check("ecc_dbe", ret)
		if p, ret := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS); check("retired_pages", ret) {
			dev.RetiredPagesSBE = len(p)
		}
		if p, ret := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR); check("retired_pages_dbe", ret) {
			dev.RetiredPagesDBE = len(p)
		}
		if c, u, _, f, ret := d.GetRemappedRows(); check("remapped_rows", ret) {
			dev.RemapCorrectable, dev.RemapUncorrectable, dev.RemapFailure = c, u, f
		}
		dev.ClocksEventReasons, ret = d.GetCurrentClocksEventReasons()
		check("clocks_event_reasons", ret)
		if r, ret := d.GetPcieReplayCounter(); check("pcie_replays", ret) {
			dev.PCIeReplays = uint32(r)
		}
		if procs, ret := d.GetComputeRunningProcesses(); check("processes", ret) {
			for _, p := range procs[:min(len(procs), wire.MaxGPUProcesses)] {
				name, _ := s.lib.SystemGetProcessName(int(p.Pid)) // empty when NVML cannot say: the agent reads /proc
				dev.Processes = append(dev.Processes, Process{PID: p.Pid, Name: name, MemBytes: p.UsedGpuMemory})
			}
		}
		snap.Devices = append(snap.Devices, dev)
	}
	s.mu.Lock()
	snap.Events = append([]Event(nil), s.events...)
	s.mu.Unlock()
	return snap, snap.Check()
}

// fieldValue reads an integer NVML field value.
func fieldValue(v nvml.FieldValue) uint64 {
	switch nvml.ValueType(v.ValueType) {
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return uint64(binary.LittleEndian.Uint32(v.Value[:4]))
	case nvml.VALUE_TYPE_DOUBLE:
		return uint64(math.Float64frombits(binary.LittleEndian.Uint64(v.Value[:])))
	}
	return binary.LittleEndian.Uint64(v.Value[:])
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
