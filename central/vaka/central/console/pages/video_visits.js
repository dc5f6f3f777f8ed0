// Video visits: the TV units of the citizens your groups may visit, and a two-way call to one.
// A TV rings until the citizen answers (or it answers by itself, where its settings say so); the
// citizen may decline, and the page then shows central's reason.
import { callInView } from "../rtc.js";
import { callView, mount, reasonsLine, replace } from "../dom.js";
import { reason as readable, t, tn, word } from "../i18n.js";

const REFRESH_MS = 15000;

export function render(main, ctx) {
  const { h } = ctx;
  let closed = false;
  let call = null;
  let dialling = false;

  const summary = h("p", { id: "visits-summary" }, t("common.loading"));
  const error = h("p", { id: "visit-error", class: "error", role: "alert", hidden: true });
  const note = h("p", { id: "visit-note", class: "ok", role: "status", hidden: true });
  const list = h("ul", { id: "visits", class: "cards" });
  const view = callView("visit");
  mount(main, h("h1", {}, t("nav.video-visits")), error, note, view.root, summary, list);

  function show(el, message) {
    el.textContent = message || "";
    el.hidden = !message;
  }

  function card(v) {
    const button = h("button", { type: "button", class: "call-button", "data-unit": v.unit }, t("visits.call"));
    button.disabled = dialling || Boolean(call);
    button.addEventListener("click", () => visit(v));
    const state = v.status === "online" ? word("state", "online")
      : [word("state", v.status), v.reasons.length ? [": ", reasonsLine(v.reasons, v.reason_codes)] : ""];
    return h("li", { class: `card ${v.status}`, "data-unit": v.unit },
      h("div", {},
        h("p", { class: "card-title" }, t("visits.citizen", { citizen: v.citizen })),
        h("p", { class: "hint" }, t("visits.tv_unit", { unit: v.unit }), " · ", h("b", { class: "unit-state" }, state))),
      button);
  }

  async function refresh(background) {
    try {
      const answer = await ctx.api("GET", "/api/visits", undefined, { background });
      const online = answer.visits.filter((v) => v.online).length;
      summary.textContent = answer.count
        ? tn("visits.summary", answer.count, { online })
        : t("visits.none");
      replace(list, ...answer.visits.map(card));
      if (!background) show(error, "");
    } catch (err) {
      if (err.status === 401) {
        ctx.restart();
        return;
      }
      summary.textContent = "";
      show(error, readable(err.message));
    }
  }

  function setButtons(disabled) {
    for (const b of list.querySelectorAll("button.call-button")) b.disabled = disabled;
  }

  async function visit(v) {
    if (call || dialling) return;
    dialling = true;
    setButtons(true);
    show(error, "");
    show(note, "");
    view.state.textContent = t("call.calling");
    const options = {
      unit: v.unit,
      purpose: "video_visit",
      onState: (text, phase) => {
        view.state.textContent = phase === "ringing" ? t("visits.ringing_tv") : text;
      },
    };
    const page = {
      closed: () => closed,
      call: (c) => { call = c; dialling = false; },
    };
    let reason;
    try {
      reason = await callInView(
        view, t("visits.call_title", { citizen: v.citizen, unit: v.unit }), options, page,
      );
    } catch (err) {
      dialling = false;
      setButtons(false);
      if (err.cancelled) show(note, err.message);
      else show(error, readable(err.message));
      return;
    }
    dialling = false;
    if (reason === null) return;
    setButtons(false);
    show(note, t("visits.ended", { citizen: v.citizen, reason }));
  }

  view.hangup.addEventListener("click", () => {
    view.hangup.disabled = true;
    if (call) call.hangup();
  });

  refresh(false);
  const timer = setInterval(() => { if (!call && !dialling) refresh(true); }, REFRESH_MS);
  return () => {
    closed = true;
    clearInterval(timer);
    if (call) call.hangup();
  };
}
