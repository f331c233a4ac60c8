package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The seed scripts are kept outside the repository (CI has ../shared beside the clone).
const seedScript = "../../../shared/seeds/restored/okta-user-rotation.sh"

// TestSeedBashScriptAgainstEmulator runs Keeper's Okta Bash example unchanged against the
// emulator: it posts plain-string passwords to /api/v1/users/<login>/credentials/change_password,
// Okta answers 400 E0000003, the password does not change, and the script still exits 0
// (curl without --fail): a gateway must not take its exit code as success.
func TestSeedBashScriptAgainstEmulator(t *testing.T) {
	script, err := filepath.Abs(seedScript)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("seed script not available: %v", err)
	}
	for _, tool := range []string{"bash", "jq", "curl", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	v := start(t, Options{Users: 1})
	id, _ := v.em.UserID(SeedLogin(1))
	for _, user := range []string{SeedLogin(1), id} {
		t.Run(user, func(t *testing.T) {
			records, _ := json.Marshal([]map[string]string{{"uid": "okta", "title": "Okta API Access Details",
				"password": v.em.Token(), "url": v.srv.URL}})
			params, _ := json.Marshal(map[string]string{"user": user, "oldPassword": SeedPassword(1), "newPassword": "N3w-Okta-pw2",
				"records": base64.StdEncoding.EncodeToString(records)})
			cmd := exec.Command("bash", script)
			cmd.Stdin = bytes.NewReader(append([]byte(base64.StdEncoding.EncodeToString(params)), '\n'))
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("script: %v\n%s", err, stderr.String())
			}
			var e oktaError
			if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
				t.Fatalf("stdout %q", stdout.String())
			}
			if e.ErrorCode != ErrMalformedBody || e.ErrorSummary != "The request body was not well-formed." || !bytes.Contains(stderr.Bytes(), []byte("< HTTP/1.1 400 Bad Request")) {
				t.Errorf("stdout %s\nstderr %s", stdout.String(), stderr.String())
			}
			if pw, _ := v.em.Password(SeedLogin(1)); pw != SeedPassword(1) {
				t.Errorf("password changed to %q", pw)
			}
		})
	}
}
