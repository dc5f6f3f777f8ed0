// The "Supervision report" page: the night checks and emergency look-ins performed in a date
// range (who, citizen, unit, when, how long, the outcome), and the same as a CSV download.
import { mount, replace, shown } from "../dom.js";
import { reason, t, tn, when, word } from "../i18n.js";

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// The day (YYYY-MM-DD) of ``date`` in ``timeZone``.
function dayIn(date, timeZone) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(date);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

function minutesSeconds(seconds) {
  const whole = Math.round(seconds);
  if (whole < 60) return t("common.seconds_short", { s: whole });
  return t("common.minutes_seconds_short", { m: Math.floor(whole / 60), s: String(whole % 60).padStart(2, "0") });
}

const COLUMNS = ["report.col_when", "report.col_who", "report.col_citizen", "report.col_unit", "report.col_duration", "report.col_outcome", "report.col_kind"];

export function render(main, ctx) {
  const { h } = ctx;
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 7 * 86400 * 1000);
  const since = h("input", { id: "report-since", name: "since", type: "date", value: isoDay(weekAgo), required: true });
  const until = h("input", { id: "report-until", name: "until", type: "date", value: isoDay(today), required: true });
  const form = h("form", { id: "report-form", class: "filters", "aria-label": t("report.range") },
    h("label", {}, t("common.from"), since),
    h("label", {}, t("common.to"), until),
    h("button", { type: "submit" }, t("common.show")),
  );
  const error = h("p", { id: "report-error", class: "error", role: "alert", hidden: true });
  const summary = h("p", { id: "report-summary", role: "status" });
  const csv = h("a", { id: "report-csv", class: "button download", download: true }, t("report.csv"));
  const rows = h("tbody", { id: "report-rows" });
  const table = h("table", { class: "stack report-table" },
    h("thead", {}, h("tr", {}, ...COLUMNS.map((k) => h("th", { scope: "col" }, t(k))))),
    rows,
  );
  mount(main, h("h1", {}, t("nav.supervision-report")), form, error, summary, csv, h("div", { class: "table-wrap" }, table));

  let gone = false;
  let chosen = false; // the range was set by the reader, or moved to central's day once

  function range() {
    return new URLSearchParams({ since: since.value, until: until.value }).toString();
  }

  function cell(label, ...content) {
    return h("td", { "data-label": t(label) }, ...content);
  }

  async function load() {
    error.hidden = true;
    csv.href = `/api/reports/supervisions.csv?${range()}`;
    let answer;
    try {
      answer = await ctx.api("GET", `/api/reports/supervisions?${range()}`);
    } catch (err) {
      if (gone) return;
      error.textContent = reason(err.message);
      error.hidden = false;
      return;
    }
    if (gone) return;
    // The default range is "the last week up to today" in central's zone (the report's dates
    // are central's), not the browser's: around midnight the two name different days.
    if (!chosen && answer.timezone) {
      chosen = true;
      const zoneToday = dayIn(new Date(), answer.timezone);
      if (zoneToday !== until.value) {
        const [y, m, d] = zoneToday.split("-").map(Number);
        until.value = zoneToday;
        since.value = isoDay(new Date(y, m - 1, d - 7));
        return load();
      }
    }
    const list = answer.supervisions;
    const day = (value) => when(new Date(`${value}T12:00`), { time: false });
    summary.textContent = tn("report.summary", list.length, { since: day(since.value), until: day(until.value), zone: answer.timezone });
    replace(rows, ...list.slice().reverse().map((s) => h("tr", { "data-call-id": s.call_id },
      cell("report.col_when", when(s.started, { timeZone: answer.timezone })),
      cell("report.col_who", shown(s.staff)),
      cell("report.col_citizen", shown(s.citizen)),
      cell("report.col_unit", shown(s.unit)),
      cell("report.col_duration", minutesSeconds(s.duration_s)),
      cell("report.col_outcome", s.outcome ? word("outcome", s.outcome) : t("report.not_recorded"), s.outcome_note ? ` — ${s.outcome_note}` : ""),
      cell("report.col_kind", word("purpose", s.purpose), s.break_glass_reason ? `: ${s.break_glass_reason}` : ""),
    )));
  }

  form.addEventListener("submit", (event) => {
    chosen = true;
    event.preventDefault();
    load();
  });
  load();
  return () => { gone = true; };
}
