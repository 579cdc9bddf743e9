// Optional helpers: filter by speaker and find in the transcript. The page reads fully
// without them. Only textContent and the CSS Highlight API are used: no HTML is ever built.
(function () {
  "use strict";
  var tools = document.getElementById("tools");
  var main = document.getElementById("transcript");
  var find = document.getElementById("find");
  var count = document.getElementById("count");
  if (!tools || !main || !find || !count) return;
  var runs = Array.prototype.slice.call(main.querySelectorAll("section.run"));
  var boxes = Array.prototype.slice.call(tools.querySelectorAll("input[type=checkbox]"));
  var canHighlight = typeof Highlight === "function" && window.CSS && CSS.highlights;
  var timer = 0;

  function apply() {
    var off = {};
    var filtering = false;
    boxes.forEach(function (box) {
      if (!box.checked) { off[box.value] = true; filtering = true; }
    });
    var query = find.value.trim().toLowerCase();
    var ranges = [];
    var shown = 0;
    runs.forEach(function (run) {
      var visible = false;
      var muted = off[run.getAttribute("data-uid")] === true;
      run.querySelectorAll("p.turn").forEach(function (turn) {
        var text = turn.querySelector(".text");
        var content = text ? text.textContent : "";
        var at = query ? content.toLowerCase().indexOf(query) : 0;
        var hit = !muted && at !== -1;
        turn.hidden = !hit;
        if (!hit) return;
        visible = true;
        shown += 1;
        if (query && canHighlight && text.firstChild && text.firstChild.nodeType === 3) {
          var lower = content.toLowerCase();
          while (at !== -1) {
            var range = document.createRange();
            range.setStart(text.firstChild, at);
            range.setEnd(text.firstChild, at + query.length);
            ranges.push(range);
            at = lower.indexOf(query, at + query.length);
          }
        }
      });
      run.hidden = !visible;
    });
    if (canHighlight) {
      CSS.highlights.delete("find");
      if (ranges.length) {
        var highlight = new Highlight();
        ranges.forEach(function (range) { highlight.add(range); });
        CSS.highlights.set("find", highlight);
      }
    }
    count.textContent = query || filtering ? shown + (shown === 1 ? " turn" : " turns") : "";
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(apply, 120);
  }

  find.addEventListener("input", later);
  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  tools.hidden = false;
})();
