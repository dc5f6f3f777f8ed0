// The "Night round" page: tonight's night checks of my citizens, dialling in to see the unit's
// live (IR) picture with the call's running time (mm:ss), and recording the outcome after the call:
// one line of two choices, "All well" and "Visit needed" — the second styled as the action it
// starts (someone goes out), not as a green "go".
import { startCall } from "../rtc.js";
import { mount, reasonsLine, replace } from "../dom.js";
import { mmss, reason, said, t, tn, word } from "../i18n.js";
import { viewPanel } from "./view_escalation.js";

const REFRESH_MS = 30000;

export function render(main, ctx) {
  const { h } = ctx;
  const summary = h("p", { id: "round-summary", class: "hint" }, t("round.loading"));
  const error = h("p", { id: "round-error", class: "error", role: "alert", hidden: true });
  const ok = h("p", { id: "round-ok", class: "ok", role: "status", hidden: true });
  const list = h("ul", { id: "round-list", class: "cards round-list", "aria-label": t("round.list_label") });

  // The call panel: the unit's picture, a state line, "Hang up"; then the outcome.
  const video = h("video", {
    id: "round-video", class: "remote-video", autoplay: true, playsinline: true, muted: true,
    "aria-label": t("round.camera"),
  });
  video.muted = true; // the attribute alone does not mute a video created by script
  const callTitle = h("h2", { id: "round-call-title" });
  const callState = h("p", { id: "round-call-state", class: "call-state", role: "status", "aria-live": "polite" });
  // The running time of the check: shown from the answer, frozen at the end (not announced
  // every second: it has no live region).
  const timerText = h("span", { id: "round-timer", class: "call-timer" }, "00:00");
  const timerBox = h("p", { class: "call-timer-line", hidden: true }, h("span", { class: "timer-label" }, t("round.timer_label")), " ", timerText);
  const callError = h("p", { id: "round-call-error", class: "error", role: "alert", hidden: true });
  const hangupButton = h("button", { type: "button", id: "round-hangup", class: "hangup" }, t("call.hangup"));
  const closeButton = h("button", { type: "button", id: "round-close", class: "secondary", hidden: true }, t("common.close"));
  const note = h("textarea", { id: "outcome-note", rows: 2, maxlength: 500 });
  const wellButton = h("button", { type: "button", id: "outcome-all-well", class: "outcome well" },
    h("span", { class: "outcome-mark", "aria-hidden": "true" }, "✓"), t("outcome.all_well"));
  const visitButton = h("button", { type: "button", id: "outcome-visit-needed", class: "outcome visit" },
    h("span", { class: "outcome-mark", "aria-hidden": "true" }, "!"), t("outcome.visit_needed"));
  const outcomeError = h("p", { id: "outcome-error", class: "error", role: "alert", hidden: true });
  const outcome = h("div", { id: "round-outcome", class: "round-outcome", hidden: true },
    h("p", { class: "outcome-question" }, t("round.how_was_it")),
    h("div", { class: "outcome-buttons", role: "group", "aria-label": t("round.outcome_label") }, wellButton, visitButton),
    h("label", {}, t("round.note"), note),
    outcomeError,
  );
  const viewBox = viewPanel(h);
  const panel = h("section", { id: "round-call", class: "call round-call", hidden: true, "aria-label": t("purpose.night_check") },
    callTitle, h("div", { class: "call-head" }, callState, timerBox), callError, viewBox.root,
    h("div", { class: "videos" }, video),
    hangupButton, outcome, closeButton,
  );

  mount(main,
    h("h1", {}, t("nav.night-round")),
    summary, error, ok, panel, list,
  );

  let checks = [];
  let current = null; // { row, call, callId }
  let timer = null;
  let gone = false;
  let ticking = null;

  function startTimer() {
    stopTimer();
    const started = Date.now();
    timerText.textContent = "00:00";
    timerBox.hidden = false;
    ticking = setInterval(() => { timerText.textContent = mmss((Date.now() - started) / 1000); }, 250);
  }

  function stopTimer() {
    if (ticking) clearInterval(ticking);
    ticking = null;
  }

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
      if (!gone) show(error, reason(err.message));
      return;
    }
    if (gone) return;
    show(error, "");
    checks = answer.checks || [];
    const open = checks.filter((c) => c.timing === "open" && !c.done).length;
    const done = checks.filter((c) => c.done).length;
    summary.textContent = checks.length
      ? tn("round.summary", checks.length, { done, open, zone: answer.timezone })
      : t("round.none");
    replace(list, ...checks.map(row));
    setDialling(Boolean(current));
  }

  function row(check) {
    const state = check.unit_state || { status: "offline", reasons: [] };
    const status = check.done
      ? (check.outcome ? t("round.done_with", { outcome: word("outcome", check.outcome) }) : t("round.done"))
      : word("timing", check.timing);
    const dial = h("button", {
      type: "button", class: "dial", "data-unit": check.unit || "",
      disabled: !check.unit, "aria-label": t("round.dial_label", { citizen: check.citizen, unit: check.unit || t("round.no_unit") }),
    }, t("round.dial"));
    dial.addEventListener("click", () => dialIn(check));
    return h("li", {
      class: `card round-check ${state.status} ${check.timing}${check.done ? " done" : ""}`,
      "data-unit": check.unit || "", "data-citizen": check.citizen,
    },
      h("div", { class: "round-text" },
        h("p", { class: "card-title" }, `${check.time} · ${check.citizen}`),
        h("p", {}, t("round.window", { window: check.window_text }), " · ", h("span", { class: "check-status" }, status)),
        h("p", {},
          t("round.unit", { unit: check.unit || t("round.no_unit") }), " ",
          h("b", { class: "unit-state" }, word("status", state.status)),
          state.reasons && state.reasons.length ? [" (", reasonsLine(state.reasons, state.reason_codes), ")"] : "",
        ),
        check.privacy ? h("p", { class: "privacy-mode" },
          t("round.privacy", { reason: said(check.privacy.reason, check.privacy.reason_code, check.privacy.params) })) : "",
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
    hangupButton.disabled = false; // "Cancel" until the unit answers, then "Hang up"
    hangupButton.textContent = t("call.cancel");
    note.value = "";
    stopTimer();
    timerBox.hidden = true;
    callTitle.textContent = t("round.call_title", { citizen: check.citizen, unit: check.unit });
    panel.hidden = false;
    setDialling(true);
    const cancel = new AbortController();
    current = { check, call: null, cancel };
    panel.scrollIntoView({ block: "start" });
    try {
      const call = await startCall({
        unit: check.unit,
        purpose: "night_check",
        video,
        sendMedia: false,
        onState: (text) => { callState.textContent = text; },
        signal: cancel.signal,
        onView: (view) => viewBox.update(view),
        onEstimate: (estimate) => viewBox.estimate(estimate),
      });
      if (gone) { call.hangup(); return; }
      current.call = call;
      viewBox.start(call);
      hangupButton.textContent = t("call.hangup");
      startTimer();
      hangupButton.disabled = false;
      hangupButton.focus();
      call.ended.then((reason) => afterCall(reason));
    } catch (err) {
      if (gone) return;
      callState.textContent = "";
      show(callError, reason(err.message));
      hangupButton.hidden = true;
      closeButton.hidden = false;
      current = null;
      setDialling(false);
    }
  }

  function afterCall(why) {
    stopTimer();
    viewBox.stop();
    if (gone || !current) return;
    callState.textContent = t("round.call_ended", { reason: why });
    hangupButton.hidden = true;
    outcome.hidden = false;
    show(outcomeError, "");
    wellButton.focus();
  }

  hangupButton.addEventListener("click", async () => {
    if (!current) return;
    hangupButton.disabled = true;
    if (!current.call) {
      current.cancel.abort(); // still ringing: the unit stops, startCall says "cancelled"
      return;
    }
    callState.textContent = t("call.hanging_up");
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
      show(outcomeError, reason(err.message));
      return;
    } finally {
      wellButton.disabled = false;
      visitButton.disabled = false;
    }
    current = null;
    panel.hidden = true;
    show(ok, t("round.recorded", { citizen: check.citizen, outcome: word("outcome", result) }));
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
    stopTimer();
    if (current && current.call) current.call.hangup();
    else if (current && current.cancel) current.cancel.abort();
  };
}
