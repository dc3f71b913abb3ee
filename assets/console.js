/* livechat agent console. Plain JavaScript: no build step, no framework, no dependency.
 *
 * Commands go over HTTP (each answers with a status), events arrive over one WebSocket.
 * Every string that comes from the server is put into the page as text (text nodes or
 * textContent), never parsed as HTML: a visitor's `<img onerror=…>` stays text. */
(function () {
  'use strict';

  var API = '/api/v1';
  var TITLE = 'livechat console';
  var RING_EVERY = 4000; // ms between rings while a request waits for me
  var TYPING_EVERY = 2000; // ms between typing signals we send
  var STATUS = {
    bot: 'Bot', collecting: 'Bot: asking details', new: 'New', assigned: 'Assigned',
    chatting: 'Chatting', resolved: 'Resolved', ended: 'Ended', closed: 'Closed'
  };
  var REASONS = {
    already_taken: 'Taken by someone else.',
    at_capacity: 'You are at your limit of open chats. Resolve one first.',
    not_available: 'You cannot take this one: turn "Accept chats" on, or it is routed to someone else.',
    invalid_state: 'This cannot be done any more: the conversation has moved on.',
    not_allowed: 'You are not allowed to do that.',
    not_found: 'This conversation is gone or not yours to see.',
    unknown_agent: 'There is no such agent.',
    network: 'The server cannot be reached. Check your connection.'
  };

  var S = {}; // all console state; reset() fills it
  function reset() {
    S = {
      csrf: null, me: null, accepting: false, agents: [], responses: null,
      convs: new Map(), q: '', openId: null, open: null, openIds: new Set(),
      notice: '', unread: new Set(), ringing: new Set(), lastBeep: 0, flash: false,
      lastSeq: 0, ws: null, wsTimer: null, wsTries: 0, wsOpenedAt: 0, stopped: true,
      refreshTimer: null, refreshing: false, refreshAgain: false, lastRefresh: 0,
      openTimer: null, tickTimer: null, typingTimer: null, lastTypingSent: 0,
      pending: null, picker: null, skew: 0, startedAt: Date.now(),
      sound: load('livechat.sound', 'local') !== 'off', audio: S.audio || null
    };
  }

  // ---- Small helpers -------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  /** Builds an element. Strings among the children become text nodes, never markup. */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v == null || v === false) return;
        if (k === 'class') el.className = v;
        else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, kid) {
    if (kid == null || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(el, k); }); return; }
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function store(key, value, where) {
    try {
      var s = where === 'local' ? localStorage : sessionStorage;
      if (value == null) s.removeItem(key); else s.setItem(key, value);
    } catch (e) { /* storage may be off */ }
  }
  function load(key, where) {
    try { return (where === 'local' ? localStorage : sessionStorage).getItem(key); } catch (e) { return null; }
  }

  /** RFC 3339 with nanoseconds → ms since the epoch. */
  function ms(t) {
    if (!t) return null;
    var n = Date.parse(String(t).replace(/(\.\d{3})\d+/, '$1'));
    return isNaN(n) ? null : n;
  }
  function now() { return Date.now() + S.skew; }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function duration(d) {
    var s = Math.max(0, Math.floor(d / 1000));
    if (s >= 86400) return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
    var hrs = Math.floor(s / 3600), min = Math.floor((s % 3600) / 60);
    return (hrs ? hrs + ':' + pad(min) : String(min)) + ':' + pad(s % 60);
  }
  function ago(d) {
    var s = Math.floor(d / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function clock(t) {
    var n = ms(t);
    if (n == null) return '';
    var d = new Date(n);
    var same = new Date().toDateString() === d.toDateString();
    return (same ? '' : d.toLocaleDateString() + ' ') + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  function visitorName(c) { return (c.visitor && c.visitor.name) || 'Visitor'; }
  function agentName(email) {
    if (!email) return '';
    if (S.me && email === S.me.email) return 'You';
    for (var i = 0; i < S.agents.length; i++) if (S.agents[i].email === email) return S.agents[i].name;
    return email;
  }
  function includes(list, x) { return Array.isArray(list) && list.indexOf(x) >= 0; }
  function randomId() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return 'console-' + Array.prototype.map.call(a, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }
  /** Only http(s) links: a visitor's page_url could say `javascript:`. */
  function safeUrl(u) { return /^https?:\/\//i.test(String(u || '')) ? String(u) : null; }

  var toastTimer = null;
  function toast(text) {
    var el = $('toast');
    el.textContent = text;
    el.hidden = !text;
    clearTimeout(toastTimer);
    if (text) toastTimer = setTimeout(function () { el.hidden = true; }, 7000);
  }
  function announce(text) { $('announce').textContent = text; }
  function reason(err) { return REASONS[err.code] || err.message || 'Something went wrong.'; }

  // ---- HTTP ----------------------------------------------------------------------------

  function ApiError(status, code, message, retryAfter) {
    this.status = status; this.code = code; this.message = message; this.retryAfter = retryAfter;
  }

  function api(method, path, body) {
    var headers = {};
    var init = { method: method, headers: headers, credentials: 'same-origin', cache: 'no-store' };
    if (method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (res) {
      var date = ms(res.headers.get('Date'));
      if (date) {
        var skew = date - Date.now();
        S.skew = Math.abs(skew) > 2000 ? skew : 0;
      }
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (res.status === 401 && path !== '/auth/login') {
          signedOut('Your session has ended. Please sign in again.');
        } else if (res.status === 403 && data && data.error && data.error.code === 'csrf_failed') {
          // Another tab signed in since: this tab's token belongs to an ended session.
          signedOut('You signed in again elsewhere in this browser. Please sign in here too.');
        }
        if (!res.ok) {
          var e = (data && data.error) || {};
          throw new ApiError(res.status, e.code || 'http_' + res.status, e.message || text || res.statusText,
            res.headers.get('Retry-After'));
        }
        return data;
      });
    }, function () {
      throw new ApiError(0, 'network', REASONS.network);
    });
  }

  // ---- Sign in and out -----------------------------------------------------------------

  function showSignIn(message) {
    $('console-view').hidden = true;
    $('signin-view').hidden = false;
    $('signin-error').textContent = message || '';
    document.title = TITLE;
    $('signin-email').focus();
  }

  function onSignIn(ev) {
    ev.preventDefault();
    unlockAudio();
    var email = $('signin-email').value.trim();
    var password = $('signin-password').value;
    if (!email || !password) {
      $('signin-error').textContent = 'Enter your email and password.';
      return;
    }
    $('signin-submit').disabled = true;
    $('signin-error').textContent = '';
    api('POST', '/auth/login', { email: email, password: password }).then(function (data) {
      $('signin-password').value = '';
      S.csrf = data.csrf_token; // the bearer `token` is not kept: the cookie carries the session
      store('livechat.csrf', S.csrf);
      start(data.agent);
    }, function (err) {
      var text = err.code === 'invalid_credentials' ? 'Wrong email or password.'
        : err.code === 'too_many_attempts'
          ? 'Too many attempts. Try again in ' + Math.ceil((Number(err.retryAfter) || 60) / 60) + ' min.'
          : reason(err);
      $('signin-error').textContent = text;
    }).then(function () { $('signin-submit').disabled = false; });
  }

  /** Ends the console locally (after sign-out, or when the server says 401). */
  function signedOut(message) {
    if (S.stopped && !$('signin-view').hidden) return;
    var audio = S.audio;
    stop();
    clearLists();
    store('livechat.csrf', null);
    reset();
    S.audio = audio;
    showSignIn(message);
  }

  function stop() {
    S.stopped = true;
    clearTimeout(S.wsTimer); clearTimeout(S.refreshTimer); clearTimeout(S.openTimer);
    clearInterval(S.tickTimer); clearTimeout(S.typingTimer);
    if (S.ws) { var ws = S.ws; S.ws = null; try { ws.close(); } catch (e) { /* closing anyway */ } }
  }

  function clearLists() {
    var uls = document.querySelectorAll('.lists .rows');
    for (var i = 0; i < uls.length; i++) clear(uls[i]);
    closeConv();
    closeReports();
    clear($('reports-body'));
  }

  function onSignOut() {
    api('POST', '/auth/logout').catch(function () { /* signed out locally either way */ })
      .then(function () { signedOut(''); });
  }

  // ---- The console ---------------------------------------------------------------------

  function start(agent) {
    S.me = agent;
    S.stopped = false;
    S.startedAt = Date.now();
    var seq = Number(load('livechat.seq:' + agent.email));
    S.lastSeq = seq > 0 ? seq : 0;
    $('signin-view').hidden = true;
    $('console-view').hidden = false;
    var me = $('me');
    clear(me);
    add(me, [h('span', { class: 'me-name' }, agent.name), ' ', h('span', { class: 'me-email' }, agent.email)]);
    if (agent.role === 'admin') add(me, [' ', h('span', { class: 'chip' }, 'admin')]);
    $('sec-others').hidden = agent.role !== 'admin';
    renderSound();
    closeConv();
    loadAgents();
    loadResponses();
    refresh().then(function () {
      if (!S.stopped) connect();
    });
    S.tickTimer = setInterval(tick, 1000);
  }

  function loadAgents() {
    return api('GET', '/agents').then(function (data) {
      S.agents = data.agents || [];
      var mine = S.agents.filter(function (a) { return a.email === S.me.email; })[0];
      if (mine) setAccepting(mine.accepting);
    }).catch(function () { /* shown by the next failing call */ });
  }

  function loadResponses() {
    return api('GET', '/responses').then(function (data) {
      S.responses = data.responses || [];
    }, function () { S.responses = null; }); // no canned responses on this server
  }

  function setAccepting(on) {
    S.accepting = !!on;
    $('accepting').checked = S.accepting;
    $('accepting').setAttribute('aria-checked', String(S.accepting));
  }

  function onAcceptingChange() {
    var want = $('accepting').checked;
    setAccepting(want);
    api('PUT', '/me/availability', { accepting: want }).then(function (data) {
      setAccepting(data.accepting);
      announce(data.accepting ? 'You accept chats.' : 'You do not accept chats.');
    }, function (err) {
      setAccepting(!want);
      toast('Could not change "Accept chats": ' + reason(err));
    });
  }

  // ---- Lists ---------------------------------------------------------------------------

  /** Refreshes the lists now, or soon when one ran a moment ago (bursts of events). */
  function scheduleRefresh(delay) {
    if (S.stopped || S.refreshTimer) return;
    var wait = Math.max(delay == null ? 120 : delay, 400 - (Date.now() - S.lastRefresh));
    S.refreshTimer = setTimeout(function () { S.refreshTimer = null; refresh(); }, wait);
  }

  function refresh() {
    if (S.stopped) return Promise.resolve();
    if (S.refreshing) { S.refreshAgain = true; return Promise.resolve(); }
    S.refreshing = true;
    S.lastRefresh = Date.now();
    var q = S.q ? '&q=' + encodeURIComponent(S.q) : '';
    var admin = S.me.role === 'admin';
    var queries = [
      'status=new&limit=100',
      'status=assigned,chatting&limit=100' + (admin || S.q ? '' : '&assignee=me'),
      'status=bot,collecting&limit=30',
      'status=resolved,ended' + (S.q ? ',closed' : '') + '&limit=30'
    ];
    var urls = queries.map(function (qs) { return '/conversations?' + qs + q; });
    // While searching, what rings is still every waiting request, not only the matches.
    var searching = !!S.q;
    if (searching) urls.push('/conversations?status=new&limit=100');
    return Promise.all(urls.map(function (u) { return api('GET', u); }))
      .then(function (answers) {
        if (S.stopped) return;
        var convs = new Map();
        S.waiting = searching ? answers.pop().conversations || [] : null;
        answers.forEach(function (a) {
          (a.conversations || []).forEach(function (c) { convs.set(c.id, c); });
          // Where the stream should start, if the server says (before the first socket
          // only: later the socket itself is ahead). A smaller number means a new database.
          if (!S.ws && typeof a.last_seq === 'number' && (!S.lastSeq || S.lastSeq > a.last_seq)) {
            S.lastSeq = a.last_seq;
          }
        });
        S.convs = convs;
        renderLists();
      }, function (err) {
        if (err.status !== 401) toast('Could not load the conversations: ' + reason(err));
      })
      .then(function () {
        S.refreshing = false;
        if (S.refreshAgain) { S.refreshAgain = false; scheduleRefresh(); }
      });
  }

  function sectionOf(c) {
    var me = S.me.email;
    switch (c.status) {
      case 'new': return includes(c.muted, me) ? 'awaiting' : 'new';
      case 'assigned': case 'chatting': return c.assignee === me ? 'mine' : 'others';
      case 'bot': case 'collecting': return 'bot';
      default: return 'resolved';
    }
  }
  function ringsForMe(c) {
    return c.status === 'new' && includes(c.ringing, S.me.email) && !includes(c.muted, S.me.email);
  }

  /** When a row's counter starts, and whether it counts up (waiting) or says "ago". */
  function since(c) {
    switch (c.status) {
      case 'new': return [ms(c.requested_at) || ms(c.opened_at), 'wait'];
      case 'assigned': case 'chatting': return [ms(c.requested_at) || ms(c.assigned_at) || ms(c.opened_at), 'wait'];
      case 'bot': case 'collecting': return [ms(c.opened_at), 'wait'];
      default: return [ms(c.resolved_at) || ms(c.ended_at) || ms(c.closed_at) || ms(c.opened_at), 'ago'];
    }
  }

  function renderLists() {
    var groups = { new: [], awaiting: [], mine: [], others: [], bot: [], resolved: [] };
    S.convs.forEach(function (c) { groups[sectionOf(c)].push(c); });
    var focused = document.activeElement && document.activeElement.getAttribute('data-id');
    Object.keys(groups).forEach(function (name) {
      var sec = $('sec-' + name);
      var ul = sec.querySelector('.rows');
      // Rows that did not change stay the same elements (no lost clicks, no lost focus).
      var old = new Map();
      Array.prototype.forEach.call(ul.children, function (li) { old.set(li.getAttribute('data-key'), li); });
      groups[name].forEach(function (c, i) {
        var key = rowKey(c, name);
        var li = old.get(key) || row(c, name, key);
        old.delete(key);
        if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
      });
      old.forEach(function (li) { li.remove(); });
      Array.prototype.forEach.call(ul.querySelectorAll('.row'), markRow);
      sec.querySelector('.count').textContent = groups[name].length ? '(' + groups[name].length + ')' : '';
      var empty = sec.querySelector('.empty');
      if (empty) empty.hidden = groups[name].length > 0;
    });
    $('sec-awaiting').hidden = groups.awaiting.length === 0;
    $('sec-others').hidden = S.me.role !== 'admin' && groups.others.length === 0;
    if (focused) {
      var again = document.querySelector('.row[data-id="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
    // Ringing: a request that newly rings for me rings at once.
    var waiting = S.waiting || groups.new;
    var ringing = new Set(waiting.filter(ringsForMe).map(function (c) { return c.id; }));
    var fresh = [];
    ringing.forEach(function (id) { if (!S.ringing.has(id)) fresh.push(id); });
    S.ringing = ringing;
    if (fresh.length) {
      var c = waiting.filter(function (w) { return w.id === fresh[0]; })[0];
      announce('New request from ' + visitorName(c) + ' (' + c.bot + ').');
      beep();
    }
    updateTimers();
    if (!ringing.size) document.title = TITLE;
    // The open conversation's row may have changed (taken, resolved…).
    if (S.openId && S.open && S.convs.has(S.openId)) {
      var sum = S.convs.get(S.openId);
      if (sum.status !== S.open.status || sum.assignee !== S.open.assignee) refreshOpen();
    }
  }

  function rowKey(c, section) {
    return JSON.stringify([c.id, section, visitorName(c), c.bot, c.status, c.assignee, c.last_message, since(c)[0],
      ringsForMe(c)]);
  }

  function row(c, section, key) {
    var s = since(c);
    var ring = ringsForMe(c);
    var meta = [c.bot];
    if (section === 'others' && c.assignee) meta.push(agentName(c.assignee));
    if (section === 'resolved' || section === 'bot' || c.status === 'chatting' || c.status === 'assigned') meta.push(STATUS[c.status] || c.status);
    if (section === 'awaiting') meta.push('muted');
    return h('li', { 'data-key': key }, h('button', {
      type: 'button', class: 'row' + (ring ? ' ringing' : ''), 'data-id': c.id,
      onclick: function () { openConv(c.id); }
    },
    h('span', { class: 'row-top' },
      h('span', { class: 'row-name' }, visitorName(c)),
      h('span', { class: 'row-timer', 'data-since': s[0] || '', 'data-mode': s[1], title: s[1] === 'wait' ? 'Waiting time' : null })),
    h('span', { class: 'row-meta' }, meta.join(' · ')),
    h('span', { class: 'row-last' }, c.last_message || '')));
  }

  function updateTimers() {
    var t = now();
    var timers = document.querySelectorAll('.row-timer');
    for (var i = 0; i < timers.length; i++) {
      var el = timers[i], from = Number(el.getAttribute('data-since'));
      el.textContent = from ? (el.getAttribute('data-mode') === 'ago' ? ago(t - from) : duration(t - from)) : '';
    }
  }

  /** Once a second: the counters, the flashing title, the ring. */
  function tick() {
    updateTimers();
    var n = S.ringing.size;
    if (n > 0) {
      S.flash = !S.flash;
      document.title = S.flash ? '(' + n + ') New request' + (n > 1 ? 's' : '') : TITLE;
      if (Date.now() - S.lastBeep >= RING_EVERY) beep();
    } else if (document.title !== TITLE) {
      document.title = TITLE;
    }
  }

  // ---- Sound ---------------------------------------------------------------------------

  function unlockAudio() {
    if (!S.sound) return null;
    var AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    if (!S.audio) {
      try { S.audio = new AC(); } catch (e) { return null; }
    }
    if (S.audio.state === 'suspended') S.audio.resume().catch(function () { /* needs a gesture */ });
    return S.audio;
  }

  /** Two short tones, made with WebAudio (no sound file to fetch). */
  function beep() {
    S.lastBeep = Date.now();
    if (!S.sound || !S.audio || S.audio.state !== 'running') return;
    var ctx = S.audio, t = ctx.currentTime;
    [[880, 0], [660, 0.2]].forEach(function (tone) {
      var osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = tone[0];
      gain.gain.setValueAtTime(0.0001, t + tone[1]);
      gain.gain.exponentialRampToValueAtTime(0.25, t + tone[1] + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + tone[1] + 0.18);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t + tone[1]);
      osc.stop(t + tone[1] + 0.2);
    });
  }

  function renderSound() {
    var b = $('sound');
    b.textContent = S.sound ? 'Sound on' : 'Sound off';
    b.setAttribute('aria-pressed', String(S.sound));
  }

  // ---- The event stream ----------------------------------------------------------------

  function setConn(state, text) {
    var el = $('conn');
    el.setAttribute('data-state', state);
    $('conn-text').textContent = text;
  }

  function connect() {
    if (S.stopped) return;
    setConn('connecting', 'Connecting…');
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + API +
      '/agent/events?after=' + S.lastSeq;
    var ws;
    try { ws = new WebSocket(url); } catch (e) { retry(false); return; }
    S.ws = ws;
    var opened = false;
    ws.onopen = function () {
      if (S.ws !== ws) return;
      opened = true;
      S.wsOpenedAt = Date.now();
      setConn('live', 'Live');
      // What happened while we were away: the replay brings events, a refresh the rest.
      if (S.wsTries > 0) {
        scheduleRefresh(0);
        refreshOpen();
        loadAgents();
      }
    };
    ws.onmessage = function (m) {
      if (S.ws !== ws) return;
      var frame;
      try { frame = JSON.parse(m.data); } catch (e) { return; }
      onFrame(frame);
    };
    ws.onclose = function () {
      if (S.ws !== ws) return;
      S.ws = null;
      retry(opened);
    };
  }

  function retry(opened) {
    if (S.stopped) return;
    if (opened && Date.now() - S.wsOpenedAt > 10000) S.wsTries = 0;
    S.wsTries += 1;
    // A socket that never opens may mean the session ended: ask (a 401 signs out).
    if (!opened) api('GET', '/me').catch(function () { /* 401 handled by api() */ });
    var delay = Math.min(15000, 500 * Math.pow(2, Math.min(S.wsTries - 1, 5))) * (0.75 + Math.random() / 2);
    setConn('offline', 'Offline, retrying in ' + Math.ceil(delay / 1000) + ' s');
    S.wsTimer = setTimeout(connect, delay);
  }

  var seqSaveTimer = null;
  function onFrame(f) {
    if (typeof f.seq === 'number') {
      if (f.seq <= S.lastSeq) return;
      S.lastSeq = f.seq;
      if (!seqSaveTimer) {
        seqSaveTimer = setTimeout(function () {
          seqSaveTimer = null;
          if (S.me) store('livechat.seq:' + S.me.email, String(S.lastSeq));
        }, 1000);
      }
    }
    var data = f.data || {};
    switch (f.type) {
      case 'typing': onTyping(f); return;
      case 'agent.presence':
        S.agents.forEach(function (a) {
          if (a.email === data.agent) {
            a.online = data.online; a.accepting = data.accepting;
            a.active_chats = data.active_chats; a.max_chats = data.max_chats;
          }
        });
        if (data.agent === S.me.email) setAccepting(data.accepting);
        return;
      case 'config.reloaded':
        showBanner('Config updated to revision ' + data.revision);
        loadResponses();
        loadAgents();
        scheduleRefresh();
        return;
    }
    var id = f.conversation_id;
    if (!id) return;
    var live = (ms(f.at) || 0) >= S.startedAt + S.skew - 5000;
    if (f.type === 'message.created' && data.author === 'visitor' && id !== S.openId && live) {
      S.unread.add(id);
    }
    if (id === S.openId) {
      if (S.open) applyToOpen(f); else refreshOpen(); // still loading: load again after
    }
    scheduleRefresh();
  }

  function showBanner(text) {
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }

  // ---- The open conversation -----------------------------------------------------------

  function closeConv() {
    S.openId = null; S.open = null; S.openIds = new Set(); S.notice = ''; S.msgKey = ''; S.actionsKey = '';
    $('conv-pane').hidden = true;
    $('conv-empty').hidden = false;
    $('details').hidden = true;
    document.body.classList.remove('has-open');
    Array.prototype.forEach.call(document.querySelectorAll('.row'), markRow);
  }

  /** The parts of a row that change without a refresh: selected, unread. */
  function markRow(b) {
    var id = b.getAttribute('data-id');
    if (id === S.openId) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
    b.classList.toggle('unread', S.unread.has(id) && id !== S.openId);
  }

  function openConv(id) {
    $('reports-pane').hidden = true;
    $('reports').setAttribute('aria-expanded', 'false');
    if (S.openId !== id) {
      // Nothing of the previous conversation stays clickable while this one loads.
      S.open = null; S.msgKey = ''; S.actionsKey = ''; S.openIds = new Set();
      clear($('conv-actions'));
      clear($('messages'));
      $('conv-title').textContent = 'Loading…';
      $('conv-status').textContent = '';
      $('details').hidden = true;
      $('composer').hidden = true;
      S.notice = '';
      $('composer-text').value = '';
      S.pending = null;
      hideForms();
      closePicker();
      $('typing').textContent = '';
    }
    S.openId = id;
    S.unread.delete(id);
    Array.prototype.forEach.call(document.querySelectorAll('.row'), markRow);
    document.body.classList.add('has-open');
    $('conv-empty').hidden = true;
    $('conv-pane').hidden = false;
    return loadOpen(id, true);
  }

  function loadOpen(id, scrollDown) {
    return api('GET', '/conversations/' + encodeURIComponent(id)).then(function (d) {
      if (S.openId !== id || S.stopped) return;
      var was = S.open && S.open.id === id ? S.open : null;
      S.open = d;
      if (d.status === 'new' || d.assignee === S.me.email) {
        if (S.notice === REASONS.already_taken) S.notice = '';
      } else if (was && was.status === 'new' && d.assignee && d.assignee !== S.me.email) {
        S.notice = REASONS.already_taken;
      }
      renderConv(scrollDown);
    }, function (err) {
      if (S.openId !== id || err.status === 401) return;
      S.notice = reason(err);
      renderNotice();
    });
  }

  function refreshOpen() {
    if (!S.openId || S.openTimer) return;
    var id = S.openId;
    S.openTimer = setTimeout(function () { S.openTimer = null; loadOpen(id, false); }, 100);
  }

  function applyToOpen(f) {
    var data = f.data || {};
    if (f.type === 'message.created' || f.type === 'note.created') {
      appendMsg({
        id: data.message_id, seq: f.seq, at: f.at, text: data.text,
        kind: f.type === 'note.created' ? 'note' : data.author, agent: data.agent || null
      });
      if (data.author === 'visitor') $('typing').textContent = '';
      return;
    }
    if ((f.type === 'livechat.accepted' || f.type === 'conversation.assigned') && data.agent &&
        data.agent !== S.me.email && S.open.status === 'new') {
      S.notice = REASONS.already_taken;
      renderNotice();
      announce('Taken by someone else.');
    }
    refreshOpen();
  }

  function renderConv(scrollDown) {
    var d = S.open;
    $('conv-title').textContent = visitorName(d);
    var chip = $('conv-status');
    chip.textContent = STATUS[d.status] || d.status;
    chip.className = 'chip status-' + d.status;
    renderActions();
    renderNotice();
    renderMessages(scrollDown);
    renderDetails();
    renderComposer();
  }

  function renderNotice() {
    var n = $('conv-notice');
    n.textContent = S.notice;
    n.hidden = !S.notice;
  }

  function renderMessages(scrollDown) {
    var d = S.open, ol = $('messages');
    var stick = scrollDown || ol.scrollHeight - ol.scrollTop - ol.clientHeight < 80;
    var all = (d.messages || []).concat(d.notes || []);
    all.sort(function (a, b) { return a.seq - b.seq; });
    var key = d.id + '|' + visitorName(d) + '|' + (d.status === 'resolved' ? d.resolve_note : '') + '|' +
      all.map(function (m) { return m.id; }).join(',');
    if (key === S.msgKey && !scrollDown) return;
    S.msgKey = key;
    clear(ol);
    S.openIds = new Set();
    all.forEach(function (m) { S.openIds.add(m.id); ol.appendChild(msgEl(m)); });
    if (d.resolve_note && d.status === 'resolved') {
      ol.appendChild(h('li', { class: 'msg msg-note msg-closing' },
        h('div', { class: 'msg-meta' }, 'Internal note · closing note'),
        h('div', { class: 'msg-text' }, d.resolve_note)));
    }
    if (stick) ol.scrollTop = ol.scrollHeight;
  }

  function appendMsg(m) {
    if (!m.id || S.openIds.has(m.id)) return;
    S.openIds.add(m.id);
    var ol = $('messages');
    var stick = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 80;
    var el = msgEl(m);
    // In seq order: our own message's answer may come after a later event.
    var next = ol.querySelector('.msg-closing');
    if (typeof m.seq === 'number') {
      var later = Array.prototype.filter.call(ol.children, function (li) {
        return Number(li.getAttribute('data-seq')) > m.seq;
      })[0];
      if (later) next = later;
    }
    ol.insertBefore(el, next || null);
    if (S.open) {
      if (m.kind === 'note') (S.open.notes = S.open.notes || []).push(m);
      else (S.open.messages = S.open.messages || []).push(m);
    }
    S.msgKey = '';
    if (stick || m.agent === S.me.email) ol.scrollTop = ol.scrollHeight;
  }

  function msgEl(m) {
    var who;
    switch (m.kind) {
      case 'visitor': who = visitorName(S.open || {}); break;
      case 'bot': who = 'Bot'; break;
      case 'system': who = 'System'; break;
      case 'note': who = 'Internal note · ' + agentName(m.agent); break;
      default: who = agentName(m.agent) || 'Agent';
    }
    var mine = m.agent && m.agent === S.me.email;
    return h('li', { class: 'msg msg-' + m.kind + (mine ? ' msg-mine' : ''), 'data-id': m.id, 'data-seq': m.seq },
      h('div', { class: 'msg-meta' }, h('span', { class: 'msg-who' }, who), ' ',
        h('time', { datetime: m.at }, clock(m.at))),
      h('div', { class: 'msg-text' }, m.text));
  }

  function button(label, cls, onclick) {
    return h('button', { type: 'button', class: 'btn ' + (cls || ''), onclick: onclick }, label);
  }

  function renderActions() {
    var d = S.open, me = S.me.email, bar = $('conv-actions');
    var admin = S.me.role === 'admin';
    var mine = d.assignee === me;
    var key = [d.id, d.status, d.assignee, admin, includes(d.muted, me)].join('|');
    if (key === S.actionsKey) return; // the same buttons: keep them (a click may be under way)
    S.actionsKey = key;
    clear(bar);
    var st = d.status;
    if (st === 'new') {
      bar.appendChild(button('Accept', 'primary', doAccept));
      if (!includes(d.muted, me)) bar.appendChild(button('Mute', '', function () { command('mute', undefined, 'Muted: it waits under Awaiting.'); }));
    }
    if (st === 'bot' || st === 'collecting') bar.appendChild(button('Take over', 'primary', doTakeover));
    if (st === 'new' || ((st === 'assigned' || st === 'chatting') && (mine || admin))) {
      bar.appendChild(button('Transfer', '', showTransfer));
    }
    if ((st === 'assigned' || st === 'chatting') && mine) {
      bar.appendChild(button('Give back', '', function () { command('unassign', undefined, 'Given back: it rings for the others.'); }));
    }
    if (st === 'collecting' || st === 'new' || ((st === 'assigned' || st === 'chatting') && (mine || admin))) {
      bar.appendChild(button('Resolve', '', showResolve));
    }
    if (st === 'bot' || st === 'resolved' || st === 'ended') {
      bar.appendChild(button('Close', '', function () { command('close', undefined, 'Closed and archived.'); }));
    }
    bar.appendChild(h('a', {
      class: 'btn', href: API + '/conversations/' + encodeURIComponent(d.id) + '/transcript.csv', download: 'transcript-' + d.id + '.csv'
    }, 'Download transcript'));
  }

  function command(verb, body, done) {
    var id = S.openId;
    return api('POST', '/conversations/' + encodeURIComponent(id) + '/' + verb, body).then(function (r) {
      if (done) announce(done);
      if (S.openId === id && S.notice !== REASONS.already_taken) { S.notice = ''; renderNotice(); }
      scheduleRefresh(0);
      if (S.openId === id) loadOpen(id, false);
      return r;
    }, function (err) {
      if (err.status === 401) return;
      if (S.openId === id) {
        S.notice = reason(err);
        renderNotice();
        loadOpen(id, false);
      }
      scheduleRefresh(0);
      return null;
    });
  }

  function doAccept() {
    command('accept', undefined, 'Accepted. You are chatting now.').then(function (r) {
      if (!r) return; // the notice says why
      S.notice = '';
      renderNotice();
      $('composer-text').focus();
    });
  }

  function doTakeover() {
    command('takeover', undefined, 'You took over from the bot.').then(function (r) {
      if (r) $('composer-text').focus();
    });
  }

  function hideForms() {
    $('resolve-form').hidden = true;
    $('transfer-form').hidden = true;
  }

  function showResolve() {
    hideForms();
    $('resolve-note').value = '';
    $('resolve-form').hidden = false;
    $('resolve-note').focus();
  }

  function onResolve(ev) {
    ev.preventDefault();
    var note = $('resolve-note').value.trim();
    command('resolve', note ? { note: note } : undefined, 'Resolved.').then(function (r) {
      if (r) hideForms();
    });
  }

  function showTransfer() {
    hideForms();
    loadAgents().then(function () {
      if (!S.open) return;
      var sel = $('transfer-target');
      clear(sel);
      var teams = new Set();
      var people = h('optgroup', { label: 'Agents' });
      S.agents.forEach(function (a) {
        (a.teams || []).forEach(function (t) { teams.add(t); });
        if (a.email === S.open.assignee) return;
        var state = !a.online ? 'offline' : a.accepting ? 'available' : 'not accepting';
        people.appendChild(h('option', { value: 'agent:' + a.email },
          a.name + ' (' + state + ', ' + a.active_chats + '/' + a.max_chats + ')'));
      });
      var groups = h('optgroup', { label: 'Teams' });
      Array.from(teams).sort().forEach(function (t) {
        groups.appendChild(h('option', { value: 'team:' + t }, 'Team ' + t));
      });
      sel.appendChild(people);
      sel.appendChild(groups);
      $('transfer-form').hidden = false;
      sel.focus();
    });
  }

  function onTransfer(ev) {
    ev.preventDefault();
    var v = $('transfer-target').value;
    if (!v) return;
    var i = v.indexOf(':');
    var body = {};
    body[v.slice(0, i)] = v.slice(i + 1);
    command('transfer', body, 'Transferred.').then(function (r) { if (r) hideForms(); });
  }

  function toggleDetails() {
    var open = $('details-toggle').getAttribute('aria-expanded') !== 'true';
    $('details-toggle').setAttribute('aria-expanded', String(open));
    if (S.open) renderDetails();
    if (open) { var c = document.querySelector('.details-close'); if (c) c.focus(); } else $('details-toggle').focus();
  }

  function dl(pairs) {
    var list = h('dl', null);
    pairs.forEach(function (p) {
      if (p[1] == null || p[1] === '') return;
      list.appendChild(h('dt', null, p[0]));
      list.appendChild(h('dd', null, p[1]));
    });
    return list;
  }
  function valueText(v) { return typeof v === 'string' ? v : JSON.stringify(v); }

  function renderDetails() {
    var d = S.open, aside = $('details');
    clear(aside);
    var url = safeUrl(d.page_url);
    var page = d.page_url ? (url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, d.page_url) : d.page_url) : null;
    aside.appendChild(h('button', { type: 'button', class: 'btn quiet details-close', onclick: toggleDetails }, 'Close details'));
    aside.appendChild(h('h2', null, 'Visitor'));
    aside.appendChild(dl([
      ['Name', (d.visitor && d.visitor.name) || 'not given'], ['Email', d.visitor && d.visitor.email], ['Page', page],
      ['Country', d.country], ['Language', d.language]
    ]));
    aside.appendChild(h('h3', null, 'Conversation'));
    aside.appendChild(dl([
      ['Bot', d.bot], ['Team', d.team], ['Status', STATUS[d.status] || d.status],
      ['Agent', d.assignee ? agentName(d.assignee) : null], ['Opened', clock(d.opened_at)],
      ['Requested', clock(d.requested_at)], ['Resolved', clock(d.resolved_at)], ['Closing note', d.resolve_note],
      ['Visitor rating', d.rating ? (d.rating.rating === 'good' ? 'Good' : 'Bad') +
        (d.rating.comment ? ': ' + d.rating.comment : '') : null]
    ]));
    var vars = d.variables || {};
    var keys = Object.keys(vars);
    if (keys.length) {
      aside.appendChild(h('h3', null, 'Variables'));
      aside.appendChild(dl(keys.sort().map(function (k) { return [k, valueText(vars[k])]; })));
    }
    if ((d.forms || []).length) {
      aside.appendChild(h('h3', null, 'Offline form answers'));
      d.forms.forEach(function (f) {
        var vals = f.values || {};
        aside.appendChild(h('p', { class: 'form-head' }, f.form + ' · ' + clock(f.at)));
        aside.appendChild(dl(Object.keys(vals).map(function (k) { return [k, valueText(vals[k])]; })));
      });
    }
    if ((d.earlier_conversations || []).length) {
      aside.appendChild(h('h3', null, 'Earlier conversations'));
      aside.appendChild(h('ul', { class: 'earlier' }, d.earlier_conversations.map(function (e) {
        return h('li', null, h('button', { type: 'button', class: 'link', onclick: function () { openConv(e.id); } },
          clock(e.opened_at) + ' · ' + (STATUS[e.status] || e.status)));
      })));
    }
    var narrow = window.matchMedia('(max-width: 1100px)').matches;
    aside.hidden = narrow && $('details-toggle').getAttribute('aria-expanded') !== 'true';
  }

  // ---- Composer ------------------------------------------------------------------------

  function canMessage() {
    var d = S.open;
    return !!d && d.assignee === S.me.email && (d.status === 'assigned' || d.status === 'chatting');
  }

  function renderComposer() {
    var d = S.open, form = $('composer'), note = $('note-mode'), hint = $('composer-hint');
    form.hidden = d.status === 'closed';
    var can = canMessage();
    note.disabled = !can;
    if (!can) {
      note.checked = true;
      S.noteForced = true;
    } else if (S.noteForced) {
      note.checked = false;
      S.noteForced = false;
    }
    if (!can && d.status !== 'closed') {
      hint.textContent = d.status === 'new' ? 'Accept to write to the visitor. Notes stay internal.'
        : d.status === 'bot' || d.status === 'collecting' ? 'Take over to write to the visitor.'
          : 'Only internal notes here.';
    } else {
      hint.textContent = '';
    }
    renderNoteMode();
  }

  function renderNoteMode() {
    var on = $('note-mode').checked;
    $('composer').classList.toggle('note-on', on);
    $('composer-text').placeholder = on ? 'Internal note: only your team sees this'
      : 'Write to the visitor. Enter sends, Shift+Enter adds a line. # for canned responses';
    $('send').textContent = on ? 'Add note' : 'Send';
  }

  function onSend(ev) {
    if (ev) ev.preventDefault();
    var ta = $('composer-text'), text = ta.value;
    if (!text.trim() || !S.openId) return;
    var note = $('note-mode').checked || !canMessage();
    var id = S.openId;
    // The same text retried after a failure keeps its client_id: the server stores it once.
    if (!S.pending || S.pending.text !== text || S.pending.conv !== id || S.pending.note !== note) {
      S.pending = { text: text, conv: id, note: note, client_id: randomId() };
    }
    var p = S.pending;
    $('send').disabled = true;
    api('POST', '/conversations/' + encodeURIComponent(id) + '/' + (note ? 'notes' : 'messages'),
      { client_id: p.client_id, text: text }).then(function (r) {
      if (S.pending === p) S.pending = null;
      if (ta.value === text) { ta.value = ''; grow(); }
      if (S.openId === id && r && r.message_id) {
        appendMsg({ id: r.message_id, seq: r.seq, kind: note ? 'note' : 'agent', agent: S.me.email,
          text: text.trim(), at: new Date(now()).toISOString() });
      }
      scheduleRefresh();
    }, function (err) {
      if (err.status === 401) return;
      toast((note ? 'The note was not saved: ' : 'The message was not sent: ') + reason(err));
      if (S.openId === id) loadOpen(id, false);
    }).then(function () {
      $('send').disabled = false;
      ta.focus();
    });
  }

  function grow() {
    var ta = $('composer-text');
    ta.style.height = 'auto';
    ta.style.height = Math.min(ta.scrollHeight + 2, 200) + 'px';
  }

  function onComposerInput() {
    grow();
    updatePicker();
    // Typing signals only for what the visitor will see, at most one per 2 s.
    if (!$('note-mode').checked && canMessage() && S.ws && S.ws.readyState === 1 &&
        Date.now() - S.lastTypingSent >= TYPING_EVERY && $('composer-text').value.trim()) {
      S.lastTypingSent = Date.now();
      S.ws.send(JSON.stringify({ type: 'typing', conversation_id: S.openId }));
    }
  }

  function onComposerKey(ev) {
    var pk = S.picker;
    if (pk && pk.items.length) {
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        pk.index = (pk.index + (ev.key === 'ArrowDown' ? 1 : pk.items.length - 1)) % pk.items.length;
        renderPicker();
        return;
      }
      if (ev.key === 'Enter' || ev.key === 'Tab') {
        ev.preventDefault();
        choose(pk.index);
        return;
      }
      if (ev.key === 'Escape') {
        ev.preventDefault();
        closePicker();
        return;
      }
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      onSend();
    }
  }

  function onTyping(f) {
    if (f.conversation_id !== S.openId) return;
    var data = f.data || {};
    if (data.from === 'agent' && data.name === S.me.name) return; // our own echo
    $('typing').textContent = (data.from === 'visitor' ? visitorName(S.open || {}) : data.name || 'An agent') + ' is typing…';
    clearTimeout(S.typingTimer);
    S.typingTimer = setTimeout(function () { $('typing').textContent = ''; }, 4000);
  }

  // ---- Canned responses: `#` opens the picker -------------------------------------------

  function updatePicker() {
    var ta = $('composer-text');
    if (!S.responses || !S.responses.length || !S.open) { closePicker(); return; }
    var before = ta.value.slice(0, ta.selectionStart);
    var m = /(^|\s)#([\w.-]*)$/.exec(before);
    if (!m) { closePicker(); return; }
    var word = m[2].toLowerCase(), bot = S.open.bot;
    var items = S.responses.filter(function (r) {
      return (!r.bots || !r.bots.length || includes(r.bots, bot)) && r.shortcut.toLowerCase().indexOf(word) >= 0;
    });
    items.sort(function (a, b) {
      return (b.shortcut.toLowerCase().indexOf(word) === 0) - (a.shortcut.toLowerCase().indexOf(word) === 0) ||
        a.shortcut.localeCompare(b.shortcut);
    });
    S.picker = { items: items.slice(0, 8), index: 0, start: before.length - word.length - 1, end: ta.selectionStart };
    renderPicker();
  }

  function renderPicker() {
    var ul = $('picker'), pk = S.picker, ta = $('composer-text');
    clear(ul);
    if (!pk || !pk.items.length) {
      ul.hidden = true;
      ta.setAttribute('aria-expanded', 'false');
      ta.removeAttribute('aria-activedescendant');
      return;
    }
    pk.items.forEach(function (r, i) {
      ul.appendChild(h('li', {
        id: 'pick-' + i, role: 'option', class: 'pick', 'aria-selected': String(i === pk.index),
        onmousedown: function (e) { e.preventDefault(); choose(i); }
      }, h('span', { class: 'pick-key' }, '#' + r.shortcut), h('span', { class: 'pick-text' }, fill(r.text, S.open))));
    });
    ul.hidden = false;
    ta.setAttribute('aria-expanded', 'true');
    ta.setAttribute('aria-activedescendant', 'pick-' + pk.index);
  }

  function closePicker() {
    S.picker = null;
    renderPicker();
  }

  function choose(i) {
    var pk = S.picker, ta = $('composer-text');
    if (!pk || !pk.items[i]) return;
    var text = fill(pk.items[i].text, S.open);
    ta.value = ta.value.slice(0, pk.start) + text + ta.value.slice(pk.end);
    var caret = pk.start + text.length;
    ta.setSelectionRange(caret, caret);
    closePicker();
    grow();
    ta.focus();
  }

  /** Fills `{{ agent.name }}`, `{{ visitor.name | default('there') }}`… in a canned text. */
  function fill(tpl, conv) {
    var v = (conv && conv.visitor) || {};
    var values = {
      'agent.name': S.me.name, 'agent.email': S.me.email, 'visitor.name': v.name, 'visitor.email': v.email,
      'bot.name': conv && conv.bot, 'bot.id': conv && conv.bot
    };
    return String(tpl).replace(/\{\{\s*([\w.]+)\s*(?:\|\s*default\(\s*(?:'([^']*)'|"([^"]*)")\s*\)\s*)?\}\}/g,
      function (all, key, d1, d2) {
        var x = values[key];
        return x ? x : (d1 != null ? d1 : d2 != null ? d2 : '');
      });
  }

  // ---- Reports --------------------------------------------------------------------------

  var FIGURES = [
    ['conversations', 'Conversations'],
    ['live_chat_requests', 'Live chat requests'],
    ['accepted', 'Accepted'],
    ['missed', 'Missed (timed out or offline)'],
    ['resolved', 'Resolved'],
    ['offline_forms', 'Offline messages in chats']
  ];

  function openReports() {
    if (S.openId) closeConv();
    $('conv-empty').hidden = true;
    $('reports-pane').hidden = false;
    $('reports').setAttribute('aria-expanded', 'true');
    document.body.classList.add('has-open');
    loadReports();
  }

  function closeReports() {
    if ($('reports-pane').hidden) return;
    $('reports-pane').hidden = true;
    $('reports').setAttribute('aria-expanded', 'false');
    if (!S.openId) {
      $('conv-empty').hidden = false;
      document.body.classList.remove('has-open');
    }
  }

  function loadReports() {
    var days = Number($('reports-period').value) || 7;
    var to = new Date(now());
    // "Today" starts at local midnight; longer periods go back whole days from now.
    var from = days === 1 ? new Date(to.getFullYear(), to.getMonth(), to.getDate())
      : new Date(to.getTime() - days * 86400000);
    var bot = $('reports-bot').value;
    var query = '?from=' + encodeURIComponent(from.toISOString()) + '&to=' + encodeURIComponent(to.toISOString()) +
      (bot ? '&bot=' + encodeURIComponent(bot) : '');
    // Every conversation of the period, one row each (a GET with the console's cookie).
    $('reports-export').href = API + '/conversations.csv' + query;
    $('reports-export').hidden = false;
    var asked = S.reportsAsked = query;
    $('reports-status').textContent = 'Loading…';
    api('GET', '/stats' + query).then(function (data) {
      if (S.reportsAsked !== asked) return;
      $('reports-status').textContent = '';
      renderReports(data);
    }, function (err) {
      if (S.reportsAsked !== asked) return;
      $('reports-status').textContent = reason(err);
    });
  }

  function seconds(t) {
    if (!t || !t.count) return '–';
    return duration(t.median * 1000) + ' (90 %: ' + duration(t.p90 * 1000) + ')';
  }

  function renderReports(data) {
    var total = data.total || {};
    var bots = data.bots || {};
    var select = $('reports-bot');
    Object.keys(bots).forEach(function (id) {
      if (!select.querySelector('option[value="' + CSS.escape(id) + '"]')) add(select, h('option', { value: id }, id));
    });
    var messages = total.messages || {};
    var rows = FIGURES.map(function (f) { return [f[1], String(total[f[0]] || 0)]; });
    rows.push(['Messages from visitors', String(messages.visitor || 0)]);
    rows.push(['Messages from agents', String(messages.agent || 0)]);
    rows.push(['Messages from the bot', String((messages.bot || 0) + (messages.system || 0))]);
    var ratings = total.ratings || {};
    rows.push(['Rated good', String(ratings.good || 0)]);
    rows.push(['Rated bad', String(ratings.bad || 0)]);
    rows.push(['Time to accept (median)', seconds(total.time_to_accept_secs)]);
    rows.push(['Time to resolve (median)', seconds(total.time_to_resolve_secs)]);
    var body = $('reports-body');
    clear(body);
    add(body, h('table', { class: 'report', 'aria-label': 'Totals' },
      h('tbody', null, rows.map(function (r) {
        return h('tr', null, h('th', { scope: 'row' }, r[0]), h('td', null, r[1]));
      }))));
    var agents = data.agents || [];
    if (agents.length) {
      add(body, h('h3', null, 'By agent'));
      add(body, h('table', { class: 'report', 'aria-label': 'By agent' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Agent'), h('th', { scope: 'col' }, 'Accepted'),
          h('th', { scope: 'col' }, 'Resolved'), h('th', { scope: 'col' }, 'Rated good'),
          h('th', { scope: 'col' }, 'Rated bad'))),
        h('tbody', null, agents.map(function (a) {
          var r = a.ratings || {};
          return h('tr', null, h('th', { scope: 'row' }, agentName(a.agent)), h('td', null, String(a.accepted || 0)),
            h('td', null, String(a.resolved || 0)), h('td', null, String(r.good || 0)), h('td', null, String(r.bad || 0)));
        }))));
    }
    var link = $('reports-csv');
    link.href = 'data:text/csv;charset=utf-8,' + encodeURIComponent(reportCsv(data));
    link.hidden = false;
  }

  /** The figures per bot (and in all), then per agent, as CSV. Cells that a spreadsheet
   *  would run as a formula are prefixed with a quote. */
  function reportCsv(data) {
    var cell = function (v) {
      var s = v == null ? '' : String(v);
      if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
      return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    };
    var line = function (cells) { return cells.map(cell).join(',') + '\r\n'; };
    var head = ['bot'].concat(FIGURES.map(function (f) { return f[0]; }),
      ['messages_visitor', 'messages_agent', 'messages_bot', 'rated_good', 'rated_bad', 'accept_median_secs',
        'accept_p90_secs', 'resolve_median_secs', 'resolve_p90_secs']);
    var figures = function (name, t) {
      var m = t.messages || {}, a = t.time_to_accept_secs || {}, r = t.time_to_resolve_secs || {};
      var g = t.ratings || {};
      return [name].concat(FIGURES.map(function (f) { return t[f[0]] || 0; }),
        [m.visitor || 0, m.agent || 0, (m.bot || 0) + (m.system || 0), g.good || 0, g.bad || 0,
          a.median, a.p90, r.median, r.p90]);
    };
    var out = line(['from', data.from, 'to', data.to]) + line(head);
    Object.keys(data.bots || {}).sort().forEach(function (id) { out += line(figures(id, data.bots[id])); });
    out += line(figures('all', data.total || {}));
    out += line([]) + line(['agent', 'accepted', 'resolved', 'rated_good', 'rated_bad']);
    (data.agents || []).forEach(function (a) {
      var g = a.ratings || {};
      out += line([a.agent, a.accepted || 0, a.resolved || 0, g.good || 0, g.bad || 0]);
    });
    return out;
  }

  // ---- Wiring ---------------------------------------------------------------------------

  function boot() {
    reset();
    $('signin-form').addEventListener('submit', onSignIn);
    $('signout').addEventListener('click', onSignOut);
    $('accepting').addEventListener('change', onAcceptingChange);
    $('sound').addEventListener('click', function () {
      S.sound = !S.sound;
      store('livechat.sound', S.sound ? null : 'off', 'local');
      renderSound();
      if (S.sound) { unlockAudio(); beep(); }
    });
    $('banner-close').addEventListener('click', function () { $('banner').hidden = true; });
    var searchTimer = null;
    $('search').addEventListener('input', function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { S.q = $('search').value.trim(); refresh(); }, 250);
    });
    $('search-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      S.q = $('search').value.trim();
      refresh();
    });
    $('back').addEventListener('click', function () {
      var id = S.openId;
      closeConv();
      var r = id && document.querySelector('.row[data-id="' + CSS.escape(id) + '"]');
      if (r) r.focus();
    });
    $('reports').addEventListener('click', function () {
      if ($('reports-pane').hidden) openReports(); else closeReports();
    });
    $('reports-back').addEventListener('click', closeReports);
    $('reports-period').addEventListener('change', loadReports);
    $('reports-bot').addEventListener('change', loadReports);
    $('reports-form').addEventListener('submit', function (ev) { ev.preventDefault(); loadReports(); });
    $('details-toggle').addEventListener('click', toggleDetails);
    $('resolve-form').addEventListener('submit', onResolve);
    $('resolve-cancel').addEventListener('click', hideForms);
    $('transfer-form').addEventListener('submit', onTransfer);
    $('transfer-cancel').addEventListener('click', hideForms);
    $('composer').addEventListener('submit', onSend);
    $('composer-text').addEventListener('input', onComposerInput);
    $('composer-text').addEventListener('keydown', onComposerKey);
    $('composer-text').addEventListener('blur', function () { setTimeout(closePicker, 150); });
    $('note-mode').addEventListener('change', renderNoteMode);
    document.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Escape' || $('conv-pane').hidden) return;
      hideForms();
      if ($('details-toggle').getAttribute('aria-expanded') === 'true') toggleDetails();
    });
    // Browsers let a page make sound only after a gesture: any click or key unlocks it.
    document.addEventListener('pointerdown', unlockAudio);
    document.addEventListener('keydown', unlockAudio);
    window.addEventListener('resize', function () { if (S.open) renderDetails(); });

    var csrf = load('livechat.csrf');
    if (!csrf) { showSignIn(''); return; }
    S.csrf = csrf;
    api('GET', '/me').then(function (data) { start(data.agent); }, function (err) {
      if (err.status !== 401) showSignIn(reason(err));
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
}());
