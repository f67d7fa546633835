// The asgi-ws-close demo page. No libraries, nothing loaded from elsewhere.
//
// Everything that comes from the server or a peer (reasons above all) is put in the page with
// textContent or as an attribute value, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATE_NAMES = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];

  // Each socket gets a connection id, sent as ?cid= and shown in both tables, so that a
  // server record can be matched with what this page saw. ?page=NAME names this page's ids.
  const pageName = new URLSearchParams(location.search).get("page") || Math.random().toString(36).slice(2, 8);
  let socketCount = 0;
  let socket = null;
  let socketCid = null;

  let records = [];
  let limit = 50;

  function wsUrl(path, params) {
    const url = new URL(path, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    for (const [key, value] of Object.entries(params || {})) url.searchParams.set(key, value);
    return url.href;
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
  }

  // ----- what this page saw -----

  function logEvent(kind, cid, text, data) {
    const item = el("li", null, { "data-kind": kind, "data-cid": cid || "" });
    for (const [key, value] of Object.entries(data || {})) item.dataset[key] = String(value);
    item.append(el("time", clock(new Date())), " ", el("code", cid || "-"), " ", el("b", kind), " ", text);
    $("events").prepend(item);
  }

  function showSocketState() {
    const state = socket ? STATE_NAMES[socket.readyState] : "none";
    const label = $("socket-state");
    label.textContent = socket ? state : "no socket";
    label.dataset.state = state;
    $("socket-cid").textContent = socket ? socketCid : "";
    const open = !!socket && socket.readyState === WebSocket.OPEN;
    const idle = !socket || socket.readyState === WebSocket.CLOSED;
    $("open").disabled = !idle;
    $("open-reject").disabled = !idle;
    $("send").disabled = !open;
    $("close-browser").disabled = !open;
    $("close-server").disabled = !open;
  }

  function openSocket(path) {
    socketCount += 1;
    const cid = `${pageName}-${socketCount}`;
    const ws = new WebSocket(wsUrl(path, { cid }));
    socket = ws;
    socketCid = cid;
    logEvent("connecting", cid, path);
    ws.addEventListener("open", () => {
      logEvent("open", cid, "");
      showSocketState();
    });
    ws.addEventListener("message", (event) => {
      logEvent("message", cid, JSON.stringify(event.data), { data: event.data });
    });
    ws.addEventListener("error", () => {
      // The browser tells scripts nothing more; its console has the details.
      logEvent("error", cid, "(see the browser console)");
    });
    ws.addEventListener("close", (event) => {
      logEvent("close", cid, `code=${event.code} reason=${JSON.stringify(event.reason)} wasClean=${event.wasClean}`, {
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
      showSocketState();
    });
    showSocketState();
  }

  function closeFields() {
    const codeText = $("code").value.trim();
    return { code: codeText === "" ? null : Number(codeText), reason: $("reason").value };
  }

  $("open").addEventListener("click", () => openSocket("/ws"));
  $("open-reject").addEventListener("click", () => openSocket("/ws/reject"));
  $("send").addEventListener("click", () => {
    const text = $("message").value;
    socket.send(text);
    logEvent("sent", socketCid, JSON.stringify(text), { data: text });
  });
  $("close-browser").addEventListener("click", () => {
    const { code, reason } = closeFields();
    try {
      // close() with no code sends a close frame without a status (the server sees 1005).
      if (code === null) socket.close();
      else socket.close(code, reason);
      logEvent("closing", socketCid, `close(${code === null ? "" : code + ", " + JSON.stringify(reason)})`);
    } catch (error) {
      // The browser refuses codes other than 1000 and 3000-4999, and reasons over 123 bytes.
      logEvent("refused", socketCid, `${error.name}: ${error.message}`);
    }
    showSocketState();
  });
  $("close-server").addEventListener("click", () => {
    const { code, reason } = closeFields();
    const command = { action: "close", reason };
    if (code !== null) command.code = code;
    socket.send(JSON.stringify(command));
    logEvent("sent", socketCid, JSON.stringify(command), { data: JSON.stringify(command) });
  });

  // ----- the server's close records -----

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
  }

  function recordRow(record) {
    const row = el("tr", null, {
      "data-id": record.id,
      "data-cid": record.cid || "",
      "data-state": record.state,
      "data-clean": record.clean,
    });
    const closedAt = record.closed_at ? clock(new Date(record.closed_at * 1000)) : "";
    const state = record.http_status ? `${record.state} (HTTP ${record.http_status})` : record.state;
    let name = record.code_name || record.code_explanation || "";
    if (record.code_name && record.code_explanation) name = `${record.code_name} · ${record.code_explanation}`;
    const cells = [
      ["id", record.id],
      ["closed-at", closedAt],
      ["path", record.path],
      ["cid", record.cid || ""],
      ["state", state],
      ["initiator", record.initiator === null ? "none" : record.initiator],
      ["code", record.code === null ? "" : record.code],
      ["code-name", name],
      ["reason", record.reason],
      ["clean", record.clean === null ? "" : record.clean ? "yes" : "no"],
      ["duration", formatDuration(record.duration)],
      ["messages", `${record.messages_received} / ${record.messages_sent}`],
    ];
    for (const [field, value] of cells) row.append(el("td", value, { "data-field": field }));
    if (record.requested && record.sent && record.requested.code !== record.sent.code) {
      // invalid_close="fix" replaced a code that no close frame may carry: say what was asked.
      row.querySelector('[data-field="code"]').append(" ", el("small", `(asked ${record.requested.code})`));
    }
    // The rest of the record (received, sent, requested, error, ...) as a tooltip.
    row.title = JSON.stringify(
      {
        received: record.received,
        sent: record.sent,
        requested: record.requested,
        received_then_sent: record.received_then_sent,
        http_status: record.http_status,
        error: record.error,
      },
      null,
      1,
    );
    return row;
  }

  function codeColour(code) {
    if (code === 1000 || code === 1001) return "#2e8b57"; // normal, going away
    if (code === 1006) return "#c0392b"; // abnormal: no close frame
    if (code !== null && code >= 3000) return "#2f6fb3"; // library and application codes
    return "#d68910"; // other registered codes
  }

  function drawChart() {
    const svg = $("chart");
    const counts = new Map();
    for (const record of records) {
      const code = record.code === null ? "open" : record.code;
      counts.set(code, (counts.get(code) || 0) + 1);
    }
    const codes = [...counts.keys()].sort((a, b) => Number(a) - Number(b));
    const width = 720;
    const height = 170;
    const top = 18;
    const bottom = 28;
    const max = Math.max(1, ...counts.values());
    const slot = Math.min(90, (width - 20) / Math.max(1, codes.length));
    const children = [];
    const axis = document.createElementNS(SVG_NS, "line");
    for (const [key, value] of Object.entries({ x1: 0, x2: width, y1: height - bottom, y2: height - bottom })) {
      axis.setAttribute(key, value);
    }
    axis.setAttribute("class", "axis");
    children.push(axis);
    codes.forEach((code, index) => {
      const count = counts.get(code);
      const barHeight = ((height - top - bottom) * count) / max;
      const x = 10 + index * slot + slot * 0.15;
      const y = height - bottom - barHeight;
      const bar = document.createElementNS(SVG_NS, "rect");
      const attrs = { x, y, width: slot * 0.7, height: barHeight, rx: 3, fill: codeColour(code), class: "bar" };
      for (const [key, value] of Object.entries(attrs)) bar.setAttribute(key, value);
      bar.dataset.code = code;
      bar.dataset.count = count;
      const tip = document.createElementNS(SVG_NS, "title");
      tip.textContent = `${code}: ${count} close${count === 1 ? "" : "s"}`;
      bar.append(tip);
      const label = document.createElementNS(SVG_NS, "text");
      label.setAttribute("x", x + slot * 0.35);
      label.setAttribute("y", height - bottom + 16);
      label.setAttribute("class", "label");
      label.textContent = code;
      const value = document.createElementNS(SVG_NS, "text");
      value.setAttribute("x", x + slot * 0.35);
      value.setAttribute("y", y - 4);
      value.setAttribute("class", "value");
      value.textContent = count;
      children.push(bar, label, value);
    });
    if (codes.length === 0) {
      const empty = document.createElementNS(SVG_NS, "text");
      empty.setAttribute("x", width / 2);
      empty.setAttribute("y", height / 2);
      empty.setAttribute("class", "label");
      empty.textContent = "no closes yet";
      children.push(empty);
    }
    svg.replaceChildren(...children);
    $("chart-caption").textContent = `Closes by code, over the ${records.length} record${records.length === 1 ? "" : "s"} below`;
  }

  function render() {
    $("records").tBodies[0].replaceChildren(...records.map(recordRow));
    $("no-records").hidden = records.length > 0;
    $("limit").textContent = limit;
    drawChart();
  }

  // ----- the live feed -----

  let retryDelay = 250;

  function setMonitorStatus(state, text) {
    const status = $("monitor-status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function connectMonitor() {
    const monitor = new WebSocket(wsUrl("/ws/monitor"));
    monitor.addEventListener("open", () => {
      retryDelay = 250;
      setMonitorStatus("live", "live");
    });
    monitor.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.server) {
        $("server-info").textContent = message.server.summary;
        $("server-info").dataset.wsImplementation = message.server.ws_implementation || "";
      }
      if (message.type === "snapshot") {
        records = message.records;
        limit = message.limit;
      } else if (message.type === "record") {
        records = [message.record, ...records].slice(0, limit);
      }
      render();
    });
    monitor.addEventListener("close", (event) => {
      // The server restarted (1012), or dropped a page that fell behind (1013): come back.
      setMonitorStatus("down", `reconnecting (closed ${event.code})`);
      setTimeout(connectMonitor, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    });
  }

  showSocketState();
  render();
  connectMonitor();
})();
