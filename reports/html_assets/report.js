/* stprof's HTML report: sorting, the uPlot histograms, the icicle's zoom and search,
   saving the embedded profile. Every figure shown was formatted by stprof itself. */
(function () {
  "use strict";

  /* ---- sortable tables: numbers by data-value, names by text */
  function sortTable(table, th) {
    var key = th.getAttribute("data-key");
    var numeric = !th.classList.contains("name");
    var descending = th.getAttribute("aria-sort") !== "descending";
    if (!numeric && th.getAttribute("aria-sort") === "none") descending = false;
    table.querySelectorAll("thead th[data-key]").forEach(function (other) {
      other.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    function value(row) {
      var cell = row.querySelector('td[data-key="' + key + '"]');
      var raw = cell ? cell.getAttribute("data-value") : "";
      return numeric ? parseFloat(raw) : raw;
    }
    rows.sort(function (a, b) {
      var va = value(a), vb = value(b);
      var order = va < vb ? -1 : va > vb ? 1 : 0;
      if (order === 0) {
        var na = a.getAttribute("data-syscall"), nb = b.getAttribute("data-syscall");
        return na < nb ? -1 : na > nb ? 1 : 0;
      }
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-key]").forEach(function (th) {
      th.addEventListener("click", function () { sortTable(table, th); });
    });
  });

  /* ---- stacked bars: hide the label of a part too narrow for it (the legend has it) */
  function fitBarLabels() {
    document.querySelectorAll(".bar .part").forEach(function (part) {
      part.classList.remove("noname", "narrow");
      var label = part.querySelector(".part-label");
      if (!label) return;
      var room = part.clientWidth;
      if (label.scrollWidth > room) part.classList.add("noname");
      if (label.scrollWidth > room) part.classList.add("narrow");
    });
  }

  /* ---- log2 histograms drawn by uPlot */
  var plots = [];
  function drawHistogram(host) {
    var data = JSON.parse(document.getElementById(host.getAttribute("data-hist")).textContent);
    var n = data.counts.length;
    var xs = [];
    for (var i = 0; i < n; i++) xs.push(i);
    var step = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(host.clientWidth / 110))));
    var opts = {
      width: Math.max(240, host.clientWidth),
      height: 240,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: function (u, lo, hi) { return [0, hi * 1.08 || 1]; } } },
      axes: [
        { splits: function () { return xs.filter(function (x) { return x % step === 0; }); },
          values: function (u, ticks) { return ticks.map(function (t) { return data.lows[t] || ""; }); },
          size: 30, gap: 4, label: "time per " + data.unit.replace(/s$/, "") +
            " (a bar spans its label to twice it; hover for its range)", labelSize: 16 },
        { size: 56, label: data.unit, labelSize: 16, values: function (u, ticks) { return ticks.map(function (t) { return t.toLocaleString("en-US"); }); } }
      ],
      series: [
        { label: "time", value: function (u, v) { return v == null ? "-" : (data.labels[v] || "-"); } },
        { label: data.unit, fill: "#0072B2", stroke: "#0072B2", width: 0,
          paths: uPlot.paths.bars({ size: [0.85, 80], align: 0 }), points: { show: false },
          value: function (u, v) { return v == null ? "-" : v.toLocaleString("en-US"); } }
      ]
    };
    var plot = new uPlot(opts, [xs, data.counts], host);
    plots.push({ plot: plot, host: host });
  }
  document.querySelectorAll(".uplot-host").forEach(drawHistogram);

  /* ---- the icicle: zoom, search, hover */
  var flame = document.getElementById("flame");
  var zoomed = null;
  function frames() { return Array.prototype.slice.call(flame.querySelectorAll("g.frame")); }
  function geometry(g) {
    return { x: parseFloat(g.getAttribute("data-x")), w: parseFloat(g.getAttribute("data-w")),
             depth: parseInt(g.getAttribute("data-depth"), 10) };
  }
  function place(g, x, w) {
    var rect = g.querySelector("rect"), text = g.querySelector("text");
    rect.setAttribute("x", (100 * x) + "%");
    rect.setAttribute("width", (100 * w) + "%");
    text.setAttribute("x", (100 * x) + "%");
    var px = w * flame.getBoundingClientRect().width;
    var name = g.getAttribute("data-name");
    var fits = Math.floor((px - 6) / 6.7);
    text.textContent = fits >= name.length ? name : fits >= 3 ? name.slice(0, fits - 1) + "\u2026" : "";
  }
  function layout() {
    if (!flame) return;
    var z = zoomed ? geometry(zoomed) : { x: 0, w: 1, depth: 0 };
    var eps = 1e-9;
    frames().forEach(function (g) {
      var f = geometry(g);
      g.classList.remove("hidden", "dim");
      if (f.depth < z.depth) {
        if (f.x <= z.x + eps && f.x + f.w >= z.x + z.w - eps) {
          g.classList.add("dim");
          place(g, 0, 1);
        } else {
          g.classList.add("hidden");
        }
        return;
      }
      if (f.x + eps < z.x || f.x + f.w > z.x + z.w + eps) {
        g.classList.add("hidden");
        return;
      }
      place(g, (f.x - z.x) / z.w, f.w / z.w);
    });
    flame.setAttribute("data-zoom", zoomed ? zoomed.getAttribute("data-name") : "");
  }
  function describe(g) {
    var samples = parseInt(g.getAttribute("data-samples"), 10).toLocaleString("en-US");
    return g.getAttribute("data-name") + ": " + samples + " samples, " +
      g.getAttribute("data-share") + " of all";
  }
  function search(text) {
    var needle = text.trim().toLowerCase();
    var matched = 0;
    var total = parseInt(flame.getAttribute("data-samples"), 10);
    var counted = [];
    frames().forEach(function (g) {
      var hit = needle !== "" && g.getAttribute("data-depth") !== "0" &&
        g.getAttribute("data-name").toLowerCase().indexOf(needle) >= 0;
      g.classList.toggle("match", hit);
      if (!hit) return;
      var f = geometry(g);
      var inside = counted.some(function (c) { return f.x >= c.x - 1e-9 && f.x + f.w <= c.x + c.w + 1e-9 && f.depth > c.depth; });
      if (!inside) {
        counted.push(f);
        matched += parseInt(g.getAttribute("data-samples"), 10);
      }
    });
    var out = document.getElementById("flame-match");
    out.textContent = needle === "" ? "" : matched.toLocaleString("en-US") + " samples match (" +
      (total ? (100 * matched / total).toFixed(1) : "0.0") + "%)";
  }
  if (flame) {
    var detail = document.getElementById("flame-detail");
    flame.addEventListener("click", function (event) {
      var g = event.target.closest("g.frame");
      if (!g) return;
      zoomed = g.getAttribute("data-depth") === "0" ? null : g;
      layout();
    });
    flame.addEventListener("mouseover", function (event) {
      var g = event.target.closest("g.frame");
      if (g) detail.textContent = describe(g);
    });
    document.getElementById("flame-reset").addEventListener("click", function () {
      zoomed = null;
      layout();
    });
    document.getElementById("flame-search").addEventListener("input", function (event) {
      search(event.target.value);
    });
  }

  /* ---- saving the embedded profile back out */
  var save = document.getElementById("save-json");
  if (save) {
    save.addEventListener("click", function () {
      var text = document.getElementById(save.getAttribute("data-source") || "profile-data").textContent;
      var blob = new Blob([JSON.stringify(JSON.parse(text), null, 1) + "\n"], { type: "application/json" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = save.getAttribute("data-name");
      document.body.appendChild(link);
      link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 0);
    });
  }

  /* ---- everything that depends on the window's width */
  function refit() {
    fitBarLabels();
    layout();
    plots.forEach(function (p) {
      var width = Math.max(240, p.host.clientWidth);
      if (Math.abs(width - p.plot.width) > 1) p.plot.setSize({ width: width, height: 240 });
    });
  }
  refit();
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(refit);
  });
  window.addEventListener("beforeprint", refit);
})();
