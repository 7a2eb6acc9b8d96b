// The sign-in bar (who is signed in, their role, sign out) and, once a sign-in has expired, the way back to it.
// Names are set as text, never as HTML.
(function () {
  "use strict";
  var mode = "none";

  function bar(me) {
    var el = document.createElement("div");
    el.id = "auth-bar";
    el.className = "auth-bar";
    var who = document.createElement("span");
    who.id = "auth-user";
    who.textContent = "Signed in as " + (me.user || "unknown") + " · " + me.role;
    el.appendChild(who);
    if (me.csrf) {
      var form = document.createElement("form");
      form.method = "post";
      form.action = "/auth/logout";
      var token = document.createElement("input");
      token.type = "hidden";
      token.name = "csrf";
      token.value = me.csrf;
      var button = document.createElement("button");
      button.type = "submit";
      button.id = "auth-sign-out";
      button.className = "btn btn-link btn-sm";
      button.textContent = "Sign out";
      form.appendChild(token);
      form.appendChild(button);
      el.appendChild(form);
    }
    document.body.insertBefore(el, document.body.firstChild);
  }

  var realFetch = window.fetch.bind(window);
  window.fetch = function () {
    return realFetch.apply(null, arguments).then(function (response) {
      if (response.status === 401 && mode === "oidc") {
        // The sign-in expired while the page was open: sign in again, and come back here.
        window.location.assign("/auth/login?next=" + encodeURIComponent(location.pathname + location.search));
      }
      return response;
    });
  };

  realFetch("/auth/me", {credentials: "same-origin"})
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (me) {
      if (!me || me.auth === "none") { return; }
      mode = me.auth;
      if (document.body) { bar(me); } else { document.addEventListener("DOMContentLoaded", function () { bar(me); }); }
    })
    .catch(function () {});
})();
