// The "Video visits" page (to be filled in): render(main, ctx) may return a clean-up function.
export function render(main, ctx) {
  main.append(
    ctx.h("h1", {}, "Video visits"),
    ctx.h("p", {}, "Planned video visits and calls."),
    ctx.h("p", { class: "hint" }, "This page is not ready yet."),
  );
}
