/* mejai embed: the chat panel inside the widget iframe (same origin as the widget APIs).
   Talks to the host page's widget.js by postMessage (explicit target origin; origin and source
   checked), and to /api/widget/* with the widget token in an Authorization header. */
(function (w, d) {
  "use strict";
  var C = JSON.parse(d.getElementById("mejai-embed-config").textContent);
  var md = w.mejaiMarkdown;
  var parentWin = w.parent !== w ? w.parent : null;
  var hostOrigin = C.host_origin || null;

  var STR = {
    ko: {
      placeholder: "메시지를 입력하세요…", send: "보내기", close: "채팅 닫기", typing: "답변을 작성하고 있어요",
      connecting: "연결하는 중…", online: "보통 바로 답변해요",
      offline: "인터넷 연결이 끊겼어요. 연결되면 이어서 보낼게요.",
      reconnecting: "연결이 불안정해요. 다시 연결하는 중…",
      rate: "메시지를 너무 빨리 보내고 있어요. {s}초 후에 다시 보낼게요.",
      busy: "잠시 바빠요, 다시 시도하는 중…",
      error: "메시지를 보내지 못했어요.", retry: "다시 시도", failed: "전송 실패",
      model_down: "답변이 지연되고 있어요. 잠시 후 다시 시도해 주세요.",
      truncated: "답변이 길이 제한으로 중간에 끊겼어요.",
      expired: "연결을 새로 고치는 중…", auth: "연결이 만료되었어요. 페이지를 새로 고쳐 주세요.",
      submit: "보내기", form_done: "받았어요. 감사합니다!", required: "필수 항목이에요.",
      bad_email: "올바른 이메일 주소를 입력해 주세요.", bad_phone: "올바른 전화번호를 입력해 주세요.",
      too_long: "메시지는 {n}자까지 보낼 수 있어요.", earlier: "이전 대화",
      welcome: "안녕하세요! 무엇을 도와드릴까요?", powered: "Powered by mejai",
      preview: "미리보기 — 설치된 사이트에서 대화할 수 있어요.", standalone: "이 페이지는 웹사이트의 채팅 위젯 안에서 열려요.",
      name: "이름", email: "이메일", phone: "전화번호", you: "나", chars: "{n}/{max}"
    },
    en: {
      placeholder: "Type a message…", send: "Send", close: "Close chat", typing: "Writing a reply",
      connecting: "Connecting…", online: "We usually reply right away",
      offline: "You're offline. We'll send your message when you're back.",
      reconnecting: "Connection lost. Reconnecting…",
      rate: "You're sending messages too quickly. Retrying in {s} s.",
      busy: "We're busy right now. Retrying…",
      error: "Your message could not be sent.", retry: "Retry", failed: "Not sent",
      model_down: "The assistant is unavailable, try again shortly.",
      truncated: "This answer was cut off at its length limit.",
      expired: "Refreshing the connection…", auth: "The chat connection expired. Please reload the page.",
      submit: "Submit", form_done: "Got it — thank you!", required: "This field is required.",
      bad_email: "Please enter a valid email address.", bad_phone: "Please enter a valid phone number.",
      too_long: "Messages can be up to {n} characters.", earlier: "Earlier conversation",
      welcome: "Hi! How can we help?", powered: "Powered by mejai",
      preview: "Preview — chat works on your installed site.", standalone: "This page opens inside a website's chat widget.",
      name: "Name", email: "Email", phone: "Phone", you: "You", chars: "{n}/{max}"
    }
  };
  var lang = "ko";
  function setLang(l) { lang = String(l || "ko").toLowerCase().indexOf("en") === 0 ? "en" : "ko"; d.documentElement.lang = lang; }
  function T(k, vars) {
    var s = STR[lang][k] || STR.ko[k] || k;
    for (var v in vars || {}) s = s.split("{" + v + "}").join(String(vars[v]));
    return s;
  }
  setLang(C.locale);

  var S = {
    token: null, sessionId: null, open: false, unread: 0, page: {}, queue: [], busy: false,
    tokenWait: null, attempt: 0, retryTimer: null, config: {}, started: false, seen: {}, mine: {}, inits: 0, sent: 0
  };

  // --- DOM ------------------------------------------------------------------------------------
  function $(id) { return d.getElementById(id); }
  function el(tag, cls, text) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var log = $("mw-log"), input = $("mw-input"), sendBtn = $("mw-send"), form = $("mw-composer");
  var banner = $("mw-banner"), bannerText = $("mw-banner-text"), bannerBtn = $("mw-banner-retry");
  var statusLine = $("mw-status"), counter = $("mw-counter"), closeBtn = $("mw-close");

  function applyTheme(conf) {
    var theme = (conf && conf.theme) || C.theme || {};
    if (/^#[0-9a-f]{3,8}$/i.test(theme.color || "")) d.documentElement.style.setProperty("--mw-color", theme.color);
    $("mw-title").textContent = theme.launcher_title || (conf && conf.name) || C.name || "mejai";
    statusLine.textContent = theme.greeting || T("online");
  }
  function staticText() {
    input.placeholder = T("placeholder");
    input.setAttribute("aria-label", T("placeholder"));
    sendBtn.setAttribute("aria-label", T("send"));
    sendBtn.title = T("send");
    closeBtn.setAttribute("aria-label", T("close"));
    closeBtn.title = T("close");
    bannerBtn.textContent = T("retry");
    $("mw-powered").textContent = T("powered");
  }

  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 80; }
  function scrollDown(force) { if (force || nearBottom()) log.scrollTop = log.scrollHeight; }

  function row(kind) {
    var r = el("div", "mw-row mw-" + kind);
    if (kind === "bot") {
      var av = el("div", "mw-avatar");
      av.setAttribute("aria-hidden", "true");
      av.setAttribute("data-initial", Array.from(String((S.config && S.config.name) || C.name || "m").trim())[0] || "m");
      r.appendChild(av);
    }
    var b = el("div", "mw-bubble");
    r.appendChild(b);
    r.bubble = b;
    return r;
  }
  function addBot(text, opts) {
    var wasNear = nearBottom();
    var r = row("bot");
    r.bubble.classList.add("mw-md");
    r.bubble.appendChild(md.render(text || ""));
    if (opts && opts.turn) r.setAttribute("data-turn", opts.turn);
    log.insertBefore(r, typingRow.parentNode === log ? typingRow : null);
    scrollDown(wasNear);
    return r;
  }
  function addUser(text) {
    var r = row("user");
    r.bubble.textContent = text;
    var sr = el("span", "mw-sr", T("you") + ": ");
    r.bubble.insertBefore(sr, r.bubble.firstChild);
    log.insertBefore(r, typingRow.parentNode === log ? typingRow : null);
    scrollDown(true);
    return r;
  }
  function addDivider(text) {
    var r = el("div", "mw-divider");
    r.appendChild(el("span", "", text));
    log.appendChild(r);
  }

  var typingRow = row("bot");
  typingRow.classList.add("mw-typing-row");
  typingRow.bubble.className = "mw-bubble mw-typing";
  typingRow.bubble.setAttribute("role", "status");
  [0, 1, 2].forEach(function () { typingRow.bubble.appendChild(el("span", "mw-dot")); });
  function typing(on) {
    if (on) {
      typingRow.bubble.setAttribute("aria-label", T("typing"));
      if (typingRow.parentNode !== log) log.appendChild(typingRow);
      scrollDown(true);
    } else if (typingRow.parentNode === log) {
      log.removeChild(typingRow);
    }
  }

  // --- banner: offline, reconnecting, rate limited, errors ---------------------------------------
  var bannerTimer = null;
  function setBanner(kind, text, retry) {
    clearInterval(bannerTimer);
    if (!kind) { banner.hidden = true; banner.className = "mw-banner"; return; }
    banner.className = "mw-banner mw-banner-" + kind;
    bannerText.textContent = text;
    bannerBtn.hidden = !retry;
    banner.hidden = false;
  }
  bannerBtn.addEventListener("click", function () { setBanner(null); retryNow(); });

  // --- postMessage to/from the host page --------------------------------------------------------
  function postHost(msg) {
    if (!parentWin || !hostOrigin) return;
    msg.source = "mejai";
    parentWin.postMessage(msg, hostOrigin);
  }
  function claims(token) {
    try {
      return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    } catch (e) { return {}; }
  }
  w.addEventListener("message", function (ev) {
    if (!parentWin || ev.source !== parentWin || !hostOrigin || ev.origin !== hostOrigin) return;
    var m = ev.data;
    if (!m || m.source !== "mejai" || typeof m.type !== "string") return;
    switch (m.type) {
      case "mejai:init": onInit(m); break;
      case "mejai:token": onToken(m); break;
      case "mejai:token_error":
        if (S.tokenWait) S.tokenWait.reject(new Error(m.code || "token_error"));
        break;
      case "mejai:open": setOpen(true); break;
      case "mejai:close": setOpen(false); break;
      case "mejai:context":
        if (m.page && typeof m.page === "object") {
          S.page = pageOf(m.page);
          if (S.token) apiEvent("page_view", { url: S.page.url, title: S.page.title });
        }
        break;
    }
  });
  function pageOf(p) {
    return { url: String(p.url || "").slice(0, 2000), title: String(p.title || "").slice(0, 300), referrer: String(p.referrer || "").slice(0, 2000) };
  }

  function onInit(m) {
    S.inits += 1;
    var c = claims(m.token || "");
    if (!m.token || (c.origin && c.origin !== hostOrigin)) {
      setBanner("error", T("auth"), false);
      return;
    }
    var fresh = m.reset || (S.sessionId && m.session_id !== S.sessionId);
    S.token = m.token;
    S.sessionId = m.session_id || null;
    S.config = m.config || {};
    S.page = pageOf(m.page || {});
    if (m.locale || S.config.locale) setLang(m.locale || S.config.locale);
    staticText();
    applyTheme(S.config);
    if (!S.started || fresh) renderHistory(m.history || []);
    S.started = true;
    setComposer(true);
    setBanner(null);
    if (m.open) setOpen(true);
    apiEvent("load", { url: S.page.url });
    if (fresh || !live.ctl) { live.lastId = null; liveStart(); }
    pump();
  }
  function onToken(m) {
    if (!m.token) return;
    S.token = m.token;
    if (m.session_id && m.session_id !== S.sessionId) {
      // The old conversation was closed meanwhile: follow the new one.
      S.sessionId = m.session_id;
      live.lastId = null;
      liveStart();
    }
    if (S.tokenWait) S.tokenWait.resolve();
  }
  function renewToken() {
    if (!S.tokenWait) {
      var wait = {};
      wait.promise = new Promise(function (resolve, reject) { wait.resolve = resolve; wait.reject = reject; });
      var timer = setTimeout(function () { wait.reject(new Error("token_timeout")); }, 15000);
      wait.promise.then(done, done);
      function done() { clearTimeout(timer); if (S.tokenWait === wait) S.tokenWait = null; }
      S.tokenWait = wait;
      if (C.preview) wait.reject(new Error("preview"));
      else postHost({ type: "mejai:token_expired" });
    }
    return S.tokenWait.promise;
  }

  function setOpen(open) {
    if (open === S.open) return;
    S.open = open;
    if (open) {
      S.unread = 0;
      postHost({ type: "mejai:unread", count: 0 });
      setTimeout(function () { input.focus(); }, 30);
      scrollDown(true);
    }
    if (S.token) apiEvent(open ? "open" : "close", { url: S.page.url });
  }

  function renderHistory(history) {
    log.textContent = "";
    var welcome = (S.config.theme && S.config.theme.welcome_message) || (C.theme && C.theme.welcome_message) || T("welcome");
    addBot(welcome).classList.add("mw-welcome");
    if (history.length) addDivider(T("earlier"));
    history.forEach(function (h) {
      if (h.role === "user") addUser(h.text || "");
      else if (h.text) addBot(h.text, { turn: h.turn_id });
      if (h.turn_id) S.seen[h.turn_id + ":" + h.role] = 1;
    });
    scrollDown(true);
  }

  // --- the API --------------------------------------------------------------------------------
  function httpError(r, body) {
    var e = new Error((body.error && body.error.message) || "HTTP " + r.status);
    e.status = r.status;
    e.code = (body.error && body.error.code) || "http_" + r.status;
    e.retryable = !!(body.error && body.error.retryable);
    e.retryAfter = +r.headers.get("Retry-After") || 0;
    return e;
  }
  function request(path, body, accept, extra) {
    var headers = { Accept: accept || "application/json", Authorization: "Bearer " + S.token };
    var opts = { method: body ? "POST" : "GET", credentials: "omit", cache: "no-store", headers: headers };
    if (body) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    for (var k in extra || {}) {
      if (k === "signal") opts.signal = extra.signal;
      else headers[k] = extra[k];
    }
    return fetch(path, opts).then(function (r) {
      if (r.ok) return r;
      return r.json().catch(function () { return {}; }).then(function (b) { throw httpError(r, b); });
    });
  }
  function authExpired(e) {
    return e.status === 401 || (e.status === 404 && e.code === "session_not_found");
  }
  function apiEvent(type, payload, retried) {
    if (!S.token) return Promise.resolve(null);
    if (!retried && (type === "cta_click" || type === "form_submit")) {
      postHost({ type: "mejai:event", event: type, payload: payload }); // the host page may react too
    }
    return request("/api/widget/event", { type: type, session_id: S.sessionId, payload: payload || {} }).then(function (r) {
      return r.json();
    }, function (e) {
      if (authExpired(e) && !retried) return renewToken().then(function () { return apiEvent(type, payload, true); });
      throw e;
    }).catch(function (e) {
      if (type === "form_submit") throw e;
      return null; // analytics events never disturb the chat
    });
  }

  // SSE over fetch + ReadableStream, so the token stays in a header.
  function readSSE(body, onEvent) {
    var reader = body.getReader(), dec = new TextDecoder(), buf = "";
    function parse() {
      var i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        var block = buf.slice(0, i), type = "message", data = [], id = null;
        buf = buf.slice(i + 2);
        block.split("\n").forEach(function (line) {
          if (!line || line.charAt(0) === ":") return;
          var c = line.indexOf(":");
          var f = c < 0 ? line : line.slice(0, c);
          var v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
          if (f === "event") type = v;
          else if (f === "data") data.push(v);
          else if (f === "id") id = v;
        });
        if (!data.length) continue;
        var obj;
        try { obj = JSON.parse(data.join("\n")); } catch (e) { continue; }
        onEvent(type, obj, id);
      }
    }
    function next() {
      return reader.read().then(function (res) {
        if (res.done) { buf += dec.decode(); parse(); return; }
        buf += dec.decode(res.value, { stream: true }).replace(/\r\n?/g, "\n");
        parse();
        return next();
      });
    }
    return next();
  }

  function uuid() {
    var a = new Uint8Array(16);
    w.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // --- sending ----------------------------------------------------------------------------------
  function maxChars() { return C.max_chars || 2000; }
  function send(text) {
    text = String(text || "").trim();
    if (!text) return;
    if (text.length > maxChars()) { showInputError(T("too_long", { n: maxChars() })); return; }
    clearQuickReplies();
    S.sent += 1;
    var item = { text: text, cmid: uuid(), row: addUser(text) };
    item.row.classList.add("mw-pending");
    S.queue.push(item);
    pump();
  }
  function pump() {
    if (S.busy || !S.queue.length || !S.token) return;
    if (navigator.onLine === false) { setBanner("offline", T("offline"), false); return; }
    var item = S.queue[0];
    markFailed(item, false);
    S.busy = true;
    typing(true);
    stream(item).then(function () {
      S.busy = false;
      S.attempt = 0;
      S.queue.shift();
      item.row.classList.remove("mw-pending");
      setBanner(null);
      drainLive();
      pump();
    }, function (e) {
      S.busy = false;
      typing(false);
      drainLive();
      failed(item, e);
    });
  }
  function stream(item) {
    var bot = null, text = "", frame = 0, done = false;
    function paint() {
      frame = 0;
      if (!bot) return;
      bot.bubble.textContent = "";
      bot.bubble.appendChild(md.render(text));
      scrollDown(false);
    }
    function ensureBot(turn) {
      if (bot) return bot;
      typing(false);
      bot = addBot("", { turn: turn });
      bot.bubble.setAttribute("aria-busy", "true");
      bot.classList.add("mw-streaming");
      return bot;
    }
    function finish(payload) {
      done = true;
      if (frame) cancelAnimationFrame(frame);
      if (payload.session_id) S.sessionId = payload.session_id;
      if (payload.turn_id && S.seen[payload.turn_id + ":assistant"] && !bot) return; // replay of one we show
      ensureBot(payload.turn_id);
      text = payload.message || text;
      paint();
      bot.bubble.removeAttribute("aria-busy");
      bot.classList.remove("mw-streaming");
      if (payload.turn_id) S.seen[payload.turn_id + ":assistant"] = 1;
      decorate(bot, payload);
      postHost({ type: "mejai:message", payload: payload });
      if (!S.open || d.hidden) {
        S.unread += 1;
        postHost({ type: "mejai:unread", count: S.unread });
      }
    }
    return request("/api/widget/chat", {
      message: item.text, session_id: S.sessionId, client_message_id: item.cmid, context: S.page
    }, "text/event-stream").then(function (r) {
      var ct = r.headers.get("Content-Type") || "";
      if (ct.indexOf("text/event-stream") < 0) return r.json().then(finish);
      return readSSE(r.body, function (type, ev) {
        if (type === "start") {
          if (ev.session_id) S.sessionId = ev.session_id;
          if (ev.turn_id) S.mine[ev.turn_id] = 1;
        } else if (type === "delta") {
          ensureBot(ev.turn_id);
          text += ev.text || "";
          if (!frame) frame = requestAnimationFrame(paint);
        } else if (type === "message") {
          finish(ev);
        } else if (type === "error") {
          var e = new Error(ev.message || T("error"));
          e.code = ev.code || "stream_error";
          e.retryable = !!ev.retryable;
          e.retryAfter = +ev.retry_after || 0;
          e.status = 0;
          e.partial = bot;
          throw e;
        }
      }).then(function () {
        if (!done) { var e = new Error("stream ended early"); e.partial = bot; throw e; }
      });
    }).catch(function (e) {
      // A retry replays the same client_message_id: the server answers from the stored turn.
      if (e.partial && e.partial.parentNode) e.partial.parentNode.removeChild(e.partial);
      throw e;
    });
  }

  function failed(item, e) {
    clearTimeout(S.retryTimer);
    if (authExpired(e)) {
      setBanner("info", T("expired"), false);
      renewToken().then(function () { setBanner(null); pump(); }, function () {
        setBanner("error", T("auth"), false);
        markFailed(item, true);
      });
      return;
    }
    if (e.status === 503 || e.code === "overloaded") {
      // The server is past its capacity (503 `overloaded`, or that event mid-stream): nothing is
      // wrong with the message. It stays queued and goes again after Retry-After, backing off,
      // for as long as it takes. A refused request stored nothing, so it keeps its
      // client_message_id; a turn stored and then refused mid-stream gets a new one (as above).
      if (e.status === 0) item.cmid = uuid();
      S.attempt += 1;
      var backoff = Math.min(30000, 1000 * Math.pow(2, Math.min(S.attempt, 6) - 1));
      setBanner("busy", T("busy"), false);
      markFailed(item, false);
      S.retryTimer = setTimeout(pump, Math.max((e.retryAfter || 1) * 1000, backoff) + Math.random() * 500);
      return;
    }
    if (e.status === 429) {
      var secs = Math.max(1, Math.min(e.retryAfter || 10, 600));
      setBanner("rate", T("rate", { s: secs }), true);
      bannerTimer = setInterval(function () {
        secs -= 1;
        if (secs <= 0) { setBanner(null); pump(); return; }
        bannerText.textContent = T("rate", { s: secs });
      }, 1000);
      markFailed(item, false);
      return;
    }
    if (e.status >= 400 && e.status < 500) {
      // Bad input (empty, too long, invalid): the server refuses it as it is; show why, keep the text.
      S.queue.shift();
      item.row.classList.remove("mw-pending");
      markFailed(item, true, e.message);
      if (!input.value) { input.value = item.text; autosize(); }
      pump();
      return;
    }
    if (navigator.onLine === false) { setBanner("offline", T("offline"), false); markFailed(item, false); return; }
    if (e.retryable && /^llm_/.test(e.code || "")) {
      // The model is out (unreachable, 5xx, timed out, cut off, empty), not the connection: say
      // so and let the visitor retry, instead of "reconnecting" through automatic retries that
      // hit the same outage. The message is stored as failed, so the retry is a new turn.
      item.cmid = uuid();
      S.attempt = 0;
      setBanner("model", T("model_down"), true);
      markFailed(item, true);
      return;
    }
    if (e.status === 0 && e.code) {
      // The server stored this turn as failed (or interrupted): the same client_message_id would only
      // replay that outcome, so any retry is a new turn.
      item.cmid = uuid();
      if (!e.retryable && e.code !== "client_disconnected") {
        // The pipeline's message is for operators ("The language model answered 400."): visitors get ours.
        setBanner("error", T("error"), true);
        markFailed(item, true);
        return;
      }
    }
    S.attempt += 1;
    if (S.attempt <= 4) {
      setBanner("reconnecting", T("reconnecting"), false);
      S.retryTimer = setTimeout(pump, 1000 * Math.pow(2, S.attempt - 1));
      return;
    }
    setBanner("error", T("error"), true);
    markFailed(item, true);
  }
  function retryNow() {
    clearTimeout(S.retryTimer);
    S.attempt = 0;
    pump();
  }
  function markFailed(item, on, why) {
    var meta = item.row.querySelector(".mw-meta");
    if (!on) { if (meta) meta.parentNode.removeChild(meta); item.row.classList.remove("mw-failed"); return; }
    item.row.classList.add("mw-failed");
    if (meta) return;
    meta = el("div", "mw-meta");
    meta.appendChild(el("span", "", why || T("failed")));
    if (!why) {
      var b = el("button", "mw-link", T("retry"));
      b.type = "button";
      b.addEventListener("click", function () { setBanner(null); retryNow(); });
      meta.appendChild(b);
    }
    item.row.appendChild(meta);
  }

  // --- the session's live stream: replies to this conversation from the visitor's other tabs ------
  var live = { ctl: null, lastId: null, tries: 0, timer: null, pending: [], rows: {} };
  function liveStart() {
    liveStop();
    if (!S.token || !S.sessionId || C.preview || !w.AbortController) return;
    var ctl = live.ctl = new AbortController();
    var extra = { signal: ctl.signal };
    if (live.lastId) extra["Last-Event-ID"] = live.lastId;
    request("/api/widget/stream?session_id=" + encodeURIComponent(S.sessionId), null, "text/event-stream", extra)
      .then(function (r) {
        live.tries = 0;
        if (banner.className.indexOf("mw-banner-reconnecting") >= 0 && !S.busy) setBanner(null);
        return readSSE(r.body, function (type, ev, id) {
          if (id) live.lastId = id;
          liveEvent(type, ev);
        });
      })
      .then(function () { liveRetry(null); }, function (e) { if (ctl === live.ctl) liveRetry(e); });
  }
  function liveStop() {
    clearTimeout(live.timer);
    if (live.ctl) { var c = live.ctl; live.ctl = null; c.abort(); }
  }
  function liveRetry(e) {
    if (!live.ctl) return;
    live.ctl = null;
    if (e && authExpired(e)) { renewToken().then(liveStart, function () {}); return; }
    live.tries += 1;
    if (live.tries >= 3 && !S.busy && navigator.onLine !== false) setBanner("reconnecting", T("reconnecting"), false);
    var wait = e && (e.status === 429 || e.status === 503) ? Math.max(e.retryAfter, e.status === 503 ? 1 : 5) * 1000 : Math.min(30000, 1000 * Math.pow(2, live.tries - 1));
    live.timer = setTimeout(liveStart, wait);
  }
  function liveEvent(type, ev) {
    if (S.busy) { live.pending.push([type, ev]); return; } // this tab's own turn is answering: sort out after
    var turn = ev.turn_id, key = turn + ":assistant";
    if (!turn || S.mine[turn]) return;
    if (type === "start") {
      if (ev.user_text && !S.seen[turn + ":user"]) { S.seen[turn + ":user"] = 1; addUser(ev.user_text); }
      if (!S.seen[key]) typing(true);
      return;
    }
    if (S.seen[key]) return;
    var r = live.rows[turn];
    if (type === "delta") {
      if (!r) {
        typing(false);
        r = live.rows[turn] = addBot("", { turn: turn });
        r.text = "";
        r.classList.add("mw-streaming");
        r.bubble.setAttribute("aria-busy", "true");
      }
      r.text += ev.text || "";
      if (!r.frame) r.frame = requestAnimationFrame(function () { r.frame = 0; paintRow(r, r.text); });
      return;
    }
    typing(false);
    delete live.rows[turn];
    if (r && r.frame) cancelAnimationFrame(r.frame);
    if (type === "error") { if (r && r.parentNode) r.parentNode.removeChild(r); return; }
    if (type !== "message") return;
    S.seen[key] = 1;
    if (r) paintRow(r, ev.message || r.text);
    else r = addBot(ev.message || "", { turn: turn });
    r.classList.remove("mw-streaming");
    r.bubble.removeAttribute("aria-busy");
    decorate(r, ev);
    postHost({ type: "mejai:message", payload: ev });
    if (!S.open || d.hidden) {
      S.unread += 1;
      postHost({ type: "mejai:unread", count: S.unread });
    }
  }
  function paintRow(r, text) {
    r.bubble.textContent = "";
    r.bubble.appendChild(md.render(text));
    scrollDown(false);
  }
  function drainLive() {
    var items = live.pending;
    live.pending = [];
    items.forEach(function (x) { liveEvent(x[0], x[1]); });
  }

  // --- quick replies and forms ---------------------------------------------------------------
  function clearQuickReplies() {
    Array.prototype.forEach.call(log.querySelectorAll(".mw-quick"), function (q) { q.parentNode.removeChild(q); });
  }
  function decorate(bot, payload) {
    if (payload.truncated && !bot.querySelector(".mw-truncated")) {
      bot.appendChild(el("div", "mw-truncated", T("truncated"))); // never shown as a whole answer
    }
    var qrs = Array.isArray(payload.quick_replies) ? payload.quick_replies : [];
    if (qrs.length) {
      var box = el("div", "mw-quick");
      box.setAttribute("role", "group");
      qrs.slice(0, 12).forEach(function (q) {
        var label = typeof q === "string" ? q : q && (q.label || q.message);
        if (!label) return;
        var b = el("button", "mw-chip", String(label));
        b.type = "button";
        b.addEventListener("click", function () { send(typeof q === "string" ? q : q.message || q.label); });
        box.appendChild(b);
      });
      log.appendChild(box);
    }
    if (payload.response_schema && typeof payload.response_schema === "object") {
      log.appendChild(schemaForm(payload.response_schema, payload.turn_id));
    }
    scrollDown(true);
  }

  var formSeq = 0;
  function schemaForm(schema, turnId) {
    var props = schema.properties && typeof schema.properties === "object" ? schema.properties : {};
    var required = Array.isArray(schema.required) ? schema.required : [];
    var f = el("form", "mw-form");
    f.noValidate = true;
    if (schema.title) f.appendChild(el("p", "mw-form-title", String(schema.title)));
    if (schema.description) f.appendChild(el("p", "mw-form-desc", String(schema.description)));
    var fields = [];
    Object.keys(props).slice(0, 10).forEach(function (name) {
      var p = props[name] || {};
      var id = "mw-f" + ++formSeq;
      var wrap = el("div", "mw-field");
      var label = el("label", "", String(p.title || T(name) || name));
      label.htmlFor = id;
      var kind = p.format === "email" || name === "email" ? "email" : p.format === "phone" || name === "phone" ? "tel" : (p.type === "integer" || p.type === "number") ? "number" : "text";
      var input;
      if (Array.isArray(p["enum"])) {
        input = el("select");
        input.appendChild(el("option", "", ""));
        p["enum"].forEach(function (v) { var o = el("option", "", String(v)); o.value = String(v); input.appendChild(o); });
      } else {
        input = el("input");
        input.type = kind;
        if (p.maxLength) input.maxLength = p.maxLength;
        var ac = { name: "name", email: "email", phone: "tel" }[name];
        if (ac) input.autocomplete = ac;
      }
      input.id = id;
      input.name = name;
      var req = required.indexOf(name) >= 0;
      if (req) { input.required = true; label.appendChild(el("span", "mw-req", " *")); }
      var err = el("div", "mw-field-error");
      err.id = id + "-err";
      input.setAttribute("aria-describedby", err.id);
      wrap.appendChild(label);
      wrap.appendChild(input);
      wrap.appendChild(err);
      f.appendChild(wrap);
      fields.push({ name: name, input: input, err: err, req: req, kind: kind });
    });
    var submit = el("button", "mw-btn", T("submit"));
    submit.type = "submit";
    var ferr = el("div", "mw-form-error");
    ferr.setAttribute("role", "alert");
    f.appendChild(ferr);
    f.appendChild(submit);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var values = {}, bad = null;
      fields.forEach(function (x) {
        var v = x.input.value.trim(), msg = "";
        if (x.req && !v) msg = T("required");
        else if (v && x.kind === "email" && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v)) msg = T("bad_email");
        else if (v && x.kind === "tel" && !/^[+0-9()\-.\s]{6,20}$/.test(v)) msg = T("bad_phone");
        x.err.textContent = msg;
        x.input.setAttribute("aria-invalid", msg ? "true" : "false");
        if (msg && !bad) bad = x.input;
        if (v) values[x.name] = x.kind === "number" ? Number(v) : v;
      });
      if (bad) { bad.focus(); return; }
      submit.disabled = true;
      ferr.textContent = "";
      apiEvent("form_submit", { values: values, turn_id: turnId || null }).then(function () {
        var ok = el("div", "mw-form-done", T("form_done"));
        ok.setAttribute("role", "status");
        f.parentNode.replaceChild(ok, f);
      }, function (e) {
        submit.disabled = false;
        ferr.textContent = (e && e.message) || T("error");
      });
    });
    return f;
  }

  // --- composer ---------------------------------------------------------------------------------
  function setComposer(on) {
    input.disabled = !on;
    sendBtn.disabled = !on;
  }
  function autosize() {
    input.style.setProperty("height", "auto");
    input.style.setProperty("height", Math.min(input.scrollHeight, 140) + "px");
    var n = input.value.length, max = maxChars();
    counter.hidden = n < max * 0.8;
    counter.textContent = T("chars", { n: n, max: max });
    counter.classList.toggle("mw-over", n > max);
  }
  function showInputError(msg) {
    setBanner("error", msg, false);
    setTimeout(function () { if (bannerText.textContent === msg) setBanner(null); }, 4000);
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (input.disabled) return;
    var v = input.value;
    if (!v.trim()) return;
    if (v.trim().length > maxChars()) { showInputError(T("too_long", { n: maxChars() })); return; }
    input.value = "";
    autosize();
    send(v);
  });
  input.addEventListener("keydown", function (ev) {
    // Korean IME: Enter while composing only ends the composition.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  input.addEventListener("input", autosize);
  closeBtn.addEventListener("click", function () { postHost({ type: "mejai:close_request" }); });
  d.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" || ev.key === "Esc") postHost({ type: "mejai:close_request" });
  });
  log.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[href]");
    if (!a) return;
    var r = a.closest(".mw-row");
    apiEvent("cta_click", { url: a.href, text: a.textContent.slice(0, 200), turn_id: r && r.getAttribute("data-turn") });
  });
  w.addEventListener("offline", function () { setBanner("offline", T("offline"), false); });
  w.addEventListener("online", function () {
    setBanner(null);
    if (!live.ctl) { live.tries = 0; liveStart(); }
    retryNow();
  });

  // --- start ------------------------------------------------------------------------------------
  staticText();
  applyTheme(null);
  setComposer(false);
  if (C.preview) {
    closeBtn.hidden = true;
    S.open = true;
    if (C.preview_init) {
      // The operator's own preview: a token minted for the quickstart page, same origin.
      onInit(C.preview_init);
    } else {
      renderHistory([]);
      setBanner("info", T("preview"), false);
    }
  } else if (!parentWin || !hostOrigin) {
    renderHistory([]);
    setBanner("info", T("standalone"), false);
  } else {
    statusLine.textContent = T("connecting");
    postHost({ type: "mejai:ready" });
  }
  w.mejaiEmbed = { state: S }; // for debugging and tests
})(window, document);
