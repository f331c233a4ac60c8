package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit/sink"
)

type exported struct {
	Seq       int64  `json:"seq"`
	Team      string `json:"team"`
	Type      string `json:"type"`
	RecordUID string `json:"record_uid"`
}

// readJSONL reads the events of an audit file.
func readJSONL(t *testing.T, path string) []exported {
	t.Helper()
	data, _ := os.ReadFile(path)
	var out []exported
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var e exported
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// TestAuditSinksExportTheTrail: a server configured with a JSONL file and a signed webhook
// sends both the whole audit trail, in order, with no secret in it; after a restart each sink
// goes on where it stopped.
func TestAuditSinksExportTheTrail(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	keyFile := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(keyFile, []byte("webhook-signing-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooked []exported
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !sink.VerifySignature([]byte("webhook-signing-key"), r.Header.Get(sink.HeaderTimestamp), body, r.Header.Get(sink.HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var got struct{ Events []exported }
		_ = json.Unmarshal(body, &got)
		mu.Lock()
		hooked, bodies = append(hooked, got.Events...), append(bodies, body)
		mu.Unlock()
	}))
	defer hook.Close()
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg := filepath.Join(t.TempDir(), "keyturn.yaml")
	yaml := fmt.Sprintf("audit_sinks:\n  - {name: archive, type: jsonl, path: %s}\n  - {name: siem, type: webhook, url: '%s/keyturn', secret_file: %s}\n",
		file, hook.URL, keyFile)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	password := "Exported-Never-9!"
	createAndRead := func(srv *server, title string) {
		token := srv.token(t, creds)
		body, _ := json.Marshal(map[string]any{"type": "login", "title": title,
			"fields": []map[string]any{{"type": "password", "value": []string{password}}}})
		status, raw := srv.call(t, "POST", "/v1/teams/acme/records", token, bytes.NewReader(body))
		var rec struct{ UID string }
		if status != http.StatusCreated || json.Unmarshal(raw, &rec) != nil {
			t.Fatalf("create: %d %s", status, raw)
		}
		if status, raw := srv.call(t, "GET", "/v1/teams/acme/records/"+rec.UID, token, nil); status != http.StatusOK {
			t.Fatalf("get: %d %s", status, raw)
		}
	}
	waitForEvent := func(typ string, n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			count := 0
			for _, e := range readJSONL(t, file) {
				if e.Type == typ {
					count++
				}
			}
			mu.Lock()
			hookCount := 0
			for _, e := range hooked {
				if e.Type == typ {
					hookCount++
				}
			}
			mu.Unlock()
			if count >= n && hookCount >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d %s events in the file and %d at the webhook, want %d", count, typ, hookCount, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	srv := startServer(t, "--data", dir, "--config", cfg)
	createAndRead(srv, "first")
	waitForEvent("record_secret_read", 1)
	srv.stop(t)
	srv = startServer(t, "--data", dir, "--config", cfg)
	createAndRead(srv, "second")
	waitForEvent("record_secret_read", 2)
	srv.stop(t)

	fromFile := readJSONL(t, file)
	mu.Lock()
	defer mu.Unlock()
	for name, got := range map[string][]exported{"file": fromFile, "webhook": hooked} {
		for i, e := range got {
			if e.Seq != int64(i+1) || e.Team != "acme" {
				t.Fatalf("%s: event %d is %+v: every event once, in order", name, i, e)
			}
		}
		if created := countType(got, "record_created"); created != 2 {
			t.Fatalf("%s: %d record_created events, want 2", name, created)
		}
	}
	data, _ := os.ReadFile(file)
	for name, b := range map[string][]byte{"file": data, "webhook": bytes.Join(bodies, nil)} {
		for _, s := range []string{password, creds.KeySecret, "webhook-signing-key"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the %s sink received the secret %q", name, s)
			}
		}
	}
}

func countType(events []exported, typ string) int {
	n := 0
	for _, e := range events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// A sink that cannot be opened safely stops the server before it serves: exit 1, and a
// message that says what to do.
func TestAuditSinkMisconfiguredRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir)
	keyFile := filepath.Join(t.TempDir(), "webhook.key")
	_ = os.WriteFile(keyFile, []byte("k"), 0o644)
	cfg := filepath.Join(t.TempDir(), "keyturn.yaml")
	_ = os.WriteFile(cfg, []byte("audit_sinks:\n  - {name: siem, type: webhook, url: 'https://siem.example.com/', secret_file: "+keyFile+"}\n"), 0o600)
	code, _, errOut := keyturn(t, "server", "--data", dir, "--config", cfg, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "chmod 600") || !strings.Contains(errOut, "siem") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
}
