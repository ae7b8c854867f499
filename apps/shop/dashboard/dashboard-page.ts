// The page and its style, served as they are: no build step, nothing from a CDN (the shop may
// run where there is no internet). Its script is in dashboard-script.ts; data arrives over SSE.

export const dashboardHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keel shop — dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/dashboard.css">
<script src="/dashboard/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>keel shop</h1>
  <span id="status" class="status" data-state="connecting">connecting…</span>
  <span class="updated">updated <time id="updated">—</time></span>
</header>
<main>
  <section class="card wide" id="processes">
    <h2>Processes</h2>
    <p class="problem"></p>
    <table>
      <thead><tr><th>roles</th><th>host</th><th>pid</th><th>up for</th><th>last seen</th><th>state</th><th>parts</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty">none has reported yet</p>
  </section>
  <section class="card" id="queues">
    <h2>Queues</h2>
    <p class="problem"></p>
    <table>
      <thead><tr><th>queue</th><th>depth</th><th>lag</th><th>dead letters</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="card" id="outbox">
    <h2>Outbox</h2>
    <p class="problem"></p>
    <dl>
      <div><dt>backlog</dt><dd id="outbox-backlog">—</dd></div>
      <div><dt>oldest unpublished</dt><dd id="outbox-oldest">—</dd></div>
      <div><dt>parked</dt><dd id="outbox-parked">—</dd></div>
      <div><dt>published</dt><dd id="outbox-published">—</dd></div>
    </dl>
  </section>
  <section class="card" id="sagas">
    <h2>Sagas</h2>
    <p class="problem"></p>
    <dl>
      <div class="attention"><dt>need attention</dt><dd id="sagas-attention">—</dd></div>
      <div><dt>running</dt><dd id="sagas-RUNNING">—</dd></div>
      <div><dt>compensating</dt><dd id="sagas-COMPENSATING">—</dd></div>
      <div><dt>completed</dt><dd id="sagas-COMPLETED">—</dd></div>
      <div><dt>compensated</dt><dd id="sagas-COMPENSATED">—</dd></div>
    </dl>
  </section>
  <section class="card" id="breakers">
    <h2>Circuit breakers <small>of live processes</small></h2>
    <p class="problem"></p>
    <ul></ul>
    <p class="empty">none registered</p>
  </section>
  <section class="card wide" id="schedules">
    <h2>Schedules</h2>
    <p class="problem"></p>
    <table>
      <thead><tr><th>schedule</th><th>timing</th><th>next tick</th><th>last tick</th><th>fired</th><th>given up</th><th>state</th><th>run by hand</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty">none registered</p>
  </section>
  <section class="card wide" id="latency">
    <h2>HTTP latency <small>last minute</small></h2>
    <table>
      <thead><tr><th>route</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>requests</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty">no requests yet</p>
  </section>
</main>
</body>
</html>
`;

export const dashboardCss = `:root {
  color-scheme: light;
  --ink: #1d2430; --muted: #5b6577; --line: #dfe3ea; --card: #fff; --page: #f3f5f8;
  --ok: #1f7a3f; --warn: #a15c00; --bad: #b3261e;
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink); }
header { display: flex; align-items: baseline; gap: 1rem; padding: 1rem 1.5rem; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 .75rem; }
h2 small { color: var(--muted); font-weight: normal; }
.updated { margin-left: auto; color: var(--muted); font-size: .85rem; }
.status { font-size: .8rem; padding: .1rem .6rem; border-radius: 1rem; background: var(--line); }
.status[data-state="live"] { background: #dcf3e3; color: var(--ok); }
.status[data-state="stale"], .status[data-state="reconnecting"] { background: #fde8e6; color: var(--bad); }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 1rem; padding: 1.5rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1rem 1.25rem; min-width: 0; overflow-x: auto; }
/* Two grid columns for the queues' four figures where the page is wide enough for them. */
@media (min-width: 1100px) { #queues { grid-column: span 2; } }
.card.wide { grid-column: 1 / -1; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { color: var(--muted); font-weight: 500; font-size: .85rem; }
dl { margin: 0; display: grid; grid-template-columns: 1fr 1fr; gap: .75rem; }
dt { color: var(--muted); font-size: .85rem; }
dd { margin: 0; font-size: 1.5rem; font-variant-numeric: tabular-nums; }
ul { list-style: none; margin: 0; padding: 0; }
li { display: flex; justify-content: space-between; align-items: baseline; padding: .3rem 0; border-bottom: 1px solid var(--line); }
small { color: var(--muted); font-weight: normal; }
li small { display: block; font-size: .8rem; }
td small { margin-left: .4rem; }
.state { font-weight: 600; }
.state[data-state="closed"], .state[data-state="live"] { color: var(--ok); }
.state[data-state="stale"] { color: var(--bad); }
tr[data-state="stopped"] td { color: var(--muted); }
/* A part that is not ok stands out on its process's row; the ok ones are a count beneath. */
#processes th:last-child, td.parts { text-align: left; }
td.parts { white-space: normal; min-width: 16rem; }
td.parts small.known { display: block; margin: 0; font-size: .8rem; }
.part { color: var(--bad); }
.part .error { font-size: .85rem; }
td.parts[data-known="last"] .part { color: var(--muted); }
td.parts .ok { color: var(--muted); font-size: .85rem; }
.state[data-state="half-open"] { color: var(--warn); }
.state[data-state="open"], .state[data-state="isolated"] { color: var(--bad); }
.state[data-state="failing"] { color: var(--bad); }
.state[data-state="due"] { color: var(--warn); }
.by-hand[data-state="pending"] { color: var(--warn); }
.by-hand[data-state="failed"] { color: var(--bad); }
tr[data-state="paused"] td { color: var(--muted); }
.bad { color: var(--bad); }
.attention dd:not(.bad) { color: var(--ok); }
.empty, .problem { color: var(--muted); margin: 0; }
.problem { color: var(--bad); }
.problem:empty, .empty[hidden] { display: none; }
.card.unavailable dl, .card.unavailable table, .card.unavailable ul { opacity: .35; }
/* The processes card dims row by row: its own process's row is current, read now rather than from the table that failed. */
#processes.unavailable table { opacity: 1; }
#processes.unavailable thead, #processes.unavailable tbody tr:not([data-current]) { opacity: .35; }
`;
