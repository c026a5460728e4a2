"""The style sheet and script inlined into the trace page (:mod:`flock._tracing.trace_html`): the page is
one self-contained file, so they are strings here rather than files beside it.

The script fills the span details panel (pretty JSON, chat messages as messages, the published
payload), and filters the waterfall by agent, by errors and by a search over names and attributes.
"""

CSS = """
:root{--run:#64748b;--publish:#10b981;--activate:#3b82f6;--evaluate:#8b5cf6;--model:#f59e0b;
--tool:#ec4899;--reask:#f97316;--other:#94a3b8;--error:#dc2626;--line:#e2e8f0;--ink:#0f172a;
--mute:#64748b}
*{box-sizing:border-box}body{margin:0;
font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:#f8fafc}header{padding:18px 24px 8px}h1{font-size:20px;margin:0 0 4px}
h2{font-size:14px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.05em;color:var(--mute)}
.meta{color:var(--mute);font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:12px}.card{background:#fff;
border:1px solid var(--line);
border-radius:8px;padding:8px 14px;min-width:110px}.card b{display:block;font-size:18px}
.card span{color:var(--mute)}
.card.bad{border-color:var(--error)}.card.bad b{color:var(--error)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:12px 24px;
padding:14px 16px}
#flow{overflow-x:auto}#flow svg{max-width:100%;height:auto}
.node rect{stroke-width:1.5}.node.agent rect{fill:#eff6ff;
stroke:var(--activate)}
.node.type rect{fill:#ecfdf5;stroke:var(--publish)}.node.source rect{fill:#f1f5f9;stroke:var(--run);
stroke-dasharray:4 3}.node.failed rect{stroke:var(--error);stroke-width:2.5}
.node text{font-size:12px}
.node .title{font-weight:600}.node .sub{fill:var(--mute);font-size:10.5px}
.node.failed .sub{fill:var(--error)}
.edge{fill:none;stroke:#94a3b8;stroke-width:1.5}.edge.back{stroke-dasharray:5 4}
.elabel{font-size:11px;fill:var(--mute)}
.legend{display:flex;gap:14px;flex-wrap:wrap;color:var(--mute);margin-bottom:8px}
.legend i{display:inline-block;
width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.filters{display:flex;gap:14px;flex-wrap:wrap;align-items:center;margin-bottom:10px}
.filters input[type=search]{width:260px;padding:4px 8px;border:1px solid #cbd5e1;border-radius:6px;
font:inherit}
.filters select{font:inherit}#match-count{color:var(--mute)}
.wf{display:grid;grid-template-columns:minmax(260px,38%) 1fr;font-size:12px}.axis{position:relative;
height:18px;
border-bottom:1px solid var(--line);color:var(--mute)}.axis span{position:absolute;
transform:translateX(-50%);
white-space:nowrap}.axis span:first-child{transform:none}.row{display:contents;cursor:pointer}
.row>div{padding:2px 0;border-bottom:1px solid #f1f5f9;min-height:22px}
.row:hover>div{background:#f8fafc}
.row.sel>div{background:#eef2ff}.row.hit .name{background:#fef9c3}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
padding-left:calc(var(--d)*14px + 4px)!important}.tog{display:inline-block;width:12px;
color:var(--mute)}
.label .info{color:var(--mute);margin-left:6px}.row.err .name{color:var(--error);font-weight:600}
.track{position:relative}.bar{position:absolute;top:5px;height:12px;min-width:2px;border-radius:2px}
.dur{position:absolute;top:3px;font-size:11px;color:var(--mute);white-space:nowrap;padding-left:4px}
.hidden,.filtered{display:none!important}
#details .dname{font-size:14px;font-weight:600;overflow-wrap:anywhere}
#details .dmeta{color:var(--mute);margin:2px 0 10px;font-family:ui-monospace,Menlo,Consolas,monospace}
#details h3{font-size:12px;margin:12px 0 4px;color:var(--mute);text-transform:uppercase;letter-spacing:.04em}
#details .attrs{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 14px}
#details .key{color:var(--mute);white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:12px}
#details .val,#details pre{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;
white-space:pre-wrap;overflow-wrap:anywhere}
#details pre{background:#f8fafc;border-radius:6px;padding:6px 8px;max-height:420px;overflow:auto}
.msg{border:1px solid var(--line);border-radius:8px;margin:6px 0;padding:6px 10px;max-width:900px}
.msg .role{font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:var(--mute)}
.msg.system{background:#f8fafc}.msg.user{background:#eff6ff}.msg.assistant{background:#f0fdf4}
.msg.tool{background:#fdf2f8}.msg .part{margin-top:4px;white-space:pre-wrap;overflow-wrap:anywhere}
"""

