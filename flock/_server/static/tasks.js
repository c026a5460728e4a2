/* Flock dashboard: open human tasks (GET /tasks) with a form derived from each task's output JSON
   schema; an answer is POSTed to /tasks/{id} and validation errors (422) are shown at their fields. */
(function () {
  "use strict";
  var openForms = {};  // task id -> its form, kept across reloads so typing is not lost

  function resolve(schema, root) {
    var s = schema || {};
    for (var i = 0; i < 5 && s; i++) {
      if (s.$ref) {
        var name = s.$ref.split("/").pop();
        s = ((root.$defs || root.definitions || {})[name]) || {};
      } else if (s.allOf && s.allOf.length === 1) {
        s = s.allOf[0];
      } else if (s.anyOf) {
        var rest = s.anyOf.filter(function (x) { return x.type !== "null"; });
        s = rest.length === 1 ? Object.assign({}, rest[0], {nullable: true}) : {type: "json"};
      } else break;
    }
    return s;
  }

  function field(name, prop, required, root, el) {
    var s = resolve(prop, root), input, kind;
    var id = "f-" + Math.random().toString(36).slice(2);
    if (s.enum) {
      kind = "enum";
      input = el("select", {id: id, name: name}, s.enum.map(function (v) {
        return el("option", {value: JSON.stringify(v), text: String(v)});
      }));
    } else if (s.type === "boolean") {
      kind = "boolean";
      input = el("input", {id: id, name: name, type: "checkbox"});
      if (prop.default === true) input.checked = true;
    } else if (s.type === "integer" || s.type === "number") {
      kind = s.type;
      input = el("input", {id: id, name: name, type: "number", step: s.type === "integer" ? "1" : "any"});
      if (s.minimum !== undefined) input.min = s.minimum;
      if (s.maximum !== undefined) input.max = s.maximum;
    } else if (s.type === "string") {
      kind = "string";
      input = (s.maxLength || 0) > 120 || !s.maxLength ? el("textarea", {id: id, name: name, rows: "2"}) :
        el("input", {id: id, name: name, type: "text"});
    } else {
      kind = "json";
      input = el("textarea", {id: id, name: name, rows: "3", cls: "mono", placeholder: "JSON"});
    }
    if (prop.default !== undefined && kind !== "boolean") {
      input.value = kind === "json" ? JSON.stringify(prop.default) : kind === "enum" ? JSON.stringify(prop.default) : prop.default;
    }
    var label = el("label", {"for": id, text: (prop.title || s.title || name) + (required ? " *" : "")});
    var help = prop.description || s.description;
    var row = el("div", {cls: "field", "data-field": name}, [label, input,
      help ? el("small", {cls: "hint", text: help}) : null, el("div", {cls: "ferror"})]);
    return {name: name, kind: kind, input: input, row: row, required: required};
  }

  function valueOf(f) {
    var v = f.input.value;
    if (f.kind === "boolean") return {value: f.input.checked};
    if (f.kind === "enum") return {value: JSON.parse(v)};
    if (v === "" && !f.required) return {skip: true};
    if (f.kind === "integer" || f.kind === "number") return v === "" ? {value: null} : {value: Number(v)};
    if (f.kind === "json") {
      try { return {value: JSON.parse(v)}; } catch (e) { return {error: "not valid JSON: " + e.message}; }
    }
    return {value: v};
  }

  function form(task, api, el, allowed, reload) {
    var schema = task.output_schema || {}, props = schema.properties || {};
    var required = schema.required || [];
    var fields = Object.keys(props).map(function (n) { return field(n, props[n], required.indexOf(n) >= 0, schema, el); });
    var general = el("div", {cls: "ferror general"});
    var submit = el("button", {type: "submit", text: "Answer"});
    // novalidate: the server checks the answer against the output type; its errors show at the fields
    var node = el("form", {cls: "task-form", "data-task": task.id, novalidate: "novalidate"},
      fields.map(function (f) { return f.row; }).concat([general, submit]));
    if (!allowed) {
      fields.forEach(function (f) { f.input.disabled = true; });
      submit.disabled = true;
      node.appendChild(el("p", {cls: "hint", text: "This key lacks the answer scope: it can read tasks, not answer them."}));
    }
    node.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var payload = {}, bad = false;
      node.querySelectorAll(".ferror").forEach(function (e) { e.textContent = ""; });
      fields.forEach(function (f) {
        var got = valueOf(f);
        if (got.error) { f.row.querySelector(".ferror").textContent = got.error; bad = true; }
        else if (!got.skip) payload[f.name] = got.value;
      });
      if (bad) return;
      submit.disabled = true;
      api("/tasks/" + encodeURIComponent(task.id), {method: "POST", body: {payload: payload}}).then(function (res) {
        submit.disabled = false;
        if (res.status === 201 || res.status === 200) {
          delete openForms[task.id];
          var made = (res.body && res.body.items) || (res.body ? [res.body] : []);
          var names = made.map(function (a) { return a.type + " " + String(a.id).slice(0, 8); }).join(", ");
          node.parentNode.replaceChild(el("p", {cls: "answered", text: "Answered: published " + names}), node);
          setTimeout(reload, 800);
          return;
        }
        if (res.status === 422 && res.body && Array.isArray(res.body.detail)) {
          res.body.detail.forEach(function (err) {
            var loc = (err.loc || []).map(String), hit = null;
            fields.forEach(function (f) { if (loc.indexOf(f.name) >= 0) hit = f; });
            var target = hit ? hit.row.querySelector(".ferror") : general;
            target.textContent = (target.textContent ? target.textContent + "; " : "") + (err.msg || "invalid");
          });
          return;
        }
        general.textContent = res.status === 409 ? "This task was already answered." :
          res.status === 404 ? "This task is gone (answered or timed out)." :
          (res.body && typeof res.body.detail === "string" ? res.body.detail : "HTTP " + res.status);
      });
    });
    return node;
  }

  function card(task, api, el, pretty, allowed, reload) {
    var inputs = (task.inputs || []).map(function (a) {
      var head = a && a.type ? a.type + (a.id ? " " + String(a.id).slice(0, 8) : "") : "input";
      return el("div", {cls: "tinput"}, [el("b", {text: head}),
        el("pre", {cls: "payload", text: pretty(a && a.payload !== undefined ? a.payload : a)})]);
    });
    var meta = "agent " + task.agent + " · answer with " + (task.output_type || "?") +
      (task.deadline ? " · due " + new Date(task.deadline).toLocaleTimeString() : "");
    var f = openForms[task.id] || form(task, api, el, allowed, reload);
    openForms[task.id] = f;
    return el("article", {cls: "task", "data-task": task.id}, [
      el("div", {cls: "meta", text: meta}),
      el("p", {cls: "prompt", text: task.prompt || ""})
    ].concat(inputs).concat([f]));
  }

  function load(api, el, note, can, pretty) {
    var box = document.getElementById("tasks"), count = document.getElementById("tasks-count");
    var reload = function () { load(api, el, note, can, pretty); };
    return api("/tasks").then(function (res) {
      if (res.status === 404 && !(res.body && res.body.items)) { note(box, "This server has no human tasks."); return; }
      if (res.status === 403) { note(box, "This key lacks the read scope for tasks."); return; }
      if (res.status !== 200) { note(box, "Could not load tasks: HTTP " + res.status, "error"); return; }
      var items = res.body.items || [];
      count.textContent = items.length ? String(items.length) : "";
      var waiting = {};
      items.forEach(function (t) { waiting[t.correlation_id] = 1; });
      window.FlockTasks.waiting = waiting;
      if (window.FlockTasks.changed) window.FlockTasks.changed();
      var keep = {};
      items.forEach(function (t) { keep[t.id] = 1; });
      Object.keys(openForms).forEach(function (id) { if (!keep[id]) delete openForms[id]; });
      if (!items.length) { note(box, "No open tasks."); return; }
      while (box.firstChild) box.removeChild(box.firstChild);
      items.forEach(function (t) { box.appendChild(card(t, api, el, pretty, can("answer"), reload)); });
    });
  }

  window.FlockTasks = {load: load, waiting: {}, changed: null};
})();
