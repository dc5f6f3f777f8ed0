// The "Supervision report" page: the night checks and emergency look-ins performed in a date
// range (who, citizen, unit, when, how long, the outcome), and the same as a CSV download.
const OUTCOME_WORDS = { all_well: "All well", visit_needed: "Visit needed" };
const PURPOSE_WORDS = { night_check: "Night check", break_glass: "Emergency look-in" };

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function minutesSeconds(seconds) {
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
}

export function render(main, ctx) {
  const { h } = ctx;
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 7 * 86400 * 1000);
  const since = h("input", { id: "report-since", name: "since", type: "date", value: isoDay(weekAgo), required: true });
  const until = h("input", { id: "report-until", name: "until", type: "date", value: isoDay(today), required: true });
  const form = h("form", { id: "report-form", class: "filters", "aria-label": "Date range" },
    h("label", {}, "From", since),
    h("label", {}, "To (including)", until),
    h("button", { type: "submit" }, "Show"),
  );
  const error = h("p", { id: "report-error", class: "error", role: "alert", hidden: true });
  const summary = h("p", { id: "report-summary", role: "status" });
  const csv = h("a", { id: "report-csv", class: "button download", download: true }, "Download CSV");
  const rows = h("tbody", { id: "report-rows" });
  const table = h("table", { class: "stack report-table" },
    h("thead", {}, h("tr", {}, ...["When", "Who", "Citizen", "Unit", "Duration", "Outcome", "Kind"].map((t) => h("th", { scope: "col" }, t)))),
    rows,
  );
  main.append(h("h1", {}, "Supervision report"), form, error, summary, csv, h("div", { class: "table-wrap" }, table));

  let gone = false;

  function range() {
    return new URLSearchParams({ since: since.value, until: until.value }).toString();
  }

  function cell(label, ...content) {
    return h("td", { "data-label": label }, ...content);
  }

  function when(ts, timezone) {
    try {
      return new Date(ts * 1000).toLocaleString("sv-SE", { timeZone: timezone });
    } catch (err) {
      return new Date(ts * 1000).toLocaleString("sv-SE");
    }
  }

  async function load() {
    error.hidden = true;
    csv.href = `/api/reports/supervisions.csv?${range()}`;
    let answer;
    try {
      answer = await ctx.api("GET", `/api/reports/supervisions?${range()}`);
    } catch (err) {
      if (gone) return;
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    if (gone) return;
    const list = answer.supervisions;
    summary.textContent = `${list.length} supervision${list.length === 1 ? "" : "s"} from ${since.value} to ${until.value} (times in ${answer.timezone}).`;
    rows.replaceChildren(...list.slice().reverse().map((s) => h("tr", { "data-call-id": s.call_id },
      cell("When", when(s.started, answer.timezone)),
      cell("Who", s.staff),
      cell("Citizen", s.citizen),
      cell("Unit", s.unit),
      cell("Duration", minutesSeconds(s.duration_s)),
      cell("Outcome", OUTCOME_WORDS[s.outcome] || (s.outcome ? s.outcome : "not recorded"), s.outcome_note ? ` — ${s.outcome_note}` : ""),
      cell("Kind", PURPOSE_WORDS[s.purpose] || s.purpose, s.break_glass_reason ? `: ${s.break_glass_reason}` : ""),
    )));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  load();
  return () => { gone = true; };
}
