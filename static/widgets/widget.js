/*! mejai web widget loader · plain JS, no dependencies · docs/widgets-ui.md */
(function (w, d) {
  "use strict";
  var TAG = "[mejai]";
  var P = "mejai-w";
  var CSS = "__MEJAI_LAUNCHER_CSS__"; // filled in by the /widget.js view (versioned stylesheet path)

  // A second copy of the script on the same page only warns.
  if (w.__mejaiWidgetLoaded) {
    console.warn(TAG + " widget.js is already loaded on this page; this copy does nothing.");
    return;
  }
  w.__mejaiWidgetLoaded = true;

  var script = d.currentScript || (function () {
    var all = d.querySelectorAll('script[src*="/widget.js"]');
    return all[all.length - 1];
  })();

  // window.mejaiWidget before load: a config object, or the stub function; either may carry .q (queued calls).
  var pre = w.mejaiWidget;
  var cfg = {};
  if (pre && (typeof pre === "object" || typeof pre === "function")) {
    for (var k in pre) if (Object.prototype.hasOwnProperty.call(pre, k)) cfg[k] = pre[k];
  }
  var queue = cfg.q && cfg.q.length ? Array.prototype.slice.call(cfg.q) : [];
  function attr(name) { return script ? script.getAttribute("data-" + name) : null; }

  var base;
  try {
    base = new URL(cfg.host || script.src, location.href).origin;
  } catch (e) {
    console.error(TAG + " cannot tell the mejai server from the script URL; set window.mejaiWidget.host.");
    return;
  }
  var key = cfg.key || attr("key");
  if (!key) {
    console.error(TAG + ' no widget key: add data-key="mw_pk_…" to the script tag or set window.mejaiWidget.key.');
    return;
  }
  var position = cfg.position || attr("position");
  var locale = cfg.locale || attr("locale");
  var user = cfg.user && typeof cfg.user === "object" ? cfg.user : null;

  // --- visitor id: random, kept in the host page's storage, separate from any token ---------------
  var SKEY = "mejai:visitor:" + key;
  var memoryId = null;
  function newId() {
    var a = new Uint8Array(16);
    (w.crypto || w.msCrypto).getRandomValues(a);
    a[6] = (a[6] & 15) | 64;
    a[8] = (a[8] & 63) | 128;
    var h = Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function visitorId(fresh) {
    var id = null;
    try {
      if (fresh) w.localStorage.removeItem(SKEY);
      id = w.localStorage.getItem(SKEY);
      if (!id) { id = newId(); w.localStorage.setItem(SKEY, id); }
      return id;
    } catch (e) {
      // Storage blocked (privacy mode): a per-page-load visitor.
      if (fresh || !memoryId) memoryId = newId();
      return memoryId;
    }
  }

  // --- events ----------------------------------------------------------------------------------
  var handlers = {};
  var st = { ready: false, open: false, unread: 0, frameReady: false, data: null, booting: false, pendingOpen: null };
  function emit(name, arg) {
    (handlers[name] || []).slice().forEach(function (fn) {
      try { fn(arg); } catch (e) { console.error(TAG + " '" + name + "' handler failed:", e); }
    });
  }

  // --- the host API -------------------------------------------------------------------------------
  function call(args) {
    args = Array.prototype.slice.call(args);
    var fn = api[args[0]];
    if (typeof fn === "function" && args[0] !== "q") return fn.apply(api, args.slice(1));
    console.warn(TAG + " unknown call: " + args[0]);
  }
  var api = function () { return call(arguments); };
  api.version = "1";
  api.key = key;
  api.open = function () { setOpen(true, "api"); return api; };
  api.close = function () { setOpen(false, "api"); return api; };
  api.toggle = function () { setOpen(!(st.pendingOpen !== null ? st.pendingOpen : st.open), "api"); return api; };
  api.isOpen = function () { return st.open; };
  api.on = function (name, fn) {
    if (typeof fn !== "function") return api;
    (handlers[name] = handlers[name] || []).push(fn);
    if (name === "ready" && st.ready) setTimeout(function () { fn(readyInfo()); }, 0);
    return api;
  };
  api.off = function (name, fn) {
    handlers[name] = (handlers[name] || []).filter(function (f) { return fn && f !== fn; });
    return api;
  };
  api.setUser = function (u) {
    user = u && typeof u === "object" ? u : null;
    if (st.ready) boot(0, false);
    return api;
  };
  api.reset = function () {
    user = null;
    vid = visitorId(true);
    setUnread(0);
    if (st.ready) boot(0, true);
    return api;
  };
  w.mejaiWidget = api;

  // --- init ------------------------------------------------------------------------------------
  var vid = visitorId(false);
  function page() { return { url: location.href, title: d.title, referrer: d.referrer }; }
  function readyInfo() {
    var x = st.data || {};
    return { session_id: x.session_id, visitor_id: x.visitor_id || vid, verified: !!x.end_user_verified };
  }
  function init() {
    var v = { id: vid };
    if (user) {
      if (user.id !== undefined && user.id !== null) v.user_id = String(user.id);
      ["name", "email", "phone", "hash"].forEach(function (f) { if (user[f]) v[f] = String(user[f]); });
    }
    var body = { public_key: key, origin: location.origin, page_url: location.href, referrer: d.referrer, visitor: v };
    if (locale) body.locale = locale;
    return fetch(base + "/api/widget/init", {
      method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (r.ok && b.widget_token) return b;
        var err = b.error || {};
        var e = new Error(err.message || "HTTP " + r.status);
        e.status = r.status; e.code = err.code || "http_" + r.status;
        e.retryAfter = +r.headers.get("Retry-After") || 0;
        throw e;
      });
    });
  }

  var bootId = 0;
  function boot(attempt, reset) {
    var my = ++bootId;
    return init().then(function (data) {
      if (my !== bootId) return;
      st.data = data;
      if (!root) build();
      else if (st.frameReady) sendInit(reset);
    }, function (e) {
      if (my !== bootId) return;
      // A refused CORS preflight (origin not allowed) looks like a network error: retry it only twice.
      var transient = e.status === 429 || e.status >= 500 || (!e.status && attempt < 2);
      if (transient && attempt < 5) {
        setTimeout(function () { boot(attempt + 1, reset); }, Math.max(e.retryAfter * 1000, 1000 * Math.pow(2, attempt)));
        return;
      }
      console.warn(TAG + " the widget did not start: " + (e.status ? e.code + " " + e.message :
        "mejai is unreachable, or " + location.origin + " is not one of the widget's allowed domains"));
      emit("error", { code: e.code, status: e.status, message: e.message });
    });
  }
  function refreshToken() {
    init().then(function (data) {
      st.data = data;
      post({ type: "mejai:token", token: data.widget_token, session_id: data.session_id, expires_at: data.token_expires_at });
    }, function (e) {
      console.warn(TAG + " could not renew the widget token: " + (e.code || e.message));
      post({ type: "mejai:token_error", code: e.code || "network", status: e.status || 0 });
    });
  }

  // --- the launcher and the panel ---------------------------------------------------------------
  var root, launcher, badge, panel, frame, bubble;
  var mobile = w.matchMedia ? w.matchMedia("(max-width: 640px)") : { matches: false };
  var SVG = "http://www.w3.org/2000/svg";
  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    help: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 16h-2v-2h2v2zm1.1-7.4-.9.9c-.7.7-1.2 1.3-1.2 2.5h-2v-.5c0-1.1.5-2.1 1.2-2.8l1.2-1.3a2 2 0 1 0-3.4-1.4H7a4 4 0 1 1 8 0c0 .9-.4 1.7-.9 2.6z",
    close: "M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7 2.9 18.3 9.2 12 2.9 5.7 4.3 4.3l6.3 6.3 6.3-6.3z"
  };
  function el(tag, cls) { var e = d.createElement(tag); if (cls) e.className = cls; return e; }
  function icon(name, cls) {
    var s = d.createElementNS(SVG, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    s.setAttribute("class", cls);
    var p = d.createElementNS(SVG, "path");
    p.setAttribute("d", ICONS[name] || ICONS.chat);
    p.setAttribute("fill", "currentColor");
    s.appendChild(p);
    return s;
  }
  function t(ko, en) { return (locale || (st.data && st.data.widget_config && st.data.widget_config.locale) || "ko").indexOf("en") === 0 ? en : ko; }

  function build() {
    var conf = st.data.widget_config || {};
    var theme = conf.theme || {};
    root = el("div", P);
    root.setAttribute("data-mejai-widget", "1");
    root.style.setProperty("display", "none"); // CSSOM, not a style= attribute: shown once the stylesheet is in
    if (/^#[0-9a-f]{3,8}$/i.test(theme.color || "")) root.style.setProperty("--mejai-w-color", theme.color);
    var pos = position || theme.position;
    if (pos === "bottom-left") root.classList.add(P + "-left");
    if (theme.mobile_allowed === false) root.classList.add(P + "-nomobile");

    var title = theme.launcher_title || conf.name || t("채팅 상담", "Chat with us");
    launcher = el("button", P + "-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-haspopup", "dialog");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", P + "-panel");
    launcher.title = title;
    if (/^https:\/\//.test(theme.icon || "")) {
      var img = el("img", P + "-icon " + P + "-icon-open");
      img.src = theme.icon; img.alt = "";
      launcher.appendChild(img);
    } else {
      launcher.appendChild(icon(theme.icon === "help" ? "help" : "chat", P + "-icon " + P + "-icon-open"));
    }
    launcher.appendChild(icon("close", P + "-icon " + P + "-icon-close"));
    badge = el("span", P + "-badge");
    badge.setAttribute("aria-hidden", "true");
    launcher.appendChild(badge);
    launcher.addEventListener("click", function () { setOpen(!st.open, "launcher"); });

    panel = el("div", P + "-panel");
    panel.id = P + "-panel";
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", title);
    panel.setAttribute("aria-hidden", "true");
    frame = el("iframe", P + "-frame");
    frame.title = title;
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox");
    frame.setAttribute("allow", "clipboard-write");
    frame.src = base + "/embed/" + encodeURIComponent(key) + "?origin=" + encodeURIComponent(location.origin) +
      (locale ? "&locale=" + encodeURIComponent(locale) : "");
    panel.appendChild(frame);
    root.appendChild(panel);
    root.appendChild(launcher);
    greetingBubble(theme.greeting);
    labelLauncher(title);

    var shown = false;
    function show(ok) {
      if (shown) return;
      shown = true;
      if (!ok) fallbackStyles();
      root.style.removeProperty("display");
      st.ready = true;
      emit("ready", readyInfo());
      if (st.pendingOpen !== null) { var o = st.pendingOpen; st.pendingOpen = null; setOpen(o, "api"); }
    }
    var link = d.createElement("link");
    link.rel = "stylesheet";
    link.href = base + CSS;
    link.onload = function () { show(true); };
    link.onerror = function () {
      console.warn(TAG + " launcher.css did not load (host CSP style-src?); using minimal styles.");
      show(false);
    };
    (d.head || d.documentElement).appendChild(link);
    d.body.appendChild(root);
  }

  // The greeting: a speech bubble next to the closed launcher (the admin's "인사말 · Greeting"). Clicking
  // it opens the chat; its × hides it for this browser tab's session, as opening the chat does.
  var BKEY = "mejai-greeting-closed:" + key;
  function bubbleGone() { try { return w.sessionStorage.getItem(BKEY) === "1"; } catch (e) { return false; } }
  function greetingBubble(text) {
    text = String(text || "").trim();
    if (!text || bubbleGone()) return;
    bubble = el("div", P + "-greeting");
    var say = el("button", P + "-greeting-text");
    say.type = "button";
    say.textContent = text;
    say.addEventListener("click", function () { setOpen(true, "greeting"); });
    var x = el("button", P + "-greeting-close");
    x.type = "button";
    x.textContent = "\u00d7";
    x.setAttribute("aria-label", t("인사말 닫기", "Dismiss greeting"));
    x.addEventListener("click", function () { greetingDismiss(); launcher.focus(); });
    bubble.appendChild(say);
    bubble.appendChild(x);
    root.appendChild(bubble);
  }
  function greetingDismiss() {
    if (!bubble) return;
    bubble.parentNode.removeChild(bubble);
    bubble = null;
    try { w.sessionStorage.setItem(BKEY, "1"); } catch (e) { /* storage blocked: gone until reload */ }
  }

  // Without the stylesheet (a host CSP that blocks it) the widget still works, plainly (CSSOM only).
  function fallbackStyles() {
    var left = root.classList.contains(P + "-left");
    [[root, { position: "fixed", bottom: "20px", "z-index": "2147483000" }],
      [launcher, { width: "56px", height: "56px", "border-radius": "50%", border: "0", color: "#fff", background: "#4f46e5" }],
      [panel, { position: "absolute", bottom: "72px", width: "380px", height: "600px", display: "none" }],
      [frame, { width: "100%", height: "100%", border: "0" }]].forEach(function (x) {
      for (var p in x[1]) x[0].style.setProperty(p, x[1][p]);
    });
    root.style.setProperty(left ? "left" : "right", "20px");
    panel.style.setProperty(left ? "left" : "right", "0");
    if (bubble) bubble.style.setProperty("display", "none"); // unstyled it would sit on the page's text
    root.__fallback = true;
  }

  function labelLauncher(title) {
    var open = st.open;
    var label = open ? t("채팅 닫기", "Close chat") : title + (st.unread ? t(" — 새 메시지 " + st.unread + "개", " — " + st.unread + " new") : "");
    launcher.setAttribute("aria-label", label);
  }

  function setOpen(open, why) {
    if (!root || !st.ready) { st.pendingOpen = open; return; }
    if (open === st.open) return;
    st.open = open;
    root.classList.toggle(P + "-open", open);
    if (root.__fallback) panel.style.setProperty("display", open ? "block" : "none");
    d.documentElement.classList.toggle(P + "-lock", open && mobile.matches);
    launcher.setAttribute("aria-expanded", String(open));
    panel.setAttribute("aria-hidden", String(!open));
    labelLauncher(launcher.title);
    post({ type: open ? "mejai:open" : "mejai:close", reason: why });
    if (open) {
      greetingDismiss();
      setUnread(0);
      try { frame.focus(); } catch (e) { /* ignore */ }
    } else if (why !== "api" || panel.contains(d.activeElement) || d.activeElement === frame) {
      launcher.focus();
    }
    emit(open ? "open" : "close");
  }

  function setUnread(n) {
    n = Math.max(0, n | 0);
    if (n === st.unread) return;
    st.unread = n;
    if (badge) {
      badge.textContent = n > 9 ? "9+" : String(n);
      root.classList.toggle(P + "-unread", n > 0);
      labelLauncher(launcher.title);
    }
    emit("unread", { count: n });
  }

  // --- postMessage: explicit target origin out; origin and source checked in -----------------
  function post(msg) {
    if (!frame || !st.frameReady || !frame.contentWindow) return;
    msg.source = "mejai";
    frame.contentWindow.postMessage(msg, base);
  }
  function sendInit(reset) {
    var x = st.data;
    post({
      type: "mejai:init", token: x.widget_token, expires_at: x.token_expires_at, session_id: x.session_id,
      visitor_id: x.visitor_id || vid, verified: !!x.end_user_verified, config: x.widget_config, history: x.history || [],
      page: page(), open: st.open, locale: locale || null, reset: !!reset
    });
  }
  w.addEventListener("message", function (ev) {
    if (!frame || ev.origin !== base || ev.source !== frame.contentWindow) return;
    var m = ev.data;
    if (!m || m.source !== "mejai" || typeof m.type !== "string") return;
    switch (m.type) {
      case "mejai:ready": st.frameReady = true; sendInit(false); break;
      case "mejai:close_request": setOpen(false, "frame"); break;
      case "mejai:open_request": setOpen(true, "frame"); break;
      case "mejai:unread": if (!st.open) setUnread(m.count); break;
      case "mejai:message": emit("message", m.payload); break;
      case "mejai:token_expired": refreshToken(); break;
      case "mejai:event": emit("event", { type: m.event, payload: m.payload }); break;
    }
  });

  d.addEventListener("keydown", function (ev) {
    if (st.open && (ev.key === "Escape" || ev.key === "Esc")) setOpen(false, "escape");
  });
  if (mobile.addEventListener) {
    mobile.addEventListener("change", function () { d.documentElement.classList.toggle(P + "-lock", st.open && mobile.matches); });
  }

  // --- single-page apps: route changes update the page context --------------------------------
  var lastUrl = location.href;
  function routed() {
    setTimeout(function () {
      if (location.href === lastUrl) return;
      lastUrl = location.href;
      post({ type: "mejai:context", page: page() });
      emit("route", page());
    }, 0);
  }
  ["pushState", "replaceState"].forEach(function (name) {
    var orig = history[name];
    if (typeof orig !== "function") return;
    history[name] = function () {
      var r = orig.apply(this, arguments);
      routed();
      return r;
    };
  });
  w.addEventListener("popstate", routed);
  w.addEventListener("hashchange", routed);

  // Replay calls queued before load (setUser first affects the first init), then start.
  queue.forEach(function (args) {
    try { call(args); } catch (e) { console.error(TAG + " queued call failed:", e); }
  });
  function start() { boot(0, false); }
  if (d.body) start();
  else d.addEventListener("DOMContentLoaded", start);
})(window, document);
