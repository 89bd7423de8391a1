/* Referral Cloud console: the few behaviours a server-rendered page cannot do alone. Served by the app. */
(function () {
  "use strict";

  function loginPage(box) {
    var left = parseInt(box.getAttribute("data-ttl"), 10) || 120;
    var state = document.getElementById("login-state");
    var countdown = document.getElementById("countdown");
    var done = false;
    function expired() {
      if (done) { return; }
      done = true;
      state.textContent = "二维码已过期，正在刷新…";
      box.classList.add("expired");
      // A desk PC may leave the login page open for hours: show a fresh code rather than a dead one.
      setTimeout(function () { window.location.assign("/console/login"); }, 2000);
    }
    var tick = setInterval(function () {
      if (done) { clearInterval(tick); return; }
      left -= 1;
      if (countdown) { countdown.textContent = String(Math.max(left, 0)); }
      if (left <= 0) { expired(); }
    }, 1000);
    function poll() {
      if (done) { return; }
      fetch("/console/login/status", {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (body) {
          if (body.state === "confirmed") {
            done = true;
            state.textContent = "已在手机上确认，正在登录…";
            window.location.assign("/console/login/complete");
          } else if (body.state === "expired") {
            expired();
          } else {
            setTimeout(poll, 1500);
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    setTimeout(poll, 1000);
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function printButtons() {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var login = document.getElementById("login");
    if (login) { loginPage(login); }
    confirmForms();
    printButtons();
    document.documentElement.setAttribute("data-console-ready", "1");
  });
})();
