// On duty: go on and off the night watch, see who holds it, and take the citizens' calls.
//
// While on duty the page keeps the ring socket (/api/duty/ring) open and reconnects with
// backoff. A ring shows a full-width banner with "Answer", beeps (Web Audio: the browser lets a
// page make sound only after a tap or click, which the duty button gives) and blinks the tab's
// title. "Answer" dials the unit with purpose citizen_call and the request id: the first nurse
// to answer gets the call, the others see "answered by …".
import { callInView } from "../rtc.js";
import { callView, mount, replace } from "../dom.js";
import { known, reason as readable, saidBy, t, when } from "../i18n.js";

const WATCH_REFRESH_MS = 15000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

function clock(ts) {
  return ts ? when(ts, { date: false }) : "";
}

// A ringing sound: two short beeps every 1.5 s for as long as something rings.
class Ringer {
  constructor() {
    this.audio = null;
    this.timer = null;
  }

  // Call from a user gesture (a click): browsers start sound only after one.
  unlock() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!this.audio) this.audio = new Context();
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
  }

  get canSound() {
    return Boolean(this.audio && this.audio.state === "running");
  }

  start() {
    if (this.timer !== null) return;
    this.beep();
    this.timer = setInterval(() => this.beep(), 1500);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  beep() {
    const audio = this.audio;
    if (!audio || audio.state !== "running") return;
    for (const offset of [0, 0.35]) {
      const at = audio.currentTime + offset;
      const tone = audio.createOscillator();
      const level = audio.createGain();
      tone.frequency.value = 880;
      level.gain.setValueAtTime(0.0001, at);
      level.gain.exponentialRampToValueAtTime(0.4, at + 0.02);
      level.gain.exponentialRampToValueAtTime(0.0001, at + 0.25);
      tone.connect(level).connect(audio.destination);
      tone.start(at);
      tone.stop(at + 0.3);
    }
  }

  close() {
    this.stop();
    if (this.audio) this.audio.close().catch(() => {});
    this.audio = null;
  }
}

// The tab's title blinks while something rings, so that a nurse in another tab sees it.
class TitleBlinker {
  constructor() {
    this.original = document.title;
    this.timer = null;
    this.text = "";
  }

  start(text) {
    this.text = text;
    if (this.timer !== null) return;
    let on = false;
    this.timer = setInterval(() => {
      on = !on;
      document.title = on ? `☎ ${this.text}` : this.original;
    }, 800);
    document.title = `☎ ${text}`;
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    document.title = this.original;
  }
}

