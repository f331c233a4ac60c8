package api_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv"
)

type verification struct {
	Chain  string `json:"chain"`
	OK     bool   `json:"ok"`
	Events int64  `json:"events"`
	Head   *struct {
		Seq     int64  `json:"seq"`
		TeamSeq int64  `json:"team_seq"`
		ID      string `json:"id"`
	} `json:"head"`
	FirstBroken *struct {
		Seq     int64  `json:"seq"`
		TeamSeq int64  `json:"team_seq"`
		ID      string `json:"id"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"first_broken"`
}

// verifyChain asks the API to verify acme's chain as token and checks that the answer holds no
// secret: neither a record's password nor the admin's key secret or token.
func verifyChain(t *testing.T, env *testenv.Env, token, query string, secrets ...string) verification {
	t.Helper()
	resp, raw := env.Raw(t, "GET", "/v1/teams/acme/audit/verify"+query, token, nil)
	for _, s := range append(secrets, env.Creds.KeySecret.Reveal(), env.Token, token) {
		if strings.Contains(string(raw), s) {
			t.Fatalf("the answer holds a secret: %s", raw)
		}
	}
	var v verification
	if resp.StatusCode != 200 || json.Unmarshal(raw, &v) != nil {
		t.Fatalf("verify: %d %s", resp.StatusCode, raw)
	}
	return v
}

// tamperable is acme with four records, whose record_created events are written in the
// transaction that creates them, and the database file opened directly to tamper with it.
type tamperable struct {
	env       *testenv.Env
	db        *sql.DB
	passwords []string
	seqs      []int64 // the seq of each record's record_created event
}

func newTamperable(t *testing.T) *tamperable {
	t.Helper()
	env := testenv.Start(t)
	db, err := sql.Open("sqlite", "file:"+store.SQLitePath(env.Dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tp := &tamperable{env: env, db: db}
	for i := range 4 {
		pw := fmt.Sprintf("hunter2-verify-pw-%d", i)
		rec := create(t, env, pamUser(fmt.Sprintf("verify %d", i), pw))
		var seq int64
		if err := db.QueryRow(`SELECT seq FROM audit_events WHERE type = 'record_created' AND record_uid = ?`, rec.UID).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		tp.passwords, tp.seqs = append(tp.passwords, pw), append(tp.seqs, seq)
	}
	return tp
}

func (tp *tamperable) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := tp.db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestAuditVerifyNamesTheFirstBrokenLink tampers with the SQLite database under a running
// server and checks that GET …/audit/verify names the first broken link and why, and never
// answers with a secret, not even one written into an altered event.
func TestAuditVerifyNamesTheFirstBrokenLink(t *testing.T) {
	t.Run("intact", func(t *testing.T) {
		tp := newTamperable(t)
		v := verifyChain(t, tp.env, tp.env.Token, "", tp.passwords...)
		if !v.OK || v.Chain != "team" || v.FirstBroken != nil || v.Events < 4 || v.Head == nil || v.Head.Seq < tp.seqs[3] ||
			v.Head.TeamSeq != v.Events || len(v.Head.ID) != 64 {
			t.Fatalf("an intact chain: %+v", v)
		}
		vault := verifyChain(t, tp.env, tp.env.Token, "?chain=vault", tp.passwords...)
		if !vault.OK || vault.Chain != "vault" || vault.Events != v.Events || vault.Head == nil || vault.Head.Seq != v.Head.Seq ||
			vault.Head.ID == v.Head.ID || len(vault.Head.ID) != 64 {
			t.Fatalf("the vault chain: %+v, the team's: %+v", vault, v)
		}
	})
	for _, tc := range []struct {
		name   string
		tamper func(tp *tamperable) []string
		seq    func(tp *tamperable) int64
		reason string
	}{
		{"payload altered", func(tp *tamperable) []string {
			return []string{fmt.Sprintf(`UPDATE audit_events SET details = '{"password":"%s"}' WHERE seq = %d`, tp.passwords[1], tp.seqs[1])}
		}, func(tp *tamperable) int64 { return tp.seqs[1] }, "hash_mismatch"},
		{"removed from the middle", func(tp *tamperable) []string {
			return []string{fmt.Sprintf(`DELETE FROM audit_events WHERE seq = %d`, tp.seqs[1])}
		}, func(tp *tamperable) int64 { return tp.seqs[1] + 1 }, "sequence_gap"},
		{"seqs swapped", func(tp *tamperable) []string {
			a, b := tp.seqs[1], tp.seqs[2]
			return []string{fmt.Sprintf(`UPDATE audit_events SET seq = -1 WHERE seq = %d`, a),
				fmt.Sprintf(`UPDATE audit_events SET seq = %d WHERE seq = %d`, a, b),
				fmt.Sprintf(`UPDATE audit_events SET seq = %d WHERE seq = -1`, b)}
		}, func(tp *tamperable) int64 { return tp.seqs[1] }, "link_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTamperable(t)
			tp.exec(t, tc.tamper(tp)...)
			v := verifyChain(t, tp.env, tp.env.Token, "", tp.passwords...)
			if v.OK || v.Head != nil || v.FirstBroken == nil || v.FirstBroken.Seq != tc.seq(tp) ||
				v.FirstBroken.Reason != tc.reason || len(v.FirstBroken.ID) != 64 || v.FirstBroken.Message == "" {
				t.Fatalf("want the break at %d (%s), got %+v %+v", tc.seq(tp), tc.reason, v, v.FirstBroken)
			}
		})
	}
	t.Run("tail truncated", func(t *testing.T) {
		tp := newTamperable(t)
		before := verifyChain(t, tp.env, tp.env.Token, "")
		tp.exec(t, fmt.Sprintf(`DELETE FROM audit_events WHERE seq >= %d`, tp.seqs[3]))
		// The team's chain head, moved in the transaction of each event, is beyond its events.
		if v := verifyChain(t, tp.env, tp.env.Token, ""); v.OK || v.FirstBroken == nil || v.FirstBroken.Reason != "tail_truncated" ||
			v.FirstBroken.TeamSeq != before.Head.TeamSeq-(before.Head.Seq-tp.seqs[3]) {
			t.Fatalf("the truncated chain: %+v %+v", v, v.FirstBroken)
		}
		// Alone, the vault-wide chain holds: nothing in it says that more followed.
		if v := verifyChain(t, tp.env, tp.env.Token, "?chain=vault"); !v.OK || v.Chain != "vault" || v.Head.Seq >= tp.seqs[3] {
			t.Fatalf("the truncated vault chain: %+v", v)
		}
		// Nor does the team's, once someone moved its head back too.
		tp.exec(t, fmt.Sprintf(`UPDATE audit_team_heads SET seq = seq - %d, hash = (SELECT team_hash FROM audit_events WHERE seq = %d)`,
			before.Head.Seq-tp.seqs[3]+1, tp.seqs[3]-1))
		if v := verifyChain(t, tp.env, tp.env.Token, ""); !v.OK || v.Head.Seq >= tp.seqs[3] {
			t.Fatalf("the truncated chain, its head moved back: %+v %+v", v, v.FirstBroken)
		}
		// The head from before, kept elsewhere, is gone.
		head := fmt.Sprintf("?head=%d:%s", before.Head.Seq, before.Head.ID)
		v := verifyChain(t, tp.env, tp.env.Token, head)
		if v.OK || v.FirstBroken == nil || v.FirstBroken.Seq != before.Head.Seq || v.FirstBroken.Reason != "head_missing" {
			t.Fatalf("with the head kept from before: %+v %+v", v, v.FirstBroken)
		}
		// The head of an intact chain is found.
		if v := verifyChain(t, tp.env, tp.env.Token, fmt.Sprintf("?head=%d:%s", tp.seqs[0], strings.ToUpper(hashOf(t, tp, tp.seqs[0])))); !v.OK {
			t.Fatalf("an earlier event as the head: %+v", v.FirstBroken)
		}
	})
	t.Run("bad head or chain", func(t *testing.T) {
		env := testenv.Start(t)
		for _, h := range []string{"12", "x:ab", "0:ab", "3:not-hex"} {
			wantError(t, env, "GET", "/v1/teams/acme/audit/verify?head="+h, env.Token, nil, 400, "invalid_request")
		}
		for _, c := range []string{"all", "Team", "vault,team"} {
			wantError(t, env, "GET", "/v1/teams/acme/audit/verify?chain="+c, env.Token, nil, 400, "invalid_request")
		}
	})
}

func hashOf(t *testing.T, tp *tamperable, seq int64) string {
	t.Helper()
	var h string
	if err := tp.db.QueryRow(`SELECT hex(hash) FROM audit_events WHERE seq = ?`, seq).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(h)
}

// TestAuditVerifyRefusesFolderLimitedCallers: verifying walks every event of the team and
// reports breaks next to events a folder-limited caller may not see, so such a caller is
// refused (403 folder_limited) and learns nothing of the chain, broken or not; a
// security_admin without a folder limit is told where it breaks.
func TestAuditVerifyRefusesFolderLimitedCallers(t *testing.T) {
	tp := newTamperable(t) // records in Shared/Okta
	env := tp.env
	_, limited := newUser(t, env, "apps-auditor", []string{"security_admin"}, []string{"Apps"})
	_, unlimited := newUser(t, env, "auditor", []string{"security_admin"}, nil)
	inApps := pamUser("apps record", "apps-pw")
	inApps["folder"] = "Apps"
	create(t, env, inApps)

	e := wantError(t, env, "GET", "/v1/teams/acme/audit/verify", limited, nil, 403, "folder_limited")
	if vault := wantError(t, env, "GET", "/v1/teams/acme/audit/verify?chain=vault", limited, nil, 403, "folder_limited"); vault != e {
		t.Fatalf("the vault chain's refusal differs: %+v, %+v", vault, e)
	}
	tp.exec(t, fmt.Sprintf(`UPDATE audit_events SET actor = 'nobody' WHERE seq = %d`, tp.seqs[2]))
	broken := wantError(t, env, "GET", "/v1/teams/acme/audit/verify", limited, nil, 403, "folder_limited")
	if broken != e || strings.Contains(broken.Message, fmt.Sprint(tp.seqs[2])) {
		t.Fatalf("the refusal differs once the chain is broken: %+v, then %+v", e, broken)
	}
	v := verifyChain(t, env, unlimited, "")
	if v.OK || v.FirstBroken.Seq != tp.seqs[2] || v.FirstBroken.Reason != "hash_mismatch" {
		t.Fatalf("the unlimited security_admin: %+v %+v", v, v.FirstBroken)
	}
}

// TestAuditVerifyAnotherTeam: another team's verification holds when only acme's event was
// altered, and never names acme's events.
func TestAuditVerifyAnotherTeam(t *testing.T) {
	tp := newTamperable(t)
	other, err := tp.env.Auth.CreateTeam(t.Context(), "other")
	if err != nil {
		t.Fatal(err)
	}
	token := tp.env.TokenFor(t, "other", other.KeyID, other.KeySecret.Reveal())
	var rec record
	if resp, raw := tp.env.Raw(t, "POST", "/v1/teams/other/records", token, pamUser("other's", "pw")); resp.StatusCode != 201 || json.Unmarshal(raw, &rec) != nil {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	tp.exec(t, fmt.Sprintf(`UPDATE audit_events SET details = '{}' WHERE seq = %d`, tp.seqs[2]))
	resp, raw := tp.env.Raw(t, "GET", "/v1/teams/other/audit/verify", token, nil)
	var v verification
	if resp.StatusCode != 200 || json.Unmarshal(raw, &v) != nil {
		t.Fatalf("verify: %d %s", resp.StatusCode, raw)
	}
	if strings.Contains(string(raw), hashOf(t, tp, tp.seqs[2])) {
		t.Fatalf("other's verification names acme's event: %s", raw)
	}
	if !v.OK || v.Events < 1 {
		t.Fatalf("other's events are intact: %+v %+v", v, v.FirstBroken)
	}
	if v := verifyChain(t, tp.env, tp.env.Token, ""); v.OK || v.FirstBroken.Seq != tp.seqs[2] {
		t.Fatalf("acme: %+v", v)
	}
}
