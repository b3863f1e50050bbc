package scenario

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"time"

	"twinchain/internal/sim/fleet"
)

// ErrNoFleet is a control socket where no running fleet answers.
var ErrNoFleet = errors.New("no running fleet")

// FleetStep is what one step did on the running fleet.
type FleetStep struct {
	Index    int                `json:"index"`
	Action   string             `json:"action"`
	Target   string             `json:"target"`
	Wall     time.Time          `json:"wall"`
	Did      string             `json:"did"`
	Gateways []fleet.GatewaySeq `json:"gateways,omitempty"`
}

// FleetReport is what PlayOnFleet did.
type FleetReport struct {
	Name      string      `json:"name"`
	Socket    string      `json:"socket"`
	WallStart time.Time   `json:"wall_start"`
	WallEnd   time.Time   `json:"wall_end"`
	Steps     []FleetStep `json:"steps"`
}

// fleetStep is the running fleet's form of a step.
func (s Step) fleetStep() fleet.Step {
	return fleet.Step{Action: s.Action, Target: s.Target, Part: s.Part, Version: s.Version, XID: s.XID, XIDs: s.XIDs,
		TempC: s.TempC, Rate: s.Rate, SpeedMS: s.SpeedMS, Heading: s.Heading, Every: s.Every, Path: s.Path, Site: s.Site,
		With: s.With, Offset: s.Offset}
}

// PlayOnFleet plays f's steps on the running fleet whose control socket is
// at socket (make run's {data}/fleet.sock): its own gateways report them,
// signed with their own keys and next sequence numbers, so nothing is
// impersonated. The fleet keeps real time: step i comes At/Speed after the
// start (the file's timeline at its speed), and what it sets going
// (a theft, a drift) then unfolds in real time. Work orders are filed
// first, their windows scaled the same way; resolve steps go through the
// API. Every step is checked against the fleet before the first plays.
// onStep, when set, is told each step as it is played.
func PlayOnFleet(ctx context.Context, f *File, socket string, opts Options, onStep func(FleetStep)) (*FleetReport, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoFleet, socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	rd := bufio.NewReader(conn)
	ask := func(op string, st fleet.Step) (fleet.ControlAnswer, error) {
		var a fleet.ControlAnswer
		b, err := json.Marshal(fleet.ControlRequest{Op: op, Step: st})
		if err != nil {
			return a, err
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return a, fmt.Errorf("fleet %s: %w", socket, err)
		}
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return a, fmt.Errorf("fleet %s: %w", socket, err)
		}
		if err := json.Unmarshal(line, &a); err != nil {
			return a, fmt.Errorf("fleet %s answered %q: %w", socket, line, err)
		}
		return a, nil
	}
	steps := slices.Clone(f.Steps)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	var errs []error
	for i, st := range steps {
		if st.Action == "resolve" {
			if opts.API == "" {
				errs = append(errs, fmt.Errorf("step %d (resolve %s): the twin-service API URL is required", i, st.Target))
			}
			continue
		}
		a, err := ask("check", st.fleetStep())
		if err != nil {
			return nil, err
		}
		if !a.OK {
			errs = append(errs, fmt.Errorf("step %d (%s %s): %s", i, st.Action, st.Target, a.Error))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scenario %s does not fit the running fleet:\n%w", f.Name, err)
	}
	wall0 := time.Now()
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / f.Speed) }
	if len(f.WorkOrders) > 0 {
		wf := *f
		wf.WorkOrders = slices.Clone(f.WorkOrders)
		for i := range wf.WorkOrders {
			wf.WorkOrders[i].From, wf.WorkOrders[i].To = scale(wf.WorkOrders[i].From), scale(wf.WorkOrders[i].To)
		}
		r := &runner{f: &wf, opts: opts}
		if err := r.fileWorkOrders(ctx, wall0.UTC()); err != nil {
			return nil, err
		}
	}
	rep := &FleetReport{Name: f.Name, Socket: socket, WallStart: wall0}
	r := &runner{f: f, opts: opts}
	for i, st := range steps {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(time.Until(wall0.Add(scale(st.At)))):
		}
		fs := FleetStep{Index: i, Action: st.Action, Target: st.Target, Wall: time.Now()}
		if st.Action == "resolve" {
			if err := r.resolve(st.Target, st.Type); err != nil {
				return rep, fmt.Errorf("step %d (resolve %s): %w", i, st.Target, err)
			}
			fs.Did = fmt.Sprintf("resolved the open %s alert on %s", st.Type, st.Target)
		} else {
			a, err := ask("play", st.fleetStep())
			if err != nil {
				return rep, err
			}
			if !a.OK {
				return rep, fmt.Errorf("step %d (%s %s): %s", i, st.Action, st.Target, a.Error)
			}
			fs.Did, fs.Gateways = a.Did, a.Gateways
		}
		rep.Steps = append(rep.Steps, fs)
		if onStep != nil {
			onStep(fs)
		} else {
			opts.Log.Info("played", "step", i, "action", st.Action, "target", st.Target, "did", fs.Did)
		}
	}
	rep.WallEnd = time.Now()
	return rep, nil
}
