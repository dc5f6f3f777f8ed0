// The fleet for the support function: open alerts first (a unit down ahead of a scheduled night
// check: send someone instead), then every unit's status with the reasons, refreshed every 10
// seconds. Technicians and administrators also see units waiting for enrolment approval (and can
// approve one) and units silent long enough to be decommissioned.
const STATUSES = ["online", "degraded", "offline"];
const TECH_ROLES = ["technician", "administrator"];
const REFRESH_MS = 10000;

function clock(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "?";
}

function minutesUntil(ts) {
  const minutes = Math.round((ts - Date.now() / 1000) / 60);
  if (minutes > 1) return `in ${minutes} minutes`;
  if (minutes >= -1) return "now";
  return `${-minutes} minutes ago`;
}

export function render(main, ctx) {
  const { h } = ctx;
  const technician = TECH_ROLES.includes(ctx.me?.staff?.role);
  let stopped = false;

  // ---------------------------------------------------------------- open alerts
  const alertsBox = h("section", { id: "alerts", class: "alerts", "aria-labelledby": "alerts-title" },
    h("h2", { id: "alerts-title" }, "Open alerts"));
  const alertsList = h("ul", { id: "alerts-list", class: "plain-list" });
  const alertsNone = h("p", { id: "alerts-none", class: "ok", hidden: true }, "No open alerts.");
  alertsBox.append(alertsNone, alertsList);

  // ---------------------------------------------------------------- units
  const summary = h("p", { id: "fleet-summary" }, "Loading…");
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert", hidden: true });

  main.append(
    h("h1", {}, "Fleet"),
    alertsBox,
    h("h2", {}, "Units"),
    summary,
    error,
    h("div", { class: "table-wrap" },
      h("table", { id: "fleet-table" },
        h("thead", {}, h("tr", {}, ["Unit", "Profile", "Status", "Why", "Agent"].map((t) => h("th", {}, t)))),
        body)),
  );

  function showAlerts(alerts) {
    alertsBox.classList.toggle("raised", alerts.length > 0);
    alertsNone.hidden = alerts.length > 0;
    alertsList.replaceChildren(...alerts.map((a) =>
      h("li", { class: "alert-item", role: "alert", "data-unit": a.unit, "data-alert": a.id },
        h("p", { class: "alert-title" },
          h("b", {}, `Unit ${a.unit} is ${a.status}`),
          ` — night check for citizen ${a.citizen} at ${a.check_at_local.slice(11, 16)} (${minutesUntil(a.check_at)})`),
        h("p", {}, `Why: ${a.reasons.join("; ") || "?"}.`,
          a.group ? ` Group: ${a.group}.` : "",
          ` Raised at ${clock(a.raised_at)}. Send someone to check on the citizen in person if the unit does not come back.`))));
  }

  async function refreshAlerts(background) {
    try {
      const answer = await ctx.api("GET", "/api/alerts?open=1", undefined, { background });
      showAlerts(answer.alerts);
    } catch (err) {
      alertsNone.hidden = true;
      alertsList.replaceChildren(h("li", { class: "error" }, `Alerts cannot be shown: ${err.message}`));
    }
  }

  async function refreshUnits(background) {
    try {
      const answer = await ctx.api("GET", "/api/units", undefined, { background });
      const counts = STATUSES.map((s) => `${answer.units.filter((u) => u.status === s).length} ${s}`);
      summary.textContent = `${answer.count} units: ${counts.join(", ")}.`;
      body.replaceChildren(
        ...answer.units.map((u) =>
          h("tr", { class: u.status, "data-unit": u.id },
            h("td", {}, u.id),
            h("td", {}, u.profile || "?"),
            h("td", {}, h("b", {}, u.status)),
            h("td", {}, u.reasons.join("; ") || "—"),
            h("td", {}, u.agent_version || "?"))),
      );
      if (!answer.units.length) body.append(h("tr", {}, h("td", { colspan: 5 }, "No units have connected yet.")));
      error.hidden = true;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }

  // ---------------------------------------------------------------- technicians
  const tech = technician ? technicianSections(h, ctx) : null;
  if (tech) main.append(...tech.elements);

  async function refresh(background) {
    if (stopped) return;
    await Promise.all([
      refreshAlerts(background),
      refreshUnits(background),
      tech ? tech.refresh(background) : null,
    ]);
  }

  refresh(false);
  const timer = setInterval(() => refresh(true), REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); };
}

