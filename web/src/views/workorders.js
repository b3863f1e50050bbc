// Work orders: the planned maintenance that explains an expected change.
import { api, pages, can } from "../api.js";
import { h, clear, fmtTime, label, pill, field, unavailable, errorBox, toast } from "../dom.js";

export async function workOrdersView(root) {
  const box = h("div");
  const formBox = h("div");
  root.append(h("h1", "Work orders"), formBox, box);

  if (can("workorders.write")) {
    const asset = h("input", { name: "asset", required: true, placeholder: "srv-s1-001.gpu3" });
    const kind = h("select", { name: "kind" }, ["firmware_update", "replacement", "repair", "move", "inspection"].map((k) => h("option", { value: k }, label(k))));
    const desc = h("input", { name: "description", placeholder: "What will be done" });
    formBox.append(h("form.card.inline-form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await api("/workorders", { method: "POST", body: { asset: asset.value.trim(), kind: kind.value, description: desc.value } });
          toast("Work order opened.");
          ev.target.reset();
          load();
        } catch (e) { toast(`Failed: ${e.message}`); }
      },
    }, h("h2", "Open a work order"), field("Asset", asset), field("Kind", kind), field("Description", desc), h("button.primary", { type: "submit" }, "Open")));
  }

  async function load() {
    const got = [];
    try {
      await pages("/workorders", (p) => got.push(...p), { limit: 500, max: 5000 });
    } catch (e) {
      clear(box).append(e.missing ? unavailable("Work orders", e) : errorBox(e));
      return;
    }
    const act = (wo, verb, text) => h("button", {
      type: "button",
      onclick: async () => {
        try { await api(`/workorders/${encodeURIComponent(wo.id)}/${verb}`, { method: "POST", body: {} }); load(); } catch (e) { toast(`Failed: ${e.message}`); }
      },
    }, text);
    const row = (wo) => {
      const st = wo.status || wo.state || "";
      return h("tr", { dataset: { id: wo.id } },
        h("td", String(wo.id)),
        h("td", wo.asset ? h("a", { href: "#/asset/" + encodeURIComponent(wo.asset) }, wo.asset) : (wo.assets || []).join(", ")),
        h("td", label(wo.kind || wo.type)),
        h("td", pill(st, "wo")),
        h("td", fmtTime(wo.created || wo.opened)),
        h("td", wo.requested_by || wo.created_by || wo.by || ""),
        h("td", wo.description || wo.reason || ""),
        h("td",
          can("workorders.approve") && /^(open|requested|pending)$/.test(st) ? act(wo, "approve", "Approve") : null,
          can("workorders.write") && /^(approved|open|in_progress)$/.test(st) ? act(wo, "close", "Close") : null));
    };
    const head = h("thead", h("tr", ["Id", "Asset", "Kind", "Status", "Opened", "By", "Description", ""].map((t) => h("th", { scope: "col" }, t))));
    clear(box).append(got.length
      ? h("div.hscroll", h("table.plain", { "aria-label": "Work orders" }, head, h("tbody", got.map(row))))
      : h("p.muted", "No work orders."));
    root.dataset.ready = "true";
  }
  await load();
}
