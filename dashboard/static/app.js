// The Strata dashboard's one script, plain JavaScript (no build step, no
// library). It does two things and writes text only through textContent:
//  - pages whose <main> has data-refresh reload their content every so
//    many milliseconds (the server renders and escapes it), keeping open
//    <details> open;
//  - the events page follows the log through server-sent events and puts
//    each new event on top.
"use strict";

(function () {
  function refresh(main) {
    var every = parseInt(main.getAttribute("data-refresh"), 10);
    if (!(every > 0)) return;
    setInterval(function () {
      if (document.hidden) return;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var next = new DOMParser().parseFromString(html, "text/html").getElementById(main.id);
          if (!next) return;
          var open = {};
          main.querySelectorAll("details[open]").forEach(function (d) { open[d.getAttribute("data-key")] = true; });
          next.querySelectorAll("details").forEach(function (d) {
            if (open[d.getAttribute("data-key")]) d.setAttribute("open", "");
          });
          main.replaceChildren.apply(main, Array.prototype.slice.call(next.childNodes).map(function (n) {
            return document.importNode(n, true);
          }));
        })
        .catch(function () { /* the next round tries again */ });
    }, every);
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function live(tbody) {
    var prefix = tbody.getAttribute("data-prefix");
    // link adds a cell of a link (class cls) to the page path + value,
    // showing value, followed by the text after.
    function link(tr, cls, path, value, after) {
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.className = cls;
      a.href = prefix + path + encodeURIComponent(value);
      a.textContent = value;
      td.appendChild(a);
      if (after) td.appendChild(document.createTextNode(after));
      tr.appendChild(td);
    }
    var state = document.getElementById("live-state");
    var pause = document.getElementById("pause");
    var paused = false, held = [];
    var src = new EventSource(tbody.getAttribute("data-src"));
    src.addEventListener("event", function (msg) {
      var e = JSON.parse(msg.data);
      if (paused) { held.push(e); return; }
      show(e);
    });
    function show(e) {
      var tr = document.createElement("tr");
      tr.className = "ev new";
      cell(tr, e.recorded_at, "at");
      cell(tr, e.position, "mono");
      link(tr, "stream", "streams?id=", e.stream_id, "@" + e.version);
      link(tr, "type", "events?type=", e.type, e.schema_version > 1 ? "/v" + e.schema_version : "");
      cell(tr, e.data, "payload");
      tbody.insertBefore(tr, tbody.firstChild);
      while (tbody.rows.length > 1000) tbody.deleteRow(tbody.rows.length - 1);
      var none = document.getElementById("no-events");
      if (none) none.remove();
    }
    src.addEventListener("open", function () { state.textContent = paused ? "paused" : "live"; state.className = "live-state"; });
    src.addEventListener("error", function () { state.textContent = "reconnecting"; state.className = "live-state down"; });
    pause.addEventListener("click", function () {
      paused = !paused;
      if (!paused) { held.forEach(show); held = []; }
      pause.textContent = paused ? "Resume" : "Pause";
      state.textContent = paused ? "paused" : "live";
      state.className = paused ? "live-state paused" : "live-state";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.querySelector("main[data-refresh]");
    if (main) refresh(main);
    var tbody = document.getElementById("live");
    if (tbody) live(tbody);
  });
})();
