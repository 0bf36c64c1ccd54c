// The console's script: live updates from the server's event stream, relative times,
// the Ack, Retry and Expire buttons, the silence form's live preview, the playground,
// and the maps. No framework: each page finds the elements it knows by id.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function toast(text) {
    const t = $("#toast");
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  // JSON to the admin API: same origin, `Content-Type: application/json`.
  async function send(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      throw new Error((data && data.error) || response.status + " " + response.statusText);
    }
    return data;
  }

  // The daemon's clock, as the page was served: times are relative to it.
  const skew = (Date.parse(document.body.dataset.serverNow) || Date.now()) - Date.now();
  function ago(iso) {
    const s = Math.round((Date.now() + skew - Date.parse(iso)) / 1000);
    // A clock a few seconds ahead (a device's, the simulator's) is not "the future".
    if (s > -60 && s < 5) return "just now";
    const n = Math.abs(s);
    const text = n < 60 ? n + "s" : n < 3600 ? Math.floor(n / 60) + "m"
      : n < 86400 ? Math.floor(n / 3600) + "h" : Math.floor(n / 86400) + "d";
    return s < 0 ? "in " + text : text + " ago";
  }
  function tickTimes() {
    $$("time[datetime]").forEach((t) => { t.textContent = ago(t.getAttribute("datetime")); });
  }

  function who() {
    let name = localStorage.getItem("navixy-alerts-name");
    if (!name) {
      name = (window.prompt("Your name (recorded with acknowledgements)") || "").trim() || "console";
      localStorage.setItem("navixy-alerts-name", name);
    }
    return name;
  }

  // Ack buttons, anywhere on any page (rows are replaced when the list refreshes).
  document.addEventListener("click", async (e) => {
    const ack = e.target.closest(".ack-button");
    if (ack) {
      const fp = ack.dataset.fingerprint;
      ack.disabled = true;
      try {
        await send("POST", "/api/v1/alerts/" + encodeURIComponent(fp) + "/ack", { by: who(), comment: "" });
        toast("Acknowledged.");
        refresh();
      } catch (err) {
        toast("Ack failed: " + err.message);
        ack.disabled = false;
      }
      return;
    }
    const retry = e.target.closest("button.retry, button.retry-channel");
    if (retry) {
      const url = retry.dataset.notification
        ? "/api/v1/notifications/" + encodeURIComponent(retry.dataset.notification) + "/retry"
        : "/api/v1/channels/" + encodeURIComponent(retry.dataset.channel) + "/retry";
      retry.disabled = true;
      const out = $("#retry-result");
      try {
        const r = await send("POST", url);
        const parts = [];
        if (r.due.length) parts.push(r.due.length + " due now");
        if (r.requeued.length) parts.push(r.requeued.length + " queued again");
        if (r.in_flight.length) parts.push(r.in_flight.length + " already being sent");
        if (r.sent.length) parts.push(r.sent.length + " sent already");
        const text = "Retry on " + r.channel + ": " + (parts.join(", ") || "nothing to retry") + ".";
        if (out) out.textContent = text;
        toast(text);
        setTimeout(() => location.reload(), 1500);
      } catch (err) {
        if (out) out.textContent = "Retry failed: " + err.message;
        toast("Retry failed: " + err.message);
        retry.disabled = false;
      }
      return;
    }
    const expire = e.target.closest("button.expire");
    if (expire) {
      try {
        await send("DELETE", "/api/v1/silences/" + encodeURIComponent(expire.dataset.silence));
        location.reload();
      } catch (err) { toast("Expire failed: " + err.message); }
    }
  });

  // Live lists: re-fetch the fragment when a transition is committed.
  let refreshing = null;
  async function refresh() {
    const box = $("[data-refresh]");
    if (!box) return;
    if (refreshing) { refreshing.again = true; return; }
    refreshing = { again: false };
    try {
      const before = new Set($$("tr[data-fingerprint]", box).map((r) => r.dataset.fingerprint));
      const response = await fetch(box.dataset.refresh, { credentials: "same-origin" });
      if (response.ok) {
        box.innerHTML = await response.text();
        $$("tr[data-fingerprint]", box).forEach((r) => {
          if (!before.has(r.dataset.fingerprint)) r.classList.add("flash");
        });
        tickTimes();
      }
    } finally {
      const again = refreshing.again;
      refreshing = null;
      if (again) refresh();
    }
  }

  function live() {
    const badge = $("#live");
    // The login page has no session to follow the stream with.
    if (document.body.dataset.page === "login") { if (badge) badge.hidden = true; return; }
    if (!window.EventSource) { if (badge) badge.textContent = "no live updates"; return; }
    const source = new EventSource("/api/v1/events");
    // Connected again: whatever happened meanwhile is fetched anew.
    let opened = false;
    source.onopen = () => {
      if (badge) { badge.textContent = "live"; badge.classList.add("on"); }
      if (opened) refresh();
      opened = true;
    };
    source.addEventListener("transition", refresh);
    // Of the history, what changes a row: an ack made or undone.
    source.addEventListener("history", (e) => {
      try {
        const kind = JSON.parse(e.data).kind;
        if (kind === "acknowledged" || kind === "unacknowledged") refresh();
      } catch (_) { /* not ours to judge */ }
    });
    source.onerror = () => { if (badge) { badge.textContent = "reconnecting…"; badge.classList.remove("on"); } };
    // A wait that ends before it fires is not streamed: look again now and then.
    if ($("[data-refresh]")) setInterval(refresh, 10000);
  }

  // The silence form: a live preview of what it would match, then create.
  function silenceForm() {
    const form = $("#silence-form");
    if (!form) return;
    const input = $("#matchers"), preview = $("#preview");
    let parsed = null, timer = null;
    async function update() {
      try {
        const data = await send("POST", "/silences/preview", { matchers: input.value });
        if (data.error) { parsed = null; preview.innerHTML = ""; preview.textContent = data.error; }
        else { parsed = data.matchers; preview.innerHTML = data.html; tickTimes(); }
      } catch (err) { preview.textContent = err.message; }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 200); });
    const by = $("#created_by");
    if (!by.value) by.value = localStorage.getItem("navixy-alerts-name") || "";
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      await update();
      if (!parsed || parsed.length === 0) { toast("Write at least one matcher."); return; }
      localStorage.setItem("navixy-alerts-name", by.value.trim());
      try {
        const created = await send("POST", "/api/v1/silences", {
          matchers: parsed,
          endsAt: $("#ends_at").value.trim(),
          createdBy: by.value.trim(),
          comment: $("#comment").value,
        });
        toast("Silence " + created.id + " created.");
        setTimeout(() => location.assign("/silences"), 600);
      } catch (err) { toast("Not created: " + err.message); }
    });
    if (input.value) update();
  }

  // The rules page: reload and the playground.
  function rulesPage() {
    const reload = $("#reload");
    if (reload) reload.addEventListener("click", async () => {
      const out = $("#reload-result");
      out.textContent = "Reloading…";
      try {
        const r = await send("POST", "/api/v1/reload");
        out.textContent = "Reloaded: " + r.reload.rules + " rules in force.";
      } catch (err) { out.textContent = "Rejected: " + err.message; }
      // The last reload's block, as the server now tells it.
      try {
        const html = await (await fetch("/rules", { credentials: "same-origin" })).text();
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#last-reload");
        if (fresh) $("#last-reload").replaceWith(fresh);
        tickTimes();
      } catch (_) { /* the answer above says enough */ }
    });
    const area = $("#condition");
    if (!area) return;
    const out = $("#playground-result");
    let timer = null;
    async function run() {
      const data = await send("POST", "/rules/playground", { condition: area.value });
      out.replaceChildren();
      if (data.error) { const p = document.createElement("p"); p.className = "error"; p.textContent = data.error; out.append(p); return; }
      const p = document.createElement("p");
      p.className = "playground-summary";
      p.textContent = "Holds for " + data.holds.length + " of " + data.trackers + " trackers now"
        + (data.errors.length ? "; fails for " + data.errors.length : "") + ".";
      out.append(p);
      const ul = document.createElement("ul");
      ul.className = "playground-holds";
      data.holds.forEach((t) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "/trackers/" + t.key;
        a.textContent = t.label;
        li.append(a);
        ul.append(li);
      });
      data.errors.slice(0, 5).forEach((t) => {
        const li = document.createElement("li");
        li.className = "error";
        li.textContent = t.label + ": " + t.error;
        ul.append(li);
      });
      out.append(ul);
    }
    area.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => run().catch((e) => toast(e.message)), 250); });

    // What the condition would have done over a recording (on demand: it reads a file).
    const over = $("#over-recording");
    if (over) over.addEventListener("submit", async (e) => {
      e.preventDefault();
      const box = $("#recording-result");
      box.replaceChildren();
      const note = (cls, text) => { const p = document.createElement("p"); p.className = cls; p.textContent = text; box.append(p); };
      note("recording-running", "Running…");
      let data;
      try {
        data = await send("POST", "/rules/playground/recording", {
          condition: area.value, for: $("#hold-for").value, recording: $("#recording").value,
        });
      } catch (err) { data = { error: err.message }; }
      box.replaceChildren();
      if (data.error) { note("error", data.error); return; }
      note("recording-summary", "Over " + data.recording + " (" + data.lines + " lines"
        + (data.from ? ", " + data.from + " to " + data.to : "") + "): would have fired "
        + data.firings + " times for " + data.trackers + " trackers, and resolved " + data.resolves + "."
        + (data.stopped ? " Stopped early: " + data.stopped + "." : ""));
      const ol = document.createElement("ol");
      ol.className = "recording-firings";
      data.first.forEach((f) => {
        const li = document.createElement("li");
        const who = f.tracker_id == null ? "(no tracker)" : (data.labels[String(f.tracker_id)] || "#" + f.tracker_id);
        li.textContent = f.at + ": " + who;
        ol.append(li);
      });
      box.append(ol);
    });
  }

  // Maps: zones and positions from the element's `data-map`, tiles only when configured.
  function maps() {
    const el = $("#map");
    if (!el || !window.L) return;
    const data = JSON.parse(el.dataset.map);
    const map = L.map(el, { attributionControl: !!data.tiles });
    // Leaflet draws nothing on a map without a view: a world view until the layers fit.
    map.setView([0, 0], 2);
    if (data.tiles) L.tileLayer(data.tiles, { maxZoom: 19 }).addTo(map);
    const layers = [];
    data.zones.forEach((z) => {
      const style = { color: "#1f6feb", className: "zone" };
      let layer;
      if (z.kind === "circle") layer = L.circle(z.points[0], Object.assign({ radius: z.radius_m }, style));
      else if (z.kind === "polygon") layer = L.polygon(z.points, style);
      else layer = L.polyline(z.points, Object.assign({ weight: 6, opacity: 0.5 }, style));
      layer.bindTooltip(z.label, { permanent: true, direction: "center", className: "zone-label" });
      layer.addTo(map);
      layers.push(layer);
    });
    data.positions.forEach((p) => {
      const m = L.circleMarker([p.lat, p.lng], { radius: 7, color: "#c62828", fillOpacity: 0.9 })
        .bindTooltip(p.label).addTo(map);
      m.on("click", () => location.assign("/trackers/" + p.id));
      layers.push(m);
    });
    if (layers.length) map.fitBounds(L.featureGroup(layers).getBounds().pad(0.3), { maxZoom: 16 });
    el.dataset.zones = data.zones.map((z) => z.label).join(",");
  }

  document.addEventListener("DOMContentLoaded", () => {
    tickTimes();
    setInterval(tickTimes, 15000);
    live();
    silenceForm();
    rulesPage();
    maps();
  });
})();
