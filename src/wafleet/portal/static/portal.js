/* Progressive enhancement shared by every page: action buttons post to the JSON API
   with the CSRF header instead of reloading the page. Data is only ever inserted with
   textContent. Without JavaScript the forms post normally. */
(function () {
  "use strict";

  function csrf() { return document.body.getAttribute("data-csrf") || ""; }

  function show(el, text, isError) {
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("alert", !!isError);
    el.classList.toggle("notice", !isError);
    el.hidden = false;
  }

  var NOTICES = {
    restart: "Restart requested: the worker reconnects the session.",
    relink: "Re-link requested: a new QR code appears in a moment.",
    logout: "Log out requested: the WhatsApp session is being unlinked.",
    pause: "Pause requested: the bot disconnects and stays off until resumed.",
    resume: "Resume requested: the bot reconnects."
  };

  function enhanceAction(form) {
    form.addEventListener("submit", function (ev) {
      var api = form.getAttribute("data-api");
      if (!api || !window.fetch) return;  // plain form post
      ev.preventDefault();
      var question = form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) return;
      var button = form.querySelector("button");
      var out = document.getElementById("action-result");
      var action = form.getAttribute("data-action");
      if (button) button.disabled = true;
      fetch(api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "x-csrf-token": csrf(), "accept": "application/json" }
      }).then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          if (resp.ok) {
            show(out, NOTICES[action] || "Requested.", false);
          } else {
            var msg = body && body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
            show(out, "Could not " + action + ": " + msg, true);
          }
        });
      }).catch(function () {
        show(out, "Could not reach the portal; check your connection and try again.", true);
      }).then(function () { if (button) button.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var forms = document.querySelectorAll("form.action-form");
    for (var i = 0; i < forms.length; i++) enhanceAction(forms[i]);
  });
})();
