// opscockpit wall display: polls /api/v1/ and redraws in place. No library, no
// build step. Everything it keeps is bounded (one hour of trend), so a screen
// can stay open for days; a failed poll marks the page stale and polls again.
"use strict";

const POLL_MS = 2000;
const TIMEOUT_MS = 10000;
const STALE_MS = 6000;  // without an answer this long (three polls), the figures are stale
const BEHIND_S = 600;  // event time this far behind the clock is not "live"
const TREND_S = 3600;
const ROWS = 8;  // at most, per table: fit() gives up those a wall has no room for
const ITEMS = `/api/v1/items?state=out_of_stock&state=at_risk&limit=${ROWS}`;
const ALERTS = "/api/v1/alerts?limit=8";
const STAGES = ["placed", "picked", "packed", "pick", "pack", "ship", "stow"];
const RANK = { critical: 0, warning: 1, ok: 2, none: 3 };

const state = {
  trend: [], step: 5, layout: "", boxes: [], drawn: null,
  lastOk: 0, lastNow: null, problem: "", opened: Date.now(),
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Text from events (an fc, an sku, an order id), each in its own bidi run: a
// right-to-left override inside one reordered the figures and times beside it.
function spelt(tag, parts) {
  const node = el(tag);
  parts.forEach((part, index) => node.append(index ? " · " : "", el("bdi", "", String(part))));
  return node;
}

function number(value, digits) {
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function duration(seconds) {
  const size = Math.abs(seconds);
  if (size < 1) return `${number(seconds, 2)} s`;
  if (size < 60) return `${number(seconds, 1)} s`;
  if (size < 3600) return `${number(seconds / 60, 1)} min`;
  if (size < 172800) return `${number(seconds / 3600, 1)} h`;
  return `${number(seconds / 86400, 1)} d`;
}

function clockTime(seconds, withDate) {
  const text = new Date(seconds * 1000).toISOString();
  return withDate ? `${text.slice(0, 10)} ${text.slice(11, 19)} UTC` : text.slice(11, 16);
}

function format(unit, value) {
  if (value === null || value === undefined) return "no data yet";
  switch (unit) {
    case "ratio": return `${number(value * 100, 1)}%`;
    case "seconds": return duration(value);
    case "timestamp": return clockTime(value, true);
    default: return number(value, Number.isInteger(value) ? 0 : 1);
  }
}

function windowText(figure) {
  if (!figure.window) return "";
  if (figure.since === null) return "since start";
  const amount = parseInt(figure.window, 10);
  const unit = { m: "min", h: "h", d: "d" }[figure.window.slice(-1)];
  return amount === 1 && unit === "h" ? "last hour" : `last ${amount} ${unit}`;
}

// A value with what the page shows and what it was made from (for tests and tooltips).
function valueNode(tag, cls, figure, value, status, key) {
  const node = el(tag, cls, format(figure.unit, value));
  node.classList.add(value === null ? "nodata" : status);
  node.dataset.figure = figure.id;
  node.dataset.key = key ? key.join("|") : "";
  node.dataset.value = value === null ? "" : String(value);
  node.dataset.status = status;
  return node;
}

// A figure over everything; one that has none (a ratio per fc) shows its range,
// coloured as the figure (by its worst fc, as the alert rule fires per fc).
function totalNode(tag, cls, figure) {
  const node = valueNode(tag, cls, figure, figure.value, figure.status);
  const values = figure.by.map((row) => row.value);
  if (figure.value === null && values.length) {
    const low = format(figure.unit, Math.min(...values));
    const high = format(figure.unit, Math.max(...values));
    node.textContent = low === high ? low : `${low} – ${high}`;
    node.classList.replace("nodata", "range");
    node.classList.add(figure.status);
  }
  return node;
}

// A trend line (SVG, stretched to its box) with its scale beside it as text: the
// values at its top and bottom (the line's highest and lowest, or an alert level
// beyond them), and in its tooltip the time it covers.
function sparkline(figure) {
  const ns = "http://www.w3.org/2000/svg";
  const box = el("div", "sparkline");
  const scale = el("div", "scale");
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "trend");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  box.append(svg, scale);
  const points = state.trend.map((p) => [p.t, p.values[figure.id]]);
  const values = points.map((p) => p[1]).filter((v) => v !== null && v !== undefined);
  if (values.length < 2) return box;
  // The alert's levels, where the rule compares this value: not over a total of fcs
  // (regions) whose rule fires per fc.
  const levels = figure.limit && !figure.by.length ? [["warning", figure.limit.warning], ["critical", figure.limit.critical]] : [];
  const all = values.concat(levels.map((l) => l[1]));
  const low = Math.min(...all);
  const high = Math.max(...all);
  const first = points[0][0];
  const span = Math.max(points[points.length - 1][0] - first, 1);
  const [top, bottom] = [format(figure.unit, high), format(figure.unit, low)];
  // Flat to the precision shown: drawn flat, its one value beside it (a change in
  // the third digit drawn from top to bottom made noise look like a trend).
  const flat = top === bottom;
  scale.append(el("span", "high", top));
  if (!flat) scale.append(el("span", "low", bottom));
  box.title = `${figure.title || "trend"}: ${flat ? top : `${bottom} to ${top}`}, last ${duration(span)}`;
  const x = (t) => ((t - first) / span) * 100;
  const y = (v) => (flat ? 20 : 38 - ((v - low) / (high - low)) * 36);
  let d = "";
  let pen = "M";
  for (const [t, v] of points) {
    if (v === null || v === undefined) { pen = "M"; continue; }
    d += `${pen}${x(t).toFixed(2)},${y(v).toFixed(2)}`;
    pen = "L";
  }
  for (const [name, level] of levels) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("class", name);
    line.setAttribute("x1", "0");
    line.setAttribute("x2", "100");
    line.setAttribute("y1", y(level).toFixed(2));
    line.setAttribute("y2", y(level).toFixed(2));
    svg.append(line);
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("class", "line");
  path.setAttribute("d", d);
  svg.append(path);
  return box;
}

function worstFirst(figure) {
  const sign = figure.higher_is_worse === null ? 0 : figure.higher_is_worse ? -1 : 1;
  return figure.by.slice().sort((a, b) => RANK[a.status] - RANK[b.status] || sign * (a.value - b.value));
}

// A tile's status in words, for who cannot tell its colours apart or reads it across
// the room: "critical · Cancellations FC-DAL1 4.7%". Empty unless warning or critical.
// Short of room, the title gives way first: where and how bad is what a glance needs.
function said(status, title, key = [], value = "") {
  const node = el("span", `said ${status}`);
  node.dataset.status = status;
  if (RANK[status] > RANK.warning) return node;
  const where = el("span");
  if (key.length) where.append(el("bdi", "", key.join(" ")), value ? " " : "");
  where.append(value);
  node.append(el("span", "", `${status} ·`), " ", el("span", "title", title), " ", where);
  return node;
}

// The worst of a tile's figures, and where: its worst row (fc, region) if it has them.
function worstOf(figures) {
  const figure = figures.slice().sort((a, b) => RANK[a.status] - RANK[b.status])[0];
  if (!figure) return ["none", said("none")];
  const row = figure.labels.length && figure.by.length ? worstFirst(figure)[0] : figure;
  return [figure.status, said(figure.status, figure.title, row.key, format(figure.unit, row.value))];
}

function breakdown(figure) {
  const table = el("table");
  const rows = worstFirst(figure);
  for (const row of rows.slice(0, ROWS)) {
    const tr = el("tr", "row");
    tr.append(spelt("td", row.key));
    tr.append(valueNode("td", "", figure, row.value, row.status, row.key));
    table.append(tr);
  }
  return counted(table, rows.length);
}

// A table or list of rows, of `total` in all: the rows it lacks are "and N more".
function counted(container, total) {
  container.dataset.total = String(total);
  const shown = container.querySelectorAll(".row").length;
  let note = container.querySelector(".more");
  if (shown >= total) {
    if (note) note.remove();
    return container;
  }
  if (!note) {
    note = el(container.tagName === "TABLE" ? "caption" : "li", "more");
    container.append(note);
  }
  note.textContent = `and ${total - shown} more`;
  return container;
}

const cutOff = (box) => box.scrollHeight > box.clientHeight + 1;

// A wall display does not scroll: while a tile's content is cut off, its longest
// table or list gives up its last row to the "and N more", as long as that makes
// the content shorter (a row beside a taller figure does not: it is put back).
// Returns whether content is still cut off.
function fit(box) {
  const rowsOf = (list) => list.querySelectorAll(".row");
  let lists = [...box.querySelectorAll("[data-total]")].filter((c) => rowsOf(c).length);
  while (cutOff(box) && lists.length) {
    const longest = lists.reduce((a, b) => (rowsOf(b).length >= rowsOf(a).length ? b : a));
    const rows = rowsOf(longest);
    const last = rows[rows.length - 1];
    const before = box.scrollHeight;
    last.remove();
    counted(longest, Number(longest.dataset.total));
    const shorter = box.scrollHeight < before;
    if (!shorter) {
      longest.insertBefore(last, longest.querySelector(".more"));
      counted(longest, Number(longest.dataset.total));
    }
    if (!shorter || rows.length === 1) lists = lists.filter((list) => list !== longest);
  }
  return cutOff(box);
}

function headline(figure) {
  const box = el("div", "headline");
  const left = el("div");
  left.append(totalNode("div", "big", figure));
  const when = windowText(figure);
  left.append(el("div", "caption", when ? `${figure.title} · ${when}` : figure.title));
  left.title = figure.description;
  left.append(sparkline(figure));
  box.append(left, breakdown(figure));
  return box;
}

function stats(figures) {
  const box = el("div", "stats");
  for (const figure of figures) {
    const stat = el("div", "stat");
    stat.title = figure.description;
    const when = windowText(figure);
    stat.append(el("div", "label", when ? `${figure.title} (${when})` : figure.title));
    stat.append(totalNode("div", "value", figure));
    box.append(stat);
  }
  return box;
}

function stageTable(backlog, marks) {
  const marked = new Set((marks.by || []).filter((r) => r.value >= 1).map((r) => r.key.join("|")));
  const stages = [...new Set(backlog.by.map((r) => r.key[1]))].sort(
    (a, b) => (STAGES.indexOf(a) + 99) % 99 - (STAGES.indexOf(b) + 99) % 99 || a.localeCompare(b));
  const fcs = [...new Set(backlog.by.map((r) => r.key[0]))];
  const cell = new Map(backlog.by.map((r) => [r.key.join("|"), r]));
  const total = (fc) => stages.reduce((sum, s) => sum + (cell.get(`${fc}|${s}`) || { value: 0 }).value, 0);
  fcs.sort((a, b) => total(b) - total(a) || a.localeCompare(b));
  const table = el("table");
  const head = el("tr");
  head.append(el("th", "", backlog.labels[0]));
  for (const stage of stages) head.append(el("th", "", stage));
  table.append(head);
  for (const fc of fcs.slice(0, ROWS)) {
    const tr = el("tr", "row");
    tr.append(spelt("td", [fc]));
    for (const stage of stages) {
      const row = cell.get(`${fc}|${stage}`);
      const td = valueNode("td", "", backlog, row ? row.value : null, "none", [fc, stage]);
      if (marked.has(`${fc}|${stage}`)) {
        td.classList.add("mark");
        td.textContent += " ▲";
      }
      tr.append(td);
    }
    table.append(tr);
  }
  return [counted(table, fcs.length), marked.size];
}

// Returns the tile's status, and in words: the bottleneck where the most wait.
function stagesTile(box, figures) {
  const [backlog, orders, marks] = figures;
  const shown = backlog.by.length ? backlog : orders;
  if (!shown.by.length) {
    box.append(el("div", "big nodata", "no data yet"));
    return ["none", said("none")];
  }
  const [table, bottlenecks] = stageTable(shown, marks);
  box.append(el("div", "caption", `${shown.title}: ${shown.description}`), table);
  box.append(el("div", "caption", bottlenecks ? `▲ bottleneck (${bottlenecks})` : "no bottleneck"));
  if (!bottlenecks) return ["none", said("none")];
  const cells = new Map(shown.by.map((r) => [r.key.join("|"), r.value]));
  const waiting = (key) => cells.get(key.join("|")) || 0;
  const worst = marks.by.filter((r) => r.value >= 1).map((r) => r.key)
    .reduce((a, b) => (waiting(b) > waiting(a) ? b : a));
  return ["critical", said("critical", "bottleneck", worst)];
}

function itemList(items) {
  const list = el("ul", "list");
  for (const item of items.items) {
    const li = el("li", "row");
    li.dataset.sku = item.sku;
    // The worst state only (the API lists them all, worst first): "out of stock,
    // below safety stock" left no room for the figures on a wall.
    const worst = el("span", "kind", (item.states[0] || "").replace(/_/g, " "));
    worst.title = item.states.join(", ").replace(/_/g, " ");
    li.append(worst);
    const cover = item.cover_days === null ? "no demand" : `${number(item.cover_days, 1)} d cover`;
    li.append(spelt("span", [item.fc, item.sku]), ` · ${number(item.on_hand, 0)} on hand · ${cover}`);
    list.append(li);
  }
  return counted(list, items.total);  // empty until the inventory family publishes its items
}

function alertList(alerts) {
  const list = el("ul", "list");
  for (const alert of alerts.alerts) {
    const li = el("li", "row");
    li.dataset.alert = alert.alert;
    li.append(el("span", "kind", String(alert.alert).replace(/_/g, " ")));
    const what = [alert.fc || alert.region, alert.order_id || alert.sku || alert.stage];
    // First, so that a long line loses its end rather than its time.
    const when = String(alert.decided_ts || "");
    if (when) li.prepend(el("span", "when", `${when.slice(5, 10)} ${when.slice(11, 16)} UTC`));
    li.append(spelt("span", what.filter(Boolean)));
    list.append(li);
  }
  if (!alerts.alerts.length) list.append(el("li", "muted", "no alert yet"));
  return counted(list, alerts.total);
}

// A tile takes the worst status of its figures (border and words in its header).
function drawTile(box, tile, byId, alerts, items) {
  const figures = tile.figures.map((id) => byId[id]).filter(Boolean);
  const head = el("h2");
  head.append(el("span", "", tile.title));
  box.replaceChildren(head);
  let [status, words] = worstOf(figures);
  if (tile.kind === "stages") [status, words] = stagesTile(box, figures);
  else if (tile.kind === "alerts") box.append(alertList(alerts));
  else {
    box.append(headline(figures[0]));
    if (tile.kind === "items") box.append(itemList(items));
    if (figures.length > 1) box.append(stats(figures.slice(1)));
  }
  head.append(words);
  box.className = `tile ${status}`;
  return fit(box);
}

async function getJson(url) {
  const control = new AbortController();
  const timer = setTimeout(() => control.abort(), TIMEOUT_MS);
  try {
    // Against the origin: a page opened as https://user:password@host/ resolves a
    // relative URL with its credentials, which fetch refuses.
    const where = new URL(url, location.origin);
    const answer = await fetch(where, { signal: control.signal, cache: "no-store" });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || answer.statusText);
    return body.data;
  } finally {
    clearTimeout(timer);
  }
}

