// The fleet for the support function: open alerts first (a unit down ahead of a scheduled night
// check: send someone instead), then every unit's status with the reasons, refreshed every 10
// seconds (every 2 while a unit is enrolling: it turns active within seconds). Technicians and administrators also see units waiting for enrolment approval (and can
// approve one) and units silent long enough to be decommissioned. Each unit links to its own page
// (#/units/<id>); on a phone the table is a list of cards (console.css, .stack).
import { mount, phrase, reasonsLine, replace, shown } from "../dom.js";
import { reason, t, tn, when, word } from "../i18n.js";

const STATUSES = ["online", "degraded", "offline"];
const TECH_ROLES = ["technician", "administrator"];
const REFRESH_MS = 10000;
const ENROLLING_REFRESH_MS = 2000;
/** The root file system's version and the slot it booted, as the unit's health says. */
function systemLine(health) {
  const version = health && health.system_version;
  if (!version) return shown(version);
  return health.slot ? t("fleet.system_slot", { version, slot: health.slot }) : version;
}

const COLUMNS = ["fleet.col_unit", "fleet.col_lifecycle", "fleet.col_profile", "fleet.col_status", "fleet.col_why", "fleet.col_agent", "fleet.col_system"];

// The link to a unit's own page.
export function unitLink(h, id) {
  return h("a", { href: `#/units/${encodeURIComponent(id)}`, class: "unit-link" }, id);
}

function clock(ts) {
  return when(ts, { date: false });
}

function minutesUntil(ts) {
  const minutes = Math.round((ts - Date.now() / 1000) / 60);
  if (minutes > 1) return tn("time.in_minutes", minutes);
  if (minutes >= -1) return t("time.now");
  return tn("time.minutes_ago", -minutes);
}

