package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"twinchain/internal/cli"
	"twinchain/internal/sim/devicesim"
)

// runSerial plays serial devices on pseudo-terminals (an RDM6300 reader, a UHF
// line reader, a u-blox GPS at 9600 baud) and a simulated GPU host for the
// real edge-agent, until ctx ends.
func runSerial(ctx context.Context, args []string, stderr io.Writer) error {
	def := devicesim.DefaultSerialConfig()
	fs := flag.NewFlagSet("firmware-sim serial", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rfidRate  = fs.Float64("rfid-rate", def.RFIDRate, "tag reads per second over both readers (0: none)")
		gpsEvery  = fs.Duration("gps-interval", def.GPSInterval, "one GPS epoch (RMC, VTG, GGA, GSA, GSV) per interval")
		speed     = fs.Float64("speed", def.SpeedMS, "speed along the route, m/s (0: parked)")
		baud      = fs.Int("baud", def.Baud, "line speed the devices are paced at")
		noise     = fs.Bool("noise", false, "inject bad checksums, torn frames and wrong-baud garbage now and then")
		gpus      = fs.Int("gpus", 8, "simulated GPUs (0: no GPU source)")
		gpuEvery  = fs.Duration("gpu-interval", time.Second, "simulated GPU snapshot interval")
		gpuFile   = fs.String("gpu-file", "", "write GPU snapshots to this file (edge-agent gpu.sim: file:PATH)")
		gpuSocket = fs.String("gpu-socket", "", "serve GPU snapshots on this unix socket (edge-agent gpu.sim: unix:PATH)")
		xidAfter  = fs.Duration("xid-after", 0, "inject an XID 79 on GPU 0 after this long (0: never)")
		procs     = fs.String("gpu-processes", "", "compute processes the GPUs run, INDEX:NAME[,INDEX:NAME...] (edge-agent workloads.models match them by name)")
		pathsFile = fs.String("paths-file", "", "also write the device paths as JSON to this file")
		seed      = fs.Uint64("seed", 1, "random seed")
	)
	if err := fs.Parse(args); err != nil {
		return cli.Usage(err)
	}
	cfg := def
	cfg.RFIDRate, cfg.GPSInterval, cfg.SpeedMS, cfg.Baud, cfg.Noise, cfg.Seed = *rfidRate, *gpsEvery, *speed, *baud, *noise, *seed
	devs, err := devicesim.OpenSerialDevices(cfg, time.Now)
	if err != nil {
		return err
	}
	defer devs.Close()
	paths := map[string]string{"rdm6300": devs.RDM6300.Path, "uhf": devs.UHF.Path, "gps": devs.GPS.Path}
	if *gpuFile != "" {
		paths["gpu"] = "file:" + *gpuFile
	}
	if *gpuSocket != "" {
		paths["gpu"] = "unix:" + *gpuSocket
	}
	for _, k := range []string{"rdm6300", "uhf", "gps", "gpu"} {
		if p, ok := paths[k]; ok {
			fmt.Fprintf(stderr, "%-8s %s\n", k, p)
		}
	}
	if *pathsFile != "" {
		data, _ := json.Marshal(paths)
		if err := os.WriteFile(*pathsFile+".tmp", data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(*pathsFile+".tmp", *pathsFile); err != nil {
			return err
		}
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return devs.Run(ctx) })
	if *gpus > 0 && (*gpuFile != "" || *gpuSocket != "") {
		host := devicesim.NewGPUHost(*gpus, *seed)
		if err := runProcesses(host, *gpus, *procs); err != nil {
			return err
		}
		var srv *devicesim.SnapshotServer
		if *gpuSocket != "" {
			if srv, err = devicesim.ListenSnapshots(*gpuSocket); err != nil {
				return err
			}
			g.Go(func() error { return srv.Run(ctx) })
		}
		start := time.Now()
		g.Go(func() error {
			t := time.NewTicker(*gpuEvery)
			defer t.Stop()
			injected := false
			for {
				if *xidAfter > 0 && !injected && time.Since(start) >= *xidAfter {
					host.InjectXID(0, 79)
					injected = true
				}
				snap := host.Next(time.Now())
				if *gpuFile != "" {
					if err := devicesim.WriteSnapshotFile(*gpuFile, snap); err != nil {
						return err
					}
				}
				if srv != nil {
					if err := srv.Send(snap); err != nil {
						return err
					}
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
	}
	err = g.Wait()
	fmt.Fprintf(stderr, "serial: wrote %d RDM6300 frames, %d UHF lines, %d NMEA sentences, %d noise bursts\n",
		devs.Frames, devs.Lines, devs.Sentences, devs.NoiseBursts)
	return err
}

// runProcesses starts the processes of a -gpu-processes list, each using
// 20 GiB of its GPU's memory.
func runProcesses(host *devicesim.GPUHost, gpus int, list string) error {
	for _, p := range strings.Split(list, ",") {
		if p == "" {
			continue
		}
		idx, name, ok := strings.Cut(p, ":")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= gpus || name == "" || len(name) > 15 {
			return fmt.Errorf("-gpu-processes %q: want INDEX:NAME with INDEX below %d and a name of 1-15 bytes", p, gpus)
		}
		host.RunProcess(i, name, 20<<30)
	}
	return nil
}
