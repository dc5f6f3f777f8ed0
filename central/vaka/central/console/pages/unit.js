// One unit's page (#/units/<id>, linked from the fleet): its status and lifecycle, open alerts,
// health history and last calls, refreshed every 10 seconds (every 2 while the unit is enrolling:
// it turns active within seconds of its first connection); for technicians and administrators
// the actions its lifecycle allows (push config, suspend/resume, revoke, re-enrol, decommission,
// enrol again with a new code), each asking for confirmation first.
import { mount, reasonsLine, replace, shown } from "../dom.js";
import { mmss, reason, said, t, tn, when, word } from "../i18n.js";

const TECH_ROLES = ["technician", "administrator"];
const REFRESH_MS = 10000;
const ENROLLING_REFRESH_MS = 2000;
// What a technician may do in each lifecycle state (central refuses the rest with a reason).
const ACTIONS = {
  enrolling: ["push-config", "revoke", "decommission"],
  active: ["push-config", "suspend", "revoke", "reenrol", "decommission"],
  suspended: ["push-config", "resume", "revoke", "reenrol", "decommission"],
  revoked: ["decommission"],
  decommissioned: [],
};
// Actions that need a reason (central keeps it in the audit trail), and those that cannot be undone.
const NEEDS_REASON = ["suspend", "revoke", "reenrol", "decommission"];
const DANGER = ["revoke", "reenrol", "decommission"];
// States in which the unit can be enrolled again with the code it shows.
const ENROL_AGAIN = ["enrolling", "revoked", "decommissioned"];

function health(hh, key) {
  const v = hh || {};
  switch (key) {
    case "temp": return v.cpu_temp_c === undefined || v.cpu_temp_c === null ? "—" : `${Math.round(v.cpu_temp_c)} °C`;
    case "memory": return v.mem_used_pct === undefined || v.mem_used_pct === null ? "—" : `${Math.round(v.mem_used_pct)} %`;
    case "link": return v.link && v.link.quality_pct !== undefined && v.link.quality_pct !== null ? `${Math.round(v.link.quality_pct)} %` : "—";
    case "rtt": return v.broker_rtt_ms === undefined || v.broker_rtt_ms === null ? "—" : `${Math.round(v.broker_rtt_ms)} ms`;
    case "camera": return v.camera_present === undefined || v.camera_present === null ? "—" : t(v.camera_present ? "unit.yes" : "unit.no");
    case "clock": return v.clock_synced === undefined || v.clock_synced === null ? "—" : t(v.clock_synced ? "unit.yes" : "unit.no");
    default: return "—";
  }
}
const HEALTH_COLUMNS = ["temp", "memory", "link", "rtt", "camera", "clock"];

function callResult(c) {
  if (c.kind === "call_ended") return t("unit.call_ended", { duration: c.duration_s === null || c.duration_s === undefined ? "—" : mmss(c.duration_s), reason: shown(c.reason && said(c.reason, c.reason_code, c.params)) });
  if (c.kind === "call_unanswered") return t("unit.call_unanswered");
  return t("unit.call_refused", { reason: shown(c.reason && said(c.reason, c.reason_code, c.params)) });
}

