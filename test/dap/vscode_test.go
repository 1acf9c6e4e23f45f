package dap

import (
	"archive/zip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"krait/internal/testkit"
)

// TestVSCodeExtension packages editors/vscode into a .vsix with
// Microsoft's vsce (@vscode/vsce, installed by .ci/run) and checks what
// the package holds: the krait debug type, its attach configuration with
// the process picker, and an extension.js that node can parse.
func TestVSCodeExtension(t *testing.T) {
	vsce := filepath.Join(npmPrefix(), "node_modules", ".bin", "vsce")
	if _, err := os.Stat(vsce); err != nil {
		if required() {
			t.Fatalf("@vscode/vsce is not installed under %s (.ci/run installs it)", npmPrefix())
		}
		t.Skip("@vscode/vsce not installed (see .ci/run)")
	}
	root, err := testkit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(root, "editors", "vscode")
	if out, err := exec.Command("node", "--check", filepath.Join(ext, "extension.js")).CombinedOutput(); err != nil {
		t.Fatalf("node --check extension.js: %v\n%s", err, out)
	}
	vsix := filepath.Join(t.TempDir(), "krait.vsix")
	cmd := exec.Command(vsce, "package", "--no-dependencies", "--allow-missing-repository", "-o", vsix)
	cmd.Dir = ext
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vsce package: %v\n%s", err, out)
	}
	zr, err := zip.OpenReader(vsix)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	for _, name := range []string{"extension/package.json", "extension/extension.js", "extension.vsixmanifest"} {
		if files[name] == nil {
			t.Fatalf("the .vsix has no %s", name)
		}
	}
	r, err := files["extension/package.json"].Open()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	var pkg struct {
		Contributes struct {
			Debuggers []struct {
				Type                  string            `json:"type"`
				Variables             map[string]string `json:"variables"`
				InitialConfigurations []map[string]any  `json:"initialConfigurations"`
				ConfigurationAttribs  map[string]any    `json:"configurationAttributes"`
			} `json:"debuggers"`
			Commands []struct {
				Command string `json:"command"`
			} `json:"commands"`
		} `json:"contributes"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	if len(pkg.Contributes.Debuggers) != 1 {
		t.Fatalf("debuggers: %+v", pkg.Contributes.Debuggers)
	}
	d := pkg.Contributes.Debuggers[0]
	if d.Type != "krait" || d.Variables["pickProcess"] != "krait.pickProcess" || d.ConfigurationAttribs["attach"] == nil ||
		len(d.InitialConfigurations) != 1 || d.InitialConfigurations[0]["processId"] != "${command:pickProcess}" {
		t.Errorf("the krait debugger contribution: %+v", d)
	}
	if len(pkg.Contributes.Commands) != 1 || pkg.Contributes.Commands[0].Command != "krait.pickProcess" {
		t.Errorf("commands: %+v", pkg.Contributes.Commands)
	}
}
