// Provenance: datasets -> models -> the hardware they were trained on, with
// their ledger records (each checkable in the browser), and an offline proof
// checker.
import { api, apiText, items } from "../api.js";
import { h, clear, fmtTime, field, unavailable, errorBox, fill, hashValue } from "../dom.js";
import { proofChecker, report, serviceKey, ledgerStatus } from "./ledgerpanel.js";
import { verifyBundle } from "../verify.js";
import { lineageGraph, deploymentsCard, signoffsCard } from "./lineage.js";
import { modelRuns } from "./runtime.js";


// recordVerify is a button that fetches a ledger record's proof bundle and
// checks it here.
function recordVerify(type, id) {
  const out = h("div.verify-result", { role: "status", "aria-live": "polite" });
  const btn = h("button", {
    type: "button",
    onclick: async () => {
      btn.disabled = true;
      delete out.dataset.valid;
      out.textContent = "Checking…";
      try {
        report(out, await verifyBundle(await apiText(`/ledger/proofs/${type}/${encodeURIComponent(id)}`), await serviceKey()));
      } catch (e) {
        out.dataset.valid = "error";
        out.textContent = `Could not fetch the proof: ${e.message}`;
      } finally { btn.disabled = false; }
    },
  }, "Verify record");
  return h("div.actions", btn, h("a", { href: `/api/v1/ledger/proofs/${type}/${encodeURIComponent(id)}`, download: `${type}-${id}-proof.json` }, "Export proof"), out);
}

function datasetItem(d) {
  const t = d.transform || {};
  return h("li", { id: "ds-" + d.id },
    h("strong", d.name || d.id), " ", h("code", d.id), " ", hashValue(d.content_hash, "content hash"),
    (t.parents || []).length ? h("div.sub", "derived from ", t.parents.join(", "), t.description ? ` (${t.description})` : "") : null,
    (d.sources || []).length ? h("div.sub", "sources: ", d.sources.map((s) => (s.kind === "asset" ? h("a", { href: "#/asset/" + encodeURIComponent(s.ref) }, s.ref) : `${s.kind || "source"} ${s.ref || ""}`))
      .flatMap((x, i) => (i ? [", ", x] : [x]))) : null,
    d.consent ? h("div.sub", "licence ", d.consent.licence || "—", (d.consent.use_scope || []).length ? ` · for ${d.consent.use_scope.join(", ")}` : "",
      d.consent.retention_days ? ` · kept ${d.consent.retention_days} days` : "", d.consent.policy_ref ? ` · policy ${d.consent.policy_ref}` : "") : null,
    (d.checks || []).length ? h("div.sub", `${d.checks.length} quality check(s): `, d.checks.map((c) => `${c.name || c.check}${c.passed === false ? " ✘" : " ✔"}`).join(", ")) : null,
    recordVerify("dataset", d.id));
}

function lineageView(box, lin, deployments, signoffs) {
  const m = lin.model || {};
  const tr = m.training || {};
  fill(box, lineageGraph(lin, deployments), h("div.lineage",
    h("section.card", { "aria-labelledby": "h-lds" }, h("h2#h-lds", "Datasets"),
      (lin.datasets || []).length ? h("ul.prov", lin.datasets.map(datasetItem)) : h("p.muted", "No datasets recorded.")),
    h("div.arrow", { "aria-hidden": "true" }, "→"),
    h("section.card", { "aria-labelledby": "h-lm" }, h("h2#h-lm", "Model"),
      h("p", h("strong", m.name || m.id), " ", h("code", m.id)),
      h("dl.kv",
        h("dt", "Artifact"), h("dd", hashValue(m.artifact_hash, "artifact hash")),
        h("dt", "Code"), h("dd", tr.code_ref || "—"),
        h("dt", "Config"), h("dd", hashValue(tr.config_hash, "config hash")),
        h("dt", "Trained"), h("dd", `${fmtTime(tr.start)} – ${fmtTime(tr.end)}`),
        h("dt", "Evaluations"), h("dd", String((m.evaluations || []).length))),
      recordVerify("model", m.id)),
    h("div.arrow", { "aria-hidden": "true" }, "→"),
    h("section.card", { "aria-labelledby": "h-lhw" }, h("h2#h-lhw", "Hardware"),
      (lin.hardware || []).length ? h("ul.prov", lin.hardware.map((hw) => {
        const u = hw.use || {};
        return h("li", h("a", { href: "#/asset/" + encodeURIComponent(u.asset) }, u.asset),
          ` revisions ${u.revision_start}–${u.revision_end}`,
          (hw.evidence || []).length ? h("div.sub.bad", `${hw.evidence.length} health/security evidence record(s) during the run`) : h("div.sub", "no evidence recorded during the run"),
          recordVerify("asset", u.asset));
      })) : h("p.muted", "No hardware recorded."))), h("div.grid", signoffsCard(signoffs), deploymentsCard(deployments)));
}

