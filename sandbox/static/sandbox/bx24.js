/* A stand-in for Bitrix24's JS library (//api.bitrix24.com/api/v1/) for the sandbox and browser
   tests: the calls this app's pages make, sent to the parent page over postMessage as
   {bx24: command, params: {...}}, the way the real library asks the portal (protocol 9 and 17).
   The parent (sandbox/portal.js) really resizes the frame, reloads the card, opens a "slider". */
(function () {
  "use strict";
  function send(command, params) { window.parent.postMessage({bx24: command, params: params || {}}, "*"); }
  function size() {
    return {scrollWidth: document.documentElement.scrollWidth, scrollHeight: document.documentElement.scrollHeight};
  }
  function done(callback, value) { if (typeof callback === "function") { callback(value); } }
  window.BX24 = {
    init: function (callback) { setTimeout(function () { done(callback); }, 0); },
    installFinish: function () { send("installFinish"); },
    getScrollSize: size,
    fitWindow: function (callback) {
      send("resizeWindow", {width: "100%", height: size().scrollHeight});
      done(callback);
    },
    resizeWindow: function (width, height, callback) {
      if (parseInt(height, 10) > 0) { send("resizeWindow", {width: width, height: parseInt(height, 10)}); }
      done(callback);
    },
    reloadWindow: function () { send("reloadWindow"); },
    openPath: function (path, callback) {
      send("openPath", {path: String(path)});
      done(callback, {result: "close"});
    },
    placement: {
      info: function () { return {placement: "", options: {}}; },
      getInterface: function (callback) { done(callback, {command: [], event: []}); }
    }
  };
  window.bx24StandIn = true;
})();