async function updateTrend(summary) {
  const sample = summary.sample;
  const last = state.trend.length ? state.trend[state.trend.length - 1].t : null;
  if (last === null || (sample && sample.t < last)) {
    const history = await getJson("/api/v1/history");
    state.step = history.step;
    state.trend = history.points;
  } else if (sample && sample.t > last + 1.5 * state.step) {
    const history = await getJson(`/api/v1/history?since=${last}`);
    state.trend = state.trend.concat(history.points);
  } else if (sample && sample.t > last) {
    state.trend.push(sample);
  }
  const cutoff = summary.now - TREND_S;
  while (state.trend.length && state.trend[0].t < cutoff) state.trend.shift();
}

function drawHeader(summary) {
  const mark = summary.watermark;
  const node = document.getElementById("watermark");
  node.dataset.value = mark.timestamp === null ? "" : String(mark.timestamp);
  node.replaceChildren("Event time: ");
  if (mark.timestamp === null) node.append(el("span", "muted", "no data yet"));
  else {
    const lag = mark.lag_seconds;
    const where = lag < 0 ? "ahead of the clock" : "trails the clock";
    // The lag is of the last answer: hidden while the page is stale, where it stopped being true.
    node.append(el("strong", "", clockTime(mark.timestamp, true)), el("span", "lag", ` · ${where} by ${duration(Math.abs(lag))}`));
  }
}

