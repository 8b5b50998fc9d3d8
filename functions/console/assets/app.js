// The Centaur web console: plain JavaScript, no framework, no build step, nothing loaded
// from anywhere but this API.
//
// The API key the operator types lives in the variable `apiKey` and nowhere else: nothing
// the browser would keep (no web storage). Reloading or closing the tab forgets it.
// Everything the API says is put on the page as text (textContent), never parsed as HTML.
'use strict';

let apiKey = null;
let signedIn = false;
let current = null; // the view on screen: its timers and requests stop when it is left

const TERMINAL = new Set(['completed', 'failed_permanent', 'cancelled']);
const HARNESSES = ['echo', 'codex', 'claude-code', 'amp', 'pi-mono'];

// ---------------------------------------------------------------- page helpers

/** `h('a', {href: '#/x', class: 'y'}, 'text', childNode)`: an element; text stays text. */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const byId = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function clip(text, max) {
  const value = String(text ?? '');
  return value.length > max ? value.slice(0, max) + '…' : value;
}

function compact(value) {
  if (value === undefined || value === null) return '';
  return clip(typeof value === 'string' ? value : JSON.stringify(value), 300);
}

function tokens(usage) {
  if (!usage || (usage.input_tokens == null && usage.output_tokens == null)) return '—';
  return `${usage.input_tokens ?? 0} in · ${usage.output_tokens ?? 0} out`;
}

function badge(status) {
  const value = status || 'unknown';
  return h('span', { class: `badge status-${value.replace(/[^a-z_]/gi, '')}`, 'data-status': value }, value);
}

function yesNo(value) {
  return h('span', { class: `badge ${value ? 'status-completed' : 'status-failed_permanent'}` }, value ? 'yes' : 'no');
}

function card(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

/** A table: `columns` is `[[title, row => cell], …]`. */
function table(columns, rows, rowProps) {
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', {}, title)))),
    h('tbody', {}, rows.map((row) =>
      h('tr', rowProps ? rowProps(row) : {}, columns.map(([, cell]) => h('td', {}, cell(row)))))));
}

/** A definition list of `[name, value]` pairs (falsy pairs skipped). */
function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs.filter(Boolean).map(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error.message || String(error));
}

// ---------------------------------------------------------------- the API

/** One request to the API: `{status, ok, body}`; status 0 when it did not answer. */
async function request(method, path, body, { withKey = true, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (withKey && apiKey) headers['X-Api-Key'] = apiKey;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    return { status: 0, ok: false, body: { message: `the API did not answer (${err.message})` } };
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: clip(text, 300) };
  }
  return { status: response.status, ok: response.ok, body: parsed };
}

/** `401 Invalid API key`, `409 THREAD_FAILURE_LOOP: …`: what went wrong, in one line. */
function describe({ status, body }) {
  const b = body || {};
  const text = b.message || b.detail || b.error || 'no details';
  if (!status) return text;
  return `${status}${b.code ? ' ' + b.code : ''}: ${text}`;
}

class ApiFailure extends Error {
  constructor(answer) {
    super(describe(answer));
    this.status = answer.status;
  }
}

/** A request whose failure is an exception; a refused key signs the tab out. */
async function api(method, path, body, options) {
  const answer = await request(method, path, body, options);
  if (answer.status === 401 && signedIn) {
    showSignIn(`The API no longer accepts this tab: ${describe(answer)}`);
  }
  if (!answer.ok) throw new ApiFailure(answer);
  return answer.body;
}

// ---------------------------------------------------------------- signing in

function showSignInError(message) {
  const box = byId('sign-in-error');
  box.textContent = message || '';
  box.hidden = !message;
}

