// Settings > API tokens (admin only: the tokens.manage action): every API
// token with its role, where it is kept, who made it and when it was last
// used; a form that makes one (shown once, with a copy button: the service
// keeps only its SHA-256) and a Revoke button for the tokens of the token
// file. Tokens of the configuration file are listed, not revoked here.
// The CLI does the same: twin-service token create|list|revoke.
import { api, pages, can } from "../api.js";
import { h, fill, fmtTime, ago, errorBox, toast, field, copyButton } from "../dom.js";

const ROLES = ["viewer", "asset_manager", "security", "maintenance", "ml_engineer", "ml_lead", "compliance", "auditor", "admin"];

export async function tokensView(root) {
  root.append(h("h1", "API tokens"));
  if (!can("tokens.manage")) {
    root.append(h("p.notice", "Only an admin can see and manage API tokens."));
    root.dataset.ready = "true";
    return;
  }
  const name = h("input#token-name", { name: "token-name", required: true, pattern: "[A-Za-z0-9._@\\-]{1,64}", placeholder: "e.g. ml-pipeline", autocomplete: "off" });
  const role = h("select#token-role", { name: "token-role" }, ROLES.map((r) => h("option", { value: r, selected: r === "viewer" ? true : null }, r.replace(/_/g, " "))));
  const created = h("div#token-created", { "aria-live": "polite" });
  const notes = h("div");
  const tbody = h("tbody");
  const table = h("table.plain.tokens", { "aria-label": "API tokens" },
    h("thead", h("tr", ["Name", "Role", "Kept in", "Made by", "Created", "Last used", ""].map((t) => h("th", { scope: "col" }, t)))), tbody);
  const form = h("form.token-form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const got = await api("/auth/tokens", { method: "POST", body: { name: name.value.trim(), role: role.value } });
        fill(created, h("div.notice.token-once", { role: "status" },
          h("p", h("strong", `Token "${got.info.name}" (${got.info.role.replace(/_/g, " ")}) made.`), " Copy it now: it is shown this once, and the service keeps only its SHA-256."),
          h("p", h("code#token-value", got.token), " ", copyButton(got.token, "token")),
          h("p.muted.small", "Use it as Authorization: Bearer TOKEN, or TWINCHAIN_TOKEN=TOKEN for twin-service ledger and token.")));
        name.value = "";
        await load();
      } catch (e) {
        toast(`Not made: ${e.message}`);
      }
    },
  }, field("Name", name), field("Role", role), h("button.primary#token-create", { type: "submit" }, "Create token"));
  root.append(h("p.muted.small", "Machine clients (ML pipelines, scripts, the CLI) sign in with an API token. Tokens from the configuration file are listed here but changed only there."),
    form, created, notes, table);

  function row(t) {
    const kept = t.source === "config" ? "configuration" : "token file";
    return h("tr", { dataset: { name: t.name, source: t.source } },
      h("td.col-name", t.name), h("td.col-role", (t.role || "").replace(/_/g, " ")), h("td.col-source", kept),
      h("td.col-by", t.created_by || "—"), h("td.col-created", t.created ? fmtTime(t.created) : "—"),
      h("td.col-used", { title: t.last_used ? fmtTime(t.last_used) : "" }, t.last_used ? ago(t.last_used) : "never"),
      h("td.col-act", t.source === "file" ? h("button", {
        type: "button", dataset: { action: "revoke" }, "aria-label": `Revoke ${t.name}`,
        onclick: async (ev) => {
          // Two clicks: the first asks, the second revokes.
          if (ev.target.dataset.armed !== "true") {
            ev.target.dataset.armed = "true";
            ev.target.textContent = "Revoke: sure?";
            ev.target.title = "Whatever uses this token stops working at once";
            return;
          }
          ev.target.disabled = true;
          try {
            await api("/auth/tokens/" + encodeURIComponent(t.name), { method: "DELETE" });
            toast(`Token ${t.name} revoked.`);
            await load();
          } catch (e) {
            toast(`Not revoked: ${e.message}`);
            ev.target.disabled = false;
          }
        },
      }, "Revoke") : null));
  }
  async function load() {
    const list = [];
    await pages("/auth/tokens", (got) => list.push(...got));
    fill(tbody, list.length ? list.map(row) : h("tr", h("td.muted", { colspan: "7" }, "No API tokens yet.")));
    table.dataset.loaded = "true";
  }
  try {
    await load();
  } catch (e) {
    fill(notes, errorBox(e));
  }
  root.dataset.ready = "true";
}
