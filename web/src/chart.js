// Health charts drawn by uPlot from the telemetry series API.
import uPlot from "uplot";

// parseSeries reads a series answer into [times (s), values]. It accepts
// {"points":[{"time"|"t", "value"|"v"}]}, {"samples":[...]}, {"items":[...]},
// a bare array of such points or of [t, v] pairs, and {"times":[],"values":[]}.
export function parseSeries(data) {
  if (!data) return [[], []];
  if (Array.isArray(data.times) && Array.isArray(data.values)) {
    return [data.times.map(toSec), data.values.map(Number)];
  }
  const pts = Array.isArray(data) ? data : data.points || data.samples || data.items || data.series || [];
  const xs = [];
  const ys = [];
  for (const p of pts) {
    let t, v;
    if (Array.isArray(p)) [t, v] = p;
    else {
      t = p.time ?? p.t ?? p.Time ?? p.ts;
      v = p.value ?? p.v ?? p.Value ?? p.mean ?? p.max;
    }
    if (t === undefined || v === undefined || v === null) continue;
    xs.push(toSec(t));
    ys.push(Number(v));
  }
  const idx = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
  return [idx.map((i) => xs[i]), idx.map((i) => ys[i])];
}

function toSec(t) {
  if (typeof t === "number") return t > 1e12 ? t / 1000 : t;
  return new Date(t).getTime() / 1000;
}

// lineChart draws one series into el; it returns the uPlot (destroy() it).
export function lineChart(el, title, unit, [xs, ys], color = "#2563eb") {
  const width = Math.max(260, el.clientWidth || 600);
  return new uPlot({
    title,
    width,
    height: 180,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true } },
    axes: [{}, { label: unit, size: 56 }],
    series: [{}, { label: title, stroke: color, width: 1.5, fill: color + "22", points: { show: ys.length < 60 } }],
  }, [xs, ys], el);
}
