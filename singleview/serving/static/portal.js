// singleview support portal: look a customer up by email (GET /customers-sv/{email}).
// Plain JS, no build step. Customer data is only ever put into the page with
// textContent (never innerHTML), and the page's CSP allows no inline script.
"use strict";

(function () {
  const KEY_STORAGE = "singleview.apiKey";
  const TIMEOUT_MS = 15000;
  const $ = (id) => document.getElementById(id);
  let inflight = null;

  // --- small DOM helpers -----------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const has = (v) => v !== null && v !== undefined && v !== "";
  const dash = (v) => (has(v) ? String(v) : "—");

  function when(iso) {
    if (!has(iso)) return "—";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function money(amount, currency) {
    if (!has(amount)) return "—";
    return has(currency) ? `${amount} ${currency}` : String(amount);
  }

  function fields(dl, rows) {
    dl.replaceChildren();
    for (const [label, value, testid] of rows) {
      dl.append(el("dt", { text: label }), el("dd", { "data-testid": testid }, value instanceof Node ? value : dash(value)));
    }
  }

  function table(headers, rows, numeric) {
    const num = new Set(numeric || []);
    const thead = el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", { class: num.has(i) ? "num" : null, text: h }))));
    const tbody = el("tbody", {}, ...rows.map((row) =>
      el("tr", {}, ...row.map((cell, i) => el("td", { class: num.has(i) ? "num" : null }, cell instanceof Node ? cell : dash(cell))))));
    return el("table", {}, thead, tbody);
  }

  const empty = (text) => el("p", { class: "empty", text });
  const badge = (text, kind) => el("span", { class: `badge ${kind || ""}`.trim(), text });

  // --- status line --------------------------------------------------------------
  function status(kind, text) {
    const s = $("status");
    s.className = kind;
    s.dataset.state = kind;
    s.textContent = text;
    s.hidden = !text;
  }

  // --- API key ------------------------------------------------------------------
  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }
  function showKeyState() {
    const key = storedKey();
    $("key-state").textContent = key ? "key set for this tab" : "no key";
    $("api-key").value = "";
    $("api-key").placeholder = key ? "key kept for this tab" : "paste your API key";
  }
  function saveKey(ev) {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) { status("error", "Paste an API key first."); return; }
    sessionStorage.setItem(KEY_STORAGE, key);
    showKeyState();
    status("", "");
    if ($("email").value.trim()) lookup();
  }
  function clearKey() {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
  }

  // --- look-up ------------------------------------------------------------------
  async function describeError(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    const detail = body && body.detail ? String(body.detail) : resp.statusText || "no detail";
    switch (resp.status) {
      case 401: return `API key missing: enter your key above (server said: ${detail}).`;
      case 403: return `API key not accepted: check the key above (server said: ${detail}).`;
      case 400: return `The request was rejected: ${detail}`;
      case 503: return `The customer database is unavailable right now; try again in a few seconds. (${detail})`;
      default: return `Error ${resp.status}: ${detail}`;
    }
  }

  async function lookup(ev) {
    if (ev) ev.preventDefault();
    const email = $("email").value.trim();
    if (!email) { status("error", "Type an email address to look up."); return; }
    if (!email.includes("@")) { status("error", `"${email}" is not an email address.`); return; }
    if (inflight) inflight.abort();
    const ctrl = new AbortController();
    inflight = ctrl;
    const timer = setTimeout(() => ctrl.abort("timeout"), TIMEOUT_MS);
    const headers = { Accept: "application/json" };
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;

    $("result").hidden = true;
    $("search").disabled = true;
    status("loading", `Looking up ${email}…`);
    try {
      const resp = await fetch(`/customers-sv/${encodeURIComponent(email)}`, { headers, signal: ctrl.signal });
      if (inflight !== ctrl) return; // a newer search took over
      if (resp.status === 404) {
        status("not-found", `No customer found with email ${email.toLowerCase()}.`);
        return;
      }
      if (!resp.ok) { status("error", await describeError(resp)); return; }
      const doc = await resp.json();
      render(doc);
      status("", "");
      $("result").hidden = false;
    } catch (err) {
      if (inflight !== ctrl) return;
      const timedOut = ctrl.signal.aborted;
      status("error", timedOut ? `No answer from the server after ${TIMEOUT_MS / 1000} s; try again.`
                               : `Could not reach the server: ${err && err.message ? err.message : err}`);
    } finally {
      clearTimeout(timer);
      if (inflight === ctrl) { inflight = null; $("search").disabled = false; }
    }
  }

  // --- rendering ------------------------------------------------------------------
  function address(a) {
    if (!a) return null;
    const parts = [a.street, [a.postal_code, a.city].filter(has).join(" "), a.state, a.country].filter(has);
    return parts.length ? parts.join(", ") : null;
  }

  function renderProfile(doc) {
    const crm = doc.crm_info || {};
    const stats = doc.stats || {};
    const ltv = Object.entries(stats.lifetime_value || {}).map(([c, v]) => `${v} ${c}`).join(", ");
    const crmName = [crm.first_name, crm.last_name].filter(has).join(" ");
    fields($("profile-fields"), [
      ["Name", doc.name || crmName, "name"],
      ["Email", doc.email || doc._id, "email"],
      ["Phone", crm.phone, "phone"],
      ["Address", address(crm.mailing_address), "address"],
      ["CRM contact", [crm.crm_id, crmName && crmName !== doc.name ? `(${crmName})` : null].filter(has).join(" ") || null, "crm-id"],
      ["Other CRM ids", (crm.crm_ids || []).filter((i) => i !== crm.crm_id).join(", ") || null, "crm-ids"],
      ["CRM last modified", crm.last_modified_at ? when(crm.last_modified_at) : null, "crm-modified"],
      ["Orders", has(stats.order_count) ? String(stats.order_count) : "0", "order-count"],
      ["Lifetime value", ltv || null, "ltv"],
      ["First / last order", stats.first_order_at ? `${when(stats.first_order_at)} / ${when(stats.last_order_at)}` : null, "order-dates"],
      ["Sources", (doc.sources || []).join(", ") || null, "sources"],
      ["Updated", when(doc.updated_at), "updated"],
    ]);
  }

  function renderOrders(doc) {
    const box = $("orders");
    box.replaceChildren();
    const orders = (doc.order_history || []).slice().sort((a, b) => {
      const ta = Date.parse(a.created_at) || 0, tb = Date.parse(b.created_at) || 0;
      return tb - ta || String(b.order_id).localeCompare(String(a.order_id));
    });
    const ltv = Object.entries((doc.stats || {}).lifetime_value || {}).map(([c, v]) => `${v} ${c}`).join(", ");
    $("orders-summary").textContent = orders.length
      ? `(${orders.length}, newest first${ltv ? ` · lifetime value ${ltv}` : ""})` : "";
    if (!orders.length) { box.append(empty("No orders.")); return; }
    for (const o of orders) {
      const statusText = [o.status, o.state && o.state !== o.status ? o.state : null].filter(has).join(" / ") || "unknown";
      const items = (o.items || []).slice().sort((a, b) => String(a.item_id).localeCompare(String(b.item_id), undefined, { numeric: true }));
      const head = el("div", { class: "order-head" },
        el("span", { class: "id", "data-testid": "order-id" }, `Order ${dash(o.order_id)}`),
        has(o.increment_id) ? el("span", { class: "muted", text: `#${o.increment_id}` }) : null,
        el("span", { text: when(o.created_at) }),
        badge(statusText, String(o.status || "").toLowerCase()),
        el("span", { class: "total", "data-testid": "order-total", text: money(o.grand_total, o.currency) }));
      const body = items.length
        ? table(["SKU", "Item", "Qty", "Price", "Row total"],
                items.map((i) => [el("code", { "data-testid": "sku", text: dash(i.sku) }), i.name, i.qty,
                                  money(i.price, o.currency), money(i.row_total, o.currency)]), [2, 3, 4])
        : empty("No items recorded for this order.");
      box.append(el("article", { class: "order", "data-order-id": o.order_id || "" }, head, body));
    }
  }

  function renderMarketing(doc) {
    const m = doc.marketing_preferences;
    const props = $("marketing-properties");
    props.replaceChildren();
    if (!m) {
      fields($("marketing-fields"), [["Status", "No marketing data for this customer.", "opt-out"]]);
      props.append(empty("None."));
      return;
    }
    const optOut = m.email_opt_out === true ? badge("Opted out of email", "opted-out")
      : m.email_opt_out === false ? badge("Subscribed to email", "subscribed") : badge("Unknown");
    fields($("marketing-fields"), [
      ["Email", optOut, "opt-out"],
      ["HubSpot id", m.hubspot_id, "hubspot-id"],
      ["Last page view", doc.stats && doc.stats.last_viewed_at ? when(doc.stats.last_viewed_at) : null, "last-viewed"],
    ]);
    const entries = Object.entries(m.properties || {}).sort(([a], [b]) => a.localeCompare(b));
    props.append(entries.length
      ? table(["Property", "Value"], entries.map(([k, v]) => [el("code", { text: k }), typeof v === "object" && v !== null ? JSON.stringify(v) : v]))
      : empty("None."));
  }

  function renderViews(doc) {
    const m = doc.marketing_preferences || {};
    const cats = (m.viewed_categories || []).slice().sort((a, b) => (b.views || 0) - (a.views || 0)
      || String(a.category).localeCompare(String(b.category)));
    $("categories").replaceChildren(cats.length
      ? table(["Category", "Views", "Last viewed"], cats.map((c) => [c.category, c.views, when(c.last_viewed_at)]), [1])
      : empty("No categories viewed."));
    const views = (m.browsing_history || []).slice().sort((a, b) => (Date.parse(b.viewed_at) || 0) - (Date.parse(a.viewed_at) || 0));
    $("pageviews").replaceChildren(views.length
      ? table(["When", "Page", "Category", "URL"], views.map((v) => [when(v.viewed_at), v.title, v.category, el("code", { text: dash(v.url) })]))
      : empty("No page views recorded."));
  }

  function render(doc) {
    renderProfile(doc);
    renderOrders(doc);
    renderMarketing(doc);
    renderViews(doc);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", saveKey);
    $("key-clear").addEventListener("click", clearKey);
    $("search-form").addEventListener("submit", lookup);
    showKeyState();
    (storedKey() ? $("email") : $("api-key")).focus();
  });
})();
