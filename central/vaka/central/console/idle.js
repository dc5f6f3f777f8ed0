// The browser's side of the idle time-out. Central ends a session that has been idle longer than
// idle_timeout_s; the console keeps a timer to the same deadline, asks central when it passes
// (without counting as activity) and shows central's own message.
import { api, ApiError } from "./api.js";

let timer = null;
let timeoutS = 900;
let onLoggedOut = () => {};

export function start(me, loggedOut) {
  onLoggedOut = loggedOut;
  timeoutS = me.idle_timeout_s;
  // Central's clock decides; me.now is central's time when it answered.
  schedule(Math.max(0, me.idle_deadline - me.now));
}

export function stop() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
}

// The user did something that reached central: the deadline moves.
export function activity() {
  if (timer !== null) schedule(timeoutS);
}

function schedule(seconds) {
  stop();
  timer = setTimeout(check, (seconds + 0.5) * 1000);
}

async function check() {
  timer = null;
  try {
    const me = await api("GET", "/api/me", undefined, { background: true });
    schedule(Math.max(0, me.idle_deadline - me.now));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) onLoggedOut(err.message);
    else schedule(5);
  }
}