export function render(main, ctx) {
  const { h } = ctx;
  const ringer = new Ringer();
  const blinker = new TitleBlinker();
  const rings = new Map(); // request_id -> { ring, banner }
  let onDuty = false;
  let closed = false;
  let socket = null;
  let reconnectTimer = null;
  let attempt = 0;
  let call = null;

  // ---------------------------------------------------------------- the page
  const banners = h("div", { id: "ring-banners", class: "ring-banners", "aria-live": "assertive" });
  const status = h("p", { id: "duty-status", class: "duty-status" }, t("duty.loading"));
  const toggle = h("button", { type: "button", id: "duty-toggle", class: "duty-toggle", disabled: true }, "…");
  const link = h("p", { id: "ring-link", class: "hint", role: "status" });
  const soundHint = h("p", { id: "sound-hint", class: "notice", hidden: true },
    t("duty.sound_hint"));
  const note = h("p", { id: "ring-note", class: "ok", role: "status", hidden: true });
  const error = h("p", { id: "duty-error", class: "error", role: "alert", hidden: true });
  const view = callView("duty");
  const watch = h("div", { id: "watch" }, h("p", {}, t("common.loading")));
  const escalations = h("ul", { id: "escalations", class: "plain-list" });
  mount(main,
    banners,
    h("h1", {}, t("nav.on-duty")),
    error,
    h("div", { class: "duty-row" }, toggle, status),
    link,
    soundHint,
    note,
    view.root,
    h("h2", {}, t("duty.who_holds")),
    watch,
    h("h2", {}, t("duty.escalations")),
    h("p", { class: "hint" }, t("duty.escalations_hint")),
    escalations,
  );

  function showError(message) {
    error.textContent = message || "";
    error.hidden = !message;
  }

  function showNote(message) {
    note.textContent = message || "";
    note.hidden = !message;
  }

  const unlock = () => {
    ringer.unlock();
    soundHint.hidden = true;
    if (rings.size) ringer.start();
  };
  document.addEventListener("pointerdown", unlock);
  document.addEventListener("keydown", unlock);

  // ---------------------------------------------------------------- duty state
  function showDuty(me) {
    onDuty = Boolean(me.on);
    toggle.disabled = !me.may_go_on_duty;
    toggle.textContent = onDuty ? t("duty.go_off") : t("duty.go_on");
    toggle.classList.toggle("on", onDuty);
    toggle.setAttribute("aria-pressed", onDuty ? "true" : "false");
    if (!me.may_go_on_duty) status.textContent = t("duty.role_cannot");
    else status.textContent = onDuty ? t("duty.on_since", { since: clock(me.since) }) : t("duty.off");
  }

  function showWatch(groups) {
    if (!groups.length) {
      replace(watch, h("p", {}, t("duty.no_group")));
      return;
    }
    replace(watch, ...groups.map((g) =>
      h("section", { class: "watch-group", "data-group": g.group },
        h("h3", {}, g.name),
        g.staff.length
          ? h("ul", { class: "plain-list" }, g.staff.map((s) =>
            h("li", {}, h("b", {}, s.name), " ", t("duty.since", { since: clock(s.since) }),
              s.ringable ? "" : h("span", { class: "hint" }, " ", t("duty.not_ringable")))))
          : h("p", { class: "warn" }, t("duty.nobody")))));
  }

  async function refresh(background) {
    try {
      const answer = await ctx.api("GET", "/api/duty", undefined, { background });
      showDuty(answer.me);
      showWatch(answer.watch);
      if (onDuty) connect();
      else disconnect();
    } catch (err) {
      if (err.status === 401) {
        ctx.restart();
        return;
      }
      showError(readable(err.message));
    }
  }

  async function refreshEscalations(background) {
    try {
      const answer = await ctx.api("GET", "/api/escalations", undefined, { background });
      replace(escalations, ...answer.escalations.slice(0, 10).map((e) =>
        h("li", {}, h("b", {}, `${when(e.at)} `), t("duty.escalation", { citizen: e.citizen || "—", unit: e.unit, reason: known(e.reason_code) ? saidBy(e) : readable(e.reason) }))));
      if (!answer.escalations.length) escalations.append(h("li", {}, t("duty.no_escalations")));
    } catch (err) {
      replace(escalations, h("li", { class: "error" }, readable(err.message)));
    }
  }

  toggle.addEventListener("click", async () => {
    unlock(); // the click is the gesture the browser needs before it may ring
    toggle.disabled = true;
    showError("");
    try {
      await ctx.api("POST", "/api/duty", { on: !onDuty });
    } catch (err) {
      showError(readable(err.message));
    }
    await refresh(false);
  });

  // ---------------------------------------------------------------- the ring socket
  function connect() {
    if (closed || socket || reconnectTimer !== null) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/duty/ring`);
    socket = ws;
    link.textContent = t("duty.connecting");
    ws.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      onMessage(message);
    });
    ws.addEventListener("close", () => {
      if (socket === ws) socket = null;
      clearRings(t("duty.why_lost"));
      if (closed) return;
      if (!onDuty) {
        link.textContent = "";
        return;
      }
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt += 1;
      link.textContent = t("duty.retry", { s: Math.round(wait / 1000) });
      link.classList.add("warn");
      reconnectTimer = setTimeout(() => {
        reconnectTimer = null;
        refresh(true); // still on duty, still logged in? then connect again
      }, wait);
    });
  }

  function disconnect() {
    if (reconnectTimer !== null) clearTimeout(reconnectTimer);
    reconnectTimer = null;
    attempt = 0;
    const ws = socket;
    socket = null;
    if (ws) ws.close();
    clearRings(t("duty.why_off"));
    link.textContent = "";
  }

  function onMessage(message) {
    if (message.type === "ready") {
      attempt = 0;
      link.classList.remove("warn");
      link.textContent = t("duty.connected");
      soundHint.hidden = ringer.canSound;
      refresh(true); // the watch now shows this nurse as reachable
    } else if (message.type === "ring") {
      addRing(message);
    } else if (message.type === "stop_ringing") {
      stopRing(message.request_id, saidBy(message));
    } else if (message.type === "off_duty" || message.type === "refused") {
      showNote(message.reason ? readable(message.reason) : t("duty.off"));
      refresh(true);
    }
  }

  // ---------------------------------------------------------------- ringing
  function addRing(ring) {
    if (rings.has(ring.request_id)) return;
    const who = t("duty.calling", { citizen: ring.citizen || "—", unit: ring.unit });
    const answer = h("button", { type: "button", class: "answer", "data-request": ring.request_id }, t("duty.answer"));
    const banner = h("div", { class: "ring-banner", role: "alert", "data-request": ring.request_id },
      h("p", { class: "ring-text" }, who, h("span", { class: "ring-since" }, ` — ${t("duty.since", { since: clock(ring.since) })}`)),
      answer);
    answer.addEventListener("click", () => answerRing(ring));
    rings.set(ring.request_id, { ring, banner });
    banners.append(banner);
    showNote("");
    ringer.start();
    blinker.start(who);
  }

  function stopRing(requestId, reason) {
    const entry = rings.get(requestId);
    if (!entry) return;
    entry.banner.remove();
    rings.delete(requestId);
    if (reason) showNote(t("duty.stopped_ringing", { citizen: entry.ring.citizen || "—", reason: readable(reason) }));
    quietIfNone();
  }

  function clearRings(reason) {
    for (const id of [...rings.keys()]) stopRing(id, reason);
  }

  function quietIfNone() {
    if (rings.size) return;
    ringer.stop();
    blinker.stop();
  }

  // ---------------------------------------------------------------- the call
  async function answerRing(ring) {
    if (call) {
      showError(t("duty.hang_up_first"));
      return;
    }
    const entry = rings.get(ring.request_id);
    if (entry) entry.banner.remove();
    rings.delete(ring.request_id);
    quietIfNone();
    showError("");
    showNote("");
    view.state.textContent = t("duty.answering");
    let reason;
    try {
      reason = await callInView(
        view,
        t("duty.call_title", { citizen: ring.citizen || "—", unit: ring.unit }),
        { unit: ring.unit, purpose: "citizen_call", request: ring.request_id },
        { closed: () => closed, call: (c) => { call = c; } },
      );
    } catch (err) {
      if (err.cancelled) showNote(err.message);
      else showError(readable(err.message));
      return;
    }
    if (reason !== null) showNote(t("duty.call_ended", { citizen: ring.citizen || "—", reason }));
  }

  view.hangup.addEventListener("click", () => {
    view.hangup.disabled = true;
    if (call) call.hangup();
  });

  // ---------------------------------------------------------------- start and clean up
  refresh(false);
  refreshEscalations(false);
  const timer = setInterval(() => {
    refresh(true);
    refreshEscalations(true);
  }, WATCH_REFRESH_MS);

  return () => {
    closed = true;
    clearInterval(timer);
    document.removeEventListener("pointerdown", unlock);
    document.removeEventListener("keydown", unlock);
    if (reconnectTimer !== null) clearTimeout(reconnectTimer);
    if (socket) socket.close();
    socket = null;
    if (call) call.hangup();
    ringer.close();
    blinker.stop();
  };
}
