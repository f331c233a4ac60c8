package sink_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/audit/sink"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/tlscert"
)

func events(from, n int, typ string) []audit.Exported {
	out := make([]audit.Exported, n)
	for i := range out {
		out[i] = audit.Exported{Seq: int64(from + i), Team: "acme", Type: typ, Actor: "svc", RecordUID: "uid",
			Details: json.RawMessage(`{"status":"ok"}`), CreatedAt: time.Date(2026, 12, 2, 3, 4, 5, 678901000, time.UTC),
			PrevHash: "aa", Hash: "bb"}
	}
	return out
}

func TestJSONL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := sink.NewJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Send(ctx, events(1, 2, audit.RecordSecretRead)); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, events(3, 1, audit.RecordCreated)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), data)
	}
	for i, line := range lines {
		var e audit.Exported
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Seq != int64(i+1) || e.Team != "acme" {
			t.Fatalf("line %d %q: %+v %v", i, line, e, err)
		}
	}
	// Reopened, it appends.
	s, err = sink.NewJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Send(ctx, events(4, 1, audit.RecordDeleted))
	s.Close()
	if data, _ := os.ReadFile(path); strings.Count(string(data), "\n") != 4 {
		t.Fatalf("after reopening: %q", data)
	}
	// Moved away (logrotate), the file is followed by a new one at the same path.
	s, err = sink.NewJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Send(ctx, events(5, 1, audit.RecordDeleted))
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, events(6, 1, audit.RecordDeleted)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if moved, _ := os.ReadFile(path + ".2"); strings.Count(string(moved), "\n") != 5 || !strings.Contains(string(moved), `"seq":5`) {
		t.Fatalf("the moved file: %q", moved)
	}
	if fresh, _ := os.ReadFile(path); strings.Count(string(fresh), "\n") != 1 || !strings.Contains(string(fresh), `"seq":6`) {
		t.Fatalf("the new file: %q", fresh)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("the new file's mode %v", st.Mode().Perm())
	}
	// A file others can read is refused, not written to.
	open := filepath.Join(t.TempDir(), "open.jsonl")
	_ = os.WriteFile(open, nil, 0o644)
	if _, err := sink.NewJSONL(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a 0644 file: %v", err)
	}
}

