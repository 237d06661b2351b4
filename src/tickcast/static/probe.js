/*
 * tickcast live dashboard: why a connection attempt failed.
 *
 * A browser's WebSocket never shows the page the HTTP status of a refused upgrade (nor
 * does an EventSource), so after an attempt that never opened, the page asks the server
 * the same question over fetch: a GET of /sse with the same token, options and Origin.
 * Its status says what is wrong: 401, a token is missing or wrong; 403, this page's
 * origin is not allowed; another refusal carries the server's own message. An answer
 * of 200 (the stream is closed at once) or no answer at all leaves the generic
 * "cannot reach the server".
 */
(function (tc) {
  "use strict";

  const core = tc.core;
  const statusView = tc.statusView;
  const state = core.state;

  const PROBE_TIMEOUT_MS = 5000;
  let probes = 0;

  function probeUrl() {
    const params = { token: state.token, throttle_ms: state.throttleMs };
    if (state.transport === "sse") {
      const list = (state.symbols || []).concat(Array.from(state.pending));
      params.symbols = list.length ? list.join(",") : null;
    }
    return core.serverBase().http + "/sse" + core.queryString(params);
  }

  function pageOrigin() {
    return location.protocol === "file:" ? "null, a file opened from disk" : location.origin;
  }

  function refusalText(status, body) {
    const said = body && typeof body === "object" ? body.message || body.error : null;
    if (status === 401) {
      return state.token
        ? "The server did not accept the token: open this page with ?token= and the " +
          "server's token (its TICKCAST_TOKEN)."
        : "The server requires a token: open this page with ?token=YOUR_TOKEN (the " +
          "server's TICKCAST_TOKEN).";
    }
    if (status === 403) {
      return "The server refused this page's origin (" + pageOrigin() + "): the " +
        "server's TICKCAST_ALLOWED_ORIGINS must list it.";
    }
    return "The server refused the connection (HTTP " + status + (said ? ": " + said : "") + ").";
  }

  function explainFailure() {
    const id = ++probes;
    const controller = new AbortController();
    const timer = setTimeout(function () {
      controller.abort();
    }, PROBE_TIMEOUT_MS);
    fetch(probeUrl(), { signal: controller.signal, cache: "no-store" })
      .then(function (response) {
        if (response.ok) {
          controller.abort(); // admitted: the stream itself is not wanted
          return null;
        }
        return response.json()
          .catch(function () {
            return null;
          })
          .then(function (body) {
            return refusalText(response.status, body);
          });
      })
      .catch(function () {
        return null; // no answer (or one CORS hides): nothing more to say than the page does
      })
      .then(function (text) {
        clearTimeout(timer);
        // Only the latest probe speaks, and never over a connection that has opened since.
        if (id !== probes || state.conn === "connected") {
          return;
        }
        state.refusal = text;
        statusView.renderBanners();
      });
  }

  function forget() {
    probes += 1; // an answer still on its way is stale now
    state.refusal = null;
  }

  Object.assign(tc.probe, {
    explainFailure: explainFailure,
    forget: forget,
  });
})(window.tickcast);
