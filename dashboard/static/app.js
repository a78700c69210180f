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
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.className = "stream";
      a.href = prefix + "streams?id=" + encodeURIComponent(e.stream_id);
      a.textContent = e.stream_id;
      td.appendChild(a);
      td.appendChild(document.createTextNode("@" + e.version));
      tr.appendChild(td);
      var tt = document.createElement("td");
      var ta = document.createElement("a");
      ta.className = "type";
      ta.href = prefix + "events?type=" + encodeURIComponent(e.type);
      ta.textContent = e.type;
      tt.appendChild(ta);
      if (e.schema_version > 1) tt.appendChild(document.createTextNode("/v" + e.schema_version));
      tr.appendChild(tt);
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
