/* Draws the dashboard's usage chart from the JSON the server put in #chart-data (json_script).
 *
 * Loaded once (defer). Redraws on page load, after htmx has swapped (and settled) the #chart partial, and after
 * htmx restores a page from its history cache. Labels, tooltips and numbers all come from the
 * server (the household's time zone, EUR formatting); this file only hands them to Chart.js.
 * Without Chart.js (no CDN, e.g. offline) the chart box stays hidden and the table is opened.
 */
(function () {
  "use strict";

  var BAR = "#0b6e4f";
  var PENDING = "#b7bfcc";
  var PRICE = "#a15c00";
  var chart = null;

  function numbers(values) {
    return values.map(function (value) { return value === null ? null : Number(value); });
  }

  function config(data) {
    var datasets = [{
      type: "bar",
      label: data.label,
      data: numbers(data.values),
      yAxisID: "y",
      backgroundColor: data.pending.map(function (pending) { return pending ? PENDING : BAR; }),
      order: 2
    }];
    var scales = {
      x: { type: "category", ticks: { autoSkip: true, maxRotation: 0 } },
      y: { beginAtZero: true, title: { display: true, text: data.axis } }
    };
    if (data.price) {
      datasets.push({
        type: "line",
        label: data.price.label,
        data: numbers(data.price.values),
        yAxisID: "price",
        borderColor: PRICE,
        backgroundColor: PRICE,
        pointRadius: 2,
        stepped: data.range === "day" ? "middle" : false,
        spanGaps: true,
        order: 1
      });
      scales.price = {
        position: "right",
        beginAtZero: true,
        grid: { drawOnChartArea: false },
        title: { display: true, text: "EUR/kWh" }
      };
    }
    return {
      data: { labels: data.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: scales,
        plugins: {
          legend: { display: Boolean(data.price) },
          tooltip: {
            callbacks: {
              label: function (context) {
                if (context.dataset.yAxisID === "price") {
                  return data.price.label.replace(/ \(EUR\/kWh\)$/, "") + ": " + data.price.text[context.dataIndex];
                }
                return data.tips[context.dataIndex];
              }
            }
          }
        }
      }
    };
  }

  function draw() {
    if (chart) {
      chart.destroy();
      chart = null;
    }
    var source = document.getElementById("chart-data");
    var canvas = document.getElementById("usage-chart");
    if (!source || !canvas) {
      return;
    }
    var box = canvas.closest(".chart-box");
    if (typeof window.Chart === "undefined") {
      var table = document.getElementById("chart-table");
      if (table) {
        table.open = true;
      }
      return;
    }
    box.hidden = false;
    // A canvas restored from htmx's history cache, or drawn by a draw() this file did not keep (two
    // events for one swap), may still be Chart.js's: reusing it throws "Canvas is already in use".
    var previous = window.Chart.getChart(canvas);
    if (previous) {
      previous.destroy();
    }
    chart = new window.Chart(canvas, config(JSON.parse(source.textContent)));
  }

  // After the settle, not right after the swap: htmx settles the class, style, width and height of
  // elements whose id was on the page before (#usage-chart), which would undo Chart.js's canvas sizing.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.target;
    if (target instanceof Element && (target.id === "chart" || target.querySelector("#chart-data"))) {
      draw();
    }
  });
  document.addEventListener("htmx:historyRestore", draw);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
