// Ledger anchors of an asset's events, each with a Verify button that checks
// the event's proof bundle in the browser (WebCrypto SHA-256 and Ed25519),
// and a box to check any exported proof offline.
import { api, apiText } from "../api.js";
import { h, clear, fmtTime, unavailable, errorBox, fill, hashValue, label } from "../dom.js";
import { verifyBundle } from "../verify.js";

// serviceKey is the ledger's service key, pinned in this browser the first
// time it is seen (trust on first use); a bundle signed by another key fails.
export async function serviceKey() {
  const pinned = localStorage.getItem("tc.serviceKey");
  if (pinned) return pinned;
  try {
    const st = await api("/ledger/status");
    const k = st && (st.service_key || st.key || (st.checkpoint && st.checkpoint.key));
    if (k) { localStorage.setItem("tc.serviceKey", k); return k; }
  } catch { /* no status: the bundle's own key is used, and the report says so */ }
  return "";
}

// report draws a verdict and its checklist into el (data-valid for tests):
// one line per check, passed or failed, with what it compared.
export function report(el, res) {
  el.dataset.valid = String(res.valid);
  const passed = res.checks.filter((c) => c.ok).length;
  fill(el,
    res.valid ? h("span.ok", "✔ Proof holds: ", res.subject) : h("span.bad", "✘ Proof does NOT hold: ", res.subject),
    h("div.sub", `${passed} of ${res.checks.length} checks passed`),
    h("ul.checks", { "aria-label": "Proof checks" }, res.checks.map((c) => h(`li.${c.ok ? "ok" : "bad"}`,
      h("span.mark", { "aria-label": c.ok ? "passed" : "failed" }, c.ok ? "✔" : "✘"), " ", h("strong", c.name), c.detail ? h("span.detail", " — " + c.detail) : ""))));
}

// The ledger status's fields, labelled, in the order a reader wants them.
const statusFields = [
  ["backend", "Backend"], ["height", "Block height"], ["height_error", "Block height unavailable"], ["damage", "Damage found"],
  ["tree_size", "Events in the tree"], ["tree_root", "Tree root", "hash"], ["service_key", "Service key (Ed25519)", "hash"],
];
const checkpointFields = [["size", "Covers events"], ["time", "Signed at", "time"], ["root", "Root", "hash"], ["key", "Signed by", "hash"], ["sig", "Signature", "hash"], ["origin", "Origin"]];
const anchoringFields = [
  ["anchored_to", "Anchored up to event"], ["anchored", "Batches anchored"], ["batches", "Batches cut"], ["pending_batches", "Batches waiting"],
  ["registered", "Assets registered"], ["evidence", "Evidence records"], ["pending_evidence", "Evidence waiting"],
  ["evidence_dropped", "Evidence given up"], ["statuses", "Asset status changes"], ["ledger_errors", "Ledger errors (retried)"],
];

// value shows one status value by its kind; an object becomes a nested list.
function value(v, kind, what) {
  if (v === undefined || v === null || v === "") return "—";
  if (kind === "hash") return hashValue(v, what.toLowerCase());
  if (kind === "time") return fmtTime(v);
  if (typeof v === "number") return v.toLocaleString();
  if (typeof v === "object") return kv(Object.entries(v).map(([k, x]) => [k, label(k), x]));
  return String(v);
}

function kv(rows) {
  return h("dl.kv", rows.filter(([, , v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, text, v, kind]) => [h("dt", text), h(`dd${/error|damage/.test(k) && v ? ".bad" : ""}`, { dataset: { field: k } }, value(v, kind, text))]));
}

// ledgerStatus shows GET /ledger/status as labelled values with copy
// buttons for keys and hashes: the ledger, the latest signed checkpoint and
// the anchoring counters.
export function ledgerStatus(st) {
  st = st || {};
  const known = new Set([...statusFields.map(([k]) => k), "checkpoint", "anchoring"]);
  const pick = (obj, fields) => fields.map(([k, text, kind]) => [k, text, obj[k], kind]);
  const rest = Object.entries(st).filter(([k]) => !known.has(k)).map(([k, v]) => [k, label(k), v]);
  return h("section.card.ledger-status", { "aria-labelledby": "h-ledger" }, h("h2#h-ledger", "Ledger"),
    h("div.status-cols",
      h("div", kv([...pick(st, statusFields), ...rest])),
      st.checkpoint ? h("div", h("h3", "Latest signed checkpoint"), kv(pick(st.checkpoint, checkpointFields))) : null,
      st.anchoring ? h("div", h("h3", "Anchoring"), kv(pick(st.anchoring, anchoringFields))) : null));
}

