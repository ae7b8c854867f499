// The page's script, plain browser JavaScript served as it is written (no build step). It is
// kept free of backticks and `${` so it can live in this template literal unescaped. Values
// reach the page through textContent only: route, breaker and host names are never parsed as HTML.

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

  function processLabel(p) {
    return p.roles.join(' + ') + ' · ' + p.host + ':' + p.pid;
  }

  function plural(count, word) {
    return count + ' ' + word + (count === 1 ? '' : 's');
  }

  // One line for a part that is not ok: its name, what it does not reach and since when, the
  // error's code; the details in its title.
  function partProblem(name, h, at) {
    var line = document.createElement('div');
    line.className = 'part';
    line.dataset.part = name;
    line.dataset.status = h.status;
    var label = document.createElement('strong');
    label.className = 'name';
    label.textContent = name;
    var what = document.createElement('span');
    what.className = 'what';
    line.append(label, ' ', what);
    if (h.status !== 'failing') {
      what.textContent = 'not running (' + h.state + ')';
      return line;
    }
    what.textContent = h.dependency + ' failing since ' + relative(h.since, at);
    if (h.error) {
      var code = document.createElement('code');
      code.className = 'error';
      code.textContent = h.error;
      line.append(' ', code);
    }
    line.title = [
      h.failures > 0 ? plural(h.failures, 'failure') + ' in a row' : 'no answer: a call hangs',
      h.during ? 'during ' + h.during : '',
      'since ' + h.since,
      h.lastContactAt ? 'last answer ' + h.lastContactAt : 'no answer since it started',
    ].filter(Boolean).join(', ');
    return line;
  }

  // Not running yet is no problem: a process writes its row at the start of its start, before
  // the parts after its heartbeat have started, and again a beat later.
  function starting(h) {
    return h.status === 'not-running' && (h.state === 'idle' || h.state === 'starting');
  }

  // The parts that are failing or not running each stand out; the ok ones are a count. A process
  // that is not live (stale or stopped) shows what its last beat wrote, marked as such.
  function renderParts(td, p, at) {
    var live = p.self || p.status === 'live';
    td.dataset.known = live ? 'live' : 'last';
    var names = Object.keys(p.parts);
    if (!live && names.length > 0) {
      var known = document.createElement('small');
      known.className = 'known';
      known.textContent = 'last known';
      known.title = 'as its last beat wrote them, ' + p.lastSeenAt;
      td.appendChild(known);
    }
    var ok = 0;
    var waiting = 0;
    names.forEach(function (name) {
      var h = p.parts[name];
      if (h.status === 'ok') ok++;
      else if (starting(h)) waiting++;
      else td.appendChild(partProblem(name, h, at));
    });
    var count = document.createElement('div');
    count.className = 'ok';
    count.dataset.ok = String(ok);
    var counts = [];
    if (ok > 0 || names.length > waiting) counts.push(plural(ok, 'part') + ' ok');
    if (waiting > 0) counts.push(waiting + ' starting');
    count.textContent = names.length === 0 ? '—' : counts.join(' · ');
    if (names.length === 0) count.title = 'it reports no parts';
    td.appendChild(count);
  }

  // Durations are between the snapshot's instant and the rows' times, never the browser's clock.
  // The row of the process serving the page is current (it knows itself now, table or not): it
  // stays clear when the card dims for a table that cannot be read.
  function renderProcesses(processes, at) {
    var body = document.querySelector('#processes tbody');
    if (!processes) {
      // The rows left are the last snapshot's, its own too: none is current any more.
      body.querySelectorAll('tr[data-current]').forEach(function (row) { delete row.dataset.current; });
      return;
    }
    var now = Date.parse(at);
    body.replaceChildren();
    processes.forEach(function (p) {
      var row = document.createElement('tr');
      row.dataset.process = p.id;
      row.dataset.state = p.status;
      var roles = cell(row, p.roles.join(' + '), 'roles');
      if (p.self) {
        row.dataset.current = 'true';
        var mark = document.createElement('small');
        mark.textContent = 'serves this page';
        roles.appendChild(mark);
      }
      cell(row, p.host, 'host');
      cell(row, String(p.pid), 'pid');
      // A stale process was last known up when it last wrote; a stopped one until it stopped.
      var end = p.stoppedAt !== null ? Date.parse(p.stoppedAt) : p.status === 'live' ? now : Date.parse(p.lastSeenAt);
      cell(row, seconds(Math.max(0, end - Date.parse(p.startedAt)) / 1000), 'up');
      cell(row, seconds(Math.max(0, now - Date.parse(p.lastSeenAt)) / 1000) + ' ago', 'seen');
      cell(row, p.status, 'state').dataset.state = p.status;
      renderParts(cell(row, '', 'parts'), p, at);
      body.appendChild(row);
    });
    document.querySelector('#processes .empty').hidden = processes.length > 0;
  }

  function renderBreakers(breakers, processes) {
    if (breakers === null) return;
    var owners = {};
    (processes || []).forEach(function (p) { owners[p.id] = p; });
    var list = document.querySelector('#breakers ul');
    list.replaceChildren();
    breakers.forEach(function (b) {
      var item = document.createElement('li');
      item.dataset.breaker = b.name;
      if (b.process) item.dataset.process = b.process;
      var name = document.createElement('span');
      name.textContent = b.name;
      var owner = b.process ? owners[b.process] : undefined;
      if (owner) {
        var label = document.createElement('small');
        label.className = 'process';
        label.textContent = processLabel(owner);
        name.appendChild(label);
      }
      var state = document.createElement('span');
      state.className = 'state';
      state.dataset.state = b.state;
      state.textContent = b.state;
      item.append(name, state);
      list.appendChild(item);
    });
    document.querySelector('#breakers .empty').hidden = breakers.length > 0;
  }

  // Instants as the snapshot's clock gives them: how far off from its 'at', never the browser's.
  function relative(iso, at) {
    if (iso === null) return '—';
    var delta = (Date.parse(iso) - Date.parse(at)) / 1000;
    return delta >= 0 ? 'in ' + seconds(delta) : seconds(-delta) + ' ago';
  }

  // A run asked for by hand and not done yet shows until a scheduler does it; then its outcome.
  function renderRunByHand(td, s, at) {
    var last = s.lastRunByHand;
    if (s.runByHand) {
      td.textContent = 'run ' + s.runByHand.run + ' pending, asked ' + relative(s.runByHand.askedAt, at);
      td.dataset.state = 'pending';
      td.title = 'asked for at ' + s.runByHand.askedAt + '; no scheduler that defines it has done it yet';
    } else if (last) {
      td.textContent = 'run ' + last.run + ' ' + last.outcome + ' ' + relative(last.at, at);
      td.dataset.state = last.outcome;
      td.title = last.outcome === 'failed' ? last.at + ': ' + last.error : last.at;
    }
  }

  function renderSchedules(schedules, at) {
    if (!schedules) return;
    var body = document.querySelector('#schedules tbody');
    body.replaceChildren();
    schedules.forEach(function (s) {
      var row = document.createElement('tr');
      row.dataset.schedule = s.name;
      row.dataset.state = s.state;
      cell(row, s.name, 'name');
      cell(row, s.spec, 'spec');
      cell(row, relative(s.nextTick, at), 'next').title = s.nextTick;
      cell(row, relative(s.lastTick, at), 'last').title = s.lastTick || '';
      cell(row, String(s.fired), 'fired');
      cell(row, String(s.givenUp), 'given-up');
      var state = cell(row, s.state, 'state');
      state.dataset.state = s.state;
      if (s.failing) state.title = 'attempt ' + s.failing.attempts + ': ' + s.failing.error;
      renderRunByHand(cell(row, '—', 'by-hand'), s, at);
      body.appendChild(row);
    });
    document.querySelector('#schedules .empty').hidden = schedules.length > 0;
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
    renderProcesses(snapshot.processes, snapshot.at);
    renderBreakers(snapshot.breakers, snapshot.processes);
    renderSchedules(snapshot.schedules, snapshot.at);
    renderLatency(snapshot.latency);
    problem('queues', 'queues', snapshot.unavailable);
    problem('outbox', 'outbox', snapshot.unavailable);
    problem('sagas', 'sagas', snapshot.unavailable);
    problem('breakers', 'breakers', snapshot.unavailable);
    problem('processes', 'processes', snapshot.unavailable);
    problem('schedules', 'schedules', snapshot.unavailable);
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