export function render(main, ctx) {
  const { h } = ctx;
  const technician = TECH_ROLES.includes(ctx.me?.staff?.role);
  let stopped = false;

  // ---------------------------------------------------------------- open alerts
  const alertsBox = h("section", { id: "alerts", class: "alerts", "aria-labelledby": "alerts-title" },
    h("h2", { id: "alerts-title" }, t("fleet.open_alerts")));
  const alertsList = h("ul", { id: "alerts-list", class: "plain-list" });
  const alertsNone = h("p", { id: "alerts-none", class: "ok", hidden: true }, t("fleet.no_alerts"));
  alertsBox.append(alertsNone, alertsList);

  // ---------------------------------------------------------------- units
  const summary = h("p", { id: "fleet-summary" }, t("common.loading"));
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert", hidden: true });

  mount(main,
    h("h1", {}, t("nav.fleet")),
    alertsBox,
    h("h2", {}, t("fleet.units")),
    summary,
    error,
    h("div", { class: "table-wrap" },
      h("table", { id: "fleet-table", class: "stack fleet-table" },
        h("thead", {}, h("tr", {}, COLUMNS.map((k) => h("th", {}, t(k))))),
        body)),
  );

  function showAlerts(alerts) {
    alertsBox.classList.toggle("raised", alerts.length > 0);
    alertsNone.hidden = alerts.length > 0;
    replace(alertsList, ...alerts.map((a) =>
      h("li", { class: "alert-item", role: "alert", "data-unit": a.unit, "data-alert": a.id },
        h("p", { class: "alert-title" },
          h("b", {}, t("fleet.alert_unit", { unit: a.unit, status: word("state", a.status) })),
          " — ", t("fleet.alert_check", { citizen: a.citizen, at: String(a.check_at_local || "").slice(11, 16) || clock(a.check_at), until: minutesUntil(a.check_at) })),
        h("p", {}, phrase("fleet.alert_why", { why: reasonsLine(a.reasons, a.reason_codes) }),
          a.group ? ` ${t("fleet.alert_group", { group: a.group })}` : "",
          ` ${t("fleet.alert_raised", { at: clock(a.raised_at) })} `,
          h("a", { href: `#/units/${encodeURIComponent(a.unit)}`, class: "unit-link" }, t("fleet.open_unit"))))));
  }

  async function refreshAlerts(background) {
    try {
      const answer = await ctx.api("GET", "/api/alerts?open=1", undefined, { background });
      showAlerts(answer.alerts);
    } catch (err) {
      alertsNone.hidden = true;
      replace(alertsList, h("li", { class: "error" }, t("fleet.alerts_failed", { reason: reason(err.message) })));
    }
  }

  let enrolling = false;
  async function refreshUnits(background) {
    try {
      const answer = await ctx.api("GET", "/api/units", undefined, { background });
      enrolling = answer.units.some((u) => u.lifecycle.state === "enrolling");
      const counts = STATUSES.map((s) => `${answer.units.filter((u) => u.status === s).length} ${word("status_count", s)}`);
      summary.textContent = tn("fleet.summary", answer.count, { counts: counts.join(", ") });
      replace(body,
        ...answer.units.map((u) =>
          h("tr", { class: `${u.status} life-${u.lifecycle.state}`, "data-unit": u.id, "data-lifecycle": u.lifecycle.state },
            h("td", { "data-label": t("fleet.col_unit"), class: "unit-cell" }, unitLink(h, u.id)),
            h("td", { "data-label": t("fleet.col_lifecycle") }, h("span", { class: `lifecycle ${u.lifecycle.state}` }, word("lifecycle", u.lifecycle.state))),
            h("td", { "data-label": t("fleet.col_profile") }, word("profile", u.profile)),
            h("td", { "data-label": t("fleet.col_status") }, h("b", {}, word("state", u.status))),
            h("td", { "data-label": t("fleet.col_why") }, reasonsLine(u.reasons, u.reason_codes)),
            h("td", { "data-label": t("fleet.col_agent") }, shown(u.agent_version)),
            h("td", { "data-label": t("fleet.col_system"), class: "system-version" }, systemLine(u.health)))),
      );
      if (!answer.units.length) body.append(h("tr", {}, h("td", { colspan: COLUMNS.length }, t("fleet.no_units"))));
      error.hidden = true;
    } catch (err) {
      error.textContent = reason(err.message);
      error.hidden = false;
    }
  }

  // ---------------------------------------------------------------- technicians
  // An approved unit is listed at once (enrolling), not at the next refresh.
  const tech = technician ? technicianSections(h, ctx, () => refreshUnits(false)) : null;
  if (tech) main.append(...tech.elements);

  let refreshedAt = 0;
  async function refresh(background) {
    if (stopped) return;
    refreshedAt = Date.now();
    await Promise.all([
      refreshAlerts(background),
      refreshUnits(background),
      tech ? tech.refresh(background) : null,
    ]);
  }

  refresh(false);
  const timer = setInterval(() => {
    if (Date.now() - refreshedAt >= REFRESH_MS) refresh(true);
    else if (enrolling && !stopped) refreshUnits(true);
  }, ENROLLING_REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); };
}

