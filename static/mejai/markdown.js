/* mejai safe markdown: text in, DOM nodes out. No HTML string is ever parsed: every piece of the
   message becomes a text node (so "<script>" is shown as text), and only a small set of elements is
   created — p, br, strong, em, code, pre, ul, ol, li, blockquote and a (http/https only,
   rel="noopener noreferrer", target="_blank"). See docs/widgets-ui.md. */
(function (w) {
  "use strict";
  var d = w.document;
  var SAFE_URL = /^https?:\/\/[^\s<>"'`\\]+$/i;
  // code span | [label](url) | **bold** | __bold__ | *italic* | _italic_ | bare http(s) URL
  var INLINE = /`([^`\n]+)`|\[([^\]\n]{1,500})\]\(\s*([^()\s]{1,2048})\s*\)|\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__(?!\w)|\*([^\s*](?:[^*\n]*?[^\s*])?)\*|_([^\s_](?:[^_\n]*?[^\s_])?)_(?!\w)|(https?:\/\/[^\s<>()"'`]*[^\s<>()"'`.,;:!?])/g;

  function safeUrl(url) {
    url = String(url || "").trim();
    return SAFE_URL.test(url) ? url : null;
  }

  function link(parent, href, label, depth) {
    var a = d.createElement("a");
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    inline(a, label, depth + 1, true);
    parent.appendChild(a);
  }

  function inline(parent, text, depth, inLink) {
    depth = depth || 0;
    if (depth > 4) { parent.appendChild(d.createTextNode(text)); return; }
    var re = new RegExp(INLINE.source, "g");
    var last = 0, m;
    while ((m = re.exec(text))) {
      var before = m.index > 0 ? text.charAt(m.index - 1) : "";
      // snake_case, obj.__dunder__ and 2*3*4 stay as they are: _ emphasis opens only after a space or an
      // opening bracket or quote, * emphasis only after a non-word character.
      var under = m[5] !== undefined || m[7] !== undefined;
      if ((under && before && !/[\s([{"'\u201c\u2018]/.test(before)) || (m[6] !== undefined && /\w/.test(before))) {
        re.lastIndex = m.index + 1;
        continue;
      }
      if (m.index > last) parent.appendChild(d.createTextNode(text.slice(last, m.index)));
      last = re.lastIndex;
      if (m[1] !== undefined) {
        var c = d.createElement("code");
        c.textContent = m[1];
        parent.appendChild(c);
      } else if (m[2] !== undefined) {
        var href = safeUrl(m[3]);
        if (href && !inLink) link(parent, href, m[2], depth);
        else parent.appendChild(d.createTextNode(href ? m[2] : m[0])); // unsafe (javascript:, data:, …): shown as typed
      } else if (m[4] !== undefined || m[5] !== undefined) {
        var b = d.createElement("strong");
        inline(b, m[4] !== undefined ? m[4] : m[5], depth + 1, inLink);
        parent.appendChild(b);
      } else if (m[6] !== undefined || m[7] !== undefined) {
        var i = d.createElement("em");
        inline(i, m[6] !== undefined ? m[6] : m[7], depth + 1, inLink);
        parent.appendChild(i);
      } else if (m[8] !== undefined) {
        if (inLink) parent.appendChild(d.createTextNode(m[8]));
        else link(parent, m[8], m[8], depth);
      }
    }
    if (last < text.length) parent.appendChild(d.createTextNode(text.slice(last)));
  }

  function lines(parent, arr) {
    arr.forEach(function (line, n) {
      if (n) parent.appendChild(d.createElement("br"));
      inline(parent, line, 0, false);
    });
  }

  var UL = /^\s{0,3}[-*+•]\s+(.*)$/;
  var OL = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  var FENCE = /^\s{0,3}(```|~~~)/;
  var QUOTE = /^\s{0,3}>\s?(.*)$/;
  var HEAD = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/;

  function render(text) {
    var frag = d.createDocumentFragment();
    var src = String(text == null ? "" : text).replace(/\r\n?/g, "\n").split("\n");
    var para = null, list = null, listKind = null, quote = null;
    function flush() {
      if (para) { var p = d.createElement("p"); lines(p, para); frag.appendChild(p); }
      if (quote) { var q = d.createElement("blockquote"); lines(q, quote); frag.appendChild(q); }
      para = quote = null;
      list = listKind = null;
    }
    for (var i = 0; i < src.length; i++) {
      var line = src[i], m;
      if (FENCE.test(line)) {
        flush();
        var fence = FENCE.exec(line)[1], body = [];
        for (i++; i < src.length && src[i].trim().indexOf(fence) !== 0; i++) body.push(src[i]);
        var pre = d.createElement("pre"), code = d.createElement("code");
        code.textContent = body.join("\n");
        pre.appendChild(code);
        frag.appendChild(pre);
        continue;
      }
      if (!line.trim()) { flush(); continue; }
      if ((m = UL.exec(line)) || (m = OL.exec(line))) {
        var kind = m.length === 3 ? "ol" : "ul";
        if (para || quote || listKind !== kind) {
          flush();
          list = d.createElement(kind);
          listKind = kind;
          if (kind === "ol" && m[1] !== "1") list.setAttribute("start", String(parseInt(m[1], 10)));
          frag.appendChild(list);
        }
        var li = d.createElement("li");
        inline(li, kind === "ol" ? m[2] : m[1], 0, false);
        list.appendChild(li);
        continue;
      }
      if ((m = HEAD.exec(line))) {
        flush();
        var h = d.createElement("p"), s = d.createElement("strong");
        h.className = "md-h";
        inline(s, m[1], 0, false);
        h.appendChild(s);
        frag.appendChild(h);
        continue;
      }
      if ((m = QUOTE.exec(line))) {
        if (!quote) { flush(); quote = []; }
        quote.push(m[1]);
        continue;
      }
      if (list && /^\s{2,}\S/.test(line)) { // a continuation line of the last list item
        var item = list.lastChild;
        item.appendChild(d.createElement("br"));
        inline(item, line.trim(), 0, false);
        continue;
      }
      if (!para) { flush(); para = []; }
      para.push(line);
    }
    flush();
    return frag;
  }

  w.mejaiMarkdown = { render: render, safeUrl: safeUrl };
})(window);