JS = r"""
(function () {
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var rows = Array.prototype.slice.call(document.querySelectorAll(".wf .row"));
  var panel = document.getElementById("details");
  var MESSAGES = {"gen_ai.input.messages": "Prompt", "gen_ai.output.messages": "Answer",
    "gen_ai.system_instructions": "System instructions"};
  var PAYLOADS = {"flock.artifact.payload": "Published payload",
    "gen_ai.tool.call.arguments": "Tool arguments",
    "gen_ai.tool.call.result": "Tool result"};
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function parsed(v) {  // a JSON object or list kept as a string attribute, else undefined
    if (typeof v !== "string" || !/^\s*[\[{]/.test(v)) return undefined;
    try { return JSON.parse(v); } catch (e) { return undefined; }
  }
  function value(v) {
    var json = parsed(v);
    if (json !== undefined) return el("pre", "", JSON.stringify(json, null, 2));
    if (typeof v === "string") return el("div", "val", v);
    if (v !== null && typeof v === "object" && JSON.stringify(v).length > 60) {
      return el("pre", "", JSON.stringify(v, null, 2));
    }
    return el("div", "val", JSON.stringify(v));
  }
  function attrs(obj, skip) {
    var grid = el("div", "attrs"), keys = Object.keys(obj || {}).filter(function (k) { return !skip[k]; });
    if (!keys.length) return el("i", "", "none");
    keys.forEach(function (k) { grid.appendChild(el("div", "key", k)); grid.appendChild(value(obj[k])); });
    return grid;
  }
  function messages(list) {  // OpenTelemetry GenAI messages: [{role, parts: [{type, content}]}]
    var box = el("div");
    (Array.isArray(list) ? list : [list]).forEach(function (m) {
      var role = (m && m.role) || "message", msg = el("div", "msg " + role);
      msg.appendChild(el("div", "role", role));
      var parts = (m && m.parts) || (m && m.content !== undefined ? [{content: m.content}] : [m]);
      parts.forEach(function (p) {
        var text = p && p.content !== undefined ? p.content : p, json = parsed(text);
        if (json !== undefined) msg.appendChild(el("pre", "part", JSON.stringify(json, null, 2)));
        else if (typeof text === "string") msg.appendChild(el("div", "part", text));
        else msg.appendChild(el("pre", "part", JSON.stringify(text, null, 2)));
      });
      box.appendChild(msg);
    });
    return box;
  }
  function show(id) {
    var s = data.spans[id];
    if (!s) return;
    rows.forEach(function (r) { r.classList.toggle("sel", r.dataset.id === id); });
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    panel.appendChild(el("div", "dname", s.name));
    var status = s.status + (s.message ? ": " + s.message : "");
    panel.appendChild(el("div", "dmeta", "span " + id + " · " + status + " · " + s.duration));
    var skip = {};
    Object.keys(MESSAGES).concat(Object.keys(PAYLOADS)).forEach(function (k) {
      if (!(k in (s.attributes || {}))) return;
      skip[k] = true;
      var json = parsed(s.attributes[k]);
      panel.appendChild(el("h3", "", MESSAGES[k] || PAYLOADS[k]));
      if (MESSAGES[k] && json !== undefined) panel.appendChild(messages(json));
      else panel.appendChild(value(s.attributes[k]));
    });
    panel.appendChild(el("h3", "", "Attributes"));
    panel.appendChild(attrs(s.attributes, skip));
    s.events.forEach(function (e) {
      panel.appendChild(el("h3", "", "Event " + e.name));
      panel.appendChild(attrs(e.attributes, {}));
    });
    if (s.links.length) {
      panel.appendChild(el("h3", "", "Links"));
      panel.appendChild(el("div", "val", s.links.map(function (l) { return l.span_id; }).join(", ")));
    }
  }
  function toggle(row) {
    var depth = +row.dataset.depth, closed = row.classList.toggle("closed");
    row.querySelector(".tog").textContent = closed ? "▸" : "▾";
    for (var i = rows.indexOf(row) + 1; i < rows.length && +rows[i].dataset.depth > depth; i++) {
      rows[i].classList.toggle("hidden", closed);
      rows[i].classList.remove("closed");
      var t = rows[i].querySelector(".tog");
      if (t.textContent) t.textContent = "▾";
    }
  }
  rows.forEach(function (row) {
    row.addEventListener("click", function (ev) {
      if (ev.target.classList.contains("tog") && ev.target.textContent) toggle(row);
      else show(row.dataset.id);
    });
  });
  // filters: by agent, errors only, and a search over span names, attributes and events
  var agentBox = document.getElementById("filter-agent"), errorBox = document.getElementById("filter-errors");
  var searchBox = document.getElementById("filter-search"), count = document.getElementById("match-count");
  var haystack = {};
  function text(id) {
    if (!(id in haystack)) {
      var s = data.spans[id] || {};
      var all = s.name + " " + JSON.stringify(s.attributes) + " " + JSON.stringify(s.events);
      haystack[id] = all.toLowerCase();
    }
    return haystack[id];
  }
  var agents = {};
  rows.forEach(function (r) { if (r.dataset.agent) agents[r.dataset.agent] = true; });
  Object.keys(agents).sort().forEach(function (a) {
    var o = el("option", "", a);
    o.value = a;
    agentBox.appendChild(o);
  });
  function filter() {
    var agent = agentBox.value, errors = errorBox.checked, words = searchBox.value.trim().toLowerCase();
    var active = agent || errors || words, shown = 0;
    rows.forEach(function (r) {
      var ok = (!agent || r.dataset.agent === agent) && (!errors || r.classList.contains("err")) &&
        (!words || text(r.dataset.id).indexOf(words) >= 0);
      r.classList.toggle("filtered", !ok);
      r.classList.toggle("hit", !!(ok && words));
      if (ok) shown++;
    });
    count.textContent = active ? shown + " of " + rows.length + " spans" : rows.length + " spans";
  }
  [agentBox, errorBox].forEach(function (b) { b.addEventListener("change", filter); });
  searchBox.addEventListener("input", filter);
  filter();
  document.querySelectorAll("#flow .node").forEach(function (node) {
    node.addEventListener("click", function () {
      var agent = node.dataset.agent, first = null;
      if (!agent) return;
      rows.forEach(function (r) {
        var hit = r.dataset.agent === agent;
        r.classList.toggle("sel", hit);
        if (hit && !first) first = r;
      });
      if (first) { first.scrollIntoView({block: "center"}); show(first.dataset.id); }
    });
  });
  // file.html#span=<span id> opens with that span selected (a link to a span, e.g. in a bug report)
  var wanted = /^#span=([0-9a-f]+)$/.exec(location.hash);
  if (wanted && data.spans[wanted[1]]) {
    show(wanted[1]);
    rows.filter(function (r) { return r.dataset.id === wanted[1]; })[0].scrollIntoView({block: "center"});
  }
  document.documentElement.setAttribute("data-ready", "true");
})();
"""
