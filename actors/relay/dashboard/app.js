// The relay dashboard: renders the snapshot of /api/tunnels, received once
// a second from /events (server-sent events), or by polling /api/tunnels
// when the browser has no EventSource or the stream keeps failing.
"use strict";

(function () {
  const period = 1000;
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function count(n) { return Math.round(n).toLocaleString("en"); }

  function ago(iso, now) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (s < 2) return "now";
    if (s < 120) return s + "s ago";
    if (s < 7200) return Math.round(s / 60) + "m ago";
    return Math.round(s / 3600) + "h ago";
  }

  function row(t, now) {
    const tr = el("tr", t.sessions > 0 ? "up" : "down");
    tr.dataset.tunnel = t.name;

    tr.append(el("td", "name", t.name));

    const sessions = el("td", "num sessions");
    sessions.append(el("span", "count", String(t.sessions)));
    if (t.session_list.length > 0) {
      const detail = el("div", "detail");
      for (const s of t.session_list) {
        const inst = s.instance ? s.instance.slice(0, 8) : "-";
        detail.append(el("div", "session",
          "#" + s.index + " " + inst + ", up " + ago(s.since, now).replace(" ago", "") +
          ", " + s.in_flight + " in flight"));
      }
      sessions.append(detail);
    }
    tr.append(sessions);

    const nodes = el("td", "nodes");
    if (t.fleet_error) {
      nodes.textContent = "directory: " + t.fleet_error;
      nodes.classList.add("bad");
    } else if (t.nodes && t.nodes.length > 0) {
      for (const n of t.nodes) {
        nodes.append(el("div", "node", n.node + (n.self ? " (this)" : "") + ": " + n.sessions));
      }
    } else {
      nodes.textContent = "-";
    }
    tr.append(nodes);

    tr.append(el("td", "num rps", t.requests_per_second.toFixed(1)));
    tr.append(el("td", "num requests", count(t.requests)));
    tr.append(el("td", "num errors4xx" + (t.errors_4xx > 0 ? " bad" : ""), count(t.errors_4xx)));
    tr.append(el("td", "num errors5xx" + (t.errors_5xx > 0 ? " bad" : ""), count(t.errors_5xx)));
    tr.append(el("td", "num inflight", count(t.in_flight)));
    tr.append(el("td", "num held", String(t.held)));
    tr.append(el("td", "lastseen", ago(t.last_seen, now)));
    return tr;
  }

  function render(v) {
    const now = Date.parse(v.time);
    $("fleet").textContent = v.cluster ? v.cluster + " / " + v.node : "alone";
    $("sessions").textContent = String(v.sessions);
    $("bytes-in").textContent = bytes(v.bytes_in) + " (" + bytes(v.bytes_in_per_second) + "/s)";
    $("bytes-out").textContent = bytes(v.bytes_out) + " (" + bytes(v.bytes_out_per_second) + "/s)";
    $("updated").textContent = new Date(now).toLocaleTimeString("en-GB");
    const body = document.querySelector("#tunnels tbody");
    body.replaceChildren(...v.tunnels.map((t) => row(t, now)));
    $("empty").hidden = v.tunnels.length > 0;
    $("error").hidden = true;
    document.body.dataset.updated = v.time;
  }

  function status(text, up) {
    const live = $("live");
    live.textContent = text;
    live.className = "live " + (up ? "up" : "down");
  }

  function failed(text) {
    const e = $("error");
    e.textContent = text;
    e.hidden = false;
  }

  function poll() {
    status("polling", true);
    const tick = () => {
      fetch("/api/tunnels", { cache: "no-store" })
        .then((r) => {
          if (!r.ok) throw new Error("/api/tunnels: " + r.status);
          return r.json();
        })
        .then((v) => { render(v); status("polling", true); })
        .catch((err) => { status("polling: no answer", false); failed(String(err.message || err)); })
        .finally(() => setTimeout(tick, period));
    };
    tick();
  }

  function stream() {
    const es = new EventSource("/events");
    let failures = 0;
    let received = false;
    es.onmessage = (m) => {
      failures = 0;
      received = true;
      status("live", true);
      render(JSON.parse(m.data));
    };
    es.addEventListener("failure", (m) => failed(m.data));
    es.onerror = () => {
      status("reconnecting", false);
      failures++;
      // A stream refused (not text/event-stream), one that never
      // delivered, or one that keeps breaking (a proxy that buffers it,
      // say): poll instead.
      if (es.readyState === EventSource.CLOSED || (!received && failures >= 2) || failures >= 5) {
        es.close();
        poll();
      }
    };
  }

  if (window.EventSource) {
    stream();
  } else {
    poll();
  }
})();
