package agent

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"krait/internal/secrets"
)

// TestSecretsRule: the agent's copy of the secrets rule (render.py's
// secret_name, which print and info locals use) says the same as the Go
// package internal/secrets on every name that package's tests list, on
// the entries of its lists and on variants of them, in the oldest and the
// newest interpreter.
func TestSecretsRule(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../secrets/secrets_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if ok && fn.Name.Name != "TestIsSecret" {
			return false
		}
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && !strings.Contains(s, "%") {
				names = append(names, s)
			}
		}
		return true
	})
	if len(names) < 50 {
		t.Fatalf("found only %d names in internal/secrets' tests", len(names))
	}
	lists := [][]string{secrets.Exact, secrets.Words, secrets.Whole, secrets.Describing, secrets.Keys}
	for _, l := range lists {
		for _, w := range l {
			names = append(names, w, strings.ToLower(w), "my_"+w, w+"_value", "db"+w[:1]+strings.ToLower(w[1:]), w+"_KEY", "cache-"+w)
		}
	}
	src := string(mustRead(t, "prelude.py")) + "\n" + string(mustRead(t, "render.py")) + `
import json as _j, sys as _s
print(_j.dumps([secret_name(n) for n in _j.loads(_s.stdin.readline())]))
`
	in, _ := json.Marshal(names)
	pys := agentPythons(t)
	if len(pys) == 0 {
		t.Skip("no Python 3 interpreter found")
	}
	for _, py := range []agentPython{pys[0], pys[len(pys)-1]} {
		cmd := exec.Command(py.path, "-c", src)
		cmd.Stdin = strings.NewReader(string(in) + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", py.name, err)
		}
		var got []bool
		if err := json.Unmarshal(out, &got); err != nil || len(got) != len(names) {
			t.Fatalf("%s: %q: %v", py.name, out, err)
		}
		for i, n := range names {
			if want := secrets.IsSecret(n); got[i] != want {
				t.Errorf("%s: the agent says secret_name(%q) = %v, internal/secrets says %v", py.name, n, got[i], want)
			}
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := agentFiles.ReadFile("python/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
