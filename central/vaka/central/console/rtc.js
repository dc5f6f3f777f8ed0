// Calls from the console: the browser's side of central's call WebSocket (/api/calls).
//
//   const call = await startCall({ unit, purpose: "night_check", video, onState });
//   ... call.callId, call.pc
//   const reason = await call.hangup();      // or: const reason = await call.ended;
//
// The session cookie authenticates the WebSocket (a GET: no CSRF token; central checks that the
// page opening it is the console's own origin). ICE is not trickled: the offer is sent once the
// browser has gathered its candidates (at most GATHER_MS), and the unit's answer carries all of
// its own — one round trip, the same as vaka/staff/client.py.
//
// startCall resolves when the unit has answered; it throws a CallError whose message can be shown
// to the user as it is ("The unit did not answer …", central's refusal reason, …), in the
// console's language (central's own reasons are translated where the catalog knows them). A call
// that was not taken says why in one word from central (err.outcome: "cancelled", "no_answer",
// "declined", "busy"), shown from the catalog ("No answer after 30 s."). Until the unit answers,
// the call can be cancelled with an AbortSignal (options.signal): central is told, the unit stops
// ringing, and startCall throws a CallError with err.cancelled set.
import { known, reason as readable, saidBy, t } from "./i18n.js";

const GATHER_MS = 2000;
// The unit pings on this data channel and keeps its shutter open only while the page answers
// (vaka/rtc/presence.py): the answer comes from this page's own script, inside the call's DTLS.
const PRESENCE_LABEL = "vaka-presence";
const PING = /^ping ([0-9a-f]{1,32})$/;

function answerPings(pc) {
  const channel = pc.createDataChannel(PRESENCE_LABEL, { ordered: false, maxRetransmits: 0 });
  channel.addEventListener("message", (event) => {
    const found = typeof event.data === "string" ? PING.exec(event.data) : null;
    if (found && channel.readyState === "open") channel.send(`pong ${found[1]}`);
  });
  return channel;
}
const ANSWER_MS = 30000; // central gives up on a silent unit first and says so
const RING_MS = 90000; // a TV unit may ring before it is answered (central says how long)
const CANCEL_MS = 3000; // how long a cancel waits for central's word before closing the socket
const OUTCOMES = ["cancelled", "no_answer", "declined", "busy"];

export class CallError extends Error {
  constructor(message, { refused = false, outcome = null, code = null } = {}) {
    super(message);
    this.name = "CallError";
    this.refused = refused;
    this.outcome = outcome;
    // central's reason code for a refusal, for a page with its own catalog (the contact page)
    this.code = code;
    this.cancelled = outcome === "cancelled";
  }
}

// Central's word for a call that was not taken, as the catalog says it; null for other replies.
function outcomeError(reply) {
  const outcome = reply && OUTCOMES.includes(reply.outcome) ? reply.outcome : null;
  if (!outcome) return null;
  const text = t(`call.outcome.${outcome}`, { seconds: reply.ring_s ?? "—" });
  return new CallError(text, { refused: reply.type === "refused", outcome });
}

function cancelledError() {
  return new CallError(t("call.outcome.cancelled"), { outcome: "cancelled" });
}

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Central's reasons are lower-case phrases ("the unit did not answer within 8 s"): one sentence.
export function sentence(text) {
  const words = readable(String(text || "").trim());
  if (!words) return "";
  const first = words.charAt(0).toUpperCase() + words.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

// A refusal from central: its code in the reader's language; central's words (translated where
// the catalog knows the phrase) when it has none.
function readableRefusal(message) {
  if (message && known(message.reason_code)) return sentence(saidBy(message));
  const text = String((message && message.reason) || "");
  if (/^the unit did not answer/.test(text)) return sentence(text);
  if (/did not answer/.test(text)) return sentence(t("call.no_answer_because", { reason: readable(text) }));
  return sentence(text || t("call.refused"));
}

// Why a call ended, from central's message: its code in the reader's language, else its words.
function endReason(message) {
  return known(message.reason_code) ? saidBy(message) : readable(message.reason);
}

function waitForGathering(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// One message at a time from a WebSocket, with a time limit; null when it closed.
function messageReader(ws) {
  const queue = [];
  const waiting = [];
  let closed = false;
  ws.addEventListener("message", (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      return; // central only sends JSON; anything else is ignored
    }
    if (waiting.length) waiting.shift()(data);
    else queue.push(data);
  });
  ws.addEventListener("close", () => {
    closed = true;
    while (waiting.length) waiting.shift()(null);
  });
  return {
    next(ms) {
      if (queue.length) return Promise.resolve(queue.shift());
      if (closed) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = waiting.indexOf(take);
          if (i >= 0) waiting.splice(i, 1);
          reject(new CallError(t("call.no_answer_in_time")));
        }, ms);
        function take(value) {
          clearTimeout(timer);
          resolve(value);
        }
        waiting.push(take);
      });
    },
  };
}

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const fail = () => reject(new CallError(t("call.channel_failed")));
    ws.addEventListener("open", () => {
      ws.removeEventListener("error", fail);
      resolve(ws);
    }, { once: true });
    ws.addEventListener("error", fail, { once: true });
  });
}

