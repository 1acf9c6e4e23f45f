package sample

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"html"
	"io"
	"sort"
	"strings"
)

// node is one frame of the flame graph's tree.
type node struct {
	name     string
	count    int64
	children map[string]*node
	order    []*node
}

func (n *node) child(name string) *node {
	if c, ok := n.children[name]; ok {
		return c
	}
	if n.children == nil {
		n.children = map[string]*node{}
	}
	c := &node{name: name}
	n.children[name] = c
	n.order = append(n.order, c)
	return c
}

const (
	fgWidth  = 1200.0
	fgRow    = 17.0
	fgTop    = 46.0
	fgMinPx  = 0.1 // frames narrower than this are left out
	fgCharPx = 7.0
)

// WriteFlamegraph writes a self-contained interactive SVG flame graph:
// click a frame to zoom to it (click the root, or press Escape, to reset),
// Ctrl-F or the Search button to highlight functions matching a regular
// expression (with their share of all samples); a search can also be given
// in the URL as #search=REGEXP.
func WriteFlamegraph(w io.Writer, folded []Folded, title, subtitle string) error {
	root := &node{name: "all"}
	depth := 0
	for _, f := range folded {
		root.count += f.Count
		n := root
		for _, name := range f.Names {
			n = n.child(name)
			n.count += f.Count
		}
		if len(f.Names) > depth {
			depth = len(f.Names)
		}
	}
	height := fgTop + float64(depth+1)*fgRow + 30
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg" id="krait-flamegraph" data-total="%d">
<style>
text { font-family: monospace; font-size: 12px; fill: #000; }
g.f rect { stroke: #fff; stroke-width: 0.5; }
g.f:hover rect { stroke: #000; }
g.f { cursor: pointer; }
g.f.match rect { fill: #e040e0 !important; }
g.f.hide { display: none; }
#title { font-size: 16px; }
#bar text { fill: #333; }
</style>
<rect width="100%%" height="100%%" fill="#fafaf5"/>
<text id="title" x="%.0f" y="20" text-anchor="middle">%s</text>
<text id="subtitle" x="%.0f" y="36" text-anchor="middle">%s</text>
<text id="search" x="%.0f" y="20" text-anchor="end">Search</text>
<text id="reset" x="10" y="20" display="none">Reset zoom</text>
<g id="bar"><text id="details" x="10" y="%.0f"> </text><text id="matched" x="%.0f" y="%.0f" text-anchor="end"> </text></g>
<g id="frames">
`, fgWidth, height, fgWidth, height, root.count,
		fgWidth/2, html.EscapeString(title), fgWidth/2, html.EscapeString(subtitle), fgWidth-10,
		height-10, fgWidth-10, height-10)
	if root.count > 0 {
		var emit func(n *node, d int, start int64)
		emit = func(n *node, d int, start int64) {
			w := float64(n.count) / float64(root.count) * fgWidth
			if w < fgMinPx {
				return
			}
			x := float64(start) / float64(root.count) * fgWidth
			y := height - 40 - float64(d+1)*fgRow
			pct := 100 * float64(n.count) / float64(root.count)
			label := n.name
			fmt.Fprintf(bw, `<g class="f" data-s="%d" data-n="%d" data-d="%d"><title>%s (%d samples, %.2f%%)</title><rect x="%.2f" y="%.0f" width="%.2f" height="%.0f" fill="%s" rx="2"/><text x="%.2f" y="%.0f">%s</text></g>
`, start, n.count, d, html.EscapeString(label), n.count, pct, x, y, w, fgRow-1, color(label, d), x+3, y+12, html.EscapeString(fit(label, w)))
			kids := append([]*node(nil), n.order...)
			sort.Slice(kids, func(i, j int) bool { return kids[i].name < kids[j].name })
			s := start
			for _, c := range kids {
				emit(c, d+1, s)
				s += c.count
			}
		}
		emit(root, 0, 0)
	}
	fmt.Fprintf(bw, "</g>\n<script><![CDATA[\n%s\n]]></script>\n</svg>\n", flamegraphJS)
	return bw.Flush()
}

// fit cuts a label to what fits in w pixels.
func fit(s string, w float64) string {
	n := int((w - 6) / fgCharPx)
	if n < 3 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-2]) + ".."
}

// color picks a warm colour from the function's name (stable across
// graphs); synthetic frames (views, processes, threads) are blue-grey.
func color(name string, depth int) string {
	if depth == 0 {
		return "rgb(200,200,200)"
	}
	if strings.HasPrefix(name, "view ") || strings.HasPrefix(name, "process ") || strings.HasPrefix(name, "thread ") {
		return "rgb(150,180,220)"
	}
	fn := name
	if i := strings.Index(fn, " ("); i > 0 {
		fn = fn[:i]
	}
	h := fnv.New32a()
	h.Write([]byte(fn))
	v := h.Sum32()
	r := 205 + v%50
	g := 80 + (v>>8)%130
	b := 30 + (v>>16)%50
	return fmt.Sprintf("rgb(%d,%d,%d)", r, g, b)
}

// flamegraphJS zooms and searches the SVG above; it is krait's own.
const flamegraphJS = `
(function () {
  var svg = document.getElementById("krait-flamegraph");
  var W = 1200, CH = 7;
  var total = +svg.getAttribute("data-total");
  var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  var details = document.getElementById("details");
  var matched = document.getElementById("matched");
  var reset = document.getElementById("reset");
  function nameOf(g) { var t = g.querySelector("title").textContent; return t.replace(/ \(\d+ samples, [0-9.]+%\)$/, ""); }
  function fitText(s, w) { var n = Math.floor((w - 6) / CH); if (n < 3) return ""; return s.length <= n ? s : s.slice(0, n - 2) + ".."; }
  function place(g, x, w) {
    var r = g.querySelector("rect"), t = g.querySelector("text");
    r.setAttribute("x", x.toFixed(2)); r.setAttribute("width", w.toFixed(2));
    t.setAttribute("x", (x + 3).toFixed(2)); t.textContent = fitText(nameOf(g), w);
  }
  function zoom(target) {
    var s = +target.getAttribute("data-s"), n = +target.getAttribute("data-n"), d = +target.getAttribute("data-d");
    frames.forEach(function (g) {
      var gs = +g.getAttribute("data-s"), gn = +g.getAttribute("data-n"), gd = +g.getAttribute("data-d");
      if (gd < d) {
        if (gs <= s && gs + gn >= s + n) { g.classList.remove("hide"); place(g, 0, W); } else g.classList.add("hide");
        return;
      }
      if (gs >= s && gs + gn <= s + n) {
        var w = gn / n * W;
        if (w < 0.1) { g.classList.add("hide"); return; }
        g.classList.remove("hide"); place(g, (gs - s) / n * W, w);
      } else g.classList.add("hide");
    });
    reset.setAttribute("display", d > 0 ? "inline" : "none");
  }
  function resetZoom() { if (frames.length) zoom(frames[0]); }
  function search(re) {
    var rx; try { rx = new RegExp(re); } catch (e) { matched.textContent = "bad regular expression"; return 0; }
    var covered = [];
    frames.forEach(function (g) {
      if (re !== "" && rx.test(nameOf(g))) {
        g.classList.add("match");
        covered.push([+g.getAttribute("data-s"), +g.getAttribute("data-n")]);
      } else g.classList.remove("match");
    });
    covered.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var sum = 0, end = -1;
    covered.forEach(function (c) { if (c[0] >= end) { sum += c[1]; end = c[0] + c[1]; } else if (c[0] + c[1] > end) { sum += c[0] + c[1] - end; end = c[0] + c[1]; } });
    var pct = total ? 100 * sum / total : 0;
    matched.textContent = re === "" ? " " : "Matched: " + pct.toFixed(2) + "%";
    svg.setAttribute("data-matched", pct.toFixed(2));
    return pct;
  }
  window.kraitSearch = search;
  window.kraitZoom = zoom;
  frames.forEach(function (g) {
    g.addEventListener("click", function () { zoom(g); });
    g.addEventListener("mouseover", function () { details.textContent = g.querySelector("title").textContent; });
    g.addEventListener("mouseout", function () { details.textContent = " "; });
  });
  reset.addEventListener("click", resetZoom);
  document.getElementById("search").addEventListener("click", function () {
    var re = prompt("Search (regular expression):", ""); if (re !== null) search(re);
  });
  window.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === "f") { e.preventDefault(); var re = prompt("Search (regular expression):", ""); if (re !== null) search(re); }
    if (e.key === "Escape") { resetZoom(); search(""); }
  });
  var m = /[#&]search=([^&]*)/.exec(window.location.hash || "");
  if (m) search(decodeURIComponent(m[1]));
})();
`
