/* A table wider than the screen scrolls inside its box (.table-wrap; the status page's modules); a
 * keyboard must be able to scroll it too, so such a box becomes a named tab stop (role=region, named by
 * the table's caption or the nearest heading). Boxes that fit are left alone: no empty tab stops.
 * Runs on load, after htmx swaps and when the window changes size.
 */
(function () {
  "use strict";

  var BOXES = ".table-wrap, #content-main .module";

  function nameOf(box) {
    var caption = box.querySelector("caption");
    if (caption && caption.textContent.trim()) {
      return caption.textContent.trim();
    }
    var section = box.closest("section, .module");
    var heading = section && section.querySelector("h1, h2, h3");
    return heading ? heading.textContent.trim() : "";
  }

  function mark() {
    document.querySelectorAll(BOXES).forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", nameOf(box));
        box.dataset.scrollRegion = "";
      } else if (!scrolls && box.dataset.scrollRegion !== undefined) {
        ["tabindex", "role", "aria-label", "data-scroll-region"].forEach(function (name) { box.removeAttribute(name); });
      }
    });
  }

  var pending = null;
  function soon() {
    window.clearTimeout(pending);
    pending = window.setTimeout(mark, 100);
  }

  mark();
  document.addEventListener("htmx:afterSettle", mark);
  window.addEventListener("resize", soon);
})();
