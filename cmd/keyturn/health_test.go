package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv/tlscert"
)

// TestHealthProbesTheLocalServer runs keyturn health against a server serving https: ready
// when it trusts exactly the server's certificate (from the flag or the server's own
// KEYTURN_TLS_CERT_FILE and KEYTURN_LISTEN, as in a container), not ready against another
// certificate, over plain http, or once the server is gone.
func TestHealthProbesTheLocalServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir)
	certFile, keyFile := tlscert.WriteFiles(t, t.TempDir())
	otherCert, _ := tlscert.WriteFiles(t, t.TempDir())
	srv := startServer(t, "--data", dir, "--tls-cert-file", certFile, "--tls-key-file", keyFile)

	if code, out, errOut := keyturn(t, "health", "--listen", srv.addr, "--tls-cert-file", certFile); code != 0 || out != "ready\n" {
		t.Errorf("health with the server's certificate: exit %d %q %q", code, out, errOut)
	}
	var ready struct{ Status string }
	if code, out, errOut := keyturn(t, "health", "--listen", srv.addr, "--tls-cert-file", certFile, "-o", "json"); code != 0 ||
		json.Unmarshal([]byte(out), &ready) != nil || ready.Status != "ready" {
		t.Errorf("health -o json: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := keyturn(t, "health", "--listen", srv.addr, "--tls-cert-file", otherCert); code != 1 || !strings.Contains(errOut, "not the one in the certificate file") {
		t.Errorf("health with another certificate: exit %d %q, want 1 naming the certificate", code, errOut)
	}
	if code, _, errOut := keyturn(t, "health", "--listen", srv.addr); code != 1 || !strings.Contains(errOut, "not ready") {
		t.Errorf("health over plain http to the https port: exit %d %q, want 1", code, errOut)
	}

	// In a container: the server's own variables, listening on every address.
	_, port, _ := strings.Cut(srv.addr, ":")
	t.Setenv("KEYTURN_LISTEN", "0.0.0.0:"+port)
	t.Setenv("KEYTURN_TLS_CERT_FILE", certFile)
	if code, out, errOut := keyturn(t, "health"); code != 0 || out != "ready\n" {
		t.Errorf("health from the server's environment: exit %d %q %q", code, out, errOut)
	}

	srv.stop(t)
	if code, _, errOut := keyturn(t, "health"); code != 1 || !strings.Contains(errOut, "not ready") {
		t.Errorf("health with the server stopped: exit %d %q, want 1", code, errOut)
	}
	if code, _, _ := keyturn(t, "health", "--listen", "nonsense"); code != 2 {
		t.Errorf("health --listen nonsense: exit %d, want 2", code)
	}
}

// TestHealthProbeURL reaches a server listening on a wildcard address on loopback.
func TestHealthProbeURL(t *testing.T) {
	for listen, want := range map[string]string{
		"0.0.0.0:8200":      "http://127.0.0.1:8200/readyz",
		":8200":             "http://127.0.0.1:8200/readyz",
		"[::]:8200":         "http://[::1]:8200/readyz",
		"127.0.0.1:9000":    "http://127.0.0.1:9000/readyz",
		"[::1]:8200":        "http://[::1]:8200/readyz",
		"keyturn.lan:8200":  "http://keyturn.lan:8200/readyz",
		"192.0.2.10:8200":   "http://192.0.2.10:8200/readyz",
		"localhost:8200":    "http://localhost:8200/readyz",
		"[2001:db8::]:8200": "http://[2001:db8::]:8200/readyz",
	} {
		if got, err := probeURL(listen, false); err != nil || got != want {
			t.Errorf("probeURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if got, _ := probeURL("0.0.0.0:8443", true); got != "https://127.0.0.1:8443/readyz" {
		t.Errorf("probeURL https = %q", got)
	}
}
