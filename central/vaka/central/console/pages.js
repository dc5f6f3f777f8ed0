// The console's pages. Adding a page = a file in pages/ exporting render(main, ctx) (which may
// return a clean-up function) + one line here (its title is the catalog key "nav.<id>").
// A page with `nav: false` is reached by a link, not the navigation (its address carries what it
// shows: #/units/<id> renders pages/unit.js with ctx.params ["<id>"]; `under` is the navigation
// entry it belongs to).
// roles: who sees it in the navigation — the same roles central lets use the page's API
// (tests/test_console_i18n.py holds the two together):
//   night-round         ROUND_ROLES (calls/round.py)
//   on-duty             roles that take citizens' calls (ROLE_PURPOSES, directory/policy.py)
//   video-visits        VISIT_ROLES (calls/visits.py)
//   circle              CIRCLE_ROLES (circle/contacts.py)
//   fleet, units        FLEET_ROLES (http/fleet.py)
//   audit               AUDIT_ROLES (http/audit.py)
//   supervision-report  REPORT_ROLES (http/audit.py)
export const PAGES = [
  { id: "night-round", module: "./pages/night_round.js", roles: ["night_staff", "administrator"] },
  { id: "on-duty", module: "./pages/on_duty.js", roles: ["night_staff", "day_staff"] },
  { id: "video-visits", module: "./pages/video_visits.js", roles: ["night_staff", "day_staff"] },
  { id: "fleet", module: "./pages/fleet.js", roles: ["support", "technician", "administrator"] },
  { id: "units", module: "./pages/unit.js", roles: ["support", "technician", "administrator"], nav: false, under: "fleet" },
  { id: "audit", module: "./pages/audit.js", roles: ["support", "administrator"] },
  { id: "supervision-report", module: "./pages/supervision_report.js", roles: ["administrator"] },
  { id: "circle", module: "./pages/circle.js", roles: ["day_staff", "night_staff", "support", "technician", "administrator"] },
];

export function pagesFor(role) {
  return PAGES.filter((page) => page.roles.includes(role));
}

// The pages of the role's navigation.
export function navPagesFor(role) {
  return pagesFor(role).filter((page) => page.nav !== false);
}