func TestWebhookSignsDeliveries(t *testing.T) {
	t.Parallel()
	key := secret.FromString("webhook-signing-key")
	var bodies [][]byte
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(sink.HeaderTimestamp)
		if !sink.VerifySignature(key.Bytes(), ts, body, r.Header.Get(sink.HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if sec, _ := strconv.ParseInt(ts, 10, 64); time.Since(time.Unix(sec, 0)) > time.Minute {
			http.Error(w, "stale", http.StatusUnauthorized)
			return
		}
		bodies = append(bodies, body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	ctx := context.Background()
	s, err := sink.NewWebhook(srv.URL+"/hook?token=hunter2", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, events(7, 3, audit.RotationOnDemandOK)); err != nil {
		t.Fatal(err)
	}
	var got struct{ Events []audit.Exported }
	if len(bodies) != 1 || json.Unmarshal(bodies[0], &got) != nil || len(got.Events) != 3 || got.Events[2].Seq != 9 {
		t.Fatalf("delivered %q", bodies)
	}
	// Another key's signature is refused by the receiver; the sink reports it, without the
	// URL's query.
	wrong, _ := sink.NewWebhook(srv.URL+"/hook?token=hunter2", secret.FromString("another key"), nil)
	err = wrong.Send(ctx, events(10, 1, audit.RotationOnDemandOK))
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a refused delivery: %v", err)
	}
	status = http.StatusInternalServerError
	if err := s.Send(ctx, events(10, 1, audit.RotationOnDemandOK)); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("a 500: %v", err)
	}
	srv.Close()
	if err := s.Send(ctx, events(10, 1, audit.RotationOnDemandOK)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("no server: %v", err)
	}
	if _, err := sink.NewWebhook("ftp://example.com/x", key, nil); err == nil {
		t.Fatal("an ftp URL was accepted")
	}
	if _, err := sink.NewWebhook(srv.URL, secret.Secret{}, nil); err == nil {
		t.Fatal("an empty key was accepted")
	}
}

// frames reads n octet-counted syslog frames (RFC 6587) from r; on a malformed frame it
// returns what it read before.
func frames(r *bufio.Reader, n int) []string {
	var out []string
	for range n {
		lenText, err := r.ReadString(' ')
		if err != nil {
			return out
		}
		size, err := strconv.Atoi(strings.TrimSpace(lenText))
		if err != nil {
			return append(out, "bad frame length "+lenText)
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(r, msg); err != nil {
			return out
		}
		out = append(out, string(msg))
	}
	return out
}

// checkMessage checks an RFC 5424 message: priority, version, time, app, msgid, and the JSON.
func checkMessage(t *testing.T, msg string, pri int, e audit.Exported) {
	t.Helper()
	parts := strings.SplitN(msg, " ", 8)
	if len(parts) != 8 || parts[0] != "<"+strconv.Itoa(pri)+">1" || parts[1] != "2026-12-02T03:04:05.678901Z" ||
		parts[3] != "keyturn" || parts[5] != e.Type || parts[6] != "-" {
		t.Fatalf("message %q", msg)
	}
	var got audit.Exported
	if err := json.Unmarshal([]byte(parts[7]), &got); err != nil || got.Seq != e.Seq || got.Type != e.Type {
		t.Fatalf("message body %q: %v", parts[7], err)
	}
}

func TestSyslogOverTCPAndTLS(t *testing.T) {
	t.Parallel()
	cert := tlscert.New(t)
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			var ln net.Listener
			var err error
			var clientTLS *tls.Config
			if network == "tls" {
				ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
				roots := x509.NewCertPool()
				roots.AddCert(cert.Leaf)
				clientTLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
			} else {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				got <- frames(bufio.NewReader(c), 3)
			}()
			s, err := sink.NewSyslog(network, ln.Addr().String(), clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			batch := append(events(1, 2, audit.RecordSecretRead), events(3, 1, audit.RotationScheduledFail)...)
			if err := s.Send(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			select {
			case msgs := <-got:
				if len(msgs) != 3 {
					t.Fatalf("frames %q", msgs)
				}
				checkMessage(t, msgs[0], 13*8+5, batch[0]) // log audit, notice
				checkMessage(t, msgs[1], 13*8+5, batch[1])
				checkMessage(t, msgs[2], 13*8+4, batch[2]) // a failure: warning
			case <-time.After(10 * time.Second):
				t.Fatal("no messages")
			}
		})
	}
}

func TestSyslogOverUDP(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := sink.NewSyslog("udp", pc.LocalAddr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := events(5, 2, audit.RotationDrift)
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	for i := range batch {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, string(buf[:n]), 13*8+4, batch[i]) // drift: warning
	}
	if _, err := sink.NewSyslog("smoke", "127.0.0.1:514", nil); err == nil {
		t.Fatal("network smoke was accepted")
	}
	if _, err := sink.NewSyslog("tcp", "no port", nil); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}

// A dropped connection makes the send fail, and the next send connects again.
func TestSyslogReconnects(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	s, _ := sink.NewSyslog("tcp", ln.Addr().String(), nil)
	defer s.Close()
	ctx := context.Background()
	if err := s.Send(ctx, events(1, 1, audit.RecordCreated)); err != nil {
		t.Fatal(err)
	}
	first := <-conns
	first.(*net.TCPConn).SetLinger(0)
	first.Close() // the server drops it (reset)
	var failed bool
	for i := range 50 { // a write into a reset connection fails within a few tries
		if err := s.Send(ctx, events(2+i, 1, audit.RecordCreated)); err != nil {
			failed = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !failed {
		t.Fatal("sends into a dropped connection never failed")
	}
	if err := s.Send(ctx, events(100, 1, audit.RecordCreated)); err != nil {
		t.Fatalf("the send after a failure: %v", err)
	}
	select {
	case c := <-conns:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no second connection")
	}
}

func TestKeyAndCAFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if k, err := sink.ReadKeyFile(write("key", "signing-key\n", 0o600)); err != nil || k.Reveal() != "signing-key" {
		t.Fatalf("a key file: %v", err)
	}
	if _, err := sink.ReadKeyFile(write("empty", "\n", 0o600)); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty key file: %v", err)
	}
	if _, err := sink.ReadKeyFile(write("open", "k", 0o640)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a group-readable key file: %v", err)
	}
	if _, err := sink.ReadCAFile(write("ca", "not a certificate", 0o644)); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("a CA file without PEM: %v", err)
	}
	cert := tlscert.New(t)
	pemCA := write("ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})), 0o644)
	pool, err := sink.ReadCAFile(pemCA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("the pool does not trust its certificate: %v", err)
	}
}
