// The storefront's only script: opens Paddle's overlay checkout on the landing page and
// follows provisioning on the welcome page. No inline scripts anywhere (see the CSP);
// what each page needs arrives in a JSON data block.
(function () {
  "use strict";

  function readJson(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function setupCheckout(config) {
    var buttons = document.querySelectorAll("button.checkout");
    var notice = document.getElementById("checkout-notice");
    var paddle = window.Paddle;
    if (!paddle || !config.clientToken) {
      // Blocked by the visitor's browser, or checkout not configured yet.
      if (notice) {
        notice.textContent =
          "Checkout could not load. Please allow scripts from cdn.paddle.com, or try again in a few minutes.";
        notice.hidden = false;
      }
      return;
    }
    if (config.environment === "sandbox") {
      paddle.Environment.set("sandbox"); // must come before Initialize
    }
    paddle.Initialize({ token: config.clientToken });
    Array.prototype.forEach.call(buttons, function (button) {
      button.disabled = false;
      button.addEventListener("click", function () {
        paddle.Checkout.open({
          items: [{ priceId: button.getAttribute("data-price-id"), quantity: 1 }],
          customData: { onboarding_token: button.getAttribute("data-onboarding-token") },
          settings: {
            displayMode: "overlay",
            theme: "light",
            successUrl: config.successUrl,
          },
        });
      });
    });
  }

  var STEPS_DONE = { waiting_for_payment: 0, provisioning: 1, delayed: 1 };
  var FINAL = { active: true, ended: true, suspended: true };

  function followStatus(config, texts) {
    var panel = document.getElementById("setup-status");
    var title = document.getElementById("status-title");
    var text = document.getElementById("status-text");
    var steps = document.querySelectorAll("#progress li");

    function show(status) {
      var words = texts[status];
      if (!words) return;
      panel.setAttribute("data-status", status);
      title.textContent = words.title;
      text.textContent = words.text;
      var done = status in STEPS_DONE ? STEPS_DONE[status] : steps.length;
      Array.prototype.forEach.call(steps, function (step, index) {
        step.className = index < done ? "done" : index === done ? "current" : "todo";
      });
    }

    function poll() {
      var url = config.statusUrl + "?token=" + encodeURIComponent(config.token);
      fetch(url, { cache: "no-store", credentials: "omit" })
        .then(function (response) {
          if (response.status === 404) return null; // nothing to follow
          return response.ok ? response.json() : { retry: true };
        })
        .then(function (body) {
          if (body === null) return;
          if (body.status) show(body.status);
          if (!FINAL[body.status]) setTimeout(poll, body.retry ? 10000 : 3000);
        })
        .catch(function () {
          setTimeout(poll, 10000); // offline for a moment: keep trying, slower
        });
    }

    show(panel.getAttribute("data-status"));
    if (!FINAL[panel.getAttribute("data-status")]) setTimeout(poll, 3000);
  }

  var checkout = readJson("checkout-config");
  if (checkout) setupCheckout(checkout);
  var welcome = readJson("welcome-config");
  if (welcome) followStatus(welcome, readJson("status-texts") || {});
})();
