/* The community comparison's chart, from the JSON the server put in #community-chart-data (json_script).
 * Without Chart.js (no CDN) the box stays hidden: the table beside it holds the same numbers. */
(function () {
  "use strict";

  function draw() {
    var canvas = document.getElementById("community-chart");
    var source = document.getElementById("community-chart-data");
    if (!canvas || !source || typeof window.Chart === "undefined") {
      return;
    }
    document.getElementById("community-chart-box").hidden = false;
    var data = JSON.parse(source.textContent);
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          { label: data.text.household, data: data.household, backgroundColor: "#0b6e4f" },
          { label: data.text.community, data: data.community, backgroundColor: "#9fb3c8" }
        ]
      },
      options: {
        maintainAspectRatio: false,
        scales: {
          x: { title: { display: true, text: data.text.hour } },
          y: { beginAtZero: true, title: { display: true, text: "kWh" } }
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.raw === null
                  ? item.dataset.label + ": " + data.text.hidden
                  : item.dataset.label + ": " + item.raw.toFixed(3);
              }
            }
          }
        }
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
