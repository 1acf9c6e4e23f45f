package cpython

import (
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"krait/internal/cpython/layout"
)

// lineScript prints, for the code objects of a few stdlib modules, the raw
// line table and the line the interpreter itself gives each instruction
// offset (co_lines on 3.10+, dis.findlinestarts before). The Go decoders
// must agree with the interpreter everywhere.
const lineScript = `
import sys, json, base64, dis, types
import json as m1, dis as m2, threading as m3, collections as m4
out = []
def walk(co):
    yield co
    for c in co.co_consts:
        if isinstance(c, types.CodeType):
            for x in walk(c):
                yield x
for mod in (m1, m2, m3, m4):
    src = mod.__file__
    if src.endswith('.pyc'):
        src = src[:-1]
    co = compile(open(src).read(), src, 'exec')
    for c in walk(co):
        code = c.co_code
        if hasattr(c, 'co_lines'):
            lines = {}
            for start, end, line in c.co_lines():
                for off in range(start, end, 2):
                    lines[off] = line if line is not None else -1
            table = c.co_linetable
        else:
            starts = list(dis.findlinestarts(c))
            lines = {}
            cur = c.co_firstlineno
            j = 0
            step = 2 if sys.version_info[0] >= 3 else 1
            for off in range(0, len(code), step):
                while j < len(starts) and starts[j][0] <= off:
                    cur = starts[j][1]
                    j += 1
                lines[off] = cur
            table = c.co_lnotab
        out.append({"first": c.co_firstlineno, "table": base64.b64encode(table).decode('ascii'),
                    "lines": sorted(lines.items())})
sys.stdout.write(json.dumps(out))
`

func TestLineTablesAgainstPython(t *testing.T) {
	prefixes, err := layout.PyenvPrefixes()
	if err != nil {
		t.Skip(err)
	}
	for _, p := range prefixes {
		minor, full, err := layout.PrefixVersion(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(full, func(t *testing.T) {
			v, _ := layout.ParseVersion(minor)
			l, err := layout.For(v)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(filepath.Join(p, "bin", "python"), "-c", lineScript).Output()
			if err != nil {
				t.Fatal(err)
			}
			var codes []struct {
				First int      `json:"first"`
				Table string   `json:"table"`
				Lines [][2]int `json:"lines"`
			}
			if err := json.Unmarshal(out, &codes); err != nil {
				t.Fatal(err)
			}
			checked, bad := 0, 0
			for _, c := range codes {
				tab, _ := base64.StdEncoding.DecodeString(c.Table)
				for _, ol := range c.Lines {
					got := lineForOffset(l.LineTable, tab, c.First, ol[0])
					checked++
					if got != ol[1] {
						bad++
						if bad <= 5 {
							t.Errorf("first line %d, offset %d: got line %d, Python says %d", c.First, ol[0], got, ol[1])
						}
					}
				}
			}
			if checked < 1000 {
				t.Errorf("only %d offsets checked", checked)
			}
			if bad > 0 {
				t.Errorf("%d of %d offsets disagree", bad, checked)
			}
		})
	}
}
