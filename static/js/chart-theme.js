/* Chart.js's text and grid lines in the page's colours (app.css's --muted and --line), so a chart is
 * readable in dark colours too. Loaded after Chart.js and before the script that draws the chart; without
 * Chart.js (no CDN) it does nothing, and the table says it all.
 */
(function () {
  "use strict";

  if (!window.Chart) {
    return;
  }
  var style = window.getComputedStyle(document.documentElement);
  var text = style.getPropertyValue("--muted").trim();
  var lines = style.getPropertyValue("--line").trim();
  if (text) {
    window.Chart.defaults.color = text;
  }
  if (lines) {
    window.Chart.defaults.borderColor = lines;
  }
})();
