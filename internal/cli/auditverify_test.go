package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/store"
)

// verifyFixture is a harness with three records created, their passwords, and the seq of each
// one's record_created event (written in the transaction that creates the record).
type verifyFixture struct {
	*harness
	db        *sql.DB
	passwords []string
	seqs      []int64
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	f := &verifyFixture{harness: newHarness(t)}
	db, err := sql.Open("sqlite", "file:"+store.SQLitePath(f.dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	for i := range 3 {
		pw := fmt.Sprintf("hunter2-cli-verify-%d", i)
		out := f.ok(pw, "record", "create", "--type", "login", "--title", fmt.Sprintf("verify %d", i),
			"--field", "password=-", "-o", "json")
		var rec struct {
			UID string `json:"uid"`
		}
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatal(err)
		}
		var seq int64
		if err := db.QueryRow(`SELECT seq FROM audit_events WHERE type = 'record_created' AND record_uid = ?`, rec.UID).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		f.passwords, f.seqs = append(f.passwords, pw), append(f.seqs, seq)
	}
	return f
}

// run runs a command line and fails the test if its output or error holds a secret.
func (f *verifyFixture) run(args ...string) result {
	f.t.Helper()
	r := f.harness.run("", args...)
	for _, s := range append(f.passwords, f.creds.KeySecret.Reveal()) {
		if strings.Contains(r.out+r.errOut+fmt.Sprint(r.err), s) {
			f.t.Fatalf("keyturn %s printed a secret: %s %s %v", strings.Join(args, " "), r.out, r.errOut, r.err)
		}
	}
	return r
}

func (f *verifyFixture) tamper(stmt string) {
	f.t.Helper()
	if _, err := f.db.Exec(stmt); err != nil {
		f.t.Fatal(err)
	}
}

// TestAuditVerifyCommand: keyturn audit verify, against the server and on the data directory
// with no server, exits 0 with the head when the chain holds, and 1 naming the first broken
// link when the database was tampered with, in every output format, never printing a secret.
func TestAuditVerifyCommand(t *testing.T) {
	f := newVerifyFixture(t)
	offline := []string{"audit", "verify", "--data", f.dir, "--team", "acme"}

	online := f.run("audit", "verify", "-o", "json")
	var rep audit.Report
	if online.code != ExitOK || json.Unmarshal([]byte(online.out), &rep) != nil || !rep.OK || rep.Chain != audit.ChainTeam ||
		rep.Head == nil || rep.Head.TeamSeq != rep.Events || rep.Events < 3 {
		t.Fatalf("audit verify -o json: exit %d %v\n%s", online.code, online.err, online.out)
	}
	head := rep.Head.String()
	if r := f.run("audit", "verify"); r.code != ExitOK || !strings.Contains(r.out, "holds") || !strings.Contains(r.out, head) {
		t.Fatalf("audit verify: exit %d %v\n%s", r.code, r.err, r.out)
	}
	var fromDisk audit.Report
	if r := f.run(append(offline, "-o", "yaml")...); r.code != ExitOK || yaml.Unmarshal([]byte(r.out), &fromDisk) != nil ||
		fromDisk.Head == nil || fromDisk.Head.String() != head || fromDisk.Events != rep.Events {
		t.Fatalf("audit verify --data -o yaml: exit %d %v\n%s", r.code, r.err, r.out)
	}
	if r := f.run("audit", "verify", "--head", head); r.code != ExitOK {
		t.Fatalf("audit verify --head %s: exit %d %v", head, r.code, r.err)
	}

	// The vault-wide chain, online and offline.
	for _, args := range [][]string{{"audit", "verify", "--chain", "vault"}, append(offline, "--chain", "vault")} {
		r := f.run(append(args, "-o", "json")...)
		var vault audit.Report
		if r.code != ExitOK || json.Unmarshal([]byte(r.out), &vault) != nil || !vault.OK || vault.Chain != audit.ChainVault ||
			vault.Head == nil || vault.Head.Seq != rep.Head.Seq || vault.Head.ID == rep.Head.ID || vault.Events != rep.Events {
			t.Fatalf("keyturn %s: exit %d %v\n%s (the team chain's: %+v)", strings.Join(args, " "), r.code, r.err, r.out, rep)
		}
	}

	// An event altered in the database, with a secret written into it. There is one team, so
	// its team event number is its number in the vault's trail.
	f.tamper(fmt.Sprintf(`UPDATE audit_events SET details = '{"password":"%s"}' WHERE seq = %d`, f.passwords[0], f.seqs[1]))
	want := fmt.Sprintf("broken at event %d, team event %d (hash_mismatch)", f.seqs[1], f.seqs[1])
	for _, args := range [][]string{{"audit", "verify"}, offline, {"audit", "verify", "--chain", "vault"}, append(offline, "--chain", "vault")} {
		r := f.run(args...)
		if r.code != ExitFailed || !strings.Contains(fmt.Sprint(r.err), want) || r.out != "" {
			t.Fatalf("keyturn %s on an altered event: exit %d, %v, %q; want exit 1 and %q", strings.Join(args, " "), r.code, r.err, r.out, want)
		}
		r = f.run(append(args, "-o", "json")...)
		var broken audit.Report
		if r.code != ExitFailed || json.Unmarshal([]byte(r.out), &broken) != nil || broken.OK || broken.FirstBroken == nil ||
			broken.FirstBroken.Seq != f.seqs[1] || broken.FirstBroken.Reason != audit.HashMismatch {
			t.Fatalf("keyturn %s -o json on an altered event: exit %d %v\n%s", strings.Join(args, " "), r.code, r.err, r.out)
		}
	}
}

// TestAuditVerifyCommandTail: with the newest event removed the chain holds on its own, and
// --head with the head printed before names what is gone, online and offline.
func TestAuditVerifyCommandTail(t *testing.T) {
	f := newVerifyFixture(t)
	var rep audit.Report
	if r := f.run("audit", "verify", "-o", "json"); r.code != ExitOK || json.Unmarshal([]byte(r.out), &rep) != nil {
		t.Fatalf("exit %d %v", r.code, r.err)
	}
	f.tamper(fmt.Sprintf(`DELETE FROM audit_events WHERE seq >= %d`, rep.Head.Seq))
	// The team's chain head, moved in the transaction of each event, is beyond its events.
	if r := f.run("audit", "verify"); r.code != ExitFailed || !strings.Contains(fmt.Sprint(r.err), fmt.Sprintf("team event %d (tail_truncated)", rep.Head.TeamSeq)) {
		t.Fatalf("the truncated chain: exit %d %v", r.code, r.err)
	}
	// Someone who moves the head back too leaves a chain that holds on its own.
	f.tamper(fmt.Sprintf(`UPDATE audit_team_heads SET seq = seq - 1, hash = (SELECT team_hash FROM audit_events WHERE seq = %d)`, rep.Head.Seq-1))
	if r := f.run("audit", "verify"); r.code != ExitOK {
		t.Fatalf("the truncated chain with its head moved back holds on its own: exit %d %v", r.code, r.err)
	}
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--data", f.dir}} {
		r := f.run(append(args, "--head", rep.Head.String())...)
		if r.code != ExitFailed || !strings.Contains(fmt.Sprint(r.err), fmt.Sprintf("broken at event %d (head_missing)", rep.Head.Seq)) {
			t.Fatalf("keyturn %s --head: exit %d %v", strings.Join(args, " "), r.code, r.err)
		}
	}
}

