/* The wallet page's "Copy" button. Progressive enhancement: the address is selectable text without
 * JavaScript; the button appears only where the clipboard can be written. */
(function () {
  "use strict";

  var button = document.getElementById("copy-address");
  var source = document.getElementById("wallet-address");
  if (!button || !source || !navigator.clipboard) {
    return;
  }
  var address = source.textContent.trim();
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(address).then(function () { button.textContent = button.dataset.copied || "Copied"; });
  });
})();