// Enrolment approvals and decommission candidates (technicians and administrators).
function technicianSections(h, ctx, onApproved) {
  const pending = h("ul", { id: "enrolments", class: "plain-list" });
  const candidates = h("ul", { id: "candidates", class: "plain-list" });
  const candidatesNote = h("p", { id: "candidates-note", class: "hint" });
  const approveError = h("p", { id: "approve-error", class: "error", role: "alert", hidden: true });
  const approveOk = h("p", { id: "approve-ok", class: "ok", role: "status", hidden: true });
  const form = h("form", { id: "approve-form", novalidate: true },
    h("label", {}, t("fleet.enrolment_code"), h("input", { name: "code", id: "approve-code", autocomplete: "off", autocapitalize: "characters", required: true })),
    h("label", {}, t("fleet.col_profile"),
      h("select", { name: "profile", id: "approve-profile" },
        h("option", { value: "tv" }, t("fleet.profile_tv")),
        h("option", { value: "nightcam" }, t("fleet.profile_nightcam")))),
    h("label", {}, t("fleet.citizen"), h("input", { name: "citizen", id: "approve-citizen", autocomplete: "off", required: true, placeholder: "c-1001" })),
    h("label", {}, t("fleet.group"), h("span", { class: "hint" }, t("fleet.group_hint")),
      h("input", { name: "group", id: "approve-group", autocomplete: "off", placeholder: "g-night" })),
    // vaka-provision approve --create-citizen: off unless the technician says the citizen is new
    h("label", { class: "check" },
      h("input", { type: "checkbox", name: "create_citizen", id: "approve-create-citizen" }),
      h("span", {}, t("fleet.new_citizen")), h("span", { class: "hint" }, t("fleet.new_citizen_hint"))),
    h("button", { type: "submit" }, t("fleet.approve")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    approveError.hidden = true;
    approveOk.hidden = true;
    const code = f.code.value.trim();
    const citizen = f.citizen.value.trim();
    if (!code || !citizen) {
      approveError.textContent = t("fleet.approve_fill_in");
      approveError.hidden = false;
      return;
    }
    const body = { profile: f.profile.value, citizen };
    if (f.group.value.trim()) body.group = f.group.value.trim();
    if (f.create_citizen.checked) body.create_citizen = true;
    form.querySelector("button").disabled = true;
    try {
      const result = await ctx.api("POST", `/api/enrolments/${encodeURIComponent(code)}/approve`, body);
      approveOk.textContent = t("fleet.approved", { unit: result.unit_id || result.unit || code, citizen });
      approveOk.hidden = false;
      form.reset();
      refresh(false);
      onApproved();
    } catch (err) {
      const unknown = /^there is no citizen (\S+) in the directory/.exec(err.message || "");
      approveError.textContent = unknown ? t("reason.unknown_citizen", { citizen: unknown[1] }) : reason(err.message);
      approveError.hidden = false;
    } finally {
      form.querySelector("button").disabled = false;
    }
  });

  async function refresh(background) {
    try {
      const answer = await ctx.api("GET", "/api/enrolments", undefined, { background });
      replace(pending, ...answer.pending.map((e) => {
        const use = h("button", { type: "button", class: "secondary" }, t("fleet.approve_this"));
        use.addEventListener("click", () => {
          form.elements.code.value = e.code;
          form.elements.profile.value = e.profile === "nightcam" ? "nightcam" : "tv";
          form.elements.citizen.focus();
        });
        return h("li", { "data-code": e.code },
          h("b", { class: "code" }, e.code), " ", t("fleet.pending_line", { profile: word("profile", e.profile), agent: shown(e.agent_version), since: when(e.first_seen) }), " ",
          use);
      }));
      if (!answer.pending.length) pending.append(h("li", {}, t("fleet.none_waiting")));
    } catch (err) {
      replace(pending, h("li", { class: "error" }, reason(err.message)));
    }
    try {
      const answer = await ctx.api("GET", "/api/decommission-candidates", undefined, { background });
      candidatesNote.textContent = answer.warning || t("fleet.none_silent", { days: answer.silent_days });
      replace(candidates, ...answer.candidates.map((c) =>
        h("li", { "data-unit": c.id }, h("b", {}, c.id), " ", t("fleet.silent_line", { days: c.silent_days, seen: when(c.last_seen, { time: false }) }))));
    } catch (err) {
      replace(candidates, h("li", { class: "error" }, reason(err.message)));
    }
  }

  return {
    elements: [
      h("h2", {}, t("fleet.waiting")),
      h("p", { class: "hint" }, t("fleet.waiting_hint")),
      pending,
      approveError,
      approveOk,
      form,
      h("h2", {}, t("fleet.candidates")),
      candidatesNote,
      candidates,
    ],
    refresh,
  };
}
