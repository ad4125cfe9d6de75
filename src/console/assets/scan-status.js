// Progressive enhancement for the instance page while a scan is queued or running: asks
// the page itself every 5 s (same origin, the session cookie) and reloads only once the
// scan's state has changed, so results appear without a manual reload but the page never
// refreshes under a reader who is still looking at it (WCAG 2.2.1; no <meta refresh>).
// Without JavaScript the page keeps its "refresh now" link.
(function () {
  var marker = document.querySelector("[data-scan-state]");
  if (!marker || !window.fetch || !window.DOMParser) return;
  var state = marker.getAttribute("data-scan-state");
  function poll() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (html === null) return setTimeout(poll, 15000);
        var doc = new DOMParser().parseFromString(html, "text/html");
        var now = doc.querySelector("[data-scan-state]");
        var next = now ? now.getAttribute("data-scan-state") : "";
        if (next !== state) {
          window.location.reload();
        } else {
          setTimeout(poll, 5000);
        }
      })
      .catch(function () { setTimeout(poll, 15000); });
  }
  setTimeout(poll, 5000);
})();
