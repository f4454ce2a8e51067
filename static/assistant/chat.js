/* mejai /chat: the realtime assistant page over ws/chat/{client_id} (protocol: docs/assistant.md).
   Plain JavaScript, no build step. State lives in the server's stream: the page remembers the last
   `seq` it rendered and resumes from it on every reconnect (a reload starts from 0 and gets the
   history, or a snapshot), so text is neither lost nor shown twice. Replies are rendered with the
   shared safe markdown renderer (static/mejai/markdown.js). */
(function () {
  "use strict";
  var d = document;
  var cfg = JSON.parse(d.getElementById("chat-config").textContent);
  var TEXT = {
    ko: {
      title: "mejai 어시스턴트", agent: "에이전트", empty: "무엇이든 물어보세요. 답변은 실시간으로 이어집니다.",
      attach: "이미지 첨부", message: "메시지", send: "보내기", stop: "멈추기", skip: "입력창으로 건너뛰기",
      hint: "Enter 보내기 · Shift+Enter 줄바꿈 · Esc 멈추기",
      connecting: "연결 중…", connected: "연결됨", reconnecting: "연결이 끊겼습니다. 다시 연결 중…",
      offline: "오프라인입니다. 네트워크가 돌아오면 이어서 받습니다.", resumed: "다시 연결되어 답변을 이어받았습니다.",
      stopped: "중단됨", report: "작업 보고", you: "나", bot: "어시스턴트", failed: "답변 실패",
      tooMany: "이미지는 최대 {n}장까지 첨부할 수 있습니다.", tooBig: "이미지가 너무 큽니다 (최대 {mb} MB).",
      badType: "PNG, JPEG, WebP, GIF 이미지만 첨부할 수 있습니다.", remove: "첨부 삭제", image: "첨부 이미지",
      noAgent: "사용할 수 있는 에이전트가 없습니다.", waiting: "대기 중"
    },
    en: {
      title: "mejai assistant", agent: "Agent", empty: "Ask anything. Answers stream in as they are written.",
      attach: "Attach images", message: "Message", send: "Send", stop: "Stop", skip: "Skip to the message box",
      hint: "Enter to send · Shift+Enter for a new line · Esc to stop",
      connecting: "Connecting…", connected: "Connected", reconnecting: "Connection lost. Reconnecting…",
      offline: "You are offline. The answer continues when the network is back.", resumed: "Reconnected; the answer continues.",
      stopped: "stopped", report: "Task report", you: "You", bot: "Assistant", failed: "Not answered",
      tooMany: "Up to {n} images.", tooBig: "The image is too large (at most {mb} MB).",
      badType: "Only PNG, JPEG, WebP and GIF images.", remove: "Remove attachment", image: "Attached image",
      noAgent: "No agent is available.", waiting: "queued"
    }
  }[cfg.locale === "en" ? "en" : "ko"];
  var TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
  var STREAM = { queued: 1, start: 1, response: 1, end: 1, auto_report: 1 };

  var $ = function (id) { return d.getElementById(id); };
  var log = $("chat-log"), form = $("chat-form"), input = $("chat-input"), agentSelect = $("chat-agent");
  var stateEl = $("chat-state"), stopBtn = $("chat-stop"), sendBtn = $("chat-send"), notice = $("chat-notice");
  var fileInput = $("chat-images"), previews = $("chat-previews");

  Array.prototype.forEach.call(d.querySelectorAll("[data-i18n]"), function (el) {
    el.textContent = TEXT[el.getAttribute("data-i18n")] || "";
  });
  d.querySelector(".attach").title = TEXT.attach;
  input.placeholder = TEXT.message;

  function randomId(prefix) {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return prefix + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // One client_id per browser: every tab of it shares the stream (and sees the same answers).
  var CLIENT_KEY = "mejai.chat.client_id", AGENT_KEY = "mejai.chat.agent";
  var clientId = null;
  try { clientId = localStorage.getItem(CLIENT_KEY); } catch (e) { /* storage off: one id per page */ }
  if (!clientId || !/^[A-Za-z0-9_-]{8,64}$/.test(clientId)) {
    clientId = randomId("web-");
    try { localStorage.setItem(CLIENT_KEY, clientId); } catch (e) { /* ignore */ }
  }

  var socket = null, lastSeq = 0, retries = 0, retryTimer = null, everConnected = false;
  var project = null, turns = {}, byMessageId = {}, streaming = null, outbox = [], attached = [];

  // --- state line -------------------------------------------------------------------------
  function setState(state, text) {
    stateEl.setAttribute("data-state", state);
    stateEl.textContent = text || TEXT[state] || "";
  }
  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  // --- rendering --------------------------------------------------------------------------
  function scrollDown() {
    var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 160;
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }
  function bubble(kind, label) {
    var empty = $("chat-empty");
    if (empty) empty.remove();
    var item = d.createElement("article");
    item.className = "msg " + kind;
    var who = d.createElement("h2");
    who.className = "who";
    who.textContent = label;
    var body = d.createElement("div");
    body.className = "body";
    item.appendChild(who);
    item.appendChild(body);
    log.appendChild(item);
    return item;
  }
  function renderMarkdown(el, text) {
    while (el.firstChild) el.removeChild(el.firstChild);
    if (window.mejaiMarkdown) el.appendChild(window.mejaiMarkdown.render(text));
    else el.textContent = text;
  }
  function turnOf(turnId) {
    var t = turns[turnId];
    if (!t) t = turns[turnId] = { id: turnId, user: null, bot: null, text: "", done: false };
    return t;
  }
  function userBubble(t, message, images) {
    if (t.user) return;
    t.user = bubble("user", TEXT.you);
    var body = t.user.querySelector(".body");
    body.textContent = message;
    (images || []).forEach(function (src) {
      var img = d.createElement("img");
      img.src = src;
      img.alt = TEXT.image;
      img.className = "thumb";
      t.user.appendChild(img);
    });
  }
  function botBubble(t) {
    if (!t.bot) {
      t.bot = bubble("bot", TEXT.bot);
      t.bot.setAttribute("data-turn", t.id);
    }
    return t.bot;
  }
  function renderBot(t) {
    var el = botBubble(t);
    var body = el.querySelector(".body");
    renderMarkdown(body, t.text);
    el.classList.toggle("streaming", !t.done);
    if (!t.done) {
      var caret = d.createElement("span");
      caret.className = "caret";
      caret.setAttribute("aria-hidden", "true");
      (body.lastElementChild || body).appendChild(caret);
    }
    if (t.stopped) tag(el, TEXT.stopped, "tag-stopped");
    if (t.error) tag(el, TEXT.failed + ": " + t.error, "tag-error");
    scrollDown();
  }
  function tag(el, text, cls) {
    if (el.querySelector("." + cls)) return;
    var span = d.createElement("p");
    span.className = "tag " + cls;
    span.textContent = text;
    el.appendChild(span);
  }
  function setStreaming(turnId) {
    streaming = turnId;
    stopBtn.hidden = !turnId;
  }

  // --- frames -----------------------------------------------------------------------------
  function handle(frame) {
    var type = frame.type;
    var isStream = STREAM[type] || (type === "error" && frame.turn_id);
    if (isStream && !frame.broadcast) {
      if (frame.seq <= lastSeq) return; // already shown
      if (frame.seq > lastSeq + 1) { socket.close(); return; } // a gap: reconnect and resume from lastSeq
      lastSeq = frame.seq;
    }
    if (type === "ready") return onReady(frame);
    if (type === "snapshot") return onSnapshot(frame);
    if (type === "queued") {
      var pending = frame.id && byMessageId[frame.id];
      var t = turnOf(frame.turn_id);
      if (pending) { t.user = pending.el; pending.acked = true; outbox = outbox.filter(function (p) { return p !== pending; }); }
      userBubble(t, frame.message);
      if (!t.bot && frame.position > 0) { t.text = ""; t.done = false; renderBot(t); tag(t.bot, TEXT.waiting, "tag-waiting"); }
      return;
    }
    if (type === "start") {
      var s = turnOf(frame.turn_id);
      s.text = ""; s.done = false;
      var waiting = s.bot && s.bot.querySelector(".tag-waiting");
      if (waiting) waiting.remove();
      renderBot(s);
      setStreaming(frame.turn_id);
      return;
    }
    if (type === "response") {
      var r = turnOf(frame.turn_id);
      r.text += frame.content;
      renderBot(r);
      return;
    }
    if (type === "end" || (type === "error" && frame.turn_id)) {
      var e = turnOf(frame.turn_id);
      e.done = true;
      if (frame.stopped) e.stopped = true;
      if (type === "error") e.error = frame.message;
      renderBot(e);
      if (streaming === frame.turn_id) setStreaming(null);
      return;
    }
    if (type === "auto_report") {
      var report = bubble("report", TEXT.report + (frame.task_id ? " · " + String(frame.task_id).slice(0, 8) : ""));
      renderMarkdown(report.querySelector(".body"), frame.content || "");
      scrollDown();
      return;
    }
    if (type === "error") { showNotice(frame.message); return; }
  }

  function onReady(frame) {
    var first = !everConnected;
    everConnected = true;
    retries = 0;
    setState("connected", first ? TEXT.connected : TEXT.resumed);
    var projects = frame.projects || [];
    project = projects.length ? projects[0].id : null;
    var agents = projects.length ? projects[0].agents : [];
    var wanted = agentSelect.value;
    try { wanted = wanted || localStorage.getItem(AGENT_KEY); } catch (e) { /* ignore */ }
    while (agentSelect.firstChild) agentSelect.removeChild(agentSelect.firstChild);
    agents.forEach(function (name) {
      var option = d.createElement("option");
      option.value = option.textContent = name;
      agentSelect.appendChild(option);
    });
    if (wanted && agents.indexOf(wanted) >= 0) agentSelect.value = wanted;
    agentSelect.disabled = !agents.length;
    if (!agents.length) showNotice(TEXT.noAgent);
    // Messages typed while offline go out now, with their ids: a resend never makes a second turn.
    outbox.forEach(function (p) { send(p.frame); });
  }

  function onSnapshot(frame) {
    lastSeq = frame.seq;
    turns = {};
    Array.prototype.slice.call(log.querySelectorAll(".msg.user, .msg.bot")).forEach(function (el) { el.remove(); });
    (frame.turns || []).forEach(function (item) {
      var t = turnOf(item.turn_id);
      userBubble(t, item.message);
      t.text = item.content || "";
      t.done = ["completed", "failed", "interrupted", "stored"].indexOf(item.status) >= 0;
      if (item.status === "interrupted") t.stopped = true;
      if (item.status === "failed") t.error = item.error_code || TEXT.failed;
      if (t.text || !t.done) renderBot(t);
    });
    setStreaming(null);
    if (frame.turn_id && turns[frame.turn_id]) {
      var current = turns[frame.turn_id];
      if (frame.status === "streaming") {
        current.text = frame.content || "";
        current.done = false;
        renderBot(current);
        setStreaming(frame.turn_id);
      }
    }
  }

  // --- the socket -------------------------------------------------------------------------
  function connect() {
    clearTimeout(retryTimer);
    if (socket && socket.readyState <= 1) return;
    setState(everConnected ? "reconnecting" : "connecting");
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws/chat/" + encodeURIComponent(clientId) + "?last_seq=" + lastSeq);
    socket.onmessage = function (ev) {
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      handle(frame);
    };
    socket.onclose = function (ev) {
      socket = null;
      if (ev && ev.code === 4403) {
        // This browser's client_id belongs to someone else (another user logged in here before):
        // take a new one, or the page would retry the refused id for ever.
        clientId = randomId("web-");
        lastSeq = 0;
        try { localStorage.setItem(CLIENT_KEY, clientId); } catch (e) { /* ignore */ }
      }
      if (!navigator.onLine) { setState("offline"); return; }
      setState("reconnecting");
      var delay = Math.min(5000, 300 * Math.pow(2, retries++));
      retryTimer = setTimeout(connect, delay);
    };
  }
  function send(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); return true; }
    return false;
  }
  // A ping every 25 s keeps proxies from closing a quiet socket and collects waiting reports.
  setInterval(function () { send({ type: "ping" }); }, 25000);
  window.addEventListener("online", connect);
  window.addEventListener("offline", function () { setState("offline"); if (socket) socket.close(); });

  // --- composing --------------------------------------------------------------------------
  function submit() {
    var text = input.value.trim();
    if (!text || !project || !agentSelect.value) return;
    var id = randomId("m-");
    var frame = { type: "chat", message: text, project_id: project, agent_name: agentSelect.value, id: id,
                  images: attached.map(function (a) { return a.url; }) };
    var pending = { frame: frame, acked: false };
    var holder = { user: null };
    userBubble(holder, text, frame.images);
    pending.el = holder.user;
    byMessageId[id] = pending;
    outbox.push(pending);
    send(frame);
    input.value = "";
    attached = [];
    renderPreviews();
    autosize();
    showNotice("");
    scrollDown();
  }
  form.addEventListener("submit", function (ev) { ev.preventDefault(); submit(); });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) { ev.preventDefault(); submit(); }
  });
  d.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && streaming) { ev.preventDefault(); stop(); }
  });
  function stop() { send({ type: "stop" }); }
  stopBtn.addEventListener("click", stop);
  agentSelect.addEventListener("change", function () {
    try { localStorage.setItem(AGENT_KEY, agentSelect.value); } catch (e) { /* ignore */ }
  });
  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 200) + "px";
  }
  input.addEventListener("input", autosize);

  // --- images -----------------------------------------------------------------------------
  function renderPreviews() {
    while (previews.firstChild) previews.removeChild(previews.firstChild);
    attached.forEach(function (item, i) {
      var box = d.createElement("span");
      box.className = "preview";
      var img = d.createElement("img");
      img.src = item.url;
      img.alt = item.name;
      var remove = d.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", TEXT.remove + ": " + item.name);
      remove.addEventListener("click", function () { attached.splice(i, 1); renderPreviews(); input.focus(); });
      box.appendChild(img);
      box.appendChild(remove);
      previews.appendChild(box);
    });
  }
  fileInput.addEventListener("change", function () {
    Array.prototype.forEach.call(fileInput.files, function (file) {
      if (attached.length >= cfg.maxImages) { showNotice(TEXT.tooMany.replace("{n}", cfg.maxImages)); return; }
      if (TYPES.indexOf(file.type) < 0) { showNotice(TEXT.badType); return; }
      if (file.size > cfg.maxImageBytes) { showNotice(TEXT.tooBig.replace("{mb}", Math.floor(cfg.maxImageBytes / 1e6))); return; }
      var reader = new FileReader();
      reader.onload = function () { attached.push({ url: reader.result, name: file.name }); renderPreviews(); };
      reader.readAsDataURL(file);
    });
    fileInput.value = "";
  });

  connect();
  input.focus();
})();