async function verifyEvent(id, out) {
  out.textContent = "Checking…";
  delete out.dataset.valid;
  try {
    const text = await apiText(`/ledger/events/${id}/proof`);
    report(out, await verifyBundle(text, await serviceKey()));
  } catch (e) {
    out.dataset.valid = "error";
    out.textContent = e.status === 409 || /pending/.test(e.message) ? `Event ${id} is not anchored yet.` : `Could not fetch the proof: ${e.message}`;
  }
}

// anchorsPanel lists the anchors that cover the asset's newest events.
export async function anchorsPanel(box, asset, events) {
  const list = h("div");
  box.append(list, proofChecker());
  const ids = events.map((e) => e.id).sort((a, b) => b - a).slice(0, 30);
  if (!ids.length) { list.append(h("p.muted", "No events to anchor yet.")); return; }
  const anchors = new Map(); // seq -> {anchor, events: []}
  let pending = 0;
  let missing = null;
  let queue = ids.slice();
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      try {
        const a = await api(`/ledger/events/${id}/anchor`);
        const g = anchors.get(a.seq) || { anchor: a, events: [] };
        g.events.push(id);
        anchors.set(a.seq, g);
      } catch (e) {
        if (e.missing) { missing = e; queue = []; } else pending++;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  if (missing) { list.append(unavailable("Ledger anchors", missing)); return; }
  if (!anchors.size) {
    list.append(h("p.muted", `None of the ${ids.length} newest events is anchored yet; anchoring runs in batches.`));
    return;
  }
  const ul = h("ul.anchors");
  for (const { anchor: a, events: evs } of [...anchors.values()].sort((x, y) => y.anchor.seq - x.anchor.seq)) {
    const out = h("div.verify-result", { role: "status", "aria-live": "polite" });
    const newest = Math.max(...evs);
    const btn = h("button", {
      type: "button", dataset: { event: newest },
      onclick: async () => { btn.disabled = true; try { await verifyEvent(newest, out); } finally { btn.disabled = false; } },
    }, `Verify event ${newest}`);
    ul.append(h("li.anchor", { dataset: { seq: a.seq } },
      h("div", h("strong", `Anchor ${a.seq}`), ` · events ${a.first_event}–${a.last_event} · ${fmtTime(a.stamp && a.stamp.time || a.last_time)}`),
      h("div.sub", `this asset's events in it: ${evs.sort((x, y) => x - y).join(", ")}`),
      h("div.sub", "batch root ", hashValue(a.root, "batch root")),
      a.stamp && a.stamp.tx_id ? h("div.sub", "transaction ", hashValue(a.stamp.tx_id, "transaction id")) : null,
      h("div.actions", btn, h("a", { href: `/api/v1/ledger/events/${newest}/proof`, download: `event-${newest}-proof.json` }, "Export proof")),
      out));
  }
  list.append(ul);
  if (pending) list.append(h("p.muted.small", `${pending} newer event(s) not anchored yet.`));
}

// proofChecker checks a proof that someone exported, with no server at all:
// a proof bundle, or a bare RFC 6962 inclusion proof.
export function proofChecker() {
  const ta = h("textarea", { id: "proof-json", rows: "5", spellcheck: "false", placeholder: '{"version":1,"kind":"event",…} or {"leaf_index":…,"tree_size":…,"leaf_hash":"…","audit_path":[…],"root_hash":"…"}' });
  const keyIn = h("input", { id: "proof-key", name: "service-key", placeholder: "hex Ed25519 key (blank: the pinned key or the bundle's own)", value: localStorage.getItem("tc.serviceKey") || "" });
  const ledgerKeyIn = h("input", { id: "proof-ledger-key", name: "ledger-key", placeholder: "hex Ed25519 key of the ledger node, for a bundle with a ledger_key (blank: the bundle's own)" });
  const out = h("div.verify-result", { role: "status", "aria-live": "polite" });
  return h("details.proof-check",
    h("summary", "Check an exported proof"),
    h("label", { for: "proof-json" }, "Proof bundle or inclusion proof (JSON)"), ta,
    h("label", { for: "proof-key" }, "Service key to trust"), keyIn,
    h("label", { for: "proof-ledger-key" }, "Ledger node's key to trust"), ledgerKeyIn,
    h("button", {
      type: "button", id: "proof-verify",
      onclick: async () => {
        delete out.dataset.valid;
        report(out, await verifyBundle(ta.value.trim(), keyIn.value.trim() || localStorage.getItem("tc.serviceKey") || "", ledgerKeyIn.value.trim()));
      },
    }, "Verify"), out);
}
