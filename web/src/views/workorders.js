// Work orders: the planned maintenance that explains an expected change. An
// order names an asset, the fields it will change and a window; a second
// person with an approving role approves it.
import { api, pages, can, session } from "../api.js";
import { h, clear, fmtTime, label, pill, field, unavailable, errorBox, toast, fill } from "../dom.js";

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export async function workOrdersView(root) {
  const box = h("div");
  const formBox = h("div");
  root.append(h("h1", "Work orders"), formBox, box);

  if (can("workorders.write")) {
    const asset = h("input", { name: "asset", required: true, placeholder: "srv-s1-001.gpu3" });
    const fieldIn = h("input", { name: "field", required: true, value: "firmware.vbios", placeholder: "firmware.vbios" });
    const to = h("input", { name: "to", placeholder: "new value (blank: any)" });
    const now = new Date();
    const start = h("input", { name: "start", type: "datetime-local", value: localInput(now), required: true });
    const end = h("input", { name: "end", type: "datetime-local", value: localInput(new Date(now.getTime() + 4 * 3600e3)), required: true });
    const reason = h("input", { name: "reason", placeholder: "What will be done and why" });
    formBox.append(h("form.card.inline-form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await api("/workorders", {
            method: "POST",
            body: {
              asset: asset.value.trim(), reason: reason.value,
              changes: [{ field: fieldIn.value.trim(), to: to.value.trim() || undefined }],
              start: new Date(start.value).toISOString(), end: new Date(end.value).toISOString(),
            },
          });
          toast("Work order opened; it needs approval by someone else.");
          load();
        } catch (e) { toast(`Failed: ${e.message}`); }
      },
    }, h("h2", "Open a work order"), field("Asset", asset), field("Field that will change", fieldIn), field("To", to),
    field("From", start), field("Until", end), field("Reason", reason), h("button.primary", { type: "submit" }, "Open")));
  }

  async function load() {
    const got = [];
    try {
      await pages("/workorders", (p) => got.push(...p), { limit: 500, max: 5000 });
    } catch (e) {
      fill(box, e.missing ? unavailable("Work orders", e) : errorBox(e));
      root.dataset.ready = "true";
      return;
    }
    const act = (wo, verb, text) => h("button", {
      type: "button",
      onclick: async () => {
        try { await api(`/workorders/${encodeURIComponent(wo.id)}/${verb}`, { method: "POST", body: {} }); load(); } catch (e) { toast(`Failed: ${e.message}`); }
      },
    }, text);
    const row = (wo) => {
      const st = wo.state || wo.status || "";
      const mine = session.me && wo.created_by === session.me.user;
      return h("tr", { dataset: { id: wo.id } },
        h("td", String(wo.id)),
        h("td", wo.asset ? h("a", { href: "#/asset/" + encodeURIComponent(wo.asset) }, wo.asset) : ""),
        h("td", (wo.changes || []).map((c) => h("div", h("code", c.field), c.to ? ` → ${c.to}` : ""))),
        h("td", pill(st, "wo")),
        h("td", `${fmtTime(wo.start)} – ${fmtTime(wo.end)}`),
        h("td", `${wo.created_by || ""}${wo.creator_role ? " (" + label(wo.creator_role) + ")" : ""}`,
          wo.approved_by ? h("div.sub", `approved by ${wo.approved_by}`) : null),
        h("td", wo.reason || "", (wo.covered || []).length ? h("div.sub", `explained ${wo.covered.length} change(s)`) : null),
        h("td",
          st === "pending" && can("workorders.approve") && !mine ? act(wo, "approve", "Approve") : null,
          st === "pending" || st === "approved" ? (can("workorders.write") ? act(wo, "cancel", "Cancel") : null) : null));
    };
    const head = h("thead", h("tr", ["Id", "Asset", "Expected changes", "State", "Window", "Opened by", "Reason", ""].map((t) => h("th", { scope: "col" }, t))));
    fill(box, got.length
      ? h("div.hscroll", h("table.plain", { "aria-label": "Work orders" }, head, h("tbody", got.map(row))))
      : h("p.muted", "No work orders."));
    root.dataset.ready = "true";
  }
  await load();
}
