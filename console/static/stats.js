/* Statistics charts: the page carries its figures as JSON (#stats-data); the vendored ECharts draws them on
   canvas. Tooltips render as rich text on the canvas too, so no inline style is needed (the CSP allows none). */
(function () {
  "use strict";

  var COLORS = ["#9aa5b1", "#0b6e4f", "#f0b429", "#3e7cb1"];

  function base(data, unit) {
    return {
      color: COLORS,
      animation: false,
      textStyle: {fontFamily: "Noto Sans CJK SC, Microsoft YaHei, sans-serif"},
      tooltip: {trigger: "axis", renderMode: "richText", valueFormatter: function (v) {
        return v === null || v === undefined ? "—" : v + unit;
      }},
      legend: {top: 0},
      grid: {left: 48, right: 16, top: 36, bottom: 28},
      xAxis: {type: "category", data: data.categories},
      yAxis: {type: "value", name: unit},
      series: data.series.map(function (s) {
        return {name: s.name, type: "bar", stack: s.stack, data: s.data, barMaxWidth: 48,
                label: {show: !s.stack, position: "top"}};
      })
    };
  }

  function draw(id, option) {
    var element = document.getElementById(id);
    if (!element || !window.echarts) { return 0; }
    var chart = window.echarts.init(element, null, {renderer: "canvas"});
    chart.setOption(option);
    window.addEventListener("resize", function () { chart.resize(); });
    return 1;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var source = document.getElementById("stats-data");
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var drawn = 0;
    drawn += draw("chart-table1", base(data.table1, "天"));
    drawn += draw("chart-stages", base(data.stages, "天"));
    var satisfaction = base(data.satisfaction, "%");
    satisfaction.yAxis.max = 100;
    satisfaction.yAxis.min = function (v) { return Math.max(0, Math.floor((v.min - 10) / 10) * 10); };
    satisfaction.series.forEach(function (s, i) {
      s.type = "line";
      s.connectNulls = true;
      s.label = {show: true, position: i % 2 ? "top" : "bottom"};  // two close lines keep their labels apart
    });
    drawn += draw("chart-satisfaction", satisfaction);
    document.documentElement.setAttribute("data-charts-ready", String(drawn));
  });
})();
