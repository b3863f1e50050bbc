// Run time: what runs on each GPU judged against the ledger's deployments
// in force (docs/runtime.md), for the Asset page, and where a model runs
// now, for the Provenance page.
import { api } from "../api.js";
import { h, fill, fmtTime, pill, unavailable, errorBox, hashValue } from "../dom.js";

const approval = (p) => pill(p.approved ? "approved" : "unapproved", "run");

// runtimeCard fills box (a section) with a GPU's processes from its newest
// workloads report, each approved or not, and the deployments in force
// with any drift of the GPU's firmware since their approval.
export async function runtimeCard(box, id) {
  const title = h("h2#h-runtime", "What runs here");
  let rt;
  try {
    rt = await api(`/assets/${encodeURIComponent(id)}/runtime`);
  } catch (e) {
    fill(box, title, e.missing ? unavailable("Run-time checks", e) : errorBox(e));
    return;
  }
  const procs = rt.processes || [];
  const inForce = rt.in_force || [];
  box.dataset.unapproved = String(procs.filter((p) => p.artifact && !p.approved).length);
  fill(box, title,
    rt.at ? h("p.muted", `Reported ${fmtTime(rt.at)}.`, rt.known ? "" : " The deployments in force are not read from the ledger yet.") : h("p.muted", "No workloads report yet."),
    procs.length ? h("table.plain.runtime", h("thead", h("tr", ["Process", "Model", "Artifact", "Approved"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", procs.map((p) => h("tr", { dataset: { pid: p.pid } },
        h("td", `${p.name} (pid ${p.pid})`),
        h("td", p.model ? h("a", { href: "#/provenance?model=" + encodeURIComponent(p.model) }, p.model) : "—"),
        h("td", p.artifact ? hashValue(p.artifact, "artifact hash") : p.skip ? h("span.muted", p.skip) : "—"),
        h("td", p.artifact ? [approval(p), p.deployment ? ` ${p.deployment}` : "",
          p.image_check === "mismatch" ? h("div.sub.bad", p.reason) :
            p.image_check === "local_only" ? h("div.sub", "image built locally: not compared with the deployment's container") : ""] :
          h("span.muted", "not judged")))))) :
      rt.at ? h("p.muted", "Nothing runs on this GPU.") : null,
    h("h3", "Deployments in force"),
    inForce.length ? h("ul.prov", inForce.map((d) => h("li", h("code", d.deployment), ` model ${d.model} `, hashValue(d.artifact, "artifact hash"),
      d.drift ? h("div.sub.bad", `changed since approval: ${d.drift}`) : h("div.sub", `approved on VBIOS ${d.vbios || "—"}, driver ${d.driver || "—"}`)))) :
      h("p.muted", "No deployment is in force on this GPU."));
}

// modelRuns is a section listing where a model runs now: the GPUs whose
// newest report has a process serving its artifact (or naming it with
// other bytes), approved there or not.
export function modelRuns(model) {
  const box = h("section.card.model-runs", { "aria-labelledby": "h-runs" }, h("h2#h-runs", "Where it runs now"));
  api(`/ledger/models/${encodeURIComponent(model)}/runs`).then((r) => {
    const runs = r.items || [];
    box.append(runs.length ? h("table.plain.runtime", h("thead", h("tr", ["GPU", "Process", "Artifact", "Approved", "Reported"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", runs.map((x) => h("tr", { dataset: { asset: x.asset } },
        h("td", h("a", { href: "#/asset/" + encodeURIComponent(x.asset) }, x.asset)),
        h("td", `${x.name} (pid ${x.pid})`),
        h("td", hashValue(x.artifact, "artifact hash"), x.registered ? null : h("div.sub.bad", "not the registered artifact")),
        h("td", approval(x), x.deployment ? ` ${x.deployment}` : ""),
        h("td", fmtTime(x.at)))))) : h("p.muted", `No GPU reports running ${model}.`));
    box.dataset.ready = "true";
  }).catch((e) => {
    box.append(e.missing ? unavailable("Where models run", e) : errorBox(e));
    box.dataset.ready = "true";
  });
  return box;
}
