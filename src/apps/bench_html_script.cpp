// The style and the chart script of the bench HTML report. The script reads the result from the
// #bench-data JSON element and draws one Chart.js chart per <canvas data-chart="id">; when done it
// sets data-charts-rendered (and data-charts-error on a failure) on <body>.
namespace sllm::apps {

extern const char* const kBenchHtmlStyle;
extern const char* const kBenchHtmlScript;

const char* const kBenchHtmlStyle = R"CSS(
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
table.kv th { text-align: left; }
table.kv td { text-align: left; font-family: monospace; }
td { max-width: 40em; overflow-wrap: anywhere; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { border: 1px solid #ddd; padding: 6px; }
)CSS";

const char* const kBenchHtmlScript = R"JS(
(function () {
  'use strict';
  var body = document.body;
  var data;
  try {
    data = JSON.parse(document.getElementById('bench-data').textContent);
  } catch (e) {
    body.dataset.chartsError = 'result data: ' + e.message;
    return;
  }
  if (typeof Chart === 'undefined') {
    body.dataset.chartsError = 'Chart.js did not load';
    return;
  }
  var palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
                 '#7f7f7f', '#bcbd22', '#17becf'];
  function color(i) { return palette[i % palette.length]; }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function get(o, path) {
    for (var i = 0; i < path.length; i++) {
      if (o === null || typeof o !== 'object' || !(path[i] in o)) return null;
      o = o[path[i]];
    }
    return o;
  }
  var models = Array.isArray(data.models)
      ? data.models.filter(function (m) { return m !== null && typeof m === 'object'; }) : [];
  var names = models.map(function (m, i) {
    return typeof m.name === 'string' ? m.name : 'model ' + (i + 1);
  });
  var runs = Array.isArray(data.runs)
      ? data.runs.filter(function (r) { return r !== null && typeof r === 'object'; }) : [];

  function base(title, xTitle, yTitle) {
    return {
      responsive: false, animation: false, devicePixelRatio: 1,
      plugins: {title: {display: true, text: title}, legend: {display: true}},
      scales: {x: {title: {display: true, text: xTitle}},
               y: {title: {display: true, text: yTitle}, beginAtZero: true}}
    };
  }
  // Draws dataset.errors[i] (a standard deviation) as a whisker over bar i.
  var errorBars = {
    id: 'errorBars',
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, y = chart.scales.y;
      chart.data.datasets.forEach(function (ds, di) {
        var meta = chart.getDatasetMeta(di);
        if (!ds.errors || meta.hidden) return;
        meta.data.forEach(function (bar, i) {
          var v = num(ds.data[i]), e = num(ds.errors[i]);
          if (v === null || e === null) return;
          var top = y.getPixelForValue(v + e), bot = y.getPixelForValue(Math.max(0, v - e));
          ctx.save();
          ctx.strokeStyle = '#222';
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(bar.x, top); ctx.lineTo(bar.x, bot);
          ctx.moveTo(bar.x - 5, top); ctx.lineTo(bar.x + 5, top);
          ctx.moveTo(bar.x - 5, bot); ctx.lineTo(bar.x + 5, bot);
          ctx.stroke();
          ctx.restore();
        });
      });
    }
  };
  // Quartile of sorted values v (linear interpolation, as numpy's default).
  function quantile(v, q) {
    var pos = (v.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  }
  // Draws a box plot over each dataset's points, at the points' mean x: the box spans the first
  // to the third quartile, the thick line is the median, the whiskers reach the furthest point
  // within 1.5 interquartile ranges (Tukey); points beyond them stay visible as dots.
  var boxes = {
    id: 'boxes',
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, xs = chart.scales.x, ys = chart.scales.y, drawn = 0;
      chart.data.datasets.forEach(function (ds, di) {
        if (chart.getDatasetMeta(di).hidden || ds.data.length === 0) return;
        var v = ds.data.map(function (p) { return p.y; }).sort(function (a, b) { return a - b; });
        var q1 = quantile(v, 0.25), med = quantile(v, 0.5), q3 = quantile(v, 0.75);
        var lo = v.filter(function (y) { return y >= q1 - 1.5 * (q3 - q1); })[0];
        var hi = v.filter(function (y) { return y <= q3 + 1.5 * (q3 - q1); }).pop();
        var cx = xs.getPixelForValue(ds.boxAt), half = 0.3 * Math.abs(
            xs.getPixelForValue(1) - xs.getPixelForValue(0));
        var py = function (y) { return ys.getPixelForValue(y); };
        ctx.save();
        ctx.strokeStyle = ds.backgroundColor;
        ctx.lineWidth = 1.5;
        ctx.strokeRect(cx - half, py(q3), 2 * half, py(q1) - py(q3));
        ctx.beginPath();
        ctx.moveTo(cx, py(q3)); ctx.lineTo(cx, py(hi));
        ctx.moveTo(cx - half / 2, py(hi)); ctx.lineTo(cx + half / 2, py(hi));
        ctx.moveTo(cx, py(q1)); ctx.lineTo(cx, py(lo));
        ctx.moveTo(cx - half / 2, py(lo)); ctx.lineTo(cx + half / 2, py(lo));
        ctx.stroke();
        ctx.lineWidth = 3;
        ctx.beginPath();
        ctx.moveTo(cx - half, py(med)); ctx.lineTo(cx + half, py(med));
        ctx.stroke();
        ctx.restore();
        drawn++;
      });
      body.dataset.latencyBoxes = String(drawn);
    }
  };
  function sweep(key, title, yTitle) {
    var ds = models.map(function (m, i) {
      var pts = (Array.isArray(m.sweep) ? m.sweep : []).map(function (s) {
        return {x: num(get(s, ['batch'])), y: num(get(s, [key]))};
      }).filter(function (p) { return p.x !== null && p.y !== null; });
      return {label: names[i], data: pts, borderColor: color(i), backgroundColor: color(i),
              showLine: true};
    }).filter(function (d) { return d.data.length > 0; });
    var o = base(title, 'batch size', yTitle);
    o.scales.x.type = 'linear';
    return {type: 'scatter', data: {datasets: ds}, options: o};
  }

  var builders = {
    'latency': function () {
      var perRequest = models.some(function (m) {
        return Array.isArray(m.requests) && m.requests.length > 0;
      });
      if (!perRequest) {
        return {
          type: 'bar',
          data: {labels: names, datasets: ['p50', 'p95', 'p99'].map(function (p, k) {
            return {label: 'e2e ' + p, backgroundColor: color(k), data: models.map(function (m) {
              return num(get(m, ['latency_ms', p]));
            })};
          })},
          options: base('End-to-end latency percentiles', 'model', 'ms')
        };
      }
      var ds = models.map(function (m, i) {
        var pts = (Array.isArray(m.requests) ? m.requests : []).map(function (q, k) {
          return {x: i + ((k * 0.618034) % 1 - 0.5) * 0.5, y: num(get(q, ['e2e_ms']))};
        }).filter(function (p) { return p.y !== null; });
        return {label: names[i], data: pts, backgroundColor: color(i), pointRadius: 3, boxAt: i};
      });
      var o = base('End-to-end latency per request (box: quartiles, whiskers: 1.5 IQR)',
                   'model', 'ms');
      // One tick per model, at its index, labelled with its name.
      o.scales.x = {type: 'linear', min: -0.5, max: models.length - 0.5,
                    title: {display: true, text: 'model'},
                    afterBuildTicks: function (axis) {
                      axis.ticks = names.map(function (n, i) { return {value: i}; });
                    },
                    ticks: {callback: function (v) {
                      return v >= 0 && v < names.length ? names[v] : '';
                    }}};
      return {type: 'scatter', data: {datasets: ds}, options: o, plugins: [boxes]};
    },
    'tok-s': function () {
      var ds = [['prefill_tok_s', 'prefill'], ['decode_tok_s', 'decode']].map(function (k, j) {
        return {
          label: k[1] + ' tok/s (± std)', backgroundColor: color(j),
          data: models.map(function (m) { return num(get(m, [k[0], 'mean'])); }),
          errors: models.map(function (m) { return num(get(m, [k[0], 'std'])); })
        };
      });
      return {type: 'bar', data: {labels: names, datasets: ds},
              options: base('Tokens per second by model', 'model', 'tok/s'), plugins: [errorBars]};
    },
    'sweep-throughput': function () { return sweep('tok_s', 'Throughput vs batch size', 'tok/s'); },
    'sweep-latency': function () {
      return sweep('step_ms', 'Step latency vs batch size', 'ms per step');
    },
    'quality-speed': function () {
      var metric = ['exact_match', 'ppl', 'kld'].filter(function (k) {
        return models.some(function (m) { return num(get(m, ['quality', k])) !== null; });
      })[0] || 'exact_match';
      var ds = models.map(function (m, i) {
        var p = {x: num(get(m, ['decode_tok_s', 'mean'])), y: num(get(m, ['quality', metric]))};
        return {label: names[i], backgroundColor: color(i), pointRadius: 6,
                data: p.x !== null && p.y !== null ? [p] : []};
      });
      var o = base('Quality vs speed (' + metric + ')', 'decode tok/s', metric);
      o.scales.x.type = 'linear';
      o.scales.x.grace = '10%';
      o.scales.y.grace = '10%';
      o.scales.y.beginAtZero = false;
      return {type: 'scatter', data: {datasets: ds}, options: o};
    },
    'load-latency': function () {
      var series = [['ttft_ms', 'median', 'TTFT p50'], ['ttft_ms', 'p90', 'TTFT p90'],
                    ['ttft_ms', 'p99', 'TTFT p99'], ['tpot_ms', 'median', 'TPOT p50'],
                    ['itl_ms', 'median', 'ITL p50'], ['e2e_ms', 'median', 'E2E p50'],
                    ['e2e_ms', 'p99', 'E2E p99']];
      var positive = true, any = false;
      var ds = series.map(function (s, i) {
        var d = runs.map(function (r) {
          var v = num(get(r, [s[0], s[1]]));
          if (v !== null) { any = true; if (v <= 0) positive = false; }
          return v;
        });
        return {label: s[2], data: d, borderColor: color(i), backgroundColor: color(i),
                spanGaps: true};
      });
      var o = base('Latency percentiles vs concurrency', 'concurrency', 'ms');
      if (any && positive) {
        o.scales.y.type = 'logarithmic';
        o.scales.y.beginAtZero = false;
        o.scales.y.title.text = 'ms (log)';
      }
      return {type: 'line', data: {labels: runs.map(function (r) { return String(r.concurrency); }),
                                  datasets: ds}, options: o};
    },
    'load-throughput': function () {
      function line(key, label, i, axis) {
        return {label: label, yAxisID: axis, borderColor: color(i), backgroundColor: color(i),
                spanGaps: true, data: runs.map(function (r) { return num(get(r, [key])); })};
      }
      var o = base('Throughput vs concurrency', 'concurrency', 'requests/s');
      o.scales.tok = {position: 'right', beginAtZero: true,
                      title: {display: true, text: 'output tok/s'}, grid: {drawOnChartArea: false}};
      return {type: 'line', options: o, data: {
        labels: runs.map(function (r) { return String(r.concurrency); }),
        datasets: [line('requests_per_s', 'requests/s', 0, 'y'),
                   line('goodput_req_s', 'goodput req/s', 1, 'y'),
                   line('output_tok_s', 'output tok/s', 2, 'tok')]}};
    }
  };

  var rendered = 0, errors = [];
  Array.prototype.forEach.call(document.querySelectorAll('canvas[data-chart]'), function (c) {
    var id = c.getAttribute('data-chart');
    try {
      if (!builders[id]) throw new Error('no such chart');
      new Chart(c.getContext('2d'), builders[id]());
      rendered++;
    } catch (e) {
      errors.push(id + ': ' + e.message);
    }
  });
  body.dataset.chartsRendered = String(rendered);
  if (errors.length) body.dataset.chartsError = errors.join('; ');
})();
)JS";

}  // namespace sllm::apps
