// The console shell: who is logged in, the navigation by role, a tiny hash router, and the
// browser's side of the idle time-out (it shows the same message as central).
import { api, ApiError, onActivity } from "./api.js";
import { h } from "./dom.js";
import { pagesFor } from "./pages.js";
import * as idle from "./idle.js";
import * as loginView from "./views/login.js";
import * as enrolView from "./views/enrol.js";
import * as passwordView from "./views/password.js";

const main = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutButton = document.getElementById("logout");
const notice = document.getElementById("notice");

let me = null;
let cleanup = null;

function setNotice(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

function clearView() {
  if (typeof cleanup === "function") {
    try { cleanup(); } catch (err) { /* a page's clean-up must not stop the console */ }
  }
  cleanup = null;
  main.replaceChildren();
}

const ctx = {
  api,
  h,
  get me() { return me; },
  notice: setNotice,
  // Start over: ask central who we are and show the right view.
  restart: () => start(),
  go: (id) => { location.hash = `#/${id}`; },
};

function showShell(visible) {
  nav.hidden = !visible;
  logoutButton.hidden = !me;
  who.textContent = me ? `${me.staff.name} (${me.staff.role.replace("_", " ")})` : "";
}

// Logged out (by the user, by the idle time-out, or never logged in): the log-in view.
function loggedOut(message) {
  idle.stop();
  me = null;
  showShell(false);
  clearView();
  loginView.render(main, ctx, message);
}

async function start(message) {
  let answer;
  try {
    answer = await api("GET", "/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      loggedOut(message || idleMessage(err.message));
      return;
    }
    clearView();
    main.append(h("p", { class: "error", role: "alert" }, err.message));
    return;
  }
  me = answer;
  idle.start(answer, onIdle);
  clearView();
  if (answer.must_enrol_totp) {
    showShell(false);
    enrolView.render(main, ctx);
    return;
  }
  if (answer.must_change_password) {
    showShell(false);
    passwordView.render(main, ctx, { expired: true });
    return;
  }
  buildNav();
  showShell(true);
  route();
}

function idleMessage(text) {
  return /without activity/.test(text) ? `You were ${text}` : "";
}

function onIdle(text) {
  loggedOut(idleMessage(text) || text);
}

function buildNav() {
  const pages = pagesFor(me.staff.role);
  nav.replaceChildren(
    ...pages.map((page) => h("a", { href: `#/${page.id}`, "data-page": page.id }, page.title)),
    h("a", { href: "#/password", "data-page": "password" }, "Change password"),
  );
}

async function route() {
  if (!me || me.must_enrol_totp || me.must_change_password) return;
  const pages = pagesFor(me.staff.role);
  const wanted = location.hash.replace(/^#\/?/, "");
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === wanted) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearView();
  if (wanted === "password") {
    passwordView.render(main, ctx, { expired: false });
    return;
  }
  const page = pages.find((p) => p.id === wanted) || pages[0];
  if (!page) {
    main.append(h("h1", {}, `Welcome, ${me.staff.name}`), h("p", {}, "No pages are set up for your role yet."));
    return;
  }
  if (page.id !== wanted) {
    history.replaceState(null, "", `#/${page.id}`);
    nav.querySelector(`a[data-page="${page.id}"]`)?.setAttribute("aria-current", "page");
  }
  try {
    const module = await import(page.module);
    cleanup = await module.render(main, ctx);
  } catch (err) {
    main.append(h("p", { class: "error", role: "alert" }, `This page could not be shown: ${err.message}`));
  }
}

onActivity((ok, status, message) => {
  if (ok) {
    idle.activity();
  } else if (status === 401 && me) {
    // Central ended the session (idle, expired, logged out elsewhere).
    loggedOut(idleMessage(message) || message);
  }
});

logoutButton.addEventListener("click", async () => {
  try { await api("POST", "/api/logout", {}); } catch (err) { /* logged out either way */ }
  loggedOut("You are logged out.");
});

window.addEventListener("hashchange", () => route());
start();
