/* Live updates from GET /api/portal/tenant/current/stream (Server-Sent Events).
   The server sends the same "view" it rendered the page from (text by element id,
   times, visibility), so this file only copies values into the page: textContent and
   attributes, never HTML. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) return;

  var clockOffset = 0;  // server clock minus browser clock, ms
  var logMax = parseInt(root.getAttribute("data-log-max") || "10", 10);
  var wantDir = root.getAttribute("data-filter-direction") || "";
  var wantChat = root.getAttribute("data-filter-chat") || "";
  var PNG = "data:image/png;base64,";

  function byId(id) { return document.getElementById(id); }
  function setText(id, value) { var el = byId(id); if (el) el.textContent = value; }
  function serverNow() { return Date.now() + clockOffset; }

  function syncClock(iso) {
    var t = Date.parse(iso || "");
    if (!isNaN(t)) clockOffset = t - Date.now();
  }
  syncClock(root.getAttribute("data-server-time"));

  function relative(iso) {
    var t = Date.parse(iso || "");
    if (isNaN(t)) return "never";
    var delta = (serverNow() - t) / 1000, secs = Math.abs(delta), amount;
    if (secs < 2) return "just now";
    if (secs < 90) amount = Math.floor(secs) + " s";
    else if (secs < 5400) amount = Math.floor(secs / 60) + " min";
    else if (secs < 172800) amount = Math.floor(secs / 3600) + " h";
    else amount = Math.floor(secs / 86400) + " d";
    return delta < 0 ? "in " + amount : amount + " ago";
  }

  function tick() {
    var times = document.querySelectorAll("time.rel[datetime]");
    for (var i = 0; i < times.length; i++) {
      var iso = times[i].getAttribute("datetime");
      if (iso) times[i].textContent = relative(iso);
    }
    var cd = byId("retry-countdown");
    if (cd) {
      var at = Date.parse(cd.getAttribute("data-at") || "");
      if (!isNaN(at)) {
        var secs = Math.round((at - serverNow()) / 1000);
        cd.textContent = secs > 0 ? "in " + secs + " s" : "now";
      }
    }
  }

  function applyView(view) {
    syncClock(view.server_time);
    var key;
    for (key in view.text) if (Object.prototype.hasOwnProperty.call(view.text, key)) setText(key, view.text[key]);
    for (key in view.times) {
      if (!Object.prototype.hasOwnProperty.call(view.times, key)) continue;
      var el = byId(key);
      if (el) el.setAttribute("datetime", view.times[key] || "");
    }
    for (key in view.show) {
      if (!Object.prototype.hasOwnProperty.call(view.show, key)) continue;
      var box = byId(key);
      if (box) box.hidden = !view.show[key];
    }
    var cd = byId("retry-countdown");
    if (cd) cd.setAttribute("data-at", (view.countdown && view.countdown["retry-countdown"]) || "");
    var st = byId("session-state");
    if (st) st.setAttribute("data-state", view.state);
    var ts = byId("tenant-status");
    if (ts) ts.setAttribute("data-status", view.tenant_status || "");
    if (view.state !== "QR_READY") applyQr({ qr_png: null });
    tick();
  }

  function applyQr(data) {
    var holder = byId("qr-holder");
    if (!holder) return;
    var img = byId("qr");
    var wait = byId("qr-wait");
    if (data.qr_png && data.qr_png.indexOf(PNG) === 0) {
      if (!img) {
        img = document.createElement("img");
        img.id = "qr";
        img.alt = "QR code to scan with WhatsApp";
        img.width = 240;
        img.height = 240;
        holder.appendChild(img);
      }
      img.src = data.qr_png;
      if (wait) wait.remove();
    } else {
      if (img) img.remove();
      if (!wait) {
        wait = document.createElement("p");
        wait.id = "qr-wait";
        wait.textContent = "Waiting for a QR code…";
        holder.appendChild(wait);
      }
    }
  }

  function addLog(row) {
    var body = byId("recent-logs");
    if (!body) return;
    if (wantDir && row.direction !== wantDir) return;
    if (wantChat && row.chat !== wantChat) return;
    var rows = body.querySelectorAll("tr[data-id]");
    for (var i = 0; i < rows.length; i++) if (rows[i].getAttribute("data-id") === String(row.id)) return;
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", String(row.id));
    tr.className = "fresh dir-" + row.direction;
    var when = document.createElement("span");
    when.textContent = row.at_abs;
    when.title = row.at_abs;
    var tdWhen = document.createElement("td");
    tdWhen.appendChild(when);
    tr.appendChild(tdWhen);
    [row.direction, row.chat, row.sender, row.body, row.status].forEach(function (v, idx) {
      var td = document.createElement("td");
      td.textContent = v;
      if (idx === 3) td.className = "body";
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    var all = body.querySelectorAll("tr[data-id]");
    for (var j = logMax; j < all.length; j++) all[j].remove();
  }

  function renderEvents(items) {
    var list = byId("timeline");
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    if (!items.length) {
      var li0 = document.createElement("li");
      li0.className = "empty";
      li0.textContent = "Nothing happened yet.";
      list.appendChild(li0);
      return;
    }
    items.forEach(function (ev) {
      var li = document.createElement("li");
      var t = document.createElement("time");
      t.setAttribute("datetime", ev.at_iso || "");
      t.title = ev.at_abs;
      t.textContent = ev.at_abs;
      li.appendChild(t);
      [["kind", ev.kind], ["change", ev.change],
       ["cause", ev.cause ? ev.cause + ": " + ev.cause_words : ""], ["detail", ev.detail]
      ].forEach(function (part) {
        if (!part[1]) return;
        var s = document.createElement("span");
        s.className = part[0];
        s.textContent = part[1];
        li.appendChild(s);
      });
      list.appendChild(li);
    });
  }

  function liveStatus(text, on) {
    var el = byId("live-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("on", on);
    el.classList.toggle("off", !on);
  }

  function parse(ev) { try { return JSON.parse(ev.data); } catch (e) { return null; } }

  var source = new EventSource(root.getAttribute("data-stream"), { withCredentials: true });
  source.onopen = function () { liveStatus("Live: changes appear as they happen.", true); };
  source.onerror = function () { liveStatus("Live updates interrupted; reconnecting…", false); };
  source.addEventListener("status", function (ev) {
    var v = parse(ev); if (v) { applyView(v); liveStatus("Live: changes appear as they happen.", true); }
  });
  source.addEventListener("qr", function (ev) { var d = parse(ev); if (d) applyQr(d); });
  source.addEventListener("log", function (ev) { var d = parse(ev); if (d) addLog(d); });
  source.addEventListener("events", function (ev) { var d = parse(ev); if (d) renderEvents(d.items || []); });
  source.addEventListener("problem", function (ev) {
    var d = parse(ev) || {};
    var msg = d.error && d.error.message ? d.error.message : "unknown problem";
    liveStatus("Live updates paused: " + msg, false);
    if (d.fatal) source.close();
  });
  window.addEventListener("pagehide", function () { source.close(); });
  setInterval(tick, 1000);
  tick();
})();
