// The "Audit" page: the audit trail newest first as sentences (who did what, to which citizen or
// unit, when), filtered by kind, unit, staff member and dates, a page at a time; at the top,
// whether the hash chain is intact (the same check as `vaka-central audit verify`).
import { h, mount, replace, shown } from "../dom.js";
import { reason, t, tn, when, word } from "../i18n.js";

const PAGE_SIZE = 50;
// The kinds offered in the filter (the catalog has a name and a sentence for each: audit.kind.*,
// audit.say.*); entries of other kinds still show, with a general sentence.
export const KINDS = [
  "ticket_issued", "ticket_refused", "call_started", "call_ended", "call_refused", "call_unanswered",
  "call_cancelled",
  "shutter_open", "shutter_closed", "supervision_outcome", "outcome_refused",
  "duty_on", "duty_off", "duty_refused",
  "login", "login_failed", "login_locked", "logout", "logout_idle", "access_refused",
  "password_changed", "totp_enrolled", "totp_enrol_failed", "totp_reset", "recovery_code_used",
  "account_unlocked",
  "message_created", "message_refused", "message_missed",
  "alert_raised", "alert_cleared", "unit_down_before_check",
  "unit_enrolled", "unit_assigned", "enrolment_refused", "config_pushed", "cert_renewed",
  "renewal_refused", "rotate_ordered", "unit_revoked", "unit_decommissioned",
  "unit_suspended", "unit_resumed", "unit_activated", "unit_reenrol_ordered",
  "privacy_mode_started", "privacy_mode_ended", "view_escalated", "consent_given", "consent_withdrawn",
  "tv_to_tv_call_ended",
];

// The sentence for one entry, in the chosen language.
export function sentence(e) {
  const d = e.detail || {};
  const params = {
    actor: e.actor || t("audit.someone"),
    unit: e.unit || "—",
    citizen: d.citizen || "—",
    purpose: word("purpose", e.purpose),
    outcome: word("outcome", d.outcome),
    reason: d.reason ? reason(d.reason) : "—",
    staff: d.staff || "—",
    address: d.address || "—",
    failures: d.failures,
    // "citizen c-1001 (unit nc-0042)", or only the unit where the entry names no citizen
    subject: d.citizen
      ? (e.unit ? t("audit.subject", { citizen: d.citizen, unit: e.unit }) : t("audit.citizen", { citizen: d.citizen }))
      : t("audit.unit_named", { unit: e.unit || "—" }),
    // a call between two citizens' TVs: the other side
    callee_citizen: d.callee_citizen || "—",
    callee_unit: d.callee_unit || "—",
    caller_citizen: d.caller_citizen || "—",
    duration: d.duration_s !== undefined && d.duration_s !== null ? t("audit.seconds", { n: Math.round(d.duration_s) }) : "—",
  };
  const key = `audit.say.${e.kind}`;
  const text = t(key, params);
  return text === key ? t("audit.say.other", { ...params, kind: e.kind }) : text;
}

export function render(main, ctx) {
  const chain = h("p", { id: "audit-chain", class: "chain", role: "status" }, t("audit.checking"));
  const error = h("p", { id: "audit-error", class: "error", role: "alert", hidden: true });
  const since = h("input", { id: "audit-since", name: "since", type: "date" });
  const until = h("input", { id: "audit-until", name: "until", type: "date" });
  const kind = h("select", { id: "audit-kind", name: "kind" },
    h("option", { value: "" }, t("audit.any_kind")),
    ...KINDS.map((k) => h("option", { value: k }, word("audit.kind", k)))
      .sort((a, b) => a.textContent.localeCompare(b.textContent)));
  const unit = h("input", { id: "audit-unit", name: "unit", autocomplete: "off", placeholder: t("audit.any") });
  const actor = h("input", { id: "audit-actor", name: "actor", autocomplete: "off", placeholder: t("audit.any") });
  const clear = h("button", { type: "button", id: "audit-clear", class: "secondary" }, t("audit.clear"));
  const form = h("form", { id: "audit-filters", class: "filters", "aria-label": t("audit.filters") },
    h("label", {}, t("audit.kind"), kind),
    h("label", {}, t("audit.unit"), unit),
    h("label", {}, t("audit.staff"), actor),
    h("label", {}, t("common.from"), since),
    h("label", {}, t("common.to"), until),
    h("div", { class: "filter-buttons" }, h("button", { type: "submit", id: "audit-show" }, t("common.show")), clear),
  );
  const rows = h("tbody", { id: "audit-rows" });
  const head = ["audit.col_when", "audit.col_what", "audit.col_who", "audit.col_citizen_unit"];
  const table = h("table", { class: "stack audit-table" },
    h("thead", {}, h("tr", {}, ...head.map((k) => h("th", { scope: "col" }, t(k))))),
    rows,
  );
  const count = h("p", { id: "audit-count", class: "hint", role: "status" });
  const empty = h("p", { id: "audit-empty", class: "hint", hidden: true }, t("audit.empty"));
  const more = h("button", { type: "button", id: "audit-more", class: "secondary more", hidden: true }, t("audit.more"));
  mount(main, h("h1", {}, t("nav.audit")), chain, error, form, count, h("div", { class: "table-wrap" }, table), empty, more);

  let nextBefore = null;
  let timezone;
  let gone = false;

  function cell(label, ...content) {
    return h("td", { "data-label": t(label) }, ...content);
  }

  function row(e) {
    const d = e.detail || {};
    const where = [
      d.citizen ? t("audit.citizen", { citizen: d.citizen }) : null,
      e.unit ? t("audit.unit_named", { unit: e.unit }) : null,
    ].filter(Boolean).join(" · ");
    return h("tr", { "data-seq": e.seq, "data-kind": e.kind, "data-call-id": e.call_id || "" },
      cell("audit.col_when", h("time", { datetime: new Date(e.ts * 1000).toISOString() }, when(e.ts, { timeZone: timezone }))),
      cell("audit.col_what", h("span", { class: "audit-what" }, sentence(e)),
        d.note ? h("span", { class: "hint audit-note" }, ` “${d.note}”`) : null,
        h("span", { class: "hint audit-kind" }, ` · ${word("audit.kind", e.kind)} #${e.seq}`)),
      cell("audit.col_who", shown(e.actor)),
      cell("audit.col_citizen_unit", where || "—"),
    );
  }

  function query(before) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (since.value) params.set("since", since.value);
    if (until.value) params.set("until", until.value);
    if (kind.value) params.set("kind", kind.value);
    if (unit.value.trim()) params.set("unit", unit.value.trim());
    if (actor.value.trim()) params.set("actor", actor.value.trim());
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
      error.textContent = reason(err.message);
      error.hidden = false;
      return;
    }
    if (gone) return;
    timezone = answer.timezone;
    if (answer.verify) {
      const v = answer.verify;
      chain.className = `chain ${v.ok ? "ok" : "error"}`;
      chain.textContent = v.ok
        ? t("audit.chain_ok", { entries: v.entries, head: answer.head.seq })
        : t("audit.chain_broken", { problem: v.problem, entries: v.entries });
    }
    if (!before) replace(rows);
    mount(rows, ...answer.entries.map(row));
    empty.hidden = rows.children.length > 0;
    count.textContent = rows.children.length ? tn("audit.shown", rows.children.length, { zone: timezone }) : "";
    nextBefore = answer.next_before;
    more.hidden = !nextBefore;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(null);
  });
  clear.addEventListener("click", () => {
    form.reset();
    load(null);
  });
  more.addEventListener("click", () => load(nextBefore));
  load(null);
  return () => { gone = true; };
}
