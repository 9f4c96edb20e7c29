/*
 * rumgate browser snippet: one beacon per page view, sent when the page is hidden.
 *
 *   <script src="https://rumgate.example/v1/rumgate.js" data-app="shop-web"
 *           data-release="2026.11.23-abc" data-endpoint="https://rumgate.example/v1/beacons" async></script>
 *
 * or set window.rumgateConfig = {app, release, endpoint, route, sampleRate} before it loads
 * (its keys win over the data attributes). rumgate serves this file after the web-vitals
 * IIFE build, whose `webVitals` it uses, both in one function (see streams/ingest/snippet.py).
 *
 * What is sent (the envelope streams/ingest/formats expects):
 *   {"id": this send's id, "view": page-view id, "app", "release", "session", "page", "device",
 *    "errors": n, "metrics": [{name, value, rating, delta, id, navigationType}, ...]}
 * A page view is sent at its first hide, and again at a later hide if it changed meanwhile:
 * each send has its own id (the endpoint drops only a repeated id) and the page view's view.
 */
(function () {
  'use strict';

  // Read now: document.currentScript is only set while this script first runs.
  var script = document.currentScript;
  var attrs = (script && script.dataset) || {};
  var cfg = window.rumgateConfig || {};
  var pick = function (key) { return cfg[key] != null ? cfg[key] : attrs[key]; };  // data-sample-rate: sampleRate

  var app = pick('app');
  var release = pick('release');
  // Default endpoint: beside the script itself (/v1/rumgate.js -> /v1/beacons).
  var endpoint = pick('endpoint') || (script && script.src ? new URL('beacons', script.src).href : '/v1/beacons');
  var sampleRate = Number(pick('sampleRate'));
  if (!(sampleRate >= 0 && sampleRate <= 1)) sampleRate = 1;
  var vitals = typeof webVitals !== 'undefined' ? webVitals : null;

  if (!app || !release) {
    // The gate compares releases: a beacon without them would only be rejected.
    console.warn('rumgate: data-app and data-release (or rumgateConfig.app/release) are required');
    return;
  }
  if (!vitals) {
    console.warn('rumgate: the web-vitals library is missing; load /v1/rumgate.js from rumgate');
    return;
  }

  // getRandomValues works on plain http too (crypto.randomUUID needs a secure context).
  function randomId() {
    var bytes = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.random() * 256;
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join('');
  }

  // One id per browser tab session; sessionStorage can throw (privacy modes, sandboxes).
  function sessionId() {
    try {
      var id = sessionStorage.getItem('rumgate.session');
      if (!id) sessionStorage.setItem('rumgate.session', (id = randomId()));
      return id;
    } catch (e) {
      return randomId();
    }
  }

  // userAgentData first (Chromium); tablets report mobile:false there, so the UA decides next;
  // the screen's short side is a last resort for touch devices with unhelpful UAs.
  function deviceClass() {
    var ua = navigator.userAgent || '';
    if (navigator.userAgentData && navigator.userAgentData.mobile) return 'mobile';
    if (/iPad|Tablet|PlayBook|Silk|Kindle|Android(?!.*Mobi)/i.test(ua) ||
        (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1)) return 'tablet';  // iPadOS poses as a Mac
    if (/Mobi|iPhone|iPod|Android|Opera Mini|IEMobile/i.test(ua)) return 'mobile';
    if (navigator.maxTouchPoints > 0 && window.screen) {
      var side = Math.min(screen.width, screen.height);
      if (side && side < 600) return 'mobile';
      if (side && side < 1024) return 'tablet';
    }
    return 'desktop';
  }

  var session = sessionId();
  // Sample whole sessions, not page views, so a user's page views stay together
  // (the gate's sample-ratio check counts users): the session id is random hex.
  if (parseInt(session.slice(0, 8), 16) / 4294967296 >= sampleRate) return;

  var view;  // the current page view: a new one (a new view id) after a back/forward-cache restore
  function newView() {
    view = {
      id: randomId(),
      app: String(app),
      release: String(release),
      session: session,
      page: String(pick('route') || location.pathname),  // never the query string or hash
      device: deviceClass(),
      errors: 0,
      metrics: {},  // name -> latest report; web-vitals reports some metrics several times
      sent: null,   // the content (the body but its id) last handed to the browser
    };
  }
  newView();
  // Restored from the back/forward cache: a new page view. Capture phase and registered
  // before web-vitals' listener, which reports the restored page's first metrics at once.
  addEventListener('pageshow', function (event) { if (event.persisted) newView(); }, true);

  function record(metric) {
    view.metrics[metric.name] = {
      name: metric.name, value: metric.value, rating: metric.rating, delta: metric.delta,
      id: metric.id, navigationType: metric.navigationType,  // not `entries`: DOM nodes, large
    };
  }
  vitals.onLCP(record);
  // web-vitals processes interactions in an idle callback; one still waiting when the page
  // is hidden is counted only after the forced final report, so without reportAllChanges the
  // last click before leaving (often the one that navigates away) would be missing. We keep
  // only the latest value anyway, so reporting every change costs nothing.
  vitals.onINP(record, {reportAllChanges: true});
  vitals.onCLS(record);
  vitals.onFCP(record);
  vitals.onTTFB(record);

  // Uncaught errors and rejections of this page view. Not capture-phase: that would count
  // failed image and script loads too.
  addEventListener('error', function () { view.errors++; });
  addEventListener('unhandledrejection', function () { view.errors++; });

  function send() {
    var metrics = [];
    for (var name in view.metrics) metrics.push(view.metrics[name]);
    var content = JSON.stringify({
      view: view.id, app: view.app, release: view.release, session: view.session, page: view.page,
      device: view.device, errors: view.errors, metrics: metrics,
    });
    // Each content once; a later hide sends again only if something changed meanwhile (a
    // metric first reported, CLS or INP grown, an error). That send has an id of its own, so
    // the endpoint takes it, and the same view, so the gate counts one page view: the first
    // value of each metric (the one at the first hide, which may be the page's last moment,
    // as a hidden page can be discarded unannounced), and an error whenever it came.
    if (content === view.sent) return;
    var body = '{"id":"' + randomId() + '",' + content.slice(1);
    // A string body goes as text/plain: a "simple" request, so no CORS preflight, and the
    // browser delivers it even while the page unloads.
    var queued = navigator.sendBeacon
      ? navigator.sendBeacon(endpoint, body)
      : (fetch(endpoint, {method: 'POST', body: body, keepalive: true, mode: 'no-cors'}), true);
    if (queued) view.sent = content;
  }

  // Registered after web-vitals' own (capture-phase) listeners, so by the time these run it
  // has reported the final CLS, INP and LCP of the page view.
  addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') send();
  });
  // On unload browsers fire pagehide *before* visibilitychange, and web-vitals finalizes LCP
  // and CLS only at the latter: sending here while still visible would send a page view
  // without them, and the gate keeps the first value of each metric of a view. So pagehide
  // only retries a send that the browser refused at the last hide.
  addEventListener('pagehide', function () {
    if (document.visibilityState === 'hidden') send();
  });
})();
