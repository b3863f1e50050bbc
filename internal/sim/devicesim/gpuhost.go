// Package devicesim plays the hardware an edge agent reads, for firmware-sim,
// tests and benchmarks: a GPU host (snapshots in the shape NVML gives, served
// over a file or a unix socket) and serial devices on pseudo-terminals (an
// RDM6300 reader, a UHF line reader and a u-blox GPS receiver).
package devicesim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"twinchain/internal/edge/gpu"
)

// GPUHost is a simulated host of H100 GPUs whose readings drift with load.
// It is deterministic for a seed. Not safe for concurrent use.
type GPUHost struct {
	rng     *rand.Rand
	driver  string
	devices []gpu.Device
	events  []gpu.Event
	nextID  uint64
	nextPID uint32
	step    int
}

// NewGPUHost returns a host of n GPUs; seed fixes serials, UUIDs and noise.
func NewGPUHost(n int, seed uint64) *GPUHost {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	h := &GPUHost{rng: rng, driver: "550.54.15"}
	for i := 0; i < n; i++ {
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.UintN(256))
		}
		h.devices = append(h.devices, gpu.Device{
			Index: i, Name: "NVIDIA H100 80GB HBM3",
			UUID:      fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
			Serial:    fmt.Sprintf("1654%09d", rng.UintN(1e9)),
			PCIBusID:  fmt.Sprintf("00000000:%02X:00.0", []int{0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb}[i%8]+i/8),
			BoardPart: "692-2G520-0200-000", VBIOS: "96.00.74.00.0D", InfoROM: "G520.0200.00.05",
			PowerLimitMW: 700000, MemClockMHz: 2619,
		})
	}
	return h
}

// InjectXID records an XID event on GPU index.
func (h *GPUHost) InjectXID(index, xid int) {
	h.nextID++
	h.events = append(h.events, gpu.Event{ID: h.nextID, Index: index, Type: gpu.EventXID, Data: uint64(xid)})
	if xid == 79 { // fallen off the bus: the GPU throttles hard afterwards
		h.devices[index].ClocksEventReasons |= gpu.ThrottleMask([]string{"hw_slowdown"})
	}
}

// InjectECC records an ECC error on GPU index; a double-bit error also
// remaps a row, and fails the remap when spares run out.
func (h *GPUHost) InjectECC(index int, doubleBit bool) {
	h.nextID++
	d := &h.devices[index]
	if doubleBit {
		d.ECCVolatileDBE++
		d.RemapUncorrectable++
		if d.RemapUncorrectable >= 8 {
			d.RemapFailure = true
		}
		h.events = append(h.events, gpu.Event{ID: h.nextID, Index: index, Type: gpu.EventECCDBE})
		return
	}
	d.ECCVolatileSBE++
	h.events = append(h.events, gpu.Event{ID: h.nextID, Index: index, Type: gpu.EventECCSBE})
}

// SetUUID replaces GPU index's UUID and serial: a substituted board.
func (h *GPUHost) SetUUID(index int, uuid, serial string) {
	h.devices[index].UUID, h.devices[index].Serial = uuid, serial
}

// RunProcess starts a compute process named name on GPU index, as NVML
// would list it; the agent resolves the artifact it serves by its name.
// PIDs count up from 4,000,001, above the usual pid_max of a host, so a
// simulated process never names a real one.
func (h *GPUHost) RunProcess(index int, name string, memBytes uint64) uint32 {
	h.nextPID++
	pid := 4_000_000 + h.nextPID
	h.devices[index].Processes = append(h.devices[index].Processes, gpu.Process{PID: pid, Name: name, MemBytes: memBytes})
	return pid
}

// StopProcess ends process pid on GPU index.
func (h *GPUHost) StopProcess(index int, pid uint32) {
	d := &h.devices[index]
	d.Processes = slices.DeleteFunc(slices.Clone(d.Processes), func(p gpu.Process) bool { return p.PID == pid })
}

// Next advances the readings one step and returns a snapshot at t. The
// snapshot carries the 32 newest events; readers count each id once.
func (h *GPUHost) Next(t time.Time) gpu.Snapshot {
	h.step++
	for i := range h.devices {
		d := &h.devices[i]
		load := 0.6 + 0.35*math.Sin(float64(h.step+i*7)/30)
		d.UtilGPU = uint32(math.Round(100 * load))
		d.UtilMem = uint32(math.Round(70 * load))
		d.TempC = uint32(35 + 40*load + h.rng.Float64()*2)
		d.MemTempC = d.TempC + 8
		d.PowerMW = uint32(90000 + 560000*load + h.rng.Float64()*5000)
		d.SMClockMHz = uint32(1410 + 570*load)
		if d.PowerMW > 620000 {
			d.ClocksEventReasons |= 0x4 // power cap
		} else {
			d.ClocksEventReasons &^= 0x4
		}
	}
	evs := h.events
	if len(evs) > 32 {
		evs = evs[len(evs)-32:]
	}
	devs := append([]gpu.Device(nil), h.devices...)
	for i := range devs {
		devs[i].Processes = slices.Clone(devs[i].Processes) // the snapshot is the reader's
	}
	return gpu.Snapshot{Time: t.UTC(), Driver: h.driver, Devices: devs,
		Events: append([]gpu.Event(nil), evs...)}
}

// WriteSnapshotFile writes s to path whole (through a rename), so a reader
// never sees half a snapshot.
func WriteSnapshotFile(path string, s gpu.Snapshot) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write gpu snapshot: %w", err)
	}
	return os.Rename(tmp, path)
}

// SnapshotServer sends snapshots, one JSON object per line, to every client
// of a unix socket.
type SnapshotServer struct {
	ln      net.Listener
	mu      sync.Mutex
	clients map[net.Conn]*bufio.Writer
}

// ListenSnapshots listens on the unix socket at path (replacing a stale one).
func ListenSnapshots(path string) (*SnapshotServer, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &SnapshotServer{ln: ln, clients: map[net.Conn]*bufio.Writer{}}, nil
}

// Run accepts clients until ctx ends.
func (s *SnapshotServer) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			for c := range s.clients {
				c.Close()
			}
			s.clients = map[net.Conn]*bufio.Writer{}
			s.mu.Unlock()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		s.clients[c] = bufio.NewWriter(c)
		s.mu.Unlock()
	}
}

// Send writes s to every client; a client that fails is dropped.
func (s *SnapshotServer) Send(snap gpu.Snapshot) error {
	data, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, w := range s.clients {
		err := c.SetWriteDeadline(time.Now().Add(time.Second)) // a stuck client must not hold up the others
		if err == nil {
			_, err = w.Write(data)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.Close()
			delete(s.clients, c)
		}
	}
	return nil
}

// Clients is the number of connected clients.
func (s *SnapshotServer) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}
