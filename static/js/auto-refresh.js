/* The staff status page reloads itself every minute while its "refresh every minute" box is ticked, so
 * a person reading it can stop the page from moving under them (WCAG 2.2.1); the choice is remembered
 * in this browser. Without JavaScript the box stays hidden and the page is reloaded by hand.
 */
(function () {
  "use strict";

  var box = document.getElementById("auto-refresh");
  if (!box) {
    return;
  }
  var KEY = "energypay.status.auto-refresh";
  var seconds = Number(box.dataset.seconds) || 60;
  var timer = null;

  function schedule() {
    window.clearTimeout(timer);
    if (box.checked) {
      timer = window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }

  box.checked = window.localStorage.getItem(KEY) !== "off";
  box.closest("label").hidden = false;
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
    schedule();
  });
  schedule();
})();
