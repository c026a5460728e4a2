/* Flock dashboard: reads the REST API with the session cookie and follows GET /events.
   Plain DOM code, no framework, no network beyond this server. Every value from the board is put
   into the page as text (textContent), never as HTML. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var PAGE = 25;
  var state = {
    me: null, agents: [], types: [], typeCounts: {}, agentStats: {}, edgeCounts: {}, nodes: {},
    runs: {}, type: "", run: "", oldest: 0, total: 0, shown: {}, live: false
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function note(node, text, cls) { clear(node).appendChild(el("p", {cls: cls || "hint", text: text})); }
  function short(id) { return String(id || "").slice(0, 8); }
  function when(iso) {
    var d = new Date(iso);
    return isNaN(d) ? String(iso || "") : d.toLocaleTimeString();
  }
  function pretty(value) { return JSON.stringify(value, null, 2); }
  function can(scope) {
    var s = (state.me && state.me.scopes) || [];
    return s.indexOf(scope) >= 0 || s.indexOf("admin") >= 0;
  }

  function api(path, options) {
    options = options || {};
    var headers = {"Accept": "application/json", "X-Flock-Request": "1"};
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: options.method || "GET", credentials: "same-origin", headers: headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined
    }).then(function (r) {
      if (r.status === 401) { location.reload(); }
      return r.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
        return {status: r.status, body: body};
      });
    });
  }
  function detail(res) {
    var d = res.body && res.body.detail;
    return typeof d === "string" ? d : "HTTP " + res.status;
  }

  // ------------------------------------------------------------------ the agent/artifact graph
  function graphModel() {
    var nodes = {}, edges = [], order = [];
    function add(key, kind, label) {
      if (!nodes[key]) { nodes[key] = {key: key, kind: kind, label: label, out: [], inn: []}; order.push(key); }
    }
    function link(a, b) {
      if (edges.some(function (e) { return e.from === a && e.to === b; })) return;
      var e = {from: a, to: b, back: false};
      edges.push(e); nodes[a].out.push(e); nodes[b].inn.push(e);
    }
    state.agents.forEach(function (agent) {
      agent.subscriptions.forEach(function (s) {
        s.types.forEach(function (t) { add("type:" + t, "type", t); });
      });
    });
    state.agents.forEach(function (agent) {
      var a = "agent:" + agent.name;
      add(a, "agent", agent.name);
      agent.subscriptions.forEach(function (s) {
        s.types.forEach(function (t) { link("type:" + t, a); });
      });
      agent.publishes.forEach(function (group) {
        group.forEach(function (t) { add("type:" + t, "type", t); link(a, "type:" + t); });
      });
    });
    // back edges: a depth-first walk from the sources (nodes nothing points at) marks edges to a
    // node still on the walk's stack; the rest is a DAG ranked by its longest path
    var mark = {};
    function walk(key) {
      mark[key] = 1;
      nodes[key].out.forEach(function (e) {
        if (mark[e.to] === 1) e.back = true;
        else if (!mark[e.to]) walk(e.to);
      });
      mark[key] = 2;
    }
    order.filter(function (k) { return !nodes[k].inn.length; }).forEach(function (k) { if (!mark[k]) walk(k); });
    order.forEach(function (k) { if (!mark[k]) walk(k); });
    var rank = {}, pending = {}, queue = [];
    order.forEach(function (k) {
      rank[k] = 0;
      pending[k] = nodes[k].inn.filter(function (e) { return !e.back; }).length;
      if (!pending[k]) queue.push(k);
    });
    while (queue.length) {
      var k = queue.shift();
      nodes[k].out.forEach(function (e) {
        if (e.back) return;
        rank[e.to] = Math.max(rank[e.to], rank[k] + 1);
        if (--pending[e.to] === 0) queue.push(e.to);
      });
    }
    var layers = [];
    order.forEach(function (k) { (layers[rank[k]] = layers[rank[k]] || []).push(k); });
    return {nodes: nodes, edges: edges, layers: layers};
  }

  var W = 150, H = 44, GAPX = 70, GAPY = 22;
  function drawGraph() {
    var box = $("graph");
    if (!state.agents.length) { note(box, "No agents visible to this key."); return; }
    var g = graphModel(), tallest = 0;
    g.layers.forEach(function (layer, x) {
      layer.forEach(function (k, y) {
        g.nodes[k].x = 16 + x * (W + GAPX);
        g.nodes[k].y = 16 + y * (H + GAPY);
      });
      tallest = Math.max(tallest, layer.length);
    });
    var back = g.edges.some(function (e) { return e.back; }) ? 34 : 0;
    var width = 32 + g.layers.length * (W + GAPX) - GAPX, height = 12 + tallest * (H + GAPY) + back;
    var root = svg("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": "agent and artifact flow"});
    var defs = svg("defs");
    var marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse"});
    marker.appendChild(svg("path", {d: "M0,0L10,5L0,10z", "class": "arrowhead"}));
    defs.appendChild(marker); root.appendChild(defs);
    state.nodes = {};
    g.edges.forEach(function (e) {
      var a = g.nodes[e.from], b = g.nodes[e.to], d;
      if (e.back) {
        var low = Math.max(a.y, b.y) + H + 26;
        d = "M" + (a.x + W / 2) + "," + (a.y + H) + " C" + (a.x + W / 2) + "," + low + " " +
          (b.x + W / 2) + "," + low + " " + (b.x + W / 2) + "," + (b.y + H);
      } else {
        var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
        d = "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2;
      }
      var path = svg("path", {d: d, "class": "edge" + (e.back ? " back" : ""), "marker-end": "url(#arrow)",
        "data-from": e.from, "data-to": e.to});
      root.appendChild(path);
      var label = svg("text", {"class": "elabel", "text-anchor": "middle", "data-edge": e.from + ">" + e.to,
        x: e.back ? (a.x + b.x + W) / 2 : (a.x + W + b.x) / 2,
        y: e.back ? Math.max(a.y, b.y) + H + 22 : (a.y + b.y + H) / 2 - 4}, "");
      root.appendChild(label);
    });
    Object.keys(g.nodes).forEach(function (k) {
      var n = g.nodes[k];
      var group = svg("g", {"class": "node " + n.kind, "data-key": k});
      group.appendChild(svg("title", {}, k));
      group.appendChild(svg("rect", {x: n.x, y: n.y, width: W, height: H, rx: n.kind === "agent" ? 8 : H / 2}));
      var name = n.label.length > 20 ? n.label.slice(0, 19) + "…" : n.label;
      group.appendChild(svg("text", {"class": "title", x: n.x + W / 2, y: n.y + 18, "text-anchor": "middle"}, name));
      var sub = svg("text", {"class": "sub", x: n.x + W / 2, y: n.y + 34, "text-anchor": "middle"}, "");
      group.appendChild(sub);
      if (n.kind === "type") group.addEventListener("click", function () { chooseType(n.label); });
      root.appendChild(group);
      state.nodes[k] = {group: group, sub: sub};
    });
    clear(box).appendChild(root);
    refreshCounts();
  }

  function refreshCounts() {
    Object.keys(state.nodes).forEach(function (k) {
      var n = state.nodes[k], name = k.slice(k.indexOf(":") + 1), text;
      if (k.indexOf("type:") === 0) {
        var c = state.typeCounts[name];
        text = c === undefined ? "" : c + (c === 1 ? " artifact" : " artifacts");
      } else {
        var s = state.agentStats[name] || {running: 0, done: 0, failed: 0};
        text = s.running + " running · " + s.done + " done" + (s.failed ? " · " + s.failed + " failed" : "");
        n.group.classList.toggle("running", s.running > 0);
        n.group.classList.toggle("failed", s.failed > 0);
      }
      n.sub.textContent = text;
    });
    document.querySelectorAll("#graph .elabel").forEach(function (label) {
      var c = state.edgeCounts[label.getAttribute("data-edge")];
      label.textContent = c ? "×" + c : "";
    });
  }
  function flash(key) {
    var n = state.nodes[key];
    if (!n) return;
    n.group.classList.remove("flash");
    void n.group.getBBox();
    n.group.classList.add("flash");
  }

  // ------------------------------------------------------------------ runs
  function runOf(cid) {
    return state.runs[cid] = state.runs[cid] || {id: cid, artifacts: 0, last: "", running: 0, failed: false};
  }
  function noteArtifactInRun(a) {
    var r = runOf(a.correlation_id);
    r.artifacts += 1;
    if (!r.last || a.created_at > r.last) r.last = a.created_at;
    if (/WorkflowError$/.test(a.type)) r.failed = true;
  }
  function drawRuns() {
    var body = clear(document.querySelector("#runs tbody"));
    var runs = Object.keys(state.runs).map(function (k) { return state.runs[k]; });
    runs.sort(function (a, b) { return a.last < b.last ? 1 : a.last > b.last ? -1 : 0; });
    if (!runs.length) {
      body.appendChild(el("tr", {}, [el("td", {colspan: 4, cls: "hint", text: "No runs yet."})]));
      return;
    }
    runs.slice(0, 30).forEach(function (r) {
      var waiting = window.FlockTasks.waiting[r.id];
      var status = r.running > 0 ? "running" : waiting ? "waiting" : r.failed ? "failed" : "done";
      var row = el("tr", {cls: "run" + (state.run === r.id ? " sel" : ""), "data-run": r.id}, [
        el("td", {cls: "mono", title: r.id, text: short(r.id)}),
        el("td", {}, [el("span", {cls: "pill " + status, text: status})]),
        el("td", {text: String(r.artifacts)}),
        el("td", {text: when(r.last)})
      ]);
      row.addEventListener("click", function () { chooseRun(state.run === r.id ? "" : r.id); });
      body.appendChild(row);
    });
  }

  // ------------------------------------------------------------------ artifacts
  function artifactCard(a) {
    var cid = el("a", {href: "#", cls: "mono", title: "show this run", text: "run " + short(a.correlation_id)});
    cid.addEventListener("click", function (ev) { ev.preventDefault(); chooseRun(a.correlation_id); });
    return el("article", {cls: "artifact", "data-id": a.id, "data-type": a.type}, [
      el("div", {cls: "ahead"}, [
        el("b", {cls: "atype", text: a.type}),
        el("span", {cls: "mono meta", title: a.id, text: short(a.id)}),
        el("span", {cls: "meta", text: "by " + (a.produced_by || "?")}),
        cid,
        el("span", {cls: "meta", text: when(a.created_at)})
      ]),
      el("pre", {cls: "payload", text: pretty(a.payload)})
    ]);
  }
  function query(limit, offset) {
    var q = "/artifacts?limit=" + limit + "&offset=" + offset;
    if (state.type) q += "&type=" + encodeURIComponent(state.type);
    if (state.run) q += "&correlation_id=" + encodeURIComponent(state.run);
    return api(q);
  }
  function loadArtifacts() {
    var box = $("artifacts");
    state.shown = {};
    return query(1, 0).then(function (first) {
      if (first.status !== 200) { note(box, detail(first), "error"); return; }
      state.total = first.body.total;
      state.oldest = Math.max(0, state.total - PAGE);
      return query(PAGE, state.oldest).then(function (res) {
        clear(box);
        res.body.items.forEach(function (a) { box.insertBefore(artifactCard(a), box.firstChild); state.shown[a.id] = 1; });
        if (!res.body.items.length) note(box, "No artifacts" + (state.type ? " of type " + state.type : "") + ".");
        drawTotal();
      });
    });
  }
  function loadOlder() {
    var from = Math.max(0, state.oldest - PAGE), count = state.oldest - from;
    if (count <= 0) return;
    query(count, from).then(function (res) {
      if (res.status !== 200) return;
      state.oldest = from;
      res.body.items.reverse().forEach(function (a) {
        if (!state.shown[a.id]) { $("artifacts").appendChild(artifactCard(a)); state.shown[a.id] = 1; }
      });
      drawTotal();
    });
  }
  function drawTotal() {
    var shown = Object.keys(state.shown).length;
    $("artifacts-total").textContent = shown + " of " + state.total + " shown";
    $("older").classList.toggle("hidden", state.oldest <= 0);
  }
  function chooseType(type) {
    state.type = type;
    $("type-filter").value = type;
    loadArtifacts();
  }
  function chooseRun(cid) {
    state.run = cid;
    var chip = $("run-filter");
    chip.classList.toggle("hidden", !cid);
    chip.textContent = cid ? "run " + short(cid) + " ✕" : "";
    drawRuns();
    loadArtifacts();
    loadTraces();
  }
  function fillTypes() {
    var select = $("type-filter");
    state.types.forEach(function (t) {
      if (!select.querySelector('option[value="' + CSS.escape(t) + '"]')) select.appendChild(el("option", {value: t, text: t}));
    });
  }

  // ------------------------------------------------------------------ live events
  function onEvent(event) {
    if (event.kind === "artifact") {
      var a = event.artifact;
      state.typeCounts[a.type] = (state.typeCounts[a.type] || 0) + 1;
      if (a.produced_by) {
        var edge = "agent:" + a.produced_by + ">type:" + a.type;
        state.edgeCounts[edge] = (state.edgeCounts[edge] || 0) + 1;
      }
      if (state.types.indexOf(a.type) < 0) { state.types.push(a.type); fillTypes(); }
      flash("type:" + a.type);
      noteArtifactInRun(a);
      drawRuns();
      if ((!state.type || state.type === a.type) && (!state.run || state.run === a.correlation_id) && !state.shown[a.id]) {
        var box = $("artifacts"), empty = box.querySelector("p.hint");
        if (empty) box.removeChild(empty);
        box.insertBefore(artifactCard(a), box.firstChild);
        state.shown[a.id] = 1;
        state.total += 1;
        drawTotal();
      }
      refreshCounts();
      scheduleTasks();  // a new task is a flock.HumanTask artifact; an answer publishes too
    } else if (event.kind === "activation") {
      var s = state.agentStats[event.agent] = state.agentStats[event.agent] || {running: 0, done: 0, failed: 0};
      var r = runOf(event.correlation_id);
      if (event.state === "started") { s.running += 1; r.running += 1; } else {
        s.running = Math.max(0, s.running - 1); r.running = Math.max(0, r.running - 1);
        if (event.state === "failed") { s.failed += 1; r.failed = true; } else s.done += 1;
      }
      if (!r.last) r.last = new Date().toISOString();
      flash("agent:" + event.agent);
      refreshCounts();
      drawRuns();
      scheduleTasks();
      if (event.state !== "started") scheduleTraces();
    }
  }
  function follow() {
    var source = new EventSource("/events");
    var pill = $("live");
    source.onopen = function () { pill.textContent = "live"; pill.className = "pill on"; state.live = true; };
    source.onerror = function () { pill.textContent = "reconnecting"; pill.className = "pill off"; };
    source.onmessage = function (m) {
      try { onEvent(JSON.parse(m.data)); } catch (e) { window.console && console.error(e); }
    };
  }

  // ------------------------------------------------------------------ traces
  var tracesTimer = null;
  function operator() { return can("admin") && !(state.me && state.me.tenant); }
  function scheduleTraces() {  // spans reach the store in batches: look a little after a run ends
    if (tracesTimer || !operator()) return;
    tracesTimer = setTimeout(function () { tracesTimer = null; loadTraces(); }, 2000);
  }
  function loadTraces() {
    var box = $("traces"), run = state.run;
    if (!operator()) { note(box, "Traces span every tenant: they need an admin key without a tenant."); return; }
    $("traces-of").textContent = run ? "of run " + short(run) : "";
    var path = "/traces?limit=15" + (run ? "&correlation_id=" + encodeURIComponent(run) : "");
    api(path).then(function (res) {
      if (run !== state.run) return;  // another run was chosen meanwhile
      if (res.status !== 200) { note(box, detail(res)); return; }
      if (!res.body.items.length) { note(box, run ? "No traces of this run (yet)." : "No traced runs yet."); return; }
      var rows = res.body.items.map(function (t) {
        var link = el("a", {href: "/traces/" + encodeURIComponent(t.trace_id) + "?format=html", cls: "mono", text: t.trace_id.slice(0, 12)});
        link.addEventListener("click", function (ev) {
          ev.preventDefault();
          var frame = $("trace-frame");
          frame.classList.remove("hidden");
          frame.src = link.getAttribute("href");
        });
        var ms = (t.end_ns - t.start_ns) / 1e6;
        return el("tr", {cls: t.errors ? "err" : ""}, [
          el("td", {}, [link]), el("td", {text: t.name}),
          el("td", {text: new Date(t.start_ns / 1e6).toLocaleTimeString()}),
          el("td", {text: ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s"}),
          el("td", {text: String(t.activations)}), el("td", {text: String(t.artifacts)}),
          el("td", {text: String(t.errors)})
        ]);
      });
      var head = el("tr", {}, ["trace", "run", "started", "duration", "activations", "artifacts", "errors"]
        .map(function (h) { return el("th", {text: h}); }));
      clear(box).appendChild(el("table", {id: "traces-table"}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
    });
  }

  function start() {
    $("logout").addEventListener("click", function () {
      api("/logout", {method: "POST"}).then(function () { location.reload(); });
    });
    $("type-filter").addEventListener("change", function () { chooseType(this.value); });
    $("run-filter").addEventListener("click", function () { chooseRun(""); });
    $("older").addEventListener("click", loadOlder);
    $("traces-refresh").addEventListener("click", loadTraces);
    api("/me").then(function (res) {
      state.me = res.body;
      var me = state.me || {};
      $("who").textContent = "tenant " + (me.tenant || "(none)") + " · scopes " + (me.scopes || []).join(", ");
      $("logout").classList.toggle("hidden", !me.session);
      if (!can("read")) {
        ["graph", "artifacts"].forEach(function (id) { note($(id), "This key lacks the read scope."); });
        if (can("answer")) loadTasks(); else note($("tasks"), "This key lacks the read scope.");
        loadTraces();
        return null;
      }
      return Promise.all([api("/agents"), api("/artifacts?limit=1")]);
    }).then(function (found) {
      if (!found) return;
      var agents = found[0], first = found[1];
      state.agents = agents.status === 200 ? agents.body.items : [];
      var types = {};
      state.agents.forEach(function (a) {
        a.subscriptions.forEach(function (s) { s.types.forEach(function (t) { types[t] = 1; }); });
        a.publishes.forEach(function (g) { g.forEach(function (t) { types[t] = 1; }); });
      });
      state.types = Object.keys(types).sort();
      fillTypes();
      drawGraph();
      var total = first.status === 200 ? first.body.total : 0;
      var counts = state.types.map(function (t) {
        return api("/artifacts?limit=1&type=" + encodeURIComponent(t)).then(function (r) {
          if (r.status === 200) state.typeCounts[t] = r.body.total;
        });
      });
      var recent = api("/artifacts?limit=200&offset=" + Math.max(0, total - 200)).then(function (r) {
        if (r.status === 200) r.body.items.forEach(noteArtifactInRun);
      });
      follow();
      loadTasks();
      loadTraces();
      return Promise.all(counts.concat([recent, loadArtifacts()])).then(function () {
        refreshCounts();
        drawRuns();
      });
    }).then(function () {
      document.documentElement.setAttribute("data-ready", "true");
    });
  }

  // the human task panel lives in the same closure (it reuses api, el, note)
  var tasksTimer = null;
  function scheduleTasks() {
    if (tasksTimer) return;
    tasksTimer = setTimeout(function () { tasksTimer = null; loadTasks(); }, 300);
  }
  function loadTasks() { return window.FlockTasks.load(api, el, note, can, pretty); }
  window.FlockTasks.changed = drawRuns;  // a run with an open task waits for a person

  window.FlockDashboard = {state: state};
  document.addEventListener("DOMContentLoaded", start);
})();