function connection(text, stateName) {
  const node = document.getElementById("connection");
  node.textContent = text;
  node.dataset.state = stateName;
}

function draw(summary, alerts, items) {
  const byId = Object.fromEntries(summary.figures.map((f) => [f.id, f]));
  const layout = JSON.stringify(summary.tiles);
  if (layout !== state.layout) {
    state.boxes = summary.tiles.map(() => el("section", "tile"));
    document.getElementById("tiles").replaceChildren(...state.boxes);
    state.layout = layout;
  }
  drawHeader(summary);  // first: the tiles share the height it leaves
  // What does not fit a wall even with fewer rows makes the page scroll ("cramped"),
  // each tile then as high as it needs, rather than cut a figure off.
  const drawAll = () => summary.tiles.map((tile, i) => drawTile(state.boxes[i], tile, byId, alerts, items));
  const scrolled = window.scrollY;
  document.body.classList.remove("cramped");
  if (drawAll().includes(true)) {
    document.body.classList.add("cramped");
    drawAll();
    window.scrollTo(0, scrolled);
  }
  state.drawn = [summary, alerts, items];
  document.body.dataset.now = String(summary.now);
}

async function poll() {
  try {
    const [summary, alerts, items] = await Promise.all([getJson("/api/v1/summary"), getJson(ALERTS), getJson(ITEMS)]);
    await updateTrend(summary);
    draw(summary, alerts, items);
    state.lastOk = Date.now();
    state.lastNow = summary.now;
    fresh();
    const updated = `updated ${clockTime(summary.now, true)}`;
    const lag = summary.watermark.lag_seconds;
    if (summary.kafka_up === false) connection(`Kafka unreachable: no new events · ${updated}`, "stale");
    else if (lag !== null && lag > BEHIND_S) connection(`behind: event time trails the clock by ${duration(lag)} · ${updated}`, "behind");
    else connection(`live · ${updated}`, "live");
  } catch (error) {
    state.problem = error.name === "AbortError" ? `no answer within ${TIMEOUT_MS / 1000} s`
      : error instanceof TypeError ? "the server does not answer" : error.message;
    watch();
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// Checked every second, not only when a poll ends (a hung server holds a poll for
// TIMEOUT_MS): figures without an answer for STALE_MS go grey, with their age.
function watch() {
  const waited = Date.now() - (state.lastOk || state.opened);
  if (waited <= STALE_MS) return;
  const problem = state.problem || "waiting for an answer";
  if (state.lastNow === null) connection(`no figures yet: ${problem}; retrying`, "stale");
  else connection(`stale: not updated for ${duration(waited / 1000)}, figures as of ${clockTime(state.lastNow, true)} · ${problem}; retrying`, "stale");
  document.body.dataset.stale = "true";
  document.title = `stale · ${TITLE}`;
}

function fresh() {
  state.problem = "";
  delete document.body.dataset.stale;
  document.title = TITLE;
}

// A new size is laid out again at once (a wall or not, rows that fit).
window.addEventListener("resize", () => { if (state.drawn) draw(...state.drawn); });
const TITLE = document.title;
setInterval(watch, 1000);
poll();
