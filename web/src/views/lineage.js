// Model lineage as a graph: datasets -> training run -> hardware -> model
// -> evaluations and deployments, laid out left to right by dagre (@dagrejs/dagre, MIT) and
// drawn here as SVG. Hardware with health or security evidence within the
// run and refused deployments are marked; every node links to its record.
import dagre from "@dagrejs/dagre";
import { h, fmtTime, pill, label } from "../dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 196, H = 54; // node box

// s builds an SVG element: s("rect", {x: 1}, children...).
function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// clip shortens text to n characters for a node box (the full text is the
// node's tooltip).
function clip(t, n = 26) {
  t = String(t || "");
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

// span is a time range, the end's date left out when it is the start's.
function span(a, b) {
  const [x, y] = [fmtTime(a), fmtTime(b)];
  const [dx, tx] = x.split(" "), [dy, ty] = y.split(" ");
  return dx === dy && tx && ty ? `${dx} ${tx}–${ty}` : `${x} – ${y}`;
}

// lineageNodes turns a lineage (GET /ledger/models/:id/lineage) and the
// model's deployments (GET /ledger/models/:id/deployments) into nodes and
// edges. Node: {id, kind, title, sub, tip, href, bad}.
export function lineageNodes(lin, deployments) {
  const m = lin.model || {};
  const tr = m.training || {};
  const nodes = [], edges = [];
  const add = (n) => { nodes.push(n); return n.id; };
  const run = "run";
  const datasets = lin.datasets || [];
  for (const d of datasets) {
    const parents = (d.transform && d.transform.parents) || [];
    add({ id: "ds:" + d.id, kind: "dataset", title: d.name || d.id, sub: parents.length ? `${d.transform.step || "derived"} · ${d.id}` : d.id,
      tip: `dataset ${d.id}${d.name ? ": " + d.name : ""}`, href: "#ds-" + d.id });
    for (const p of parents) edges.push(["ds:" + p, "ds:" + d.id]);
  }
  for (const id of m.datasets || []) {
    if (!datasets.some((d) => d.id === id)) add({ id: "ds:" + id, kind: "dataset", title: id, sub: "dataset", tip: "dataset " + id });
    edges.push(["ds:" + id, run]);
  }
  const rounds = (tr.federated || []).length;
  add({ id: run, kind: "run", title: rounds ? `federated training, ${rounds} round${rounds === 1 ? "" : "s"}` : "training run",
    sub: tr.start ? span(tr.start, tr.end) : clip(tr.code_ref),
    tip: `training run ${tr.code_ref || ""}${tr.start ? ` from ${fmtTime(tr.start)} to ${fmtTime(tr.end)}` : ""}`, href: "#h-lm" });
  const model = "model:" + m.id;
  for (const hw of lin.hardware || []) {
    const u = hw.use || {};
    const ev = hw.evidence || [];
    const kinds = [...new Set(ev.map((e) => e.kind).filter(Boolean))];
    add({ id: "hw:" + u.asset, kind: "hardware", title: u.asset, sub: kinds.length ? `${kinds.join(", ")} during the run` : `revisions ${u.revision_start}–${u.revision_end}`,
      tip: `${u.asset}, revisions ${u.revision_start}–${u.revision_end}${kinds.length ? "; evidence during the run: " + kinds.join(", ") : ""}`,
      href: "#/asset/" + encodeURIComponent(u.asset), bad: kinds.length > 0 });
    edges.push([run, "hw:" + u.asset], ["hw:" + u.asset, model]);
  }
  if (!(lin.hardware || []).length) edges.push([run, model]);
  add({ id: model, kind: "model", title: m.name || m.id, sub: m.id, tip: `model ${m.id}`, href: "#h-lm" });
  (m.evaluations || []).forEach((e, i) => {
    const metrics = (e.metrics || []).map((x) => `${x.name} ${x.value}`).join(", ");
    add({ id: `eval:${i}`, kind: "evaluation", title: e.name || "evaluation", sub: metrics || "no metrics",
      tip: `evaluation ${e.name || ""}${e.dataset ? " on dataset " + e.dataset : ""}: ${metrics || "no metrics"}`, href: "#h-lm" });
    edges.push([model, `eval:${i}`]);
  });
  for (const d of deployments || []) {
    const why = (d.reasons || []).map((r) => r.code).join(", ");
    add({ id: "dep:" + d.id, kind: "deployment", title: d.id, sub: d.allowed ? `allowed · ${(d.targets || []).length} target(s)` : `refused: ${why || "no reason given"}`,
      tip: `deployment ${d.id}: ${d.allowed ? "allowed" : "refused"}${(d.reasons || []).length ? " (" + d.reasons.map((r) => `${r.code}: ${r.detail}`).join("; ") + ")" : ""}`,
      href: "#dep-" + d.id, bad: !d.allowed });
    edges.push([model, "dep:" + d.id]);
  }
  return { nodes, edges };
}

// lineageGraph draws the lineage as an SVG figure: left to right, or top
// to bottom on a narrow screen. It scales down to the page's width.
export function lineageGraph(lin, deployments) {
  const vertical = window.matchMedia("(max-width: 700px)").matches;
  const { nodes, edges } = lineageNodes(lin, deployments);
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: vertical ? "TB" : "LR", nodesep: 16, ranksep: vertical ? 28 : 36, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: W, height: H });
  for (const [a, b] of edges) if (g.hasNode(a) && g.hasNode(b)) g.setEdge(a, b);
  dagre.layout(g);
  const { width, height } = g.graph();
  const svg = s("svg", { viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`, style: `max-width: ${Math.ceil(width)}px`, role: "img",
    "aria-label": `lineage of model ${(lin.model || {}).id || ""}: ${nodes.length} records` },
  s("defs", s("marker", { id: "lin-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", class: "lin-arrowhead" }))));
  for (const e of g.edges()) {
    const pts = g.edge(e).points || [];
    if (pts.length) svg.append(s("path", { class: "lin-edge", "marker-end": "url(#lin-arrow)", d: pts.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ") }));
  }
  for (const n of nodes) {
    const p = g.node(n.id);
    const x = p.x - W / 2, y = p.y - H / 2;
    const box = s("g", { class: `lin-node lin-${n.kind}${n.bad ? " lin-bad" : ""}`, "data-id": n.id, "data-kind": n.kind },
      s("title", n.tip),
      s("rect", { x, y, width: W, height: H, rx: 6 }),
      s("text", { x: x + 10, y: y + 15, class: "lin-kind" }, n.kind === "run" ? "training" : n.kind),
      s("text", { x: x + 10, y: y + 31, class: "lin-title" }, clip(n.title)),
      s("text", { x: x + 10, y: y + 46, class: "lin-sub" }, clip(n.sub, 30)));
    svg.append(n.href ? s("a", { href: n.href }, box) : box);
  }
  return h("figure.lineage-graph", { "data-nodes": nodes.length, "data-direction": vertical ? "TB" : "LR" }, svg,
    h("figcaption.muted", "Datasets → training run → hardware → model → evaluations and deployments. Red: evidence during the run, or a refused deployment. Hover a box for details."));
}

// deploymentsCard lists the model's deployment requests with the gate's
// decision and reasons.
export function deploymentsCard(deployments) {
  return h("section.card", { "aria-labelledby": "h-ldep" }, h("h2#h-ldep", "Deployments"),
    (deployments || []).length ? h("ul.prov", deployments.map((d) => h("li", { id: "dep-" + d.id, "data-allowed": String(!!d.allowed) },
      h("strong", d.id), " ", d.allowed ? pill("allowed", "dep") : pill("refused", "dep"),
      ` under policy ${d.policy || "—"}${d.policy_version ? " v" + d.policy_version : ""} · ${fmtTime(d.stamp && d.stamp.time)}`,
      h("div.sub", "targets: ", (d.targets || []).join(", ") || "—"),
      (d.reasons || []).length ? h("ul.reasons", d.reasons.map((r) => h("li", h("code", r.code), " ", r.detail || ""))) : null)))
      : h("p.muted", "No deployment requested."));
}

// signoffsCard lists the sign-offs on the model (GET /ledger/attestations),
// by role; the highest number of a role is the one in force.
export function signoffsCard(atts) {
  return h("section.card", { "aria-labelledby": "h-lsign" }, h("h2#h-lsign", "Sign-offs"),
    (atts || []).length ? h("ul.prov", atts.map((a) => h("li", { "data-role": a.role },
      h("strong", label(a.role)), " ", pill(a.decision, "dep"), ` by ${(a.stamp && a.stamp.by) || "—"} · ${fmtTime(a.stamp && a.stamp.time)}`,
      a.statement ? h("div.sub", a.statement) : null)))
      : h("p.muted", "No sign-off recorded."));
}
