// The live meeting page: turns arrive over server-sent events and are added with
// textContent only, so transcript text can never become markup or script.
(function () {
  "use strict";
  var main = document.getElementById("transcript");
  if (!main || main.dataset.live !== "1" || !window.EventSource) { return; }
  var speakers = JSON.parse(document.getElementById("speakers").textContent || "{}");
  var known = Object.keys(speakers).length;

  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s / 60) % 60) + ":" + pad(s % 60);
  }

  function speaker(turn) {
    var key = String(turn.uid);
    if (!speakers[key]) {
      speakers[key] = { name: turn.speaker || key, colour: known % 10 };
      known += 1;
    }
    return speakers[key];
  }

  function setText(paragraph, turn) {
    var span = paragraph.querySelector(".text");
    span.textContent = turn.text;
  }

  function add(turn) {
    var existing = document.getElementById("t" + turn.turn_id);
    if (existing) { setText(existing, turn); return; }
    var who = speaker(turn);
    var runs = main.querySelectorAll("section.run");
    var run = runs.length ? runs[runs.length - 1] : null;
    if (!run || run.dataset.uid !== String(turn.uid)) {
      run = document.createElement("section");
      run.className = "run s" + who.colour;
      run.dataset.uid = String(turn.uid);
      var heading = document.createElement("h3");
      heading.className = "who";
      heading.textContent = who.name;
      run.appendChild(heading);
      main.appendChild(run);
    }
    var p = document.createElement("p");
    p.className = "turn fresh";
    p.id = "t" + turn.turn_id;
    var a = document.createElement("a");
    a.className = "ts";
    a.href = "#t" + turn.turn_id;
    a.textContent = clock(turn.start_ms);
    var span = document.createElement("span");
    span.className = "text";
    p.appendChild(a);
    p.appendChild(document.createTextNode(" "));
    p.appendChild(span);
    setText(p, turn);
    run.appendChild(p);
  }

  function ended(event) {
    var status = document.querySelector(".kicker .status");
    if (status) {
      status.textContent = event.status;
      status.className = "status status-" + event.status;
    }
    var badge = document.getElementById("live");
    if (badge) { badge.remove(); }
    main.dataset.live = "0";
    main.dataset.ended = "1";
  }

  var source = new EventSource(
    "/web/meetings/" + encodeURIComponent(main.dataset.meeting) + "/events?after=" +
    encodeURIComponent(main.dataset.after)
  );
  source.addEventListener("turn.final", function (e) { add(JSON.parse(e.data)); });
  source.addEventListener("turn.updated", function (e) { add(JSON.parse(e.data)); });
  source.addEventListener("meeting.ended", function (e) {
    var event = JSON.parse(e.data);
    ended(event);
    // A worker that died leaves the meeting interrupted; another worker may resume it.
    if (event.status !== "interrupted") { source.close(); }
  });
  source.addEventListener("meeting.resumed", function () {
    var status = document.querySelector(".kicker .status");
    if (status) {
      status.textContent = "recording";
      status.className = "status status-recording";
    }
    main.dataset.live = "1";
    main.dataset.ended = "0";
  });
}());
