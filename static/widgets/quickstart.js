/* mejai quickstart page: copy buttons, secret reveal, code tabs, widget picker, "try it". */
(function (d) {
  "use strict";
  function textOf(sel) {
    var node = d.querySelector(sel);
    if (!node) return "";
    return node.value !== undefined && node.tagName === "INPUT" ? node.value : node.textContent;
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var ta = d.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.className = "qs-offscreen";
      d.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = d.execCommand("copy"); } catch (e) { ok = false; }
      d.body.removeChild(ta);
      ok ? resolve() : reject(new Error("copy failed"));
    });
  }
  d.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-copy]");
    if (btn) {
      var label = btn.getAttribute("data-label") || btn.innerHTML;
      btn.setAttribute("data-label", label);
      copy(textOf(btn.getAttribute("data-copy"))).then(function () {
        btn.classList.add("is-done");
        btn.textContent = "복사됨 ✓";
      }, function () {
        btn.textContent = "직접 선택해 복사하세요";
      }).then(function () {
        setTimeout(function () { btn.classList.remove("is-done"); btn.innerHTML = btn.getAttribute("data-label"); }, 1800);
      });
      return;
    }
    var reveal = ev.target.closest("[data-reveal]");
    if (reveal) {
      var input = d.querySelector(reveal.getAttribute("data-reveal"));
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      reveal.setAttribute("aria-pressed", String(show));
      reveal.innerHTML = show ? '숨기기 <span class="qs-en">Hide</span>' : '보기 <span class="qs-en">Show</span>';
      return;
    }
    var tab = ev.target.closest('[role="tab"]');
    if (tab) {
      selectTab(tab);
      return;
    }
    if (ev.target.closest("[data-widget-open]") && window.mejaiWidget && window.mejaiWidget.open) {
      window.mejaiWidget.open();
    }
  });
  function selectTab(tab) {
    var bar = tab.parentNode;
    Array.prototype.forEach.call(bar.querySelectorAll('[role="tab"]'), function (t) {
      var on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      d.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
    tab.focus();
  }
  d.addEventListener("keydown", function (ev) {
    var tab = ev.target.closest && ev.target.closest('[role="tab"]');
    if (!tab || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) return;
    var tabs = Array.prototype.slice.call(tab.parentNode.querySelectorAll('[role="tab"]'));
    var i = tabs.indexOf(tab) + (ev.key === "ArrowRight" ? 1 : -1);
    selectTab(tabs[(i + tabs.length) % tabs.length]);
  });
  // The live widget's panel is fixed in the corner: while it is open the page makes room for it (CSS
  // .qs-widget-open), so it never covers the install-status cards. widget.js loads async: before it has,
  // the calls wait in the documented stub queue (window.mejaiWidget.q), which widget.js replays.
  function widgetApi(args) {
    var wg = window.mejaiWidget;
    if (wg && wg.version) return wg.apply(null, args);
    if (!wg) {
      wg = window.mejaiWidget = function () { (wg.q = wg.q || []).push(arguments); };
    }
    if (typeof wg === "function") wg.apply(null, args);
    else (wg.q = wg.q || []).push(args);
  }
  if (d.querySelector("[data-widget-open]")) {
    widgetApi(["on", "open", function () { d.documentElement.classList.add("qs-widget-open"); }]);
    widgetApi(["on", "close", function () { d.documentElement.classList.remove("qs-widget-open"); }]);
  }
  var picker = d.querySelector("[data-autosubmit]");
  if (picker) picker.addEventListener("change", function () { picker.form.submit(); });
})(document);