async function localMedia(local) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new CallError(t("call.no_media_devices"));
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (err) {
    throw new CallError(t("call.media_refused", { reason: err.message || err.name }));
  }
  if (local) {
    local.muted = true;
    local.playsInline = true;
    local.srcObject = stream;
    local.play().catch(() => {});
  }
  return stream;
}

/**
 * Dial a unit. Options:
 *   unit, purpose ("night_check" | "video_visit" | "break_glass" | "citizen_call"),
 *   reason (break-glass), request (the citizen's request a citizen_call answers),
 *   video: HTMLVideoElement for the remote picture, local: optional HTMLVideoElement (self view),
 *   sendMedia: true = camera + microphone both ways (else receive video only),
 *   onState: (text) => void, for a status line,
 *   signal: an AbortSignal that cancels the call until the unit answers,
 *   onView: ({level, reason}) => void, the view the unit reports after an escalation,
 *   onEstimate: ({level, movement, personInBed}) => void, the unit's scene estimate of a night
 *     check ("yes" | "no" | "unsure" each), whenever it changes.
 *   path: the call WebSocket (the contact page's is /api/contact/call).
 * Resolves to { callId, hangup(): Promise<reason>, ended: Promise<reason>, pc, view,
 * escalate(reason) }: view is the night check's starting view ({level, mayEscalate}, or null),
 * escalate asks central for the clear picture with the staff member's reason.
 */
export async function startCall({
  unit,
  purpose = "night_check",
  reason,
  request,
  video,
  local,
  sendMedia = false,
  onState = () => {},
  signal = null,
  onView = () => {},
  onEstimate = () => {},
  path = "/api/calls",
} = {}) {
  // onState(text, phase): phase "ringing" while the unit rings (the text says it in words).
  const say = (text, phase = "") => {
    try { onState(text, phase); } catch (err) { /* a status line must not break the call */ }
  };
  let pc = null;
  let stream = null;
  let ws = null;
  const cleanUp = () => {
    try { if (pc) pc.close(); } catch (err) { /* already closed */ }
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    if (video) video.srcObject = null;
    if (local) local.srcObject = null;
  };
  // A cancel: before the dial went out, nothing to tell; after, central is told (the unit stops
  // ringing) and its "ended" reply ends the wait below; closing the socket ends it otherwise.
  let cancelled = false;
  let dialled = false;
  const onAbort = () => {
    cancelled = true;
    say(t("call.cancelling"));
    if (ws && ws.readyState === WebSocket.OPEN && !dialled) {
      ws.close(); // only prepared: central has rung nobody yet
    } else if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "cancel" }));
      setTimeout(() => { if (ws.readyState <= WebSocket.OPEN) ws.close(); }, CANCEL_MS);
    }
  };
  const check = () => { if (cancelled) throw cancelledError(); };
  if (signal) {
    if (signal.aborted) throw cancelledError();
    signal.addEventListener("abort", onAbort, { once: true });
  }
  try {
    if (sendMedia) {
      say(t("call.starting_media"));
      stream = await localMedia(local);
    }
    say(t("call.opening"));
    ws = await openSocket(socketUrl(path));
    check();
    const reader = messageReader(ws);
    const fields = { unit, purpose };
    if (reason) fields.reason = reason;
    if (request) fields.request = request;
    // The call's relay credential comes before the offer: without trickle ICE on the unit's
    // side, the offer must already hold the relay candidates.
    ws.send(JSON.stringify({ type: "prepare", ...fields }));
    const prepared = await reader.next(ANSWER_MS);
    check();
    if (!prepared) throw new CallError(t("call.closed_before_answer"));
    if (prepared.type === "refused") throw new CallError(readableRefusal(prepared), { refused: true, code: prepared.reason_code });
    if (prepared.type !== "prepared") throw new CallError(t("call.unexpected"));
    pc = new RTCPeerConnection({ iceServers: Array.isArray(prepared.ice_servers) ? prepared.ice_servers : [] });
    if (stream) {
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
    } else {
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    answerPings(pc);
    const remote = new MediaStream();
    pc.addEventListener("track", (event) => {
      remote.addTrack(event.track);
      if (video && video.srcObject !== remote) {
        video.srcObject = remote;
        video.play().catch(() => { /* autoplay rules: muted video plays; sound may wait for a tap */ });
      }
    });
    check();
    say(t("call.preparing"));
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, GATHER_MS);
    check();
    const dial = { type: "dial", ...fields, sdp: pc.localDescription.sdp };
    dialled = true;
    ws.send(JSON.stringify(dial));
    say(t("call.calling_unit", { unit }));
    let reply = await reader.next(ANSWER_MS);
    while (reply && reply.type === "ringing") {
      if (!cancelled) say(t("call.ringing_at", { unit }), "ringing");
      reply = await reader.next(reply.ring_s ? reply.ring_s * 1000 + ANSWER_MS : RING_MS);
    }
    check(); // cancelled: whatever came (central's "ended", an answer just in time) ends it here
    if (!reply) throw new CallError(t("call.closed_before_answer"));
    const notTaken = outcomeError(reply);
    if (notTaken) throw notTaken;
    if (reply.type === "refused") throw new CallError(readableRefusal(reply), { refused: true, code: reply.reason_code });
    if (reply.type === "ended") throw new CallError(t("call.ended_reason", { reason: endReason(reply) }));
    if (reply.type !== "answer" || !reply.sdp) throw new CallError(t("call.unexpected"));
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    say(t("call.connecting"));
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") say(t("call.connected"));
      else if (pc.connectionState === "failed") say(t("call.connection_failed"));
    });
    const view = reply.view ? { level: reply.view, mayEscalate: Boolean(reply.may_escalate) } : null;
    return followCall({ pc, ws, reader, callId: reply.call_id, say, cleanUp, view, onView, onEstimate });
  } catch (err) {
    cleanUp();
    if (cancelled) throw cancelledError();
    if (err instanceof CallError) throw err;
    throw new CallError(t("call.not_started", { reason: readable(err.message || String(err)) }));
  } finally {
    if (signal) signal.removeEventListener("abort", onAbort);
  }
}

