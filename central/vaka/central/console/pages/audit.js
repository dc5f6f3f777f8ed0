// The "Audit" page: the audit trail newest first, filtered by time, kind and unit, a page at a
// time; at the top, whether the hash chain is intact (the same check as `vaka-central audit verify`).
const PAGE_SIZE = 50;
const KINDS = [
  "ticket_issued", "ticket_refused", "call_started", "call_ended", "call_refused", "call_unanswered",
  "shutter_open", "shutter_closed", "supervision_outcome", "login", "login_failed", "logout",
  "access_refused",
];

export function render(main, ctx) {
  const { h } = ctx;
  const chain = h("p", { id: "audit-chain", class: "chain", role: "status" }, "Checking the audit trail…");
  const error = h("p", { id: "audit-error", class: "error", role: "alert", hidden: true });
  const since = h("input", { id: "audit-since", name: "since", type: "date" });
  const until = h("input", { id: "audit-until", name: "until", type: "date" });
  const kind = h("input", { id: "audit-kind", name: "kind", list: "audit-kinds", autocomplete: "off", placeholder: "any" });
  const unit = h("input", { id: "audit-unit", name: "unit", autocomplete: "off", placeholder: "any" });
  const form = h("form", { id: "audit-filters", class: "filters", "aria-label": "Filter the audit trail" },
    h("label", {}, "From", since),
    h("label", {}, "To (including)", until),
    h("label", {}, "Kind", kind),
    h("label", {}, "Unit", unit),
    h("button", { type: "submit" }, "Show"),
    h("datalist", { id: "audit-kinds" }, ...KINDS.map((k) => h("option", { value: k }))),
  );
  const rows = h("tbody", { id: "audit-rows" });
  const table = h("table", { class: "stack audit-table" },
    h("thead", {}, h("tr", {}, ...["When", "Kind", "Who", "Unit", "Purpose", "Call", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
    rows,
  );
  const empty = h("p", { id: "audit-empty", class: "hint", hidden: true }, "No entries match.");
  const more = h("button", { type: "button", id: "audit-more", class: "secondary more", hidden: true }, "Show older entries");
  main.append(h("h1", {}, "Audit"), chain, error, form, h("div", { class: "table-wrap" }, table), empty, more);

  let nextBefore = null;
  let timezone;
  let gone = false;

  function when(ts) {
    try {
      return new Date(ts * 1000).toLocaleString("sv-SE", { timeZone: timezone });
    } catch (err) {
      return new Date(ts * 1000).toLocaleString("sv-SE");
    }
  }

  function cell(label, ...content) {
    return h("td", { "data-label": label }, ...content);
  }

  function row(e) {
    const detail = Object.entries(e.detail || {})
      .filter(([, v]) => v !== null && v !== "")
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" ");
    return h("tr", { "data-seq": e.seq, "data-kind": e.kind, "data-call-id": e.call_id || "" },
      cell("When", when(e.ts)),
      cell("Kind", h("b", {}, e.kind)),
      cell("Who", e.actor || "—"),
      cell("Unit", e.unit || "—"),
      cell("Purpose", e.purpose || "—"),
      cell("Call", e.call_id || "—"),
      cell("Detail", h("span", { class: "audit-detail" }, detail || "—")),
    );
  }

  function query(before) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (since.value) params.set("since", since.value);
    if (until.value) params.set("until", until.value);
    if (kind.value.trim()) params.set("kind", kind.value.trim());
    if (unit.value.trim()) params.set("unit", unit.value.trim());
    if (before) params.set("before", String(before));
    return `/api/audit?${params}`;
  }

  async function load(before) {
    error.hidden = true;
    let answer;
    try {
      answer = await ctx.api("GET", query(before));
    } catch (err) {
      if (gone) return;
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    if (gone) return;
    timezone = answer.timezone;
    if (answer.verify) {
      const v = answer.verify;
      chain.className = `chain ${v.ok ? "ok" : "error"}`;
      chain.textContent = v.ok
        ? `The audit trail is intact: ${v.entries} entries checked, newest #${answer.head.seq}.`
        : `The audit trail is NOT intact: ${v.problem} (${v.entries} entries read). Tell the administrator.`;
    }
    if (!before) rows.replaceChildren();
    rows.append(...answer.entries.map(row));
    empty.hidden = rows.children.length > 0;
    nextBefore = answer.next_before;
    more.hidden = !nextBefore;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(null);
  });
  more.addEventListener("click", () => load(nextBefore));
  load(null);
  return () => { gone = true; };
}