// TestAuditVerifyOfflinePassphrase: the offline form unseals a passphrase vault with
// --passphrase-file, as server does, and says what is wrong otherwise.
func TestAuditVerifyOfflinePassphrase(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "vault")
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kdf := keyring.KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 1024, Threads: 1}
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{PassphraseFile: pass, KDF: kdf}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvTeam: "acme"} // no server address, no credentials
	if r := runWith(env, "", "audit", "verify", "--data", dir, "--passphrase-file", pass); r.code != ExitOK || !strings.Contains(r.out, "holds") {
		t.Fatalf("with the passphrase: exit %d %v %q", r.code, r.err, r.out)
	}
	if r := runWith(env, "", "audit", "verify", "--data", dir); r.code != ExitFailed || !strings.Contains(fmt.Sprint(r.err), "--passphrase-file") {
		t.Fatalf("without the passphrase: exit %d %v", r.code, r.err)
	}
	if r := runWith(env, "", "audit", "verify", "--data", dir, "--passphrase-file", pass, "--team", "nope"); r.code != ExitFailed || !strings.Contains(fmt.Sprint(r.err), `no team "nope"`) {
		t.Fatalf("another team: exit %d %v", r.code, r.err)
	}
}

// TestAuditVerifyCommandUsage: flags that do not fit exit 2 and say why.
func TestAuditVerifyCommandUsage(t *testing.T) {
	env := map[string]string{EnvAddr: "http://127.0.0.1:1", EnvToken: "t"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "verify", "--team", "acme"}, "go with --data"},
		{[]string{"audit", "verify", "--data", "/nonexistent"}, "--data needs --team"},
		{[]string{"audit", "verify", "--head", "12"}, "SEQ:ID"},
		{[]string{"audit", "verify", "--head", "12:zz"}, "hex"},
		{[]string{"audit", "verify", "--chain", "all"}, "--chain must be team or vault"},
		{[]string{"audit", "verify", "extra"}, "unknown command"},
	} {
		r := runWith(env, "", c.args...)
		if r.code != ExitBadUsage || !strings.Contains(fmt.Sprint(r.err), c.want) {
			t.Errorf("keyturn %s: exit %d %v, want 2 and %q", strings.Join(c.args, " "), r.code, r.err, c.want)
		}
	}
}