export function render(main, ctx) {
  const { h } = ctx;
  const unitId = ctx.params[0] || "";
  const technician = TECH_ROLES.includes(ctx.me?.staff?.role);
  let stopped = false;
  let unit = null;
  let confirming = null; // the action whose confirmation is open (kept across refreshes)

  const error = h("p", { id: "unit-error", class: "error", role: "alert", hidden: true });
  const ok = h("p", { id: "unit-ok", class: "ok", role: "status", hidden: true });
  const facts = h("dl", { id: "unit-facts", class: "facts" });
  const alertsList = h("ul", { id: "unit-alerts", class: "plain-list" });
  const historyBody = h("tbody");
  const healthHint = h("p", { class: "hint", id: "unit-health-hint" });
  const callsList = h("ul", { id: "unit-calls", class: "plain-list" });
  const actions = h("section", { id: "unit-actions", class: "unit-actions", "aria-labelledby": "unit-actions-title", hidden: true });

  mount(main,
    h("p", {}, h("a", { href: "#/fleet", id: "unit-back" }, t("unit.back"))),
    h("h1", {}, t("unit.title", { unit: unitId })),
    error, ok,
    facts,
    actions,
    h("h2", {}, t("unit.open_alerts")), alertsList,
    h("h2", {}, t("unit.health")),
    healthHint,
    h("div", { class: "table-wrap" },
      h("table", { id: "unit-health", class: "stack" },
        h("thead", {}, h("tr", {}, h("th", {}, t("unit.col_when")), HEALTH_COLUMNS.map((k) => h("th", {}, t(`unit.col_${k}`))))),
        historyBody)),
    h("h2", {}, t("unit.calls")), callsList,
  );

  function show(el, text) {
    el.textContent = text || "";
    el.hidden = !text;
  }

  function fact(name, value, id) {
    return [h("dt", {}, t(name)), h("dd", id ? { id } : {}, value)];
  }

  function draw(u, withActions = true) {
    const life = u.lifecycle;
    const lifeText = [word("lifecycle", life.state),
      life.since ? ` ${t("unit.since", { at: when(life.since) })}` : "",
      life.reason ? ` — ${said(life.reason, life.reason_code, life.params)}` : ""].join("");
    replace(facts,
      fact("unit.status", h("span", { class: `unit-status ${u.status}` }, word("state", u.status),
        u.reasons.length ? [" (", reasonsLine(u.reasons, u.reason_codes), ")"] : ""), "unit-status"),
      fact("unit.lifecycle", h("span", { class: `lifecycle ${life.state}` }, lifeText), "unit-lifecycle"),
      fact("unit.citizen", shown(u.citizen), "unit-citizen"),
      fact("fleet.col_profile", word("profile", u.profile)),
      fact("fleet.col_agent", shown(u.agent_version)),
      fact("unit.last_seen", u.last_seen ? when(u.last_seen) : t("unit.never")),
    );
    replace(alertsList, ...u.open_alerts.map((a) =>
      h("li", { class: "alert-item", "data-alert": a.id },
        h("b", {}, t("unit.alert_line", { at: String(a.check_at_local || "").slice(11, 16) || when(a.check_at, { date: false }), citizen: a.citizen })),
        " ", reasonsLine(a.reasons, a.reason_codes))));
    if (!u.open_alerts.length) alertsList.append(h("li", { class: "ok-line" }, t("fleet.no_alerts")));
    const period = Number(u.health_period_s) || 300;
    healthHint.textContent = t("unit.health_hint", {
      period: period % 60 === 0 ? tn("duration.minutes", period / 60) : tn("duration.seconds", Math.round(period)),
    });
    replace(historyBody, ...u.health_history.map((s) =>
      h("tr", {},
        h("td", { "data-label": t("unit.col_when") }, when(s.received_at)),
        HEALTH_COLUMNS.map((k) => h("td", { "data-label": t(`unit.col_${k}`) }, health(s.health, k))))));
    if (!u.health_history.length) historyBody.append(h("tr", {}, h("td", { colspan: HEALTH_COLUMNS.length + 1 }, t("unit.no_health"))));
    replace(callsList, ...u.calls.map((c) =>
      h("li", { "data-call-id": c.call_id || "", "data-kind": c.kind },
        h("b", {}, when(c.ts)), " · ", word("purpose", c.purpose), " · ", shown(c.actor), " · ", callResult(c))));
    if (!u.calls.length) callsList.append(h("li", {}, t("unit.no_calls")));
    if (technician && withActions) drawActions(u);
  }

  // ---------------------------------------------------------------- actions (technicians)
  function drawActions(u) {
    const state = u.lifecycle.state;
    const allowed = ACTIONS[state] || [];
    const buttons = allowed.map((name) => h("button", {
      type: "button", id: `action-${name}`, class: DANGER.includes(name) ? "secondary danger-outline" : "secondary",
      onclick: () => { confirming = name; drawActions(unit); },
    }, t(`unit.action.${name}`)));
    const parts = [h("h2", { id: "unit-actions-title" }, t("unit.actions")), h("div", { class: "action-buttons" }, buttons)];
    if (confirming && allowed.includes(confirming)) parts.push(confirmForm(u, confirming));
    else confirming = null;
    if (ENROL_AGAIN.includes(state)) parts.push(enrolForm(u));
    if (!allowed.length && !ENROL_AGAIN.includes(state)) parts.push(h("p", { class: "hint" }, t("unit.no_actions")));
    replace(actions, ...parts);
    actions.hidden = false;
  }

  function confirmForm(u, name) {
    const reasonInput = NEEDS_REASON.includes(name)
      ? h("input", { id: "confirm-reason", name: "reason", maxlength: 200, autocomplete: "off", required: true })
      : null;
    const language = name === "push-config" && u.profile === "tv"
      ? h("select", { id: "confirm-language", name: "language" },
        ["sv", "da", "en"].map((l) => h("option", { value: l }, word("language", l))))
      : null;
    const form = h("form", { id: `confirm-${name}`, class: `confirm ${DANGER.includes(name) ? "danger" : ""}`, novalidate: true },
      h("p", { class: "confirm-question" }, t(`unit.confirm.${name}`, { unit: u.id })),
      reasonInput ? h("label", {}, t("unit.reason"), reasonInput) : null,
      language ? h("label", {}, t("unit.tv_language"), language) : null,
      h("div", { class: "confirm-buttons" },
        h("button", { type: "submit", id: "confirm-yes", class: DANGER.includes(name) ? "danger" : "" }, t(`unit.yes.${name}`)),
        h("button", { type: "button", id: "confirm-cancel", class: "secondary", onclick: () => { confirming = null; drawActions(unit); } }, t("unit.cancel"))));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const why = reasonInput ? reasonInput.value.trim() : "";
      if (reasonInput && why.length < 3) {
        show(error, t("unit.give_reason"));
        reasonInput.focus();
        return;
      }
      for (const b of form.querySelectorAll("button")) b.disabled = true;
      show(error, "");
      try {
        await act(u, name, why, language ? language.value : null);
        confirming = null;
        show(ok, t(`unit.done.${name}`, { unit: u.id }));
      } catch (err) {
        show(error, reason(err.message));
      }
      await load(false);
    });
    queueMicrotask(() => (reasonInput || form.querySelector("#confirm-yes")).focus());
    return form;
  }

  async function act(u, name, why, language) {
    const path = `/api/units/${encodeURIComponent(u.id)}`;
    if (name === "push-config") {
      const body = { profile: u.profile || "nightcam" };
      if (language) body.language = language;
      return ctx.api("POST", `${path}/config`, body);
    }
    return ctx.api("POST", `${path}/${name}`, why ? { reason: why } : {});
  }

  function enrolForm(u) {
    const form = h("form", { id: "enrol-again", class: "confirm", novalidate: true },
      h("p", { class: "confirm-question" }, t("unit.enrol_again", { unit: u.id })),
      h("label", {}, t("fleet.enrolment_code"), h("input", { name: "code", id: "enrol-code", autocomplete: "off", autocapitalize: "characters", required: true })),
      h("label", {}, t("fleet.citizen"), h("input", { name: "citizen", id: "enrol-citizen", autocomplete: "off", required: true, value: u.citizen || "" })),
      h("label", {}, t("fleet.col_profile"),
        h("select", { name: "profile", id: "enrol-profile" },
          h("option", { value: "tv", selected: u.profile === "tv" }, t("fleet.profile_tv")),
          h("option", { value: "nightcam", selected: u.profile !== "tv" }, t("fleet.profile_nightcam")))),
      h("label", {}, t("fleet.group"), h("span", { class: "hint" }, t("fleet.group_hint")), h("input", { name: "group", id: "enrol-group", autocomplete: "off" })),
      h("button", { type: "submit", id: "enrol-submit" }, t("fleet.approve")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = form.elements;
      const code = f.code.value.trim();
      if (!code || !f.citizen.value.trim()) {
        show(error, t("fleet.approve_fill_in"));
        return;
      }
      const body = { profile: f.profile.value, citizen: f.citizen.value.trim(), unit_id: u.id };
      if (f.group.value.trim()) body.group = f.group.value.trim();
      show(error, "");
      try {
        await ctx.api("POST", `/api/enrolments/${encodeURIComponent(code)}/approve`, body);
        show(ok, t("fleet.approved", { unit: u.id, citizen: body.citizen }));
      } catch (err) {
        show(error, reason(err.message));
      }
      await load(false);
    });
    return form;
  }

  let loadedAt = 0;
  async function load(background) {
    if (stopped) return;
    loadedAt = Date.now();
    try {
      unit = await ctx.api("GET", `/api/units/${encodeURIComponent(unitId)}`, undefined, { background });
    } catch (err) {
      if (!stopped) show(error, reason(err.message));
      return;
    }
    if (stopped) return;
    // Redrawing the actions while someone fills in a form there would lose what they typed.
    const typing = background && actions.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON";
    draw(unit, !typing);
  }

  load(false);
  const timer = setInterval(() => {
    const every = unit && unit.lifecycle.state === "enrolling" ? ENROLLING_REFRESH_MS : REFRESH_MS;
    if (Date.now() - loadedAt >= every) load(true);
  }, ENROLLING_REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); };
}
