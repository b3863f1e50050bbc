// Ledger anchors of an asset, each with a Verify button that checks the
// Merkle inclusion proof in the browser, and a box to check any exported
// proof offline.
import { api, items, qs } from "../api.js";
import { h, clear, fmtTime, unavailable, errorBox } from "../dom.js";
import { verifyInclusion } from "../verify.js";

// The ledger's routes, tried in order (the first that exists wins).
const anchorRoutes = (id) => [`/assets/${encodeURIComponent(id)}/anchors`, "/ledger/anchors" + qs({ asset: id })];

async function firstAvailable(paths) {
  let last;
  for (const p of paths) {
    try { return await api(p); } catch (e) { if (!e.missing) throw e; last = e; }
  }
  throw last;
}

// proofFor fetches the inclusion proof of an anchor (or uses one it carries).
async function proofFor(anchor, assetId) {
  if (anchor.proof && typeof anchor.proof === "object") return anchor.proof;
  if (anchor.proof_url) return api(anchor.proof_url.replace(/^\/api\/v1/, ""));
  const ev = anchor.event ?? anchor.event_id;
  return firstAvailable([
    ev !== undefined ? `/ledger/proofs/events/${ev}` : null,
    `/assets/${encodeURIComponent(assetId)}/anchors/${encodeURIComponent(anchor.id ?? anchor.seq ?? "")}/proof`,
  ].filter(Boolean));
}

export function verifyResult(el, res) {
  el.dataset.valid = String(res.valid);
  clear(el).append(res.valid
    ? h("span.ok", "✔ Proof holds: ", res.reason)
    : h("span.bad", "✘ Proof does NOT hold: ", res.reason));
}

export async function anchorsPanel(box, asset) {
  const list = h("div");
  box.append(list, proofChecker());
  let data;
  try {
    data = await firstAvailable(anchorRoutes(asset.id));
  } catch (e) {
    list.append(e.missing ? unavailable("Ledger anchors", e) : errorBox(e));
    return;
  }
  const anchors = items(data);
  if (!anchors.length) { list.append(h("p.muted", "No anchor covers this asset's events yet.")); return; }
  const ul = h("ul.anchors");
  for (const a of anchors) {
    const out = h("p.verify-result", { role: "status", "aria-live": "polite" });
    const btn = h("button", {
      type: "button",
      onclick: async () => {
        btn.disabled = true;
        out.textContent = "Checking…";
        try {
          verifyResult(out, await verifyInclusion(await proofFor(a, asset.id)));
        } catch (e) {
          out.dataset.valid = "error";
          out.textContent = `Could not fetch the proof: ${e.message}`;
        } finally { btn.disabled = false; }
      },
    }, "Verify");
    const range = a.first_event !== undefined ? `events ${a.first_event}–${a.last_event}` : a.range ? `events ${a.range}` : "";
    ul.append(h("li.anchor",
      h("div", h("strong", `Anchor ${a.seq ?? a.id ?? ""}`), " ", range, a.time ? ` · ${fmtTime(a.time)}` : ""),
      a.root ? h("div.hash", { title: a.root }, "root ", String(a.root).slice(0, 24), "…") : null,
      a.tx ? h("div.hash", "tx ", String(a.tx).slice(0, 24)) : null,
      btn, out));
  }
  list.append(ul);
}

// proofChecker checks a proof that someone exported, with no server at all.
export function proofChecker() {
  const ta = h("textarea", { id: "proof-json", rows: "5", spellcheck: "false", placeholder: '{"leaf_index":…,"tree_size":…,"leaf_hash":"…","audit_path":[…],"root_hash":"…"}' });
  const out = h("p.verify-result", { role: "status", "aria-live": "polite" });
  return h("details.proof-check",
    h("summary", "Check an exported proof"),
    h("label", { for: "proof-json" }, "Proof JSON (RFC 6962 inclusion proof)"), ta,
    h("button", {
      type: "button", id: "proof-verify",
      onclick: async () => {
        let proof;
        try { proof = JSON.parse(ta.value); } catch (e) { out.dataset.valid = "false"; out.textContent = `Not JSON: ${e.message}`; return; }
        verifyResult(out, await verifyInclusion(proof));
      },
    }, "Verify"), out);
}
