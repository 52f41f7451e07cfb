// eventkit dashboard: the page's whole logic, vanilla JavaScript, no library.
//
// State comes from the JSON API (GET /api/runs, GET /api/runs/{run}); updates
// come from one Server-Sent Events stream (GET /api/stream, ?run=ID for the
// run shown). On "hello" (every connection) and "resync" (the server dropped
// messages this page was too slow to take) the page reloads from the API.
// Rows carry a version, log events an index: whatever arrives twice or late
// is applied once, in order. Output is always inserted as text, never markup.
"use strict";

(() => {
  const STATES = ["running", "succeeded", "failed", "expired", "truncated"];
  const MAX_LINES = 5000; // lines kept on the page for the run shown
  const token = new URLSearchParams(location.search).get("token");

  // ---------------------------------------------------------------- helpers
  const $ = (selector) => document.querySelector(selector);
  function api(path, extra) {
    const url = new URL(path, location.href);
    if (token !== null) url.searchParams.set("token", token);
    for (const [key, value] of Object.entries(extra || {})) url.searchParams.set(key, value);
    return url.pathname + url.search;
  }
  const runPath = (run) => "/api/runs/" + encodeURIComponent(run);
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const integer = new Intl.NumberFormat("en-US");
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
  }
  function seconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + Math.floor(s % 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }
  function rate(r) {
    if (r === null || r === undefined) return "–";
    return (r >= 100 ? integer.format(Math.round(r)) : r.toFixed(1)) + "/s";
  }

  // ------------------------------------------------------------------ state
  const rows = new Map(); // run -> {data, tr, received}
  let filter = "";
  let sortKey = "seen_at";
  let sortDescending = true;
  let selected = null;
  let counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  let stream = null;
  let dirty = false;

  function setStatus(kind, text) {
    const status = $("#status");
    status.dataset.status = kind;
    status.textContent = text;
  }

  // ------------------------------------------------------------------ table
  const CELLS = ["run", "source", "state", "percent", "events", "bytes", "rate", "duration", "exit_code", "limits"];
  const WIDE = new Set(["source", "events", "bytes", "rate", "limits"]);
  const NUMERIC = new Set(["events", "bytes", "rate", "duration", "exit_code"]);

  function makeRow(run) {
    const tr = el("tr");
    tr.dataset.run = run;
    tr.tabIndex = 0;
    tr.setAttribute("aria-selected", "false");
    for (const key of CELLS) {
      const td = el("td");
      td.dataset.field = key;
      if (NUMERIC.has(key)) td.classList.add("num");
      if (WIDE.has(key)) td.classList.add("wide");
      if (key === "run") td.classList.add("id");
      if (key === "limits") td.classList.add("limits");
      tr.append(td);
    }
    const progress = tr.querySelector('[data-field="percent"]');
    const box = el("div", "progress");
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.append(el("span"));
    box.append(bar, el("span", "pct"));
    progress.append(box);
    tr.addEventListener("click", () => select(run, true));
    return tr;
  }

  function duration(entry) {
    const data = entry.data;
    if (data.state !== "running" || data.duration === null) return data.duration;
    return data.duration + (performance.now() - entry.received) / 1000;
  }

  function fillRow(entry) {
    const { data, tr } = entry;
    const cell = (key) => tr.querySelector(`[data-field="${key}"]`);
    const id = cell("run");
    id.textContent = data.run === "" ? "(no id)" : data.run;
    id.title = data.run;
    cell("source").textContent = data.source || "–";
    const state = cell("state");
    state.textContent = "";
    state.append(el("span", "badge " + data.state, data.state));
    const bar = tr.querySelector(".bar");
    const pct = tr.querySelector(".pct");
    if (data.percent === null) {
      bar.hidden = true;
      bar.removeAttribute("aria-valuenow");
      pct.textContent = "–";
    } else {
      bar.hidden = false;
      const percent = Math.max(0, Math.min(100, data.percent));
      bar.firstChild.style.width = percent + "%";
      bar.setAttribute("aria-valuenow", percent.toFixed(1));
      bar.setAttribute("aria-label", `progress of run ${data.run}`);
      pct.textContent = percent.toFixed(0) + "%";
      if (data.eta !== null && data.state === "running") {
        pct.append(el("span", "eta", "ETA " + seconds(data.eta)));
      }
    }
    cell("events").textContent = integer.format(data.events);
    cell("bytes").textContent = bytes(data.bytes);
    cell("rate").textContent = rate(data.rate);
    cell("duration").textContent = seconds(duration(entry));
    cell("exit_code").textContent = data.exit_code === null ? "–" : String(data.exit_code);
    const notes = [...data.limits];
    if (data.gaps) notes.push(`${data.gaps} gap(s)`);
    if (data.truncated) notes.push("truncated");
    if (data.errors) notes.push(`${data.errors} error(s)`);
    const limits = cell("limits");
    limits.textContent = notes.length ? notes.join(", ") : "–";
    limits.title = data.error || "";
  }

  function upsert(data) {
    let entry = rows.get(data.run);
    if (entry && entry.data.version > data.version) return;
    if (!entry) {
      entry = { data, tr: makeRow(data.run), received: 0 };
      rows.set(data.run, entry);
    }
    entry.data = data;
    entry.received = performance.now();
    entry.changed = true;
    if (data.run === selected) showFacts(data);
    dirty = true;
  }

  function remove(run) {
    const entry = rows.get(run);
    if (!entry) return;
    entry.tr.remove();
    rows.delete(run);
    dirty = true;
  }

  function compare(a, b) {
    let x = a.data[sortKey];
    let y = b.data[sortKey];
    if (sortKey === "limits") { x = x.join(","); y = y.join(","); }
    if (sortKey === "state") { x = STATES.indexOf(x); y = STATES.indexOf(y); }
    if (sortKey === "duration") { x = duration(a); y = duration(b); }
    const missingX = x === null || x === undefined || x === "";
    const missingY = y === null || y === undefined || y === "";
    if (missingX || missingY) return missingX === missingY ? 0 : missingX ? 1 : -1;
    let order = typeof x === "string" ? x.localeCompare(y) : x - y;
    if (order === 0) order = a.data.seen_at - b.data.seen_at;
    return sortDescending ? -order : order;
  }

  function render() {
    if (!dirty) return;
    dirty = false;
    const body = $("#rows");
    const entries = [...rows.values()].sort(compare);
    let shown = 0;
    let previous = null;
    for (const entry of entries) {
      if (entry.changed) { fillRow(entry); entry.changed = false; }
      const visible = filter === "" || entry.data.state === filter;
      entry.tr.hidden = !visible;
      if (visible) shown += 1;
      // Move only what is out of place: focus and scrolling stay put.
      const expected = previous ? previous.nextSibling : body.firstChild;
      if (expected !== entry.tr) body.insertBefore(entry.tr, expected);
      previous = entry.tr;
    }
    $("#empty").hidden = shown > 0;
    $("#empty").textContent = rows.size ? "No run in this state." : "No runs yet: they show here as they start.";
    let total = 0;
    for (const state of STATES) {
      total += counts[state] || 0;
      document.querySelector(`[data-count="${state}"]`).textContent = integer.format(counts[state] || 0);
    }
    document.querySelector('[data-count=""]').textContent = integer.format(total);
  }

  function tick() {
    // Durations of running runs move on between updates.
    for (const entry of rows.values()) {
      if (entry.data.state === "running") {
        entry.tr.querySelector('[data-field="duration"]').textContent = seconds(duration(entry));
      }
    }
    if (sortKey === "duration") dirty = true;
  }

  async function loadRuns() {
    let response;
    try {
      response = await fetch(api("/api/runs"));
    } catch (error) {
      setStatus("error", "cannot reach the dashboard");
      return;
    }
    if (response.status === 401) {
      setStatus("auth", "this dashboard needs its token: open the address it printed (…?token=…)");
      stream && stream.close();
      return;
    }
    const body = await response.json();
    const present = new Set(body.runs.map((row) => row.run));
    for (const [run, entry] of rows) {
      if (!present.has(run) && entry.data.version <= body.version) remove(run);
    }
    for (const row of body.runs) upsert(row);
    counts = body.counts;
    dirty = true;
    render();
  }

  // ------------------------------------------------------------ the output
  const SGR_COLOURS = 16;

  class Terminal {
    constructor(node) {
      this.node = node;
      this.reset();
    }

    reset() {
      this.node.textContent = "";
      this.chars = [];
      this.styles = [];
      this.col = 0;
      this.line = null; // the element of the line being written, if shown
      this.sgr = { stdout: {}, stderr: {} };
      this.partial = { stdout: "", stderr: "" };
      this.lines = 0;
    }

    write(events) {
      for (const event of events) {
        if (event.type === "stdout" || event.type === "stderr") this.text(event.data, event.type);
        else if (event.type !== "progress") this.mark(event);
      }
      this.drawLine();
    }

    styleOf(stream) {
      const s = this.sgr[stream];
      const classes = [stream];
      if (s.b) classes.push("b");
      if (s.d) classes.push("d");
      if (s.i) classes.push("i");
      if (s.u) classes.push("u");
      let fg = s.fg;
      let bg = s.bg;
      if (s.inverse) { [fg, bg] = [bg === undefined ? 7 : bg, fg === undefined ? 0 : fg]; }
      let extra = "";
      if (typeof fg === "number") classes.push("fg-" + fg);
      else if (typeof fg === "string") extra += "|c" + fg;
      if (typeof bg === "number") classes.push("bg-" + bg);
      else if (typeof bg === "string") extra += "|b" + bg;
      return classes.join(" ") + extra;
    }

    applySgr(stream, params) {
      const s = this.sgr[stream];
      const codes = params === "" ? [0] : params.split(";").map((p) => parseInt(p || "0", 10));
      for (let k = 0; k < codes.length; k++) {
        const c = codes[k];
        if (c === 0) { for (const key of Object.keys(s)) delete s[key]; }
        else if (c === 1) s.b = true;
        else if (c === 2) s.d = true;
        else if (c === 3) s.i = true;
        else if (c === 4) s.u = true;
        else if (c === 7) s.inverse = true;
        else if (c === 22) { delete s.b; delete s.d; }
        else if (c === 23) delete s.i;
        else if (c === 24) delete s.u;
        else if (c === 27) delete s.inverse;
        else if (c >= 30 && c <= 37) s.fg = c - 30;
        else if (c >= 90 && c <= 97) s.fg = c - 90 + 8;
        else if (c === 39) delete s.fg;
        else if (c >= 40 && c <= 47) s.bg = c - 40;
        else if (c >= 100 && c <= 107) s.bg = c - 100 + 8;
        else if (c === 49) delete s.bg;
        else if (c === 38 || c === 48) {
          const key = c === 38 ? "fg" : "bg";
          if (codes[k + 1] === 5 && k + 2 < codes.length) {
            s[key] = this.palette(codes[k + 2]);
            k += 2;
          } else if (codes[k + 1] === 2 && k + 4 < codes.length) {
            const [r, g, b] = codes.slice(k + 2, k + 5).map((v) => Math.max(0, Math.min(255, v)));
            s[key] = `rgb(${r},${g},${b})`;
            k += 4;
          }
        }
      }
    }

    palette(n) {
      if (n < SGR_COLOURS) return n;
      if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
      const i = n - 16;
      const level = (x) => (x === 0 ? 0 : 55 + x * 40);
      return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
    }

    put(ch, style) {
      if (this.col < this.chars.length) {
        this.chars[this.col] = ch;
        this.styles[this.col] = style;
      } else {
        while (this.chars.length < this.col) { this.chars.push(" "); this.styles.push(style); }
        this.chars.push(ch);
        this.styles.push(style);
      }
      this.col += 1;
    }

    text(data, stream) {
      const s = this.partial[stream] + data;
      this.partial[stream] = "";
      let style = this.styleOf(stream);
      let i = 0;
      while (i < s.length) {
        const ch = s[i];
        if (ch === "\x1b") {
          const rest = s.slice(i, i + 64);
          const csi = /^\x1b\[([0-9;?]*)([@-~])/.exec(rest);
          if (csi) {
            if (csi[2] === "m") { this.applySgr(stream, csi[1]); style = this.styleOf(stream); }
            else if (csi[2] === "K") {
              // Erase in line: to the end (0), to the start (1), all of it (2).
              if (csi[1] === "" || csi[1] === "0") { this.chars.length = this.col; this.styles.length = this.col; }
              else if (csi[1] === "2") { this.chars = []; this.styles = []; }
              else if (csi[1] === "1") { for (let k = 0; k < Math.min(this.col, this.chars.length); k++) this.chars[k] = " "; }
            } else if (csi[2] === "G") { this.col = Math.max(0, (parseInt(csi[1] || "1", 10) || 1) - 1); }
            i += csi[0].length;
            continue;
          }
          if (/^\x1b(\[[0-9;?]*)?$/.test(rest)) { this.partial[stream] = rest; break; } // cut mid-escape
          i += rest.length > 1 ? 2 : 1; // another escape: skip it
          continue;
        }
        if (ch === "\n") { this.newline(); i += 1; continue; }
        if (ch === "\r") { this.col = 0; i += 1; continue; }
        if (ch === "\b") { this.col = Math.max(0, this.col - 1); i += 1; continue; }
        if (ch === "\t") { const stop = (Math.floor(this.col / 8) + 1) * 8; while (this.col < stop) this.put(" ", style); i += 1; continue; }
        this.put(ch, style);
        i += 1;
      }
    }

    lineElement() {
      if (this.line === null) {
        this.line = el("div", "line");
        this.node.append(this.line);
        this.lines += 1;
        if (this.lines > MAX_LINES) this.trim();
      }
      return this.line;
    }

    trim() {
      let first = this.node.firstChild;
      if (first && first.classList.contains("trimmed")) first = first.nextSibling;
      while (this.lines > MAX_LINES && first) {
        const next = first.nextSibling;
        first.remove();
        this.lines -= 1;
        first = next;
      }
      if (!this.node.firstChild.classList.contains("trimmed")) {
        this.node.prepend(el("div", "mark trimmed", "… earlier lines removed from the page (download events.jsonl for what is held)"));
      }
    }

    drawLine() {
      if (this.chars.length === 0 && this.line === null) return;
      const line = this.lineElement();
      line.textContent = "";
      let start = 0;
      for (let k = 1; k <= this.chars.length; k++) {
        if (k === this.chars.length || this.styles[k] !== this.styles[start]) {
          const [classes, ...colours] = this.styles[start].split("|");
          const span = el("span", classes, this.chars.slice(start, k).join(""));
          for (const colour of colours) {
            if (colour[0] === "c") span.style.color = colour.slice(1);
            else span.style.backgroundColor = colour.slice(1);
          }
          line.append(span);
          start = k;
        }
      }
    }

    newline() {
      this.drawLine();
      if (this.line === null) this.lineElement();
      this.line = null;
      this.chars = [];
      this.styles = [];
      this.col = 0;
    }

    endLine() {
      if (this.chars.length) this.newline();
      else this.line = null;
    }

    mark(event) {
      this.drawLine();
      this.endLine();
      const attrs = event.attrs || {};
      let text = event.type;
      let tone = "";
      switch (event.type) {
        case "started":
          text = "▶ started" + (attrs.pid ? ` (pid ${attrs.pid})` : "");
          break;
        case "result":
          text = `■ result: exit code ${attrs.exit_code ?? "–"}` +
            (typeof attrs.execution_time === "number" ? `, ${seconds(attrs.execution_time)}` : "");
          tone = attrs.exit_code === 0 ? "good" : "bad";
          break;
        case "completed":
          text = attrs.success ? "✔ completed: success" : "✖ completed: failure";
          tone = attrs.success ? "good" : "bad";
          break;
        case "error":
          text = "✖ error" + (attrs.code ? ` [${attrs.code}]` : "") + ": " + event.data;
          tone = "bad";
          break;
        case "resource_limit":
          text = `⚠ resource limit: ${attrs.limit ?? "?"}` + (event.data ? " — " + event.data : "");
          tone = "warn";
          break;
        case "gap":
          text = `… gap: sequences ${attrs.first_missing ?? "?"}–${attrs.last_missing ?? "?"} never came`;
          tone = "warn";
          break;
        case "truncated":
          text = "✂ truncated" +
            (attrs.omitted_bytes !== undefined ? `: ${bytes(attrs.omitted_bytes)} omitted` : "") +
            (attrs.stream ? ` from ${attrs.stream}` : "") + (event.data ? " — " + event.data : "");
          tone = "warn";
          break;
        default:
          text = `• ${event.type}` + (event.data ? ": " + event.data : "");
      }
      const node = el("div", "mark mark-" + event.type.replace(/[^a-z0-9_-]/gi, "_") + (tone ? " " + tone : ""), text);
      this.node.append(node);
      this.lines += 1;
      if (this.lines > MAX_LINES) this.trim();
    }

    note(text) {
      this.drawLine();
      this.endLine();
      this.node.append(el("div", "mark skipped warn", text));
      this.lines += 1;
    }
  }

  const output = $("#output");
  const terminal = new Terminal(output);
  let nextIndex = 0;
  let loading = false;
  let pending = [];

  function atBottom() {
    return output.scrollHeight - output.scrollTop - output.clientHeight < 8;
  }

  function follow() {
    output.scrollTop = output.scrollHeight;
    $("#follow").hidden = true;
  }

  function applyEvents(message) {
    let events = message.events;
    let from = message.from;
    if (from + events.length <= nextIndex) return;
    if (from < nextIndex) { events = events.slice(nextIndex - from); from = nextIndex; }
    const following = atBottom();
    if (from > nextIndex) terminal.note(`… ${integer.format(from - nextIndex)} event(s) not shown: they came faster than the page could follow`);
    terminal.write(events);
    nextIndex = from + events.length;
    if (following) follow();
    else $("#follow").hidden = false;
  }

  function showFacts(row) {
    const state = $("#detail-state");
    state.className = "badge " + row.state;
    state.textContent = row.state;
    const facts = [
      row.source ? "source " + row.source : null,
      row.exit_code === null ? null : "exit code " + row.exit_code,
      "duration " + seconds(row.duration),
      integer.format(row.events) + " events",
      bytes(row.stdout_bytes) + " stdout",
      bytes(row.stderr_bytes) + " stderr",
      row.limits.length ? "limits: " + row.limits.join(", ") : null,
      row.dropped_events ? integer.format(row.dropped_events) + " earlier events not held" : null,
    ];
    $("#detail-facts").textContent = facts.filter(Boolean).join(" · ");
  }

  async function loadRun(run) {
    loading = true;
    pending = [];
    let response;
    try {
      response = await fetch(api(runPath(run)));
    } catch (error) {
      loading = false;
      return;
    }
    if (run !== selected) return;
    terminal.reset();
    if (response.status === 404) {
      loading = false;
      terminal.note("This run is no longer on the dashboard (it finished long ago, or never was).");
      return;
    }
    if (!response.ok) { loading = false; return; }
    const body = await response.json();
    if (run !== selected) return;
    showFacts(body.run);
    upsert(body.run);
    if (body.dropped_events) {
      terminal.note(`… ${integer.format(body.dropped_events)} earlier event(s) (${bytes(body.dropped_bytes)}) not held by the dashboard`);
    }
    terminal.write(body.events);
    nextIndex = body.next;
    loading = false;
    for (const message of pending) applyEvents(message);
    pending = [];
    follow();
    render();
  }

  function select(run, focusOutput) {
    if (run === selected) return;
    selected = run;
    for (const entry of rows.values()) entry.tr.setAttribute("aria-selected", String(entry.data.run === run));
    const detail = $("#detail");
    if (run === null) {
      detail.hidden = true;
      history.replaceState(null, "", location.pathname + location.search);
    } else {
      detail.hidden = false;
      $("#detail-run").textContent = run === "" ? "(no id)" : run;
      $("#download").href = api(runPath(run) + "/events.jsonl");
      $("#download").setAttribute("download", (run || "run").replace(/[^A-Za-z0-9._-]/g, "_") + ".jsonl");
      terminal.reset();
      nextIndex = 0;
      history.replaceState(null, "", location.pathname + location.search + "#run=" + encodeURIComponent(run));
      const entry = rows.get(run);
      if (entry) showFacts(entry.data);
      if (focusOutput && window.matchMedia("(max-width: 1099px)").matches) {
        detail.scrollIntoView({ block: "start" });
      }
    }
    connect();
  }

  // ---------------------------------------------------------------- metrics
  function showMetrics(m) {
    const all = m.throughput.counts;
    // From the first busy second (a minute at least): a fresh start is not a flat line.
    let first = all.findIndex((c) => c > 0);
    if (first < 0) first = all.length;
    const counts = all.slice(Math.max(0, Math.min(first, all.length - 60)));
    const peak = Math.max(1, ...counts);
    const width = 300;
    const step = width / Math.max(1, counts.length - 1);
    $("#spark-line").setAttribute(
      "points",
      counts.map((c, k) => `${(k * step).toFixed(1)},${(34 - (c / peak) * 32).toFixed(1)}`).join(" "),
    );
    const last = counts.length > 1 ? counts[counts.length - 2] : counts[0] || 0;
    $("#rate").textContent = `${integer.format(last)} events/s · peak ${integer.format(peak)}/s (5 min)`;
    const stages = $("#stages tbody");
    stages.textContent = "";
    for (const stage of m.stages) {
      const tr = el("tr");
      tr.append(el("td", "", stage.stage + (m.stages.some((s) => s.chain !== stage.chain) ? ` (chain ${stage.chain})` : "")));
      tr.append(el("td", "num", integer.format(stage.received)));
      tr.append(el("td", "num", integer.format(stage.sent)));
      const dropped = el("td", "num", integer.format(stage.dropped));
      dropped.title = Object.entries(stage.dropped_by).map(([k, v]) => `${k}: ${v}`).join(", ");
      tr.append(dropped);
      stages.append(tr);
    }
    if (!m.stages.length) {
      const tr = el("tr");
      const td = el("td", "", "no chain watched");
      td.colSpan = 4;
      tr.append(td);
      stages.append(tr);
    }
    const sources = $("#sources tbody");
    sources.textContent = "";
    for (const source of m.sources) {
      const tr = el("tr");
      tr.append(el("td", "", source.source));
      for (const key of ["connections", "open_connections", "frames", "invalid_frames", "closed_before_complete"]) {
        tr.append(el("td", "num", integer.format(source[key])));
      }
      sources.append(tr);
    }
    $("#sources").hidden = m.sources.length === 0;
    const server = m.server;
    $("#server").textContent = server
      ? `Local server: ${server.running} running, ${server.queued} queued, ${integer.format(server.executions)} executions, ` +
        `refusals: ${Object.entries(server.refusals).map(([k, v]) => `${k} ${v}`).join(", ") || "none"}`
      : "";
    $("#clients").textContent = `${integer.format(m.events)} events seen · ${m.dashboard.clients} viewer(s)` +
      (m.dashboard.missed ? ` · ${integer.format(m.dashboard.missed)} update(s) dropped for slow viewers` : "");
  }

  // ----------------------------------------------------------------- stream
  function connect() {
    if (stream) stream.close();
    const extra = selected === null ? {} : { run: selected };
    const source = new EventSource(api("/api/stream", extra));
    stream = source;
    source.addEventListener("hello", () => {
      if (stream !== source) return;
      setStatus("live", "live");
      loadRuns();
      if (selected !== null) loadRun(selected);
    });
    source.addEventListener("runs", (message) => {
      const body = JSON.parse(message.data);
      for (const run of body.removed) remove(run);
      for (const row of body.runs) upsert(row);
      counts = body.counts;
      dirty = true;
      if (body.ended) setStatus("live", "live · input ended");
    });
    source.addEventListener("events", (message) => {
      const body = JSON.parse(message.data);
      if (body.run !== selected) return;
      if (loading) pending.push(body);
      else applyEvents(body);
    });
    source.addEventListener("metrics", (message) => showMetrics(JSON.parse(message.data)));
    source.addEventListener("resync", () => {
      loadRuns();
      if (selected !== null) loadRun(selected);
    });
    source.onerror = () => {
      if (stream === source && $("#status").dataset.status !== "auth") {
        setStatus("error", "disconnected: retrying…");
      }
    };
  }

  // --------------------------------------------------------------- controls
  for (const button of document.querySelectorAll(".filters button")) {
    button.addEventListener("click", () => {
      filter = button.dataset.state;
      for (const other of document.querySelectorAll(".filters button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      dirty = true;
      render();
    });
  }
  for (const th of document.querySelectorAll("#table th[data-key]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      if (sortKey === key) sortDescending = !sortDescending;
      else { sortKey = key; sortDescending = NUMERIC.has(key) || key === "percent"; }
      for (const other of document.querySelectorAll("#table th[data-key]")) {
        other.setAttribute("aria-sort", other === th ? (sortDescending ? "descending" : "ascending") : "none");
      }
      dirty = true;
      render();
    });
  }
  $("#rows").addEventListener("keydown", (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    const visible = [...$("#rows").children].filter((row) => !row.hidden);
    const at = visible.indexOf(tr);
    let target = null;
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(tr.dataset.run, true); return; }
    if (event.key === "ArrowDown") target = visible[at + 1];
    else if (event.key === "ArrowUp") target = visible[at - 1];
    else if (event.key === "Home") target = visible[0];
    else if (event.key === "End") target = visible[visible.length - 1];
    if (target) { event.preventDefault(); target.focus(); }
  });
  $("#close-detail").addEventListener("click", () => select(null, false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && selected !== null) {
      const row = rows.get(selected);
      select(null, false);
      if (row) row.tr.focus();
    }
  });
  output.addEventListener("scroll", () => { if (atBottom()) $("#follow").hidden = true; });
  $("#follow").addEventListener("click", follow);
  window.addEventListener("hashchange", () => {
    const match = /^#run=(.*)$/.exec(location.hash);
    select(match ? decodeURIComponent(match[1]) : null, false);
  });

  // ------------------------------------------------------------------ start
  setInterval(tick, 1000);
  setInterval(render, 200);
  const initial = /^#run=(.*)$/.exec(location.hash);
  if (initial) select(decodeURIComponent(initial[1]), false);
  else connect();
})();
