// The page's script, plain browser JavaScript served as it is written (no build step). It is
// kept free of backticks and `${` so it can live in this template literal unescaped. Values
// reach the page through textContent only: route and breaker names are never parsed as HTML.

export const dashboardScript = `'use strict';
(function () {
  var staleAfterMs = 5000;
  var lastMessageAt = 0;
  var statusEl = document.getElementById('status');

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function ms(value) {
    if (value < 1) return value.toFixed(2) + ' ms';
    if (value < 100) return value.toFixed(1) + ' ms';
    if (value < 10000) return Math.round(value) + ' ms';
    return (value / 1000).toFixed(1) + ' s';
  }

  function seconds(value) {
    if (value < 60) return value.toFixed(1) + ' s';
    if (value < 3600) return Math.floor(value / 60) + ' min ' + Math.round(value % 60) + ' s';
    return (value / 3600).toFixed(1) + ' h';
  }

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function cell(row, value, className) {
    var td = document.createElement('td');
    td.textContent = value;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function problem(card, part, unavailable) {
    var section = document.getElementById(card);
    var found = unavailable.filter(function (u) { return u.part === part; })[0];
    section.classList.toggle('unavailable', Boolean(found));
    section.querySelector('.problem').textContent = found ? 'unavailable: ' + found.error : '';
  }

  function renderQueues(queues) {
    var body = document.querySelector('#queues tbody');
    if (queues === null) return;
    body.replaceChildren();
    queues.forEach(function (q) {
      var row = document.createElement('tr');
      row.dataset.queue = q.name;
      cell(row, q.name);
      cell(row, String(q.depth), 'depth');
      cell(row, seconds(q.lagSeconds), 'lag');
      cell(row, String(q.deadLetters), q.deadLetters > 0 ? 'dead-letters bad' : 'dead-letters');
      body.appendChild(row);
    });
  }

  function renderOutbox(outbox) {
    if (outbox === null) return;
    text('outbox-backlog', String(outbox.backlog));
    text('outbox-oldest', outbox.backlog > 0 ? seconds(outbox.oldestUnpublishedAgeMs / 1000) : '—');
    text('outbox-parked', String(outbox.parked));
    text('outbox-published', String(outbox.published));
    document.getElementById('outbox-parked').classList.toggle('bad', outbox.parked > 0);
  }

  function renderSagas(sagas) {
    if (sagas === null) return;
    ['RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED'].forEach(function (state) {
      text('sagas-' + state, String(sagas.byState[state] || 0));
    });
    text('sagas-attention', String(sagas.needAttention));
    document.getElementById('sagas-attention').classList.toggle('bad', sagas.needAttention > 0);
  }

  function renderBreakers(breakers) {
    if (breakers === null) return;
    var list = document.querySelector('#breakers ul');
    list.replaceChildren();
    breakers.forEach(function (b) {
      var item = document.createElement('li');
      item.dataset.breaker = b.name;
      var name = document.createElement('span');
      name.textContent = b.name;
      var state = document.createElement('span');
      state.className = 'state';
      state.dataset.state = b.state;
      state.textContent = b.state;
      item.append(name, state);
      list.appendChild(item);
    });
    document.querySelector('#breakers .empty').hidden = breakers.length > 0;
  }

  function renderLatency(routes) {
    var body = document.querySelector('#latency tbody');
    body.replaceChildren();
    routes.forEach(function (r) {
      var row = document.createElement('tr');
      row.dataset.route = r.route;
      cell(row, r.route);
      cell(row, r.perSecond.toFixed(2), 'rate');
      cell(row, ms(r.p50Ms), 'p50');
      cell(row, ms(r.p95Ms), 'p95');
      cell(row, ms(r.p99Ms), 'p99');
      cell(row, String(r.count), 'count');
      body.appendChild(row);
    });
    document.querySelector('#latency .empty').hidden = routes.length > 0;
  }

  function render(snapshot) {
    lastMessageAt = Date.now();
    setStatus('live', 'live');
    var at = document.getElementById('updated');
    at.dateTime = snapshot.at;
    at.textContent = new Date(snapshot.at).toLocaleTimeString();
    renderQueues(snapshot.queues);
    renderOutbox(snapshot.outbox);
    renderSagas(snapshot.sagas);
    renderBreakers(snapshot.breakers);
    renderLatency(snapshot.latency);
    problem('queues', 'queues', snapshot.unavailable);
    problem('outbox', 'outbox', snapshot.unavailable);
    problem('sagas', 'sagas', snapshot.unavailable);
    problem('breakers', 'breakers', snapshot.unavailable);
  }

  function connect() {
    var events = new EventSource('/dashboard/events');
    events.onmessage = function (message) { render(JSON.parse(message.data)); };
    events.onerror = function () {
      setStatus('reconnecting', 'reconnecting…');
      // EventSource retries a dropped stream by itself, but gives up for good on an answer that
      // is not a stream (a 503 from a shop that is draining): start a new one then.
      if (events.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    };
  }
  connect();
  setInterval(function () {
    if (lastMessageAt > 0 && Date.now() - lastMessageAt > staleAfterMs) setStatus('stale', 'no update for a while');
  }, 1000);
})();
`;
