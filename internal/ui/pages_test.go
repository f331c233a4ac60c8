package ui_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv"
)

var runLinkRE = regexp.MustCompile(`^/ui/runs/([A-Za-z0-9_-]+)$`)

// rotateThroughUI presses "rotate now", confirms, and follows the run until it ends. It returns
// the run's id and every page seen on the way.
func rotateThroughUI(t *testing.T, b *browser, uid string) (string, []page) {
	t.Helper()
	rec := b.get("/ui/records/" + uid)
	if !strings.Contains(rec.body, `id="rotate-button"`) {
		t.Fatalf("no rotate button on the record page")
	}
	confirm := b.get("/ui/records/" + uid + "/rotate")
	if confirm.status != http.StatusOK || !strings.Contains(confirm.body, `id="rotate-confirm"`) {
		t.Fatalf("confirmation page: %d", confirm.status)
	}
	m := csrfRE.FindStringSubmatch(confirm.body)
	p := b.post("/ui/records/"+uid+"/rotate", url.Values{"csrf_token": {m[1]}})
	id := runLinkRE.FindStringSubmatch(p.header.Get("Location"))
	if p.status != http.StatusSeeOther || id == nil {
		t.Fatalf("rotate: %d %q", p.status, p.header.Get("Location"))
	}
	pages := []page{rec, confirm, p}
	deadline := time.Now().Add(30 * time.Second)
	for {
		run := b.get("/ui/runs/" + id[1])
		pages = append(pages, run)
		if run.status != http.StatusOK {
			t.Fatalf("run page: %d", run.status)
		}
		if strings.Contains(run.body, `data-terminal="true"`) {
			if strings.Contains(run.body, `http-equiv="refresh"`) {
				t.Fatalf("a finished run's page still refreshes")
			}
			return id[1], pages
		}
		if !strings.Contains(run.body, `http-equiv="refresh"`) {
			t.Fatalf("a running run's page does not refresh")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func currentPassword(t *testing.T, env *testenv.Env, uid string) string {
	t.Helper()
	var val struct {
		Value string `json:"value"`
	}
	if st := env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+uid+"/field/password", nil, &val); st != http.StatusOK {
		t.Fatalf("notation: %d", st)
	}
	return val.Value
}

// TestNoPasswordOnAnyPageUnlessRevealed rotates a record and fails another through the UI,
// then scans every page the UI serves for their passwords, old and new: none holds one but
// the response to an explicit reveal.
func TestNoPasswordOnAnyPageUnlessRevealed(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	good := managedUser(t, env, "leak-good", "Shared/Okta", "Leak-Start-Good-1", "#!/bin/sh\necho rotated\n")
	bad := managedUser(t, env, "leak-bad", "Shared/Okta", "Leak-Start-Bad-1", "#!/bin/sh\necho refused by the target >&2\nexit 3\n")
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())

	goodRun, pages := rotateThroughUI(t, b, good.UID)
	badRun, more := rotateThroughUI(t, b, bad.UID)
	pages = append(pages, more...)
	last := pages[len(pages)-1]
	if !strings.Contains(last.body, `id="run-error"`) || !strings.Contains(last.body, "refused by the target") || !strings.Contains(last.body, `id="exec-log"`) {
		t.Fatalf("the failed run's page shows no error or exec log")
	}
	secrets := []string{"Leak-Start-Good-1", "Leak-Start-Bad-1", currentPassword(t, env, good.UID), currentPassword(t, env, bad.UID)}
	if secrets[2] == "Leak-Start-Good-1" || len(secrets[2]) != 24 {
		t.Fatalf("the rotation through the UI did not change the password")
	}

	attention := b.get("/ui/attention")
	if !strings.Contains(attention.body, `data-run="`+badRun+`"`) || strings.Contains(attention.body, `data-run="`+goodRun+`"`) {
		t.Fatalf("needs attention lists the wrong runs")
	}
	rec := b.get("/ui/records/" + good.UID)
	if !strings.Contains(rec.body, `data-state="current"`) || !strings.Contains(rec.body, `data-state="previous"`) {
		t.Fatalf("the record page shows no current and previous versions")
	}
	if !strings.Contains(rec.body, `id="scripts"`) || !strings.Contains(rec.body, `id="script-params"`) || !strings.Contains(rec.body, "rotate.sh") {
		t.Fatalf("the record page shows no scripts or params")
	}
	if !strings.Contains(rec.body, "every day at 03:00 (Europe/Berlin)") {
		t.Fatalf("the schedule is not in words")
	}
	list := b.get("/ui/records")
	for uid, badge := range map[string]string{good.UID: "ok", bad.UID: "needs_attention"} {
		if !regexp.MustCompile(`data-uid="` + uid + `"[\s\S]*?data-status="` + badge + `"`).MatchString(list.body) {
			t.Errorf("record %s has no %s badge", uid, badge)
		}
	}
	if f := b.get("/ui/records?status=needs_attention"); !strings.Contains(f.body, bad.UID) || strings.Contains(f.body, good.UID) {
		t.Errorf("status filter")
	}
	for _, path := range []string{"/ui/", "/ui/records", "/ui/records?status=ok", "/ui/records?folder=Shared&type=pamUser",
		"/ui/records/leak-good", "/ui/runs/" + goodRun, "/ui/runs/" + badRun, "/ui/records/" + bad.UID + "/rotate", "/ui/signin", "/ui/nope"} {
		pages = append(pages, b.get(path))
	}
	pages = append(pages, attention, rec, list)
	reader := newUser(t, env, "leak-reader", []string{"secrets_reader", "security_admin"}, nil)
	rb := mustSignIn(t, env, reader.ID, reader.Secret)
	for _, path := range []string{"/ui/records", "/ui/records/" + good.UID, "/ui/runs/" + goodRun, "/ui/attention"} {
		pages = append(pages, rb.get(path))
	}
	for i, p := range pages {
		for _, s := range secrets {
			if strings.Contains(p.body, s) {
				t.Errorf("page %d (%d) holds a password", i, p.status)
			}
		}
	}

	// Revealing shows the current password, on that response only.
	rev := rb.post("/ui/records/"+good.UID+"/reveal", url.Values{"csrf_token": {rb.csrf()}})
	if rev.status != http.StatusOK || !strings.Contains(rev.body, secrets[2]) || !strings.Contains(rev.body, `id="revealed-note"`) {
		t.Fatalf("reveal: %d, password shown: %v", rev.status, strings.Contains(rev.body, secrets[2]))
	}
	if p := rb.get("/ui/records/" + good.UID); strings.Contains(p.body, secrets[2]) {
		t.Fatalf("the record page holds the password after a reveal")
	}
}

func TestRevealIsAudited(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := managedUser(t, env, "audited", "Shared", "Audited-Start-1", "#!/bin/sh\nexit 0\n")
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	// Viewing the record is not a read of its secrets; revealing is.
	b.get("/ui/records/" + rec.UID)
	if p := b.post("/ui/records/"+rec.UID+"/reveal", url.Values{"csrf_token": {b.csrf()}}); p.status != http.StatusOK || !strings.Contains(p.body, "Audited-Start-1") {
		t.Fatalf("reveal: %d", p.status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var events struct {
			List []struct {
				Type      string         `json:"type"`
				Actor     string         `json:"actor"`
				RecordUID string         `json:"record_uid"`
				Details   map[string]any `json:"details"`
			} `json:"list"`
		}
		env.Do(t, "GET", "/v1/teams/acme/audit_events?limit=1000", nil, &events)
		var reads []map[string]any
		for _, e := range events.List {
			if e.Type == "record_secret_read" && e.RecordUID == rec.UID {
				reads = append(reads, e.Details)
				if e.Actor != "admin" {
					t.Fatalf("actor %q", e.Actor)
				}
			}
		}
		if len(reads) > 0 {
			raw, _ := json.Marshal(reads)
			if len(reads) != 1 || reads[0]["via"] != "ui" || reads[0]["key_id"] != env.Creds.KeyID || strings.Contains(string(raw), "Audited-Start-1") {
				t.Fatalf("secret-read events %s", raw)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record_secret_read event for the reveal")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var revisionRE = regexp.MustCompile(`name="revision" value="(\d+)"`)

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := managedUser(t, env, "pausable", "Shared", "Pause-Start-1", "#!/bin/sh\nexit 0\n")
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	paused := func() bool {
		var info struct {
			Paused bool `json:"paused"`
		}
		env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/rotation", nil, &info)
		return info.Paused
	}
	p := b.get("/ui/records/" + rec.UID)
	rev := revisionRE.FindStringSubmatch(p.body)
	if !strings.Contains(p.body, `id="pause-button"`) || rev == nil {
		t.Fatalf("no pause button")
	}
	csrf := csrfRE.FindStringSubmatch(p.body)[1]
	if r := b.post("/ui/records/"+rec.UID+"/pause", url.Values{"csrf_token": {csrf}, "paused": {"true"}, "revision": {rev[1]}}); r.status != http.StatusSeeOther || !paused() {
		t.Fatalf("pause: %d, paused %v", r.status, paused())
	}
	p = b.get("/ui/records/" + rec.UID)
	if !strings.Contains(p.body, `id="rotation-status" class="badge badge-paused"`) || !strings.Contains(p.body, `id="resume-button"`) {
		t.Fatalf("the record page does not show the pause")
	}
	// The form of the page read before the pause is stale now: 409, nothing changed.
	if r := b.post("/ui/records/"+rec.UID+"/pause", url.Values{"csrf_token": {csrf}, "paused": {"false"}, "revision": {rev[1]}}); r.status != http.StatusConflict || !paused() {
		t.Fatalf("resume with a stale revision: %d, paused %v", r.status, paused())
	}
	rev = revisionRE.FindStringSubmatch(p.body)
	if r := b.post("/ui/records/"+rec.UID+"/pause", url.Values{"csrf_token": {csrf}, "paused": {"false"}, "revision": {rev[1]}}); r.status != http.StatusSeeOther || paused() {
		t.Fatalf("resume: %d, paused %v", r.status, paused())
	}
	// A security_admin sees the status but may not pause.
	k := newUser(t, env, "auditor", []string{"security_admin"}, nil)
	sb := mustSignIn(t, env, k.ID, k.Secret)
	p = sb.get("/ui/records/" + rec.UID)
	if !strings.Contains(p.body, `id="rotation-status"`) || strings.Contains(p.body, `id="pause-button"`) || strings.Contains(p.body, `id="fields"`) {
		t.Fatalf("a security_admin's record page")
	}
	rev = revisionRE.FindStringSubmatch(b.get("/ui/records/" + rec.UID).body)
	if r := sb.post("/ui/records/"+rec.UID+"/pause", url.Values{"csrf_token": {sb.csrf()}, "paused": {"true"}, "revision": {rev[1]}}); r.status != http.StatusForbidden || paused() {
		t.Fatalf("pause by a security_admin: %d, paused %v", r.status, paused())
	}
}