// pagedList is a list of ledger records (GET path: {items, next}, in id
// order) with a button for the next page.
function pagedList(path, id, item) {
  const ul = h("ul.prov", { id });
  const more = h("button", { type: "button", hidden: true }, "More");
  const box = h("div", ul, more);
  let after = "";
  async function load() {
    more.disabled = true;
    try {
      const page = await api(`${path}?limit=50${after ? "&after=" + encodeURIComponent(after) : ""}`);
      const got = items(page);
      ul.append(...got.map(item));
      if (!ul.children.length) box.replaceChildren(h("p.muted", "None recorded yet."));
      after = (page && page.next) || "";
      more.hidden = !after;
    } catch (e) {
      box.replaceChildren(e.missing ? unavailable("The list", e) : errorBox(e));
    } finally { more.disabled = false; }
  }
  more.onclick = load;
  return { box, load };
}

// recordLists shows the models and datasets on the ledger; a model links to
// its lineage.
function recordLists() {
  const models = pagedList("/ledger/models", "prov-models", (m) =>
    h("li", { "data-id": m.id }, h("a", { href: "#/provenance?model=" + encodeURIComponent(m.id) }, m.id), m.name ? ` ${m.name}` : "",
      h("div.sub", `${(m.datasets || []).length} dataset(s) · registered ${fmtTime(m.registered && m.registered.time)}`)));
  const datasets = pagedList("/ledger/datasets", "prov-datasets", (d) =>
    h("li", { "data-id": d.id }, h("code", d.id), d.name ? ` ${d.name}` : "",
      h("div.sub", (d.transform && (d.transform.parents || []).length) ? `derived from ${d.transform.parents.join(", ")}` : "root dataset")));
  const sec = h("section.card.records", { "aria-labelledby": "h-rec" }, h("h2#h-rec", "On the ledger"),
    h("div.lists", h("div", h("h3", "Models"), models.box), h("div", h("h3", "Datasets"), datasets.box)));
  Promise.all([models.load(), datasets.load()]).then(() => { sec.dataset.ready = "true"; });
  return sec;
}

export async function provenanceView(root, params) {
  const modelIn = h("input", { id: "prov-model", name: "model", value: (params && params.get("model")) || "", placeholder: "model id" });
  const assetIn = h("input", { id: "prov-asset", name: "asset", placeholder: "asset id, e.g. srv-s1-001.gpu3" });
  const box = h("div");
  const found = h("div");
  const chk = h("section.card", { "aria-labelledby": "h-chk" }, h("h2#h-chk", "Check a proof offline"),
    h("p.muted", "Paste an exported proof bundle (or a bare RFC 6962 inclusion proof): it is checked here in the browser with SHA-256 and Ed25519, without asking the server."), proofChecker());
  root.append(h("h1", "Provenance"),
    h("div.filters",
      h("form.inline", { onsubmit: (ev) => { ev.preventDefault(); location.hash = "#/provenance?model=" + encodeURIComponent(modelIn.value.trim()); } },
        field("Model", modelIn), h("button", { type: "submit" }, "Show lineage")),
      h("form.inline", { onsubmit: async (ev) => { ev.preventDefault(); await modelsOn(assetIn.value.trim()); } },
        field("Models trained on asset", assetIn), h("button", { type: "submit" }, "Find"))),
    found, box, recordLists(), chk);

  async function modelsOn(asset) {
    clear(found);
    try {
      const ms = items(await api(`/ledger/assets/${encodeURIComponent(asset)}/models`));
      found.append(ms.length ? h("ul.prov", ms.map((m) => {
        const id = typeof m === "string" ? m : m.id || m.model;
        return h("li", h("a", { href: "#/provenance?model=" + encodeURIComponent(id) }, id));
      })) : h("p.muted", `No model was trained on ${asset}.`));
    } catch (e) {
      found.append(e.missing ? unavailable("Models by asset", e) : errorBox(e));
    }
  }

  const model = params && params.get("model");
  if (model) {
    try {
      const path = `/ledger/models/${encodeURIComponent(model)}`;
      const [lin, deps, atts] = await Promise.all([api(path + "/lineage"), api(path + "/deployments").catch(() => []),
        api(`/ledger/attestations?subject_kind=model&subject=${encodeURIComponent(model)}`).catch(() => [])]);
      lineageView(box, lin, items(deps), items(atts));
      box.after(modelRuns(model)); // where it runs now (runtime.js)
    } catch (e) {
      box.append(e.missing ? unavailable("Model lineage (the ledger)", e) : e.status === 404 ? errorBox(`model ${model} is not on the ledger`) : errorBox(e));
    }
  } else {
    try {
      const st = await api("/ledger/status");
      box.append(ledgerStatus(st), h("p.muted", "Enter a model id to see the datasets it was trained on and the hardware it ran on."));
    } catch (e) {
      box.append(e.missing ? unavailable("The ledger", e) : errorBox(e));
    }
  }
  root.dataset.ready = "true";
}
