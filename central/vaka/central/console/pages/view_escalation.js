// The graduated view of a running night check (docs/privacy.md): which picture the unit sends
// (blurred or clear, as the unit itself reports it through central) and "Show clear picture",
// which asks for a reason — one of a few common ones, and words of one's own — and sends
//   {"type": "escalate", "reason": "..."}
// on the call's WebSocket (call.escalate in rtc.js). Central audits the reason and the unit
// switches only on central's signed word; the level shown is always the unit's answer.
// Beside it, the unit's own estimate of the scene in words ("Movement: yes", "Person in bed:
// unsure"), made on the unit from the camera while the picture is blurred; it changes as the
// unit reports it.
import { t } from "../i18n.js";
import { sentence } from "../rtc.js";

// The common reasons, in the reader's language; the chosen words are what the audit records.
const REASONS = ["no_movement", "not_in_bed", "sounds", "cannot_tell"];
// Central's rule ([calls] break_glass_min_reason): the reason's length, at least.
const MIN_REASON = 10;
const READINGS = ["yes", "no", "unsure"];

export function viewPanel(h) {
  const level = h("b", { id: "round-view-level" });
  const status = h("p", { id: "round-view", class: "view-line" }, t("view.label"), " ", level);
  const movement = h("span", { id: "round-estimate-movement" });
  const inBed = h("span", { id: "round-estimate-bed" });
  const estimateLine = h("p", { id: "round-estimate", class: "view-line", hidden: true },
    t("estimate.label"), " ", movement, " · ", inBed);
  const ask = h("button", { type: "button", id: "round-escalate", class: "secondary", hidden: true }, t("view.show_clear"));
  const choice = h("select", { id: "escalate-choice" },
    h("option", { value: "" }, t("view.choose")),
    REASONS.map((r) => h("option", { value: r }, t(`view.reason.${r}`))),
  );
  const words = h("input", { id: "escalate-text", type: "text", maxlength: 300, autocomplete: "off" });
  const error = h("p", { id: "escalate-error", class: "error", role: "alert", hidden: true });
  const send = h("button", { type: "submit", id: "escalate-send" }, t("view.send"));
  const cancel = h("button", { type: "button", id: "escalate-cancel", class: "secondary" }, t("call.cancel"));
  const form = h("form", { id: "escalate-form", class: "escalate-form", hidden: true },
    h("label", {}, t("view.why"), choice),
    h("label", {}, t("view.more"), words),
    error, send, " ", cancel,
  );
  const root = h("div", { id: "round-view-box", class: "view-box", hidden: true }, status, estimateLine, ask, form);
  let call = null;
  let mayEscalate = false;

  function showError(text) {
    error.textContent = text || "";
    error.hidden = !text;
  }

  function setLevel(view) {
    const clear = view.level === "clear";
    level.textContent = t(clear ? "view.level.clear" : "view.level.blurred");
    root.dataset.level = clear ? "clear" : "blurred";
    ask.hidden = clear || !mayEscalate;
    send.disabled = false;
    if (clear) form.hidden = true;
    if (!clear && view.reason) showError(t("view.refused", { reason: sentence(view.reason) }));
  }

  // A reading the console does not know is shown as "unsure", never as a guess of its own.
  const reading = (value) => t(`estimate.${READINGS.includes(value) ? value : "unsure"}`);

  function setEstimate(estimate) {
    movement.textContent = t("estimate.movement", { value: reading(estimate.movement) });
    inBed.textContent = t("estimate.in_bed", { value: reading(estimate.personInBed) });
    estimateLine.dataset.movement = estimate.movement;
    estimateLine.dataset.personInBed = estimate.personInBed;
    estimateLine.hidden = false;
  }

  ask.addEventListener("click", () => {
    form.hidden = false;
    ask.hidden = true;
    showError("");
    choice.focus();
  });
  cancel.addEventListener("click", () => {
    form.hidden = true;
    ask.hidden = !mayEscalate;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!call) return;
    const chosen = choice.value ? t(`view.reason.${choice.value}`) : "";
    const own = words.value.trim();
    const reason = [chosen, own].filter(Boolean).join(": ");
    if (reason.length < MIN_REASON) {
      showError(t("view.too_short", { count: MIN_REASON }));
      return;
    }
    showError("");
    send.disabled = true;
    level.textContent = t("view.asking");
    call.escalate(reason);
  });

  return {
    root,
    // A night check was answered: its starting view, and whether it may be escalated.
    start(started) {
      call = started;
      mayEscalate = Boolean(started.view && started.view.mayEscalate);
      choice.value = "";
      words.value = "";
      form.hidden = true;
      showError("");
      root.hidden = !started.view;
      if (started.view) setLevel(started.view);
    },
    // The unit's view as central passes it on ({level, reason}).
    update: setLevel,
    // The unit's scene estimate as central passes it on ({level, movement, personInBed}).
    estimate: setEstimate,
    stop() {
      call = null;
      root.hidden = true;
      estimateLine.hidden = true;
      form.hidden = true;
    },
  };
}