async function showSignIn(message) {
  signedIn = false;
  apiKey = null;
  stopView();
  byId('view').replaceChildren();
  byId('nav').hidden = true;
  byId('sign-out').hidden = true;
  byId('who').textContent = '';
  byId('local-operator').hidden = true;
  byId('sign-in').hidden = false;
  showSignInError(message);
  byId('api-key').focus();
  // Without a key the API answers only its own machine's operator (the loopback rule).
  const probe = await request('GET', '/agent/threads?limit=1', undefined, { withKey: false });
  if (signedIn) return;
  byId('local-operator').hidden = probe.status === 401 || probe.status === 0;
  if (probe.status === 0 && !message) showSignInError(describe(probe));
}

async function signInWithKey(event) {
  event.preventDefault();
  const input = byId('api-key');
  const key = input.value.trim();
  input.value = '';
  if (!key) {
    showSignInError('Type an API key, or continue without one.');
    return;
  }
  apiKey = key;
  const check = await request('GET', '/agent/threads?limit=1');
  if (check.status === 401 || check.status === 0) {
    apiKey = null;
    showSignInError(describe(check));
    return;
  }
  // 403 is a valid key without agent scope: the views it may not open say so themselves.
  enter(key);
}

function enter(key) {
  apiKey = key;
  signedIn = true;
  byId('sign-in').hidden = true;
  showSignInError(null);
  byId('nav').hidden = false;
  byId('sign-out').hidden = false;
  byId('who').textContent = key ? `API key ${key.slice(0, 8)}…` : 'local operator (no key)';
  route();
}

// ---------------------------------------------------------------- views and routing

function stopView() {
  if (!current) return;
  current.alive = false;
  current.controller.abort();
  current.timers.forEach(clearInterval);
  current = null;
}

function newView() {
  const view = { alive: true, controller: new AbortController(), timers: [] };
  view.signal = view.controller.signal;
  view.every = (ms, fn) => view.timers.push(setInterval(() => view.alive && fn(), ms));
  return view;
}

/** Fills `container` with what `render(signal)` returns, now and every `ms` (0: once). */
function live(view, container, ms, render) {
  container.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const nodes = await render(view.signal);
      if (view.alive) container.replaceChildren(...[nodes].flat());
    } catch (err) {
      if (view.alive && err.name !== 'AbortError') container.replaceChildren(errorBox(err));
    } finally {
      busy = false;
    }
  }
  load();
  if (ms) view.every(ms, load);
  return load;
}

