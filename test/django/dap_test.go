package djangoe2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestDAPDjango runs test/dap/django.test.js: krait dap under Microsoft's
// DebugClient on a mod_wsgi daemon (main interpreter, and Django in a
// sub-interpreter): a breakpoint in the orders view, the request and an
// unevaluated QuerySet in variables with no statement in PostgreSQL's log,
// next runs the query, disconnect lets the request finish.
func TestDAPDjango(t *testing.T) {
	home, _ := os.UserHomeDir()
	modules := filepath.Join(home, ".cache", "krait-npm", "node_modules")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(modules, "@vscode", "debugadapter-testsupport")); err != nil || serr != nil {
		if os.Getenv("KRAIT_REQUIRE_DJANGO_STACK") == "1" {
			t.Fatalf("node and @vscode/debugadapter-testsupport under %s are needed (.ci/run installs them)", modules)
		}
		t.Skip("node or @vscode/debugadapter-testsupport missing (see .ci/run)")
	}
	st := needStack(t)
	for _, group := range []string{"krait-main", "krait-sub"} {
		t.Run(group, func(t *testing.T) {
			srv := st.server(t, group)
			if len(srv.workers) != 1 {
				t.Fatalf("%s: want one daemon process, have %v", srv, srv.workers)
			}
			views := filepath.Join(st.env["KRAIT_APACHE_APP_DIR"], "shop", "views.py")
			rows := findLine(t, views, "def orders(", "rows = list(queryset[")
			body := findLine(t, views, "def orders(", "body = format_html(")
			st.settle(t)
			run := exec.Command(node, "--test", "--test-reporter=spec", filepath.Join(repoRoot, "test", "dap", "django.test.js"))
			run.Env = append(os.Environ(), "NODE_PATH="+modules, "KRAIT_BIN="+kraitBin,
				"TARGET_PID="+strconv.Itoa(srv.workers[0]), "VIEWS_FILE="+views,
				"ROWS_LINE="+strconv.Itoa(rows), "BODY_LINE="+strconv.Itoa(body), "URL="+srv.url,
				"PG_LOG="+st.pgLog, "APP_NAME="+srv.info.AppName)
			out, err := run.CombinedOutput()
			if err != nil {
				t.Fatalf("DebugClient Django suite failed on %s: %v\n%s", srv, err, out)
			}
			t.Logf("%s", out)
			checkHealth(t, srv, "after the DAP session")
		})
	}
}
