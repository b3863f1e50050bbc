// Provenance: datasets -> models -> the hardware they were trained on, with
// their ledger records; and an offline proof checker.
import { api, items } from "../api.js";
import { h, fmtTime, unavailable, errorBox } from "../dom.js";
import { proofChecker } from "./ledgerpanel.js";

async function firstList(paths) {
  let last;
  for (const p of paths) {
    try { return items(await api(p)); } catch (e) { if (!e.missing) throw e; last = e; }
  }
  throw last;
}

const short = (s) => (s ? String(s).slice(0, 16) + "…" : "—");

export async function provenanceView(root) {
  const ds = h("section.card", { "aria-labelledby": "h-ds" }, h("h2#h-ds", "Datasets"));
  const md = h("section.card", { "aria-labelledby": "h-md" }, h("h2#h-md", "Models"));
  const chk = h("section.card", { "aria-labelledby": "h-chk" }, h("h2#h-chk", "Check a proof offline"),
    h("p.muted", "Paste an exported proof bundle (or a bare RFC 6962 inclusion proof): it is checked here in the browser with SHA-256 and Ed25519, without asking the server."), proofChecker());
  root.append(h("h1", "Provenance"), h("div.grid", ds, md), chk);

  let datasets = [];
  try {
    datasets = await firstList(["/ledger/datasets", "/datasets"]);
    ds.append(datasets.length ? h("ul.prov", datasets.map((d) => h("li", { id: "ds-" + (d.id || d.name) },
      h("strong", d.name || d.id), " ", h("span.hash", { title: d.hash || d.content_hash }, short(d.hash || d.content_hash)),
      d.licence || d.license ? h("div.sub", `licence ${d.licence || d.license}`) : null,
      (d.parents || d.sources || []).length ? h("div.sub", "from ", (d.parents || d.sources).join(", ")) : null)))
      : h("p.muted", "No datasets recorded."));
  } catch (e) {
    ds.append(e.missing ? unavailable("Datasets", e) : errorBox(e));
  }
  try {
    const models = await firstList(["/ledger/models", "/models"]);
    md.append(models.length ? h("ul.prov", models.map((m) => {
      const hw = (m.training && m.training.hardware) || m.hardware || [];
      return h("li",
        h("strong", m.name || m.id), " ", h("span.hash", { title: m.hash || m.artifact_hash }, short(m.hash || m.artifact_hash)),
        (m.datasets || []).length ? h("div.sub", "trained on ", (m.datasets || []).map((d) => h("a", { href: "#/provenance", title: d }, String(d)))) : null,
        hw.length ? h("div.sub", "hardware ", hw.map((x) => {
          const id = typeof x === "string" ? x : x.asset || x.id;
          return h("a", { href: "#/asset/" + encodeURIComponent(id) }, id, typeof x === "object" && x.revision ? ` @rev ${x.revision}` : "");
        }).flatMap((a, i) => (i ? [", ", a] : [a]))) : null,
        m.time || m.created ? h("div.sub", fmtTime(m.time || m.created)) : null);
    })) : h("p.muted", "No models recorded."));
  } catch (e) {
    md.append(e.missing ? unavailable("Models", e) : errorBox(e));
  }
  root.dataset.ready = "true";
}
