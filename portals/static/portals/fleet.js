// The admin home's charts: each [data-chart] element holds its Chart.js data in a JSON script
// (json_script, id = the chart's key). Chart.js is vendored: portals/static/portals/vendor/.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-chart]").forEach(function (figure) {
    var source = document.getElementById(figure.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var stacked = data.datasets.some(function (d) { return d.stack; });
    var scales = {
      x: {stacked: stacked},
      y: {stacked: stacked, beginAtZero: true, title: {display: true, text: "count"}},
    };
    if (data.datasets.some(function (d) { return d.yAxisID === "ms"; })) {
      scales.ms = {position: "right", beginAtZero: true, grid: {drawOnChartArea: false},
                   title: {display: true, text: "ms"}};
    }
    new Chart(figure.querySelector("canvas"), {
      type: figure.dataset.kind || "bar",
      data: data,
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: {mode: "index", intersect: false},
        scales: scales, plugins: {legend: {position: "bottom"}},
      },
    });
    figure.dataset.rendered = "true";
  });
});
