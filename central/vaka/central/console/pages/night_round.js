// The "Night round" page: tonight's night checks of my citizens, dialling in to see the unit's
// live (IR) picture, and recording the outcome ("All well" / "Visit needed") after the call.
import { startCall } from "../rtc.js";

const REFRESH_MS = 30000;

const STATE_WORDS = { online: "Online", degraded: "Degraded", offline: "Offline" };
const TIMING_WORDS = { open: "Window open now", upcoming: "Not yet", closed: "Window closed" };
const OUTCOME_WORDS = { all_well: "All well", visit_needed: "Visit needed" };

export function render(main, ctx) {
  const { h } = ctx;
  const summary = h("p", { id: "round-summary", class: "hint" }, "Loading tonight's checks…");
  const error = h("p", { id: "round-error", class: "error", role: "alert", hidden: true });
  const ok = h("p", { id: "round-ok", class: "ok", role: "status", hidden: true });
  const list = h("ul", { id: "round-list", class: "cards round-list", "aria-label": "Tonight's night checks" });

  // The call panel: the unit's picture, a state line, "Hang up"; then the outcome.
  const video = h("video", {
    id: "round-video", class: "remote-video", autoplay: true, playsinline: true, muted: true,
    "aria-label": "The unit's camera",
  });
  video.muted = true; // the attribute alone does not mute a video created by script
  const callTitle = h("h2", { id: "round-call-title" });
  const callState = h("p", { id: "round-call-state", class: "call-state", role: "status", "aria-live": "polite" });
  const callError = h("p", { id: "round-call-error", class: "error", role: "alert", hidden: true });
  const hangupButton = h("button", { type: "button", id: "round-hangup", class: "hangup" }, "Hang up");
  const closeButton = h("button", { type: "button", id: "round-close", class: "secondary", hidden: true }, "Close");
  const note = h("textarea", { id: "outcome-note", rows: 2, maxlength: 500 });
  const wellButton = h("button", { type: "button", id: "outcome-all-well", class: "outcome well" }, "All well");
  const visitButton = h("button", { type: "button", id: "outcome-visit-needed", class: "outcome visit" }, "Visit needed");
  const outcomeError = h("p", { id: "outcome-error", class: "error", role: "alert", hidden: true });
  const outcome = h("div", { id: "round-outcome", class: "round-outcome", hidden: true },
    h("p", { class: "outcome-question" }, "How was it?"),
    h("div", { class: "outcome-buttons" }, wellButton, visitButton),
    h("label", {}, "Note (optional)", note),
    outcomeError,
  );
  const panel = h("section", { id: "round-call", class: "call round-call", hidden: true, "aria-label": "Night check" },
    callTitle, callState, callError,
    h("div", { class: "videos" }, video),
    hangupButton, outcome, closeButton,
  );

  main.append(
    h("h1", {}, "Night round"),
    summary, error, ok, panel, list,
  );

  let checks = [];
  let current = null; // { row, call, callId }
  let timer = null;
  let gone = false;

  function show(el, text) {
    el.textContent = text || "";
    el.hidden = !text;
  }

  function setDialling(busy) {
    for (const b of list.querySelectorAll("button.dial")) b.disabled = busy;
  }

  async function load({ background = false } = {}) {
    let answer;
    try {
      answer = await ctx.api("GET", "/api/round", undefined, { background });
    } catch (err) {
      if (!gone) show(error, err.message);
      return;
    }
    if (gone) return;
    show(error, "");
    checks = answer.checks || [];
    const open = checks.filter((c) => c.timing === "open" && !c.done).length;
    const done = checks.filter((c) => c.done).length;
    summary.textContent = checks.length
      ? `Tonight: ${checks.length} check${checks.length === 1 ? "" : "s"}, ${done} done, ${open} due now (times in ${answer.timezone}).`
      : "No night checks are scheduled tonight for your groups.";
    list.replaceChildren(...checks.map(row));
    setDialling(Boolean(current));
  }

  function row(check) {
    const state = check.unit_state || { status: "offline", reasons: [] };
    const status = check.done
      ? `Done${check.outcome ? `: ${OUTCOME_WORDS[check.outcome] || check.outcome}` : ""}`
      : TIMING_WORDS[check.timing] || check.timing;
    const dial = h("button", {
      type: "button", class: "dial", "data-unit": check.unit || "",
      disabled: !check.unit, "aria-label": `Dial in to ${check.citizen} (${check.unit || "no unit"})`,
    }, "Dial in");
    dial.addEventListener("click", () => dialIn(check));
    return h("li", {
      class: `card round-check ${state.status} ${check.timing}${check.done ? " done" : ""}`,
      "data-unit": check.unit || "", "data-citizen": check.citizen,
    },
      h("div", { class: "round-text" },
        h("p", { class: "card-title" }, `${check.time} · ${check.citizen}`),
        h("p", {}, `Window ${check.window_text} · `, h("span", { class: "check-status" }, status)),
        h("p", {},
          `Unit ${check.unit || "none"}: `,
          h("b", { class: "unit-state" }, STATE_WORDS[state.status] || state.status),
          state.reasons && state.reasons.length ? ` (${state.reasons.join("; ")})` : "",
        ),
      ),
      dial,
    );
  }

  async function dialIn(check) {
    if (current) return;
    show(ok, "");
    show(callError, "");
    outcome.hidden = true;
    closeButton.hidden = true;
    hangupButton.hidden = false;
    hangupButton.disabled = true;
    note.value = "";
    callTitle.textContent = `Night check: ${check.citizen} (${check.unit})`;
    panel.hidden = false;
    setDialling(true);
    current = { check, call: null };
    panel.scrollIntoView({ block: "start" });
    try {
      const call = await startCall({
        unit: check.unit,
        purpose: "night_check",
        video,
        sendMedia: false,
        onState: (text) => { callState.textContent = text; },
      });
      if (gone) { call.hangup(); return; }
      current.call = call;
      hangupButton.disabled = false;
      hangupButton.focus();
      call.ended.then((reason) => afterCall(reason));
    } catch (err) {
      if (gone) return;
      callState.textContent = "";
      show(callError, err.message);
      hangupButton.hidden = true;
      closeButton.hidden = false;
      current = null;
      setDialling(false);
    }
  }

  function afterCall(reason) {
    if (gone || !current) return;
    callState.textContent = `Call ended (${reason}).`;
    hangupButton.hidden = true;
    outcome.hidden = false;
    show(outcomeError, "");
    wellButton.focus();
  }

  hangupButton.addEventListener("click", async () => {
    if (!current || !current.call) return;
    hangupButton.disabled = true;
    callState.textContent = "Hanging up…";
    await current.call.hangup();
  });

  async function record(result) {
    if (!current || !current.call) return;
    wellButton.disabled = true;
    visitButton.disabled = true;
    const { check, call } = current;
    const body = { call_id: call.callId, unit: check.unit, outcome: result };
    if (note.value.trim()) body.note = note.value.trim();
    try {
      await ctx.api("POST", "/api/round/outcome", body);
    } catch (err) {
      show(outcomeError, err.message);
      return;
    } finally {
      wellButton.disabled = false;
      visitButton.disabled = false;
    }
    current = null;
    panel.hidden = true;
    show(ok, `Recorded for ${check.citizen}: ${OUTCOME_WORDS[result]}.`);
    await load();
  }

  wellButton.addEventListener("click", () => record("all_well"));
  visitButton.addEventListener("click", () => record("visit_needed"));
  closeButton.addEventListener("click", () => {
    panel.hidden = true;
    current = null;
    setDialling(false);
  });

  load();
  timer = setInterval(() => { if (!current) load({ background: true }); }, REFRESH_MS);

  return () => {
    gone = true;
    clearInterval(timer);
    if (current && current.call) current.call.hangup();
  };
}
