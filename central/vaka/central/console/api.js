// Talking to central: same-origin requests with the session cookie; the CSRF token (from the
// vaka_csrf cookie) goes in X-CSRF-Token on every request that is not a GET.
import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const listeners = [];

// fn(ok: boolean, status: number, message: string) after every request that counts as activity.
export function onActivity(fn) {
  listeners.push(fn);
}

function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("vaka_csrf="));
  return found ? decodeURIComponent(found.slice("vaka_csrf=".length)) : "";
}

// api("POST", "/api/login", {...}) -> the JSON answer, or throws ApiError with central's reason.
// background: true for requests that are not the user's doing (they do not keep the session alive).
export async function api(method, path, body, { background = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (background) headers["X-Vaka-Activity"] = "background";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, t("api.unreachable"));
  }
  let data = {};
  try {
    data = await response.json();
  } catch (err) {
    data = {};
  }
  if (!response.ok) {
    const message = data.error || t("api.status", { status: response.status });
    if (!background) listeners.forEach((fn) => fn(false, response.status, message));
    throw new ApiError(response.status, message);
  }
  if (!background) listeners.forEach((fn) => fn(true, response.status, ""));
  return data;
}
