// The page's liveness watchdog, on every view: the status pill says how old the data is, and while the server gives
// no new answer for three refresh intervals the stale banner shows and the figures fade; both go with the next answer.
// A plain timer, not a Dash callback: while a refresh hangs Dash sends no new one and runs no callback that waits on
// its outputs, so only code outside Dash notices a server that takes requests and never answers them.
(function () {
  "use strict";
  var TICK_MS = 250;
  // With a very short --refresh-ms an ordinary slow answer would flash the banner: never stale in less than this.
  var LEAST_STALE_MS = 2000;
  // A tick this late means the page itself was busy (drawing charts, or a background tab): answers that came meanwhile
  // may still wait behind it, so that tick judges nothing.
  var LATE_MS = 4 * TICK_MS;
  var STATUSES = ["status-waiting", "status-live", "status-stale"];

  var seen = null;  // the last answer's text in #last-answer: the server's time of its data, and its time zone
  var answer = null;  // that answer, parsed: {at: server seconds, zone}
  var answeredAt = null;  // performance.now() when it arrived
  var watchedFrom = null;  // when the page's layout appeared, for a server that never answers at all
  var lastTick = null;
  var shownAt = null;  // when a hidden tab was last shown again: its timers were slowed, so refreshes were too

  function seconds(ms) {
    return Math.max(0, Math.round(ms / 1000));
  }

  function clockTime(at, zone) {
    var options = {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false};
    try {
      if (zone) { options.timeZone = zone; }
      return new Date(at * 1000).toLocaleTimeString("en-GB", options) + (zone === "UTC" ? " UTC" : "");
    } catch (e) {
      delete options.timeZone;  // a zone this browser does not know: its own
      return new Date(at * 1000).toLocaleTimeString("en-GB", options);
    }
  }

  function setStatus(pill, text, status) {
    if (pill.textContent !== text) { pill.textContent = text; }
    STATUSES.forEach(function (name) { pill.classList.toggle(name, name === status); });
  }

  // The banner is built here, inside the slot React leaves empty; only its lead is an alert, so a screen reader
  // announces it once rather than at every second the detail counts.
  function showBanner(slot, detail) {
    var banner = document.getElementById("stale-banner");
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "stale-banner";
      banner.className = "alert alert-warning stale-banner mb-3";
      var lead = document.createElement("span");
      lead.setAttribute("role", "alert");
      lead.textContent = "No answer from the server";
      var detailText = document.createElement("span");
      detailText.className = "stale-detail";
      banner.appendChild(lead);
      banner.appendChild(detailText);
      slot.appendChild(banner);
    }
    var shown = banner.querySelector(".stale-detail");
    if (shown.textContent !== detail) { shown.textContent = detail; }
  }

  function hideBanner() {
    var banner = document.getElementById("stale-banner");
    if (banner) { banner.parentNode.removeChild(banner); }
  }

  function tick() {
    var last = document.getElementById("last-answer");
    var pill = document.getElementById("connection-status");
    var slot = document.getElementById("stale-slot");
    var page = document.getElementById("page");
    if (!last || !pill || !slot || !page) { return; }  // the layout is not drawn yet
    var now = performance.now();
    if (watchedFrom === null) { watchedFrom = now; }
    var late = lastTick !== null && now - lastTick > LATE_MS;
    lastTick = now;
    if (late) { return; }
    // An answer counts when it carries a server time not seen before: a stamp that stops moving is no news, while
    // a server clock set back still counts, as the answer is new.
    var text = last.textContent;
    if (text && text !== seen) {
      seen = text;
      try {
        var parsed = JSON.parse(text);
        if (typeof parsed.at === "number" && (answer === null || parsed.at !== answer.at)) {
          answer = parsed;
          answeredAt = now;
        }
      } catch (e) { /* not an answer: keep the last one */ }
    }
    var refreshMs = parseFloat(last.getAttribute("data-refresh-ms")) || 1000;
    var limit = Math.max(3 * refreshMs, LEAST_STALE_MS);
    var age = now - (answeredAt === null ? watchedFrom : answeredAt);
    // A tab shown again gives the refreshes it resumes a chance before the page calls itself stale (a stale page
    // stays so until an answer comes).
    var grace = shownAt !== null && now - shownAt <= limit && !page.classList.contains("page-stale");
    if (age <= limit || grace) {
      if (answer === null) {
        setStatus(pill, "Connecting…", "status-waiting");
      } else {
        setStatus(pill, "Live · updated " + seconds(age) + " s ago", "status-live");
      }
      hideBanner();
      page.classList.remove("page-stale");
      return;
    }
    if (answer === null) {
      setStatus(pill, "No answer for " + seconds(age) + " s", "status-stale");
      showBanner(slot, " for " + seconds(age) + " s; retrying.");
    } else {
      setStatus(pill, "No answer · data " + seconds(age) + " s old", "status-stale");
      showBanner(slot, " for " + seconds(age) + " s — figures may be out of date (last data at " +
                 clockTime(answer.at, answer.zone) + "); retrying.");
    }
    page.classList.add("page-stale");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { shownAt = performance.now(); }
  });
  window.setInterval(tick, TICK_MS);
})();
