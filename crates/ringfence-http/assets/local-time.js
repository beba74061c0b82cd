// Shows every <time datetime="…"> of a page in the browser's time zone; the UTC time the
// server wrote stays in the element's title (shown on hover). Runs on load and on every
// piece of page htmx swaps in. No inline script: the pages' CSP forbids it.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  function localise(root) {
    var times = (root || document).querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < times.length; i++) {
      var at = new Date(times[i].getAttribute("datetime"));
      if (isNaN(at.getTime())) continue;
      times[i].textContent = format.format(at);
      times[i].setAttribute("data-local", "");
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localise(document); });
  } else {
    localise(document);
  }
  document.addEventListener("htmx:load", function (e) { localise(e.target); });
})();
