// Typing into an open dropdown finds: Dash's searchable dropdown opens with the focus on the selected option (the
// tool picker's "All tools"), where letters do nothing. A letter, digit or other printable key typed there moves the
// focus to the dropdown's search field first, so the key lands in it and filters the options; Enter then picks the
// first match (Dash's own behaviour in the search field).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key.length !== 1 || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var content = target && target.closest ? target.closest(".dash-dropdown-content") : null;
    if (!content) { return; }
    var search = content.querySelector("input.dash-dropdown-search");
    if (search && target !== search) { search.focus(); }
  }, true);
})();
