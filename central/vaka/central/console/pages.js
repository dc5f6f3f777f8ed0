// The console's pages. Adding a page = a file in pages/ exporting render(main, ctx) (which may
// return a clean-up function) + one line here. roles: who sees it in the navigation.
export const PAGES = [
  { id: "night-round", title: "Night round", module: "./pages/night_round.js", roles: ["night_staff", "administrator"] },
  { id: "on-duty", title: "On duty", module: "./pages/on_duty.js", roles: ["night_staff", "day_staff", "administrator"] },
  { id: "video-visits", title: "Video visits", module: "./pages/video_visits.js", roles: ["day_staff", "night_staff", "administrator"] },
  { id: "fleet", title: "Fleet", module: "./pages/fleet.js", roles: ["support", "technician", "administrator"] },
  { id: "audit", title: "Audit", module: "./pages/audit.js", roles: ["support", "administrator"] },
  { id: "supervision-report", title: "Supervision report", module: "./pages/supervision_report.js", roles: ["administrator"] },
];

export function pagesFor(role) {
  return PAGES.filter((page) => page.roles.includes(role));
}
