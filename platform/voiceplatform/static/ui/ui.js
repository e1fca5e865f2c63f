// Voice platform UI: a few behaviours, no framework, no build step.
(() => {
  "use strict";
  // <section data-poll="/url.json" data-interval="1000">: GET the JSON every interval; each
  // [data-field=name] inside gets the value as text, [data-width=name] a width in %, and
  // [data-show-states="running paused"] is shown only while data.state is one of them.
  function poll(root) {
    const url = root.dataset.poll, every = Number(root.dataset.interval || 1000);
    const status = root.querySelector("[data-poll-status]");
    let failures = 0, stopped = false;
    async function tick() {
      if (stopped) return;
      try {
        const response = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store"});
        if (response.status === 401 || response.status === 403 || response.redirected) { stopped = true; if (status) status.textContent = "signed out: reload the page"; return; }
        if (!response.ok) throw new Error(response.status);
        const data = await response.json();
        failures = 0;
        root.querySelectorAll("[data-field]").forEach(el => {
          const value = data[el.dataset.field];
          el.textContent = value === null || value === undefined ? "–" : value;
        });
        root.querySelectorAll("[data-width]").forEach(el => {
          const percent = Number(data[el.dataset.width]) || 0;
          el.style.width = `${percent}%`;
          el.parentElement.setAttribute("aria-valuenow", percent);
        });
        root.querySelectorAll("[data-show-if]").forEach(el => { el.hidden = !data[el.dataset.showIf]; });
        root.querySelectorAll("[data-class-if]").forEach(el => {  // "field:class": class set while field is true
          const [field, cls] = el.dataset.classIf.split(":"); el.classList.toggle(cls, Boolean(data[field]));
        });
        root.querySelectorAll("[data-badge]").forEach(el => { el.className = `badge ${data[el.dataset.badge]}`; });
        document.querySelectorAll("[data-show-states]").forEach(el => {
          el.hidden = !el.dataset.showStates.split(" ").includes(data.state);
        });
        if (status) status.textContent = `updated ${new Date().toLocaleTimeString()}`;
        if (data.final === true) root.querySelectorAll("[data-hide-when-final]").forEach(el => { el.hidden = true; });
        if (data.final === true || root.dataset.stopStates?.split(" ").includes(data.state)) {
          if (status) status.textContent += " · final";
          stopped = true; return;
        }
      } catch (error) {
        failures += 1;
        if (status) status.textContent = "connection lost, retrying…";
      }
      setTimeout(tick, Math.min(every * 2 ** Math.min(failures, 4), 15000));
    }
    tick();
  }
  // <button data-copy="#id">: copy the text of the element to the clipboard.
  function copy(button) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      const text = source.value ?? source.textContent;
      try { await navigator.clipboard.writeText(text.trim()); button.textContent = "Copied"; }
      catch { const range = document.createRange(); range.selectNodeContents(source);
              getSelection().removeAllRanges(); getSelection().addRange(range); button.textContent = "Selected: press Ctrl+C"; }
    });
  }
  // <form data-confirm="Really?">: ask before submitting.
  function confirmForm(form) {
    form.addEventListener("submit", event => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  }
  // <form data-busy>: disable its submit button while the request runs (no double submit).
  function busy(form) {
    form.addEventListener("submit", event => {
      if (event.defaultPrevented) return;
      const button = event.submitter || form.querySelector("button[type=submit], button:not([type])");
      if (button) { setTimeout(() => { button.disabled = true; }, 0); if (button.dataset.busy) button.textContent = button.dataset.busy; }
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-copy]").forEach(copy);
    document.querySelectorAll("form[data-confirm]").forEach(confirmForm);
    document.querySelectorAll("form[data-busy]").forEach(busy);
    document.querySelectorAll("[data-epoch]").forEach(el => {  // epoch seconds → local time
      el.textContent = new Date(Number(el.dataset.epoch) * 1000).toLocaleString();
    });
    // <time datetime="ISO" data-local-time>: shown in the browser's time zone, named; UTC stays in the title.
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    document.querySelectorAll("time[data-local-time]").forEach(el => {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) return;
      el.title = el.textContent.trim();
      el.textContent = `${when.toLocaleString([], {dateStyle: "medium", timeStyle: "short"})} (${zone})`;
    });
    // <input data-browser-zone> (a form shown afresh, nothing typed yet): the browser's time zone.
    document.querySelectorAll("input[data-browser-zone]").forEach(input => { if (zone) input.value = zone; });
  });
})();
