/* A panel whose htmx request fails says so, in the panel, with a button that sends the request again.
 *
 * htmx swaps nothing on an error status (4xx/5xx) or a dropped connection, so without this the click
 * seems to do nothing. The words come from the script tag's data attributes, in the page's language.
 * A 401/403 never gets here: the server answers an htmx request from an expired session with
 * HX-Redirect to the login page (meters/access.py).
 */
(function () {
  "use strict";

  var words = document.currentScript ? document.currentScript.dataset : {};

  function panelOf(target) {
    return (target && target.closest && (target.closest(".panel") || target)) || null;
  }

  function clear(panel) {
    var old = panel && panel.querySelector(":scope > .htmx-error");
    if (old) {
      old.remove();
    }
  }

  function show(event, text) {
    var detail = event.detail || {};
    var config = detail.requestConfig || {};
    var source = detail.elt || config.elt;
    var target = detail.target || config.target || source;
    var panel = panelOf(target);
    if (!panel || !document.body.contains(panel)) {
      return;
    }
    clear(panel);
    var box = document.createElement("div");
    box.className = "htmx-error error";
    box.setAttribute("role", "alert");
    var message = document.createElement("span");
    message.textContent = text;
    var retry = document.createElement("button");
    retry.type = "button";
    retry.textContent = words.retry || "Try again";
    retry.addEventListener("click", function () {
      box.remove();
      window.htmx.ajax((config.verb || "get").toUpperCase(), config.path, {
        source: source,
        target: target,
        values: config.parameters
      }).catch(function () {
        // Failed again: htmx:responseError or htmx:sendError has put the message back.
      });
    });
    box.appendChild(message);
    box.appendChild(document.createTextNode(" "));
    box.appendChild(retry);
    panel.insertBefore(box, panel.firstChild);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : "";
    show(event, (words.server || "This part of the page could not be updated (error {status}).").replace("{status}", status));
  });
  document.addEventListener("htmx:sendError", function (event) {
    show(event, words.network || "No connection: this part of the page could not be updated.");
  });
  // A later success in the same panel takes the message away.
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail && event.detail.successful) {
      clear(panelOf(event.detail.target));
    }
  });
})();