function followCall({ pc, ws, reader, callId, say, cleanUp, view, onView, onEstimate }) {
  let finish;
  let finished = false;
  const ended = new Promise((resolve) => { finish = resolve; });
  const end = (why) => {
    if (finished) return;
    finished = true;
    cleanUp();
    say(sentence(t("call.ended_short", { reason: why })));
    finish(why);
  };
  (async () => {
    for (;;) {
      let message;
      try {
        message = await reader.next(24 * 3600 * 1000);
      } catch (err) {
        message = null;
      }
      if (!message) return end(t("call.why_channel_closed"));
      if (message.type === "view") {
        try { onView({ level: message.level, reason: message.reason }); } catch (err) { /* display only */ }
        continue;
      }
      if (message.type === "estimate") {
        const estimate = { level: message.level, movement: message.movement, personInBed: message.person_in_bed };
        try { onEstimate(estimate); } catch (err) { /* display only */ }
        continue;
      }
      if (message.type === "ended" || message.type === "refused") return end(endReason(message) || t("call.why_ended"));
    }
  })();
  return {
    callId,
    pc,
    ended,
    view,
    escalate(reason) {
      if (!finished && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "escalate", reason }));
    },
    async hangup(timeoutMs = 5000) {
      if (!finished && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "hangup" }));
        const timer = setTimeout(() => end(t("call.why_you_hung_up")), timeoutMs);
        ended.finally(() => clearTimeout(timer));
      } else {
        end(t("call.why_you_hung_up"));
      }
      return ended;
    },
  };
}

// A two-way call shown in a callView (dom.js) until it ends: the view opens with `title`; its
// button cancels the call while it is set up or rings ("Cancel"), and hangs up once it runs.
// `page.closed()` says whether the page was left meanwhile (a ringing call is then cancelled, a
// running one hung up at once); `page.call(c)` is told the running call (null when it ends).
// Returns the end reason (null if the page was left); throws CallError, view hidden, if the
// call never started (err.cancelled when it was cancelled).
export async function callInView(view, title, options, page) {
  view.root.hidden = false;
  view.title.textContent = title;
  view.root.scrollIntoView({ block: "start" });
  const cancel = new AbortController();
  const onCancel = () => cancel.abort();
  const left = setInterval(() => { if (page.closed()) cancel.abort(); }, 500);
  view.hangup.textContent = t("call.cancel");
  view.hangup.disabled = false;
  view.hangup.addEventListener("click", onCancel);
  let started;
  try {
    started = await startCall({
      onState: (text) => { view.state.textContent = text; },
      ...options,
      sendMedia: true,
      video: view.remote,
      local: view.local,
      signal: cancel.signal,
    });
  } catch (err) {
    view.root.hidden = true;
    throw err;
  } finally {
    clearInterval(left);
    view.hangup.removeEventListener("click", onCancel);
    view.hangup.textContent = t("call.hangup");
  }
  if (page.closed()) {
    started.hangup();
    return null;
  }
  page.call(started);
  view.root.dataset.callId = started.callId || "";
  view.hangup.disabled = false;
  const reason = await started.ended;
  page.call(null);
  view.root.hidden = true;
  return reason;
}