const ROUTES = [
  [/^#\/threads\/(.+)$/, 'threads', (root, view, key) => threadView(root, view, key)],
  [/^#\/executions\/([^/]+)$/, 'threads', (root, view, id) => executionView(root, view, id)],
  [/^(?:#\/?(?:threads)?)?$/, 'threads', (root, view) => threadsView(root, view)],
  [/^#\/health$/, 'health', (root, view) => healthView(root, view)],
  [/^#\/pool$/, 'pool', (root, view) => poolView(root, view)],
  [/^#\/usage$/, 'usage', (root, view) => usageView(root, view)],
  [/^#\/keys$/, 'keys', (root, view) => keysView(root, view)],
  [/^#\/audit$/, 'audit', (root, view) => auditView(root, view)],
];

function route() {
  if (!signedIn) return;
  stopView();
  const root = byId('view');
  root.replaceChildren();
  const view = (current = newView());
  const hash = location.hash;
  for (const [pattern, section, show] of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    for (const link of document.querySelectorAll('#nav a')) {
      link.classList.toggle('active', link.dataset.view === section);
    }
    let argument;
    try {
      argument = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
    } catch {
      root.append(errorBox(new Error('This address is not valid.')));
      return;
    }
    show(root, view, argument);
    return;
  }
  root.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/threads' }, 'Threads')));
}

// ---------------------------------------------------------------- threads

function newTurnForm(threadKey) {
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const keyInput = threadKey ? null : h('input', {
    id: 'turn-thread', required: true, spellcheck: 'false', value: `console-${Date.now().toString(36)}`,
  });
  const harness = threadKey ? null : h('select', { id: 'turn-harness' },
    h('option', { value: '' }, 'server default'), HARNESSES.map((name) => h('option', { value: name }, name)));
  const message = h('textarea', { id: 'turn-message', rows: 4, required: true, placeholder: 'What should the agent do?' });
  const submit = h('button', { type: 'submit', id: 'run-turn' }, 'Run turn');
  async function run(event) {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    const body = { thread_key: threadKey || keyInput.value.trim(), message: message.value };
    if (harness && harness.value) body.harness = harness.value;
    try {
      const answer = await api('POST', '/agent/execute', body);
      location.hash = `#/executions/${enc(answer.execution_id)}`;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }
  return h('form', { class: 'card turn-form', id: 'new-turn', onsubmit: run },
    h('h2', {}, threadKey ? 'New turn in this thread' : 'New turn'),
    keyInput && h('div', { class: 'row' },
      h('label', {}, 'Thread key', keyInput),
      h('label', {}, 'Harness', harness)),
    h('label', {}, 'Message', message),
    h('div', { class: 'row' }, submit, h('span', { class: 'muted' }, 'Starts the turn with POST /agent/execute and opens it.')),
    error);
}

function threadLink(key) {
  return h('a', { href: `#/threads/${enc(key)}` }, h('code', {}, key));
}

function executionLink(id) {
  return h('a', { href: `#/executions/${enc(id)}` }, h('code', {}, id));
}

function threadsView(root, view) {
  const list = h('div', { id: 'threads' });
  root.append(h('h1', {}, 'Threads'), newTurnForm(null), card('Recent threads, newest first', list));
  live(view, list, 5000, async (signal) => {
    const { threads } = await api('GET', '/agent/threads?limit=100', undefined, { signal });
    if (!threads.length) return h('p', { class: 'muted' }, 'No threads yet: start one with the form above.');
    return table([
      ['Thread', (t) => threadLink(t.thread_key)],
      ['Harness', (t) => t.harness],
      ['Assignment', (t) => t.state],
      ['Latest turn', (t) => t.latest_execution_id
        ? [badge(t.latest_execution_status), ' ', executionLink(t.latest_execution_id)] : '—'],
      ['Tokens', (t) => tokens(t)],
      ['Updated', (t) => when(t.updated_at)],
    ], threads, (t) => ({ 'data-thread': t.thread_key }));
  });
}

function threadView(root, view, threadKey) {
  const list = h('div', { id: 'executions' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/threads' }, 'Threads'), ' / ', threadKey),
    h('h1', {}, 'Thread ', h('code', {}, threadKey)),
    newTurnForm(threadKey),
    card('Executions, newest first', list));
  live(view, list, 3000, async (signal) => {
    const { executions } = await api('GET', `/agent/threads/${enc(threadKey)}/executions?limit=50`, undefined, { signal });
    if (!executions.length) return h('p', { class: 'muted' }, 'No executions in this thread.');
    return table([
      ['Execution', (x) => executionLink(x.execution_id)],
      ['Status', (x) => badge(x.status)],
      ['Terminal reason', (x) => x.terminal_reason || '—'],
      ['Harness', (x) => x.harness],
      ['Created', (x) => when(x.created_at)],
      ['Completed', (x) => when(x.completed_at)],
      ['Tokens', (x) => tokens(x.usage)],
      ['Error', (x) => x.error_text ? h('span', { class: 'bad' }, clip(x.error_text, 120)) : ''],
    ], executions, (x) => ({ 'data-execution': x.execution_id }));
  });
}

// ---------------------------------------------------------------- one execution

function executionView(root, view, id) {
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '#/threads' }, 'Threads'), ' / …');
  const summary = h('section', { class: 'card summary', id: 'summary' }, h('p', { class: 'muted' }, 'Loading…'));
  const trail = h('ol', { class: 'trail', id: 'trail' });
  const stream = h('span', { class: 'stream-state', id: 'stream-state' }, 'not connected');
  const notice = h('p', { class: 'error', role: 'alert', hidden: true });
  root.append(crumbs, h('h1', {}, 'Execution ', h('code', {}, id)), notice, summary,
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Event trail'), stream), trail));

  async function cancel() {
    if (!window.confirm(`Cancel execution ${id}?`)) return;
    notice.hidden = true;
    try {
      await api('POST', `/agent/executions/${enc(id)}/cancel`, {});
      await refresh();
    } catch (err) {
      notice.textContent = `Cancel failed: ${err.message}`;
      notice.hidden = false;
    }
  }

  /** Shows the execution as the API has it now (`withEvents`: its trail so far too). */
  async function refresh(withEvents) {
    try {
      const query = withEvents ? '' : '?events=false';
      const x = await api('GET', `/agent/executions/${enc(id)}${query}`, undefined, { signal: view.signal });
      if (!view.alive) return null;
      crumbs.replaceChildren(h('a', { href: '#/threads' }, 'Threads'), ' / ', threadLink(x.thread_key), ' / ', id);
      summary.replaceChildren(...renderSummary(x, cancel));
      return x;
    } catch (err) {
      if (view.alive && err.name !== 'AbortError') summary.replaceChildren(errorBox(err));
      return null;
    }
  }

  function onEvent(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = { raw: event.data };
    }
    appendEvent(trail, event, data);
    const ended = event.event === 'execution_state' && TERMINAL.has(data.status);
    if (event.event === 'execution_state' || event.event === 'execution_started' ||
        (event.event === 'harness_event' && data.type === 'usage')) {
      refresh();
    }
    return ended;
  }

  const setState = (text, state) => {
    stream.textContent = text;
    stream.dataset.state = state;
  };
  // The trail so far comes with the execution; a running one is then followed live from
  // the last event shown.
  refresh(true).then((x) => {
    if (!x || !view.alive) return;
    let after = 0;
    for (const e of x.events || []) {
      after = Math.max(after, e.thread_seq || 0);
      appendEvent(trail, { id: String(e.thread_seq ?? ''), event: e.event_kind, data: JSON.stringify(e.event_json) },
        e.event_json || {});
    }
    if (TERMINAL.has(x.status)) setState('finished: the whole trail is shown', 'ended');
    else follow(view, x.thread_key, id, after, onEvent, setState);
  });
}

function renderSummary(x, cancel) {
  const terminal = TERMINAL.has(x.status);
  const head = h('div', { class: 'status-line' },
    h('span', { class: 'big', id: 'exec-status' }, badge(x.status)),
    x.terminal_reason && h('span', { class: 'reason', id: 'exec-reason' }, x.terminal_reason),
    !terminal && h('button', {
      type: 'button', id: 'cancel', class: 'danger', onclick: cancel,
      disabled: x.status === 'cancel_requested',
    }, x.status === 'cancel_requested' ? 'Cancel requested…' : 'Cancel turn'));
  const error = x.error_text && h('div', { class: 'error-box', id: 'exec-error' },
    h('strong', {}, 'Error'), h('pre', {}, x.error_text));
  const result = x.result_text && h('div', { class: 'result', id: 'exec-result' },
    h('strong', {}, 'Result'), h('pre', {}, x.result_text));
  return [head, error, result, fields([
    ['Thread', threadLink(x.thread_key)],
    ['Harness', x.harness || '—'],
    x.usage && ['Usage', h('span', { id: 'exec-usage' }, tokens(x.usage))],
    ['Created', when(x.created_at)],
    ['Started', when(x.started_at)],
    ['Completed', when(x.completed_at)],
    ['Updated', when(x.updated_at)],
    x.agent_thread_id && ['Harness session', h('code', {}, x.agent_thread_id)],
    x.delivery && ['Delivery', (x.delivery && x.delivery.platform) || compact(x.delivery)],
    ['Assignment generation', String(x.assignment_generation ?? '—')],
  ])].filter(Boolean);
}

/** What one event says, for the trail: `{label, text, detail?, bad?}`. */
function describeEvent(kind, d) {
  switch (kind) {
    case 'execution_state':
      return {
        label: 'state',
        text: [d.status, d.terminal_reason && `(${d.terminal_reason})`, d.error_text && `— ${d.error_text}`]
          .filter(Boolean).join(' '),
        bad: d.status === 'failed_permanent',
      };
    case 'execution_started':
      return { label: 'started', text: `${d.harness || ''} in sandbox ${d.sandbox_id || '?'}, queued ${d.queue_delay_ms ?? '?'} ms` };
    case 'harness_event':
      return describeHarnessEvent(d);
    default:
      return { label: kind.replace(/_/g, ' '), text: compact(d) };
  }
}

function describeHarnessEvent(d) {
  switch (d.type) {
    case 'assistant.delta':
    case 'assistant.message':
      return { label: 'assistant', text: d.text || '' };
    case 'tool.call':
      return { label: 'tool call', text: `→ ${d.name || '?'} ${compact(d.input)}` };
    case 'tool.result':
      return { label: d.is_error ? 'tool error' : 'tool result', text: `← ${compact(d.output)}`, bad: !!d.is_error };
    case 'command':
      return {
        label: 'command',
        text: `$ ${d.command || ''}  [${d.exit_code == null ? 'no exit code' : 'exit ' + d.exit_code}]`,
        detail: d.output ? clip(d.output, 2000) : null,
        bad: d.exit_code != null && d.exit_code !== 0,
      };
    case 'usage':
      return { label: 'usage', text: tokens(d) };
    case 'heartbeat':
      return { label: 'heartbeat', text: 'the harness is alive (1 heartbeat)' };
    case 'error':
      return { label: 'error', text: `${d.kind ? '(' + d.kind + ') ' : ''}${d.message || ''}`, bad: true };
    case 'turn.started':
      return { label: 'turn started', text: d.cli_version ? `${d.harness || ''} CLI ${d.cli_version}` : (d.harness || '') };
    case 'turn.done':
      return { label: 'turn done', text: [d.status, d.error].filter(Boolean).join(': '), bad: !!d.error };
    default: {
      const { type, seq, execution_id, ...rest } = d;
      return { label: type || 'harness', text: compact(rest) };
    }
  }
}

function appendEvent(trail, event, data) {
  const type = event.event === 'harness_event' ? data.type : event.event;
  const last = trail.lastElementChild;
  const lastType = last && last.dataset.type;
  // Streamed assistant text reads as one paragraph, not a row per fragment; the whole
  // message that follows it says the same again, and heartbeats in a row are one line.
  if (type === 'assistant.delta' && lastType === 'assistant.delta') {
    last.querySelector('.text').textContent += data.text || '';
    return;
  }
  if (type === 'assistant.message' && trail.dataset.streamed === 'yes') {
    trail.dataset.streamed = 'no';
    return;
  }
  if (type === 'heartbeat' && lastType === 'heartbeat') {
    const beats = Number(last.dataset.beats) + 1;
    last.dataset.beats = String(beats);
    last.querySelector('.text').textContent = `the harness is alive (${beats} heartbeats)`;
    return;
  }
  if (type === 'assistant.delta') trail.dataset.streamed = 'yes';
  if (type === 'assistant.message') trail.dataset.streamed = 'no';
  const { label, text, detail, bad } = describeEvent(event.event, data);
  trail.append(h('li', {
    class: `event kind-${event.event}${bad ? ' bad' : ''}`, 'data-type': type, 'data-seq': event.id,
    'data-state': event.event === 'execution_state' ? data.status : null,
    'data-beats': type === 'heartbeat' ? '1' : null,
    title: clip(event.data, 2000),
  },
  h('span', { class: 'seq' }, event.id ? `#${event.id}` : ''),
  h('span', { class: 'kind' }, label),
  h('span', { class: 'text' }, text),
  detail && h('pre', { class: 'detail' }, detail)));
}

/**
 * Follows an execution's events after `after` (a thread_seq):
 * `GET /agent/threads/{tk}/events?execution_id=…&after_event_id=…` read with
 * fetch (so the key goes in a header, which the browser's own SSE client cannot send),
 * parsed as text/event-stream here, resumed after the last event id when the connection
 * drops, until `onEvent` says the execution ended or the view is left.
 */
async function follow(view, threadKey, executionId, after, onEvent, setState) {
  let failures = 0;
  while (view.alive) {
    setState(after ? 'reconnecting…' : 'connecting…', 'pending');
    const headers = { Accept: 'text/event-stream' };
    if (apiKey) headers['X-Api-Key'] = apiKey;
    const query = `execution_id=${enc(executionId)}${after ? `&after_event_id=${after}` : ''}`;
    try {
      const response = await fetch(`/agent/threads/${enc(threadKey)}/events?${query}`, {
        headers, signal: view.signal, cache: 'no-store', credentials: 'omit',
      });
      if (!response.ok) {
        const answer = { status: response.status, body: await response.json().catch(() => null) };
        if (response.status === 401 && signedIn) {
          showSignIn(`The API no longer accepts this tab: ${describe(answer)}`);
          return;
        }
        setState(`stream refused: ${describe(answer)}`, 'error');
        if (response.status < 500) return; // asking again will not change the answer
      } else {
        setState('live', 'live');
        failures = 0;
        for await (const event of sseEvents(response.body)) {
          if (!view.alive) return;
          if (event.id) after = Number(event.id) || after;
          if (onEvent(event)) {
            setState('ended: the execution finished', 'ended');
            return;
          }
        }
      }
    } catch (err) {
      if (err.name === 'AbortError' || !view.alive) return;
      setState(`connection lost (${err.message})`, 'error');
    }
    failures += 1;
    await sleep(Math.min(500 * 2 ** failures, 10000));
  }
}

/** The events of a text/event-stream body: `{id, event, data}` each. */
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = { id: '', event: 'message', data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        let line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (event.data.length) yield { id: event.id, event: event.event, data: event.data.join('\n') };
          event = { id: '', event: 'message', data: [] };
        } else if (!line.startsWith(':')) { // a line starting with ':' is a keep-alive comment
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') event.data.push(value);
          else if (field === 'event') event.event = value;
          else if (field === 'id') event.id = value;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---------------------------------------------------------------- health, pool, usage

function healthView(root, view) {
  const ready = h('div', { id: 'ready' });
  const tools = h('div', { id: 'tools' });
  root.append(h('h1', {}, 'Health & tools'), card('Readiness (GET /health/ready)', ready),
    card('Harnesses and integrations (GET /health/tools)', tools));
  live(view, ready, 5000, async (signal) => {
    // 503 "degraded" is an answer to show, not a failure.
    const answer = await request('GET', '/health/ready', undefined, { signal });
    if (answer.status === 0 || !answer.body || !answer.body.status) throw new ApiFailure(answer);
    const b = answer.body;
    return fields([
      ['Status', badge(b.status === 'ok' ? 'ok' : b.status)],
      ['Database', yesNo(b.database)],
      ['Queue', yesNo(b.queue)],
      b.error && ['Error', h('span', { class: 'bad' }, b.error)],
    ]);
  });
  live(view, tools, 0, async (signal) => {
    const b = await api('GET', '/health/tools', undefined, { signal });
    const entries = [...(b.failed || []), ...(b.loaded || [])];
    return [
      h('p', {}, `${b.summary?.loaded_count ?? 0} ready, ${b.summary?.failed_count ?? 0} not ready`),
      table([
        ['Name', (t) => h('strong', {}, t.name)],
        ['Kind', (t) => t.kind],
        ['Ready', (t) => yesNo(t.ready)],
        ['Detail', (t) => t.detail],
      ], entries),
    ];
  });
}

function poolView(root, view) {
  const pool = h('div', { id: 'pool' });
  root.append(h('h1', {}, 'Warm pool'), card('Pre-started sandboxes (GET /agent/pool)', pool));
  live(view, pool, 5000, async (signal) => {
    const p = await api('GET', '/agent/pool', undefined, { signal });
    return [
      fields([
        ['Enabled', yesNo(p.enabled)],
        ['Target size', String(p.target_size ?? '—')],
        ['Harness', p.harness || '—'],
        ['Ready', String(p.ready ?? 0)],
        ['Claimed', String(p.claimed ?? 0)],
        ['Failed', String(p.failed ?? 0)],
      ]),
      (p.sandboxes || []).length
        ? table([
          ['Sandbox', (s) => h('code', {}, s.sandbox_id)],
          ['Harness', (s) => s.harness],
          ['State', (s) => badge(s.state)],
          ['Claimed by', (s) => s.claimed_by_thread ? threadLink(s.claimed_by_thread) : '—'],
          ['Created', (s) => when(s.created_at)],
          ['Claimed', (s) => when(s.claimed_at)],
        ], p.sandboxes)
        : h('p', { class: 'muted' }, 'No warm sandboxes.'),
    ];
  });
}

function usageView(root, view) {
  const since = h('select', { id: 'usage-since' },
    [['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days'], ['', 'everything retained']]
      .map(([value, label]) => h('option', { value }, label)));
  const report = h('div', { id: 'usage' });
  root.append(h('h1', {}, 'Token usage'),
    card('Tokens per harness (GET /agent/usage)', h('label', { class: 'inline' }, 'Since ', since), report));
  const load = live(view, report, 0, async (signal) => {
    const query = since.value ? `?since=${enc(since.value)}` : '';
    const u = await api('GET', `/agent/usage${query}`, undefined, { signal });
    if (!(u.harnesses || []).length) return h('p', { class: 'muted' }, 'No usage reported in this window.');
    return table([
      ['Harness', (r) => r.harness],
      ['Input tokens', (r) => String(r.input_tokens)],
      ['Output tokens', (r) => String(r.output_tokens)],
      ['Executions', (r) => String(r.executions)],
    ], [...u.harnesses, { harness: 'total', ...u.total }]);
  });
  since.addEventListener('change', load);
}

// ---------------------------------------------------------------- API keys (admin)

function keysView(root, view) {
  const list = h('div', { id: 'keys' });
  const created = h('div', { id: 'created-key' });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const name = h('input', { id: 'key-name', required: true, placeholder: 'e.g. ci-bot', spellcheck: 'false' });
  const scopes = ['agent', 'admin', '*'].map((scope) =>
    h('input', { type: 'checkbox', value: scope, checked: scope === 'agent', 'data-scope': scope }));
  async function create(event) {
    event.preventDefault();
    error.hidden = true;
    const chosen = scopes.filter((box) => box.checked).map((box) => box.value);
    try {
      const k = await api('POST', '/admin/api-keys', { name: name.value.trim(), scopes: chosen });
      name.value = '';
      created.replaceChildren(h('div', { class: 'secret' },
        h('p', {}, h('strong', {}, `Key "${k.name}" created. `), 'Copy it now: it is shown this once and never again.'),
        h('code', { id: 'new-key' }, k.key)));
      load();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }
  async function revoke(key) {
    if (!window.confirm(`Revoke the key "${key.name}" (${key.key_prefix})? Whoever uses it is refused at once.`)) return;
    try {
      await api('DELETE', `/admin/api-keys/${enc(key.id)}`);
      load();
    } catch (err) {
      error.textContent = `Revoke failed: ${err.message}`;
      error.hidden = false;
    }
  }
  root.append(h('h1', {}, 'API keys'),
    h('form', { class: 'card', id: 'new-key-form', onsubmit: create },
      h('h2', {}, 'New key'),
      h('div', { class: 'row' },
        h('label', {}, 'Name', name),
        h('fieldset', {}, h('legend', {}, 'Scopes'),
          scopes.map((box) => h('label', { class: 'inline' }, box, ' ', box.value)))),
      h('button', { type: 'submit' }, 'Create key'), error, created),
    card('Keys (the key itself is never shown again, only its prefix)', list));
  const load = live(view, list, 0, async (signal) => {
    const { keys } = await api('GET', '/admin/api-keys', undefined, { signal });
    if (!keys.length) return h('p', { class: 'muted' }, 'No API keys.');
    return table([
      ['Name', (k) => h('strong', {}, k.name)],
      ['Prefix', (k) => h('code', {}, k.key_prefix)],
      ['Scopes', (k) => (k.scopes || []).join(', ')],
      ['Created by', (k) => k.created_by || '—'],
      ['Created', (k) => when(k.created_at)],
      ['State', (k) => k.active ? badge('active') : [badge('revoked'), ' ', when(k.revoked_at)]],
      ['', (k) => k.active && h('button', { type: 'button', class: 'danger small', onclick: () => revoke(k) }, 'Revoke')],
    ], keys, (k) => ({ 'data-key': k.name }));
  });
}

// ---------------------------------------------------------------- audit log (admin)

const AUDIT_PAGE = 50;

function auditView(root, view) {
  const principal = h('input', {
    id: 'audit-principal', spellcheck: 'false', placeholder: 'key id or name, local, sandbox id, T…:U…',
  });
  const since = h('select', { id: 'audit-since' },
    [['', 'everything retained'], ['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days']]
      .map(([value, label]) => h('option', { value }, label)));
  const list = h('div', { id: 'audit' });
  const more = h('button', { type: 'button', id: 'audit-more', class: 'quiet', hidden: true }, 'Older entries');
  let before = null; // the cursor of the next (older) page
  let rows = [];
  const query = () => {
    const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    if (principal.value.trim()) params.set('principal', principal.value.trim());
    if (since.value) params.set('since', since.value);
    if (before !== null) params.set('before', String(before));
    return `/admin/audit?${params}`;
  };
  const render = () => rows.length
    ? table([
      ['When', (e) => when(e.at)],
      ['Action', (e) => h('strong', {}, e.action)],
      ['Principal', (e) => [badge(e.principal_kind), ' ', e.principal_name]],
      ['Principal id', (e) => h('code', {}, e.principal_id)],
      ['Thread', (e) => e.thread_key ? threadLink(e.thread_key) : '—'],
      ['Execution', (e) => e.execution_id ? executionLink(e.execution_id) : '—'],
      ['Key', (e) => e.key_id ? h('code', {}, e.key_id) : '—'],
      ['Peer', (e) => e.peer || '—'],
    ], rows, (e) => ({ 'data-action': e.action, 'data-principal-kind': e.principal_kind }))
    : h('p', { class: 'muted' }, 'No audit entries match.');
  const load = live(view, list, 0, async (signal) => {
    before = null;
    const page = await api('GET', query(), undefined, { signal });
    rows = page.entries || [];
    before = page.next_before ?? null;
    more.hidden = before === null;
    return render();
  });
  async function older() {
    try {
      const page = await api('GET', query(), undefined, { signal: view.signal });
      rows = rows.concat(page.entries || []);
      before = page.next_before ?? null;
      more.hidden = before === null;
      list.replaceChildren(render());
    } catch (err) {
      if (view.alive && err.name !== 'AbortError') list.replaceChildren(errorBox(err));
    }
  }
  more.addEventListener('click', older);
  root.append(h('h1', {}, 'Audit log'),
    h('form', { class: 'card', id: 'audit-filter', onsubmit: (event) => { event.preventDefault(); load(); } },
      h('h2', {}, 'Who changed what (GET /admin/audit), newest first'),
      h('div', { class: 'row' },
        h('label', {}, 'Principal', principal),
        h('label', { class: 'inline' }, 'Since ', since),
        h('button', { type: 'submit' }, 'Filter'))),
    card('Entries', list, more));
  since.addEventListener('change', load);
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  byId('sign-in-form').addEventListener('submit', signInWithKey);
  byId('continue-local').addEventListener('click', () => enter(null));
  byId('sign-out').addEventListener('click', () => showSignIn('Signed out: the key is forgotten.'));
  window.addEventListener('hashchange', route);
  showSignIn();
});
