// Ledger anchors of an asset's events, each with a Verify button that checks
// the event's proof bundle in the browser (WebCrypto SHA-256 and Ed25519),
// and a box to check any exported proof offline.
import { api, apiText } from "../api.js";
import { h, clear, fmtTime, unavailable, errorBox, fill } from "../dom.js";
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

// report draws a verdict and its checks into el (data-valid for tests).
export function report(el, res) {
  el.dataset.valid = String(res.valid);
  fill(el, 
    res.valid ? h("span.ok", "✔ Proof holds: ", res.subject) : h("span.bad", "✘ Proof does NOT hold: ", res.subject),
    h("ul.checks", res.checks.map((c) => h(`li.${c.ok ? "ok" : "bad"}`, c.ok ? "✔ " : "✘ ", h("strong", c.name), c.detail ? ": " + c.detail : ""))));
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
      h("div.hash", { title: a.root }, "batch root ", String(a.root).slice(0, 24), "…"),
      a.stamp && a.stamp.tx_id ? h("div.hash", "tx ", String(a.stamp.tx_id).slice(0, 24)) : null,
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
  const out = h("div.verify-result", { role: "status", "aria-live": "polite" });
  return h("details.proof-check",
    h("summary", "Check an exported proof"),
    h("label", { for: "proof-json" }, "Proof bundle or inclusion proof (JSON)"), ta,
    h("label", { for: "proof-key" }, "Service key to trust"), keyIn,
    h("button", {
      type: "button", id: "proof-verify",
      onclick: async () => {
        delete out.dataset.valid;
        report(out, await verifyBundle(ta.value.trim(), keyIn.value.trim() || localStorage.getItem("tc.serviceKey") || ""));
      },
    }, "Verify"), out);
}