// Enrolment approvals and decommission candidates (technicians and administrators).
function technicianSections(h, ctx) {
  const pending = h("ul", { id: "enrolments", class: "plain-list" });
  const candidates = h("ul", { id: "candidates", class: "plain-list" });
  const candidatesNote = h("p", { id: "candidates-note", class: "hint" });
  const approveError = h("p", { id: "approve-error", class: "error", role: "alert", hidden: true });
  const approveOk = h("p", { id: "approve-ok", class: "ok", role: "status", hidden: true });
  const form = h("form", { id: "approve-form", novalidate: true },
    h("label", {}, "Enrolment code", h("input", { name: "code", id: "approve-code", autocomplete: "off", autocapitalize: "characters", required: true })),
    h("label", {}, "Profile",
      h("select", { name: "profile", id: "approve-profile" },
        h("option", { value: "tv" }, "tv (citizen's TV)"),
        h("option", { value: "nightcam" }, "nightcam (night supervision)"))),
    h("label", {}, "Citizen", h("input", { name: "citizen", id: "approve-citizen", autocomplete: "off", required: true, placeholder: "c-1001" })),
    h("label", {}, "Staff group", h("span", { class: "hint" }, "The group responsible for the unit (optional)"),
      h("input", { name: "group", id: "approve-group", autocomplete: "off", placeholder: "g-night" })),
    h("button", { type: "submit" }, "Approve"));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    approveError.hidden = true;
    approveOk.hidden = true;
    const code = f.code.value.trim();
    const citizen = f.citizen.value.trim();
    if (!code || !citizen) {
      approveError.textContent = "Fill in the code the unit shows and the citizen.";
      approveError.hidden = false;
      return;
    }
    const body = { profile: f.profile.value, citizen };
    if (f.group.value.trim()) body.group = f.group.value.trim();
    form.querySelector("button").disabled = true;
    try {
      const result = await ctx.api("POST", `/api/enrolments/${encodeURIComponent(code)}/approve`, body);
      approveOk.textContent = `Approved: the unit is ${result.unit_id || result.unit || code}, assigned to citizen ${citizen}.`;
      approveOk.hidden = false;
      form.reset();
      refresh(false);
    } catch (err) {
      approveError.textContent = err.message;
      approveError.hidden = false;
    } finally {
      form.querySelector("button").disabled = false;
    }
  });

  async function refresh(background) {
    try {
      const answer = await ctx.api("GET", "/api/enrolments", undefined, { background });
      pending.replaceChildren(...answer.pending.map((e) => {
        const use = h("button", { type: "button", class: "secondary" }, "Approve this one");
        use.addEventListener("click", () => {
          form.elements.code.value = e.code;
          form.elements.profile.value = e.profile === "nightcam" ? "nightcam" : "tv";
          form.elements.citizen.focus();
        });
        return h("li", { "data-code": e.code },
          h("b", { class: "code" }, e.code), ` ${e.profile || "?"} unit, agent ${e.agent_version || "?"}, waiting since ${new Date(e.first_seen * 1000).toLocaleString()} `,
          use);
      }));
      if (!answer.pending.length) pending.append(h("li", {}, "No unit is waiting."));
    } catch (err) {
      pending.replaceChildren(h("li", { class: "error" }, err.message));
    }
    try {
      const answer = await ctx.api("GET", "/api/decommission-candidates", undefined, { background });
      candidatesNote.textContent = answer.warning || `No unit has been silent for more than ${answer.silent_days} days.`;
      candidates.replaceChildren(...answer.candidates.map((c) =>
        h("li", { "data-unit": c.id }, h("b", {}, c.id), ` silent for ${c.silent_days} days (last seen ${new Date(c.last_seen * 1000).toLocaleDateString()})`)));
    } catch (err) {
      candidates.replaceChildren(h("li", { class: "error" }, err.message));
    }
  }

  return {
    elements: [
      h("h2", {}, "Waiting for approval"),
      h("p", { class: "hint" }, "Units that show an enrolment code. Approving signs the unit's certificate and assigns it to the citizen."),
      pending,
      approveError,
      approveOk,
      form,
      h("h2", {}, "Decommission candidates"),
      candidatesNote,
      candidates,
    ],
    refresh,
  };
}
