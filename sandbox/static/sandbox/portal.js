/* The simulated portal's side of the frame: load it with Bitrix24's form POST, answer what the
   stand-in BX24 library asks (sandbox/bx24.js), run the sandbox controls, and show the task as
   the fake Bitrix24 now has it. */
(function () {
  "use strict";
  var frame = document.getElementById("b24-app-frame");
  var log = document.getElementById("frame-log");
  var message = document.getElementById("control-message");
  var slider = document.getElementById("slider");
  window.bx24Log = [];

  function note(text) {
    if (!log) { return; }
    var item = document.createElement("li");
    item.textContent = new Date().toLocaleTimeString() + "  " + text;
    log.insertBefore(item, log.firstChild);
    while (log.children.length > 12) { log.removeChild(log.lastChild); }
  }

  window.addEventListener("message", function (event) {
    var data = event.data || {};
    if (!frame || event.source !== frame.contentWindow || !data.bx24) { return; }
    var params = data.params || {};
    window.bx24Log.push(data);
    if (data.bx24 === "resizeWindow") {
      var height = parseInt(params.height, 10);
      if (height > 0) { frame.style.height = height + "px"; }
      note("resizeWindow → " + height + " px");
    } else if (data.bx24 === "reloadWindow") {
      note("reloadWindow"); location.reload();
    } else if (data.bx24 === "openPath") {
      note("openPath " + params.path);
      document.getElementById("slider-path").textContent = params.path;
      slider.hidden = false;
    } else if (data.bx24 === "installFinish") {
      note("installFinish");
      if (frame.getAttribute("data-next")) { setTimeout(function () { location.assign(frame.getAttribute("data-next")); }, 600); }
    } else {
      note(data.bx24 + " (not simulated)");
    }
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-slider]")) { slider.hidden = true; }
  });

  var form = document.getElementById("b24-frame-form");
  if (form) { form.submit(); }

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  var buttons = document.querySelectorAll("[data-control]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (event) {
      var button = event.currentTarget;
      var body = new URLSearchParams();
      if (button.hasAttribute("data-on")) { body.set("on", button.getAttribute("data-on")); }
      button.disabled = true;
      fetch("/sandbox/controls/" + button.getAttribute("data-control") + "/", {
        method: "POST", body: body, headers: {"X-CSRFToken": csrf()}, credentials: "same-origin"
      }).then(function (response) { return response.json(); }).then(function (data) {
        message.textContent = data.message;
        if (button.hasAttribute("data-on")) {  /* a toggle: the next click undoes this one */
          var nowOn = button.getAttribute("data-on") === "1";
          button.setAttribute("data-on", nowOn ? "0" : "1");
          button.textContent = button.getAttribute(nowOn ? "data-label-off" : "data-label-on");
        }
        if (data.reload) { setTimeout(function () { location.reload(); }, 2500); }
      }).catch(function (error) { message.textContent = "That did not work: " + error.message; })
        .then(function () { button.disabled = false; });
    });
  }

  var card = document.getElementById("task-card");
  if (card) {
    var status = card.querySelector('[data-task-field="status"]');
    setInterval(function () {
      fetch(card.getAttribute("data-state-url"), {credentials: "same-origin"})
        .then(function (response) { return response.json(); })
        .then(function (task) {
          if (status.getAttribute("data-status") !== task.status) {
            status.setAttribute("data-status", task.status);
            status.textContent = task.status_label;
            note("the portal's task #" + task.id + " is now " + task.status_label);
          }
        }).catch(function () {});
    }, 1500);
  }
})();
