// The fleet: every unit's status for the support function, refreshed every 10 seconds.
const STATUSES = ["online", "degraded", "offline"];

export function render(main, ctx) {
  const { h } = ctx;
  const summary = h("p", { id: "fleet-summary" }, "Loading…");
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  main.append(
    h("h1", {}, "Fleet"),
    summary,
    error,
    h("div", { class: "table-wrap" },
      h("table", { id: "fleet-table" },
        h("thead", {}, h("tr", {}, ["Unit", "Profile", "Status", "Why", "Agent"].map((t) => h("th", {}, t)))),
        body)),
  );
  let stopped = false;
  async function refresh(background) {
    try {
      const answer = await ctx.api("GET", "/api/units", undefined, { background });
      const counts = STATUSES.map((s) => `${answer.units.filter((u) => u.status === s).length} ${s}`);
      summary.textContent = `${answer.count} units: ${counts.join(", ")}.`;
      body.replaceChildren(
        ...answer.units.map((u) =>
          h("tr", { class: u.status },
            h("td", {}, u.id),
            h("td", {}, u.profile || "?"),
            h("td", {}, h("b", {}, u.status)),
            h("td", {}, u.reasons.join("; ") || "—"),
            h("td", {}, u.agent_version || "?"))),
      );
      if (!answer.units.length) body.append(h("tr", {}, h("td", { colspan: 5 }, "No units have connected yet.")));
      error.hidden = true;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }
  refresh(false);
  const timer = setInterval(() => { if (!stopped) refresh(true); }, 10000);
  return () => { stopped = true; clearInterval(timer); };
}
