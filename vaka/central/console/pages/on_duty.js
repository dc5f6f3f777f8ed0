// The "On duty" page (to be filled in): render(main, ctx) may return a clean-up function.
export function render(main, ctx) {
  main.append(
    ctx.h("h1", {}, "On duty"),
    ctx.h("p", {}, "Going on and off duty, and who holds the night watch."),
    ctx.h("p", { class: "hint" }, "This page is not ready yet."),
  );
}
