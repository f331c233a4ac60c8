package api_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/api"
	"github.com/keyturn/keyturn/internal/testenv"
)

// TestRecordRoutesTakeTitles: every route that takes a record's uid takes its exact title
// too; a title several records the caller can see share is a 400 ambiguous_title listing
// their uids; records outside the caller's folders are neither found by title nor counted or
// listed (keyturn issue 12).
func TestRecordRoutesTakeTitles(t *testing.T) {
	env := testenv.Start(t)
	okta := create(t, env, pamUser("Okta admin", "okta-pw")) // Shared/Okta
	slash := create(t, env, map[string]any{"type": "login", "title": "a/b c?d#e", "fields": []map[string]any{{"type": "password", "value": []string{"s-pw"}}}})

	var got record
	if st := env.Do(t, "GET", records+"/"+url.PathEscape("Okta admin"), nil, &got); st != 200 || got.UID != okta.UID {
		t.Fatalf("GET by title: %d %+v", st, got)
	}
	if st := env.Do(t, "GET", records+"/"+url.PathEscape("a/b c?d#e"), nil, &got); st != 200 || got.UID != slash.UID {
		t.Fatalf("GET by a title with / ? #: %d %+v", st, got)
	}
	var versions struct{ List []any }
	if st := env.Do(t, "GET", records+"/"+url.PathEscape("Okta admin")+"/versions", nil, &versions); st != 200 || len(versions.List) != 1 {
		t.Fatalf("versions by title: %d %+v", st, versions)
	}
	body := getRaw(t, env, "Okta admin")
	body["title"] = "Okta admin (prod)"
	if st := env.Do(t, "PUT", records+"/"+url.PathEscape("Okta admin"), body, &got); st != 200 || got.UID != okta.UID || got.Title != "Okta admin (prod)" {
		t.Fatalf("PUT by title (uid in the body): %d %+v", st, got)
	}
	wantError(t, env, "GET", records+"/"+url.PathEscape("Okta admin"), env.Token, nil, 404, "not_found")
	wantError(t, env, "GET", records+"/Okta", env.Token, nil, 404, "not_found") // exact titles only

	// Ambiguous: every route with {uid} says so, listing the uids.
	twin := create(t, env, map[string]any{"type": "pamUser", "title": "Okta admin (prod)", "folder": "Apps",
		"fields": []map[string]any{{"type": "login", "value": []string{"twin@example.com"}}}})
	name := url.PathEscape("Okta admin (prod)")
	n := 0
	for _, rt := range api.Routes() {
		if !strings.Contains(rt.Path, "{uid}") {
			continue
		}
		n++
		path := strings.NewReplacer("{team}", "acme", "{uid}", name, "{script_id}", "s").Replace(rt.Path)
		e := wantError(t, env, rt.Method, path, env.Token, map[string]any{}, 400, "ambiguous_title")
		if !strings.Contains(e.Message, okta.UID) || !strings.Contains(e.Message, twin.UID) || !strings.Contains(e.Message, "2 records") {
			t.Errorf("%s %s: message %q does not list both records", rt.Method, rt.Path, e.Message)
		}
	}
	if n < 10 {
		t.Fatalf("only %d routes take a record uid", n)
	}

	// A caller limited to Apps sees only the twin: the title names it, and the Shared/Okta
	// record is neither found, counted nor listed.
	_, apps := newUser(t, env, "apps-reader", []string{"secrets_reader", "pam_admin"}, []string{"Apps"})
	resp, raw := env.Raw(t, "GET", records+"/"+name, apps, nil)
	if resp.StatusCode != 200 || json.Unmarshal(raw, &got) != nil || got.UID != twin.UID {
		t.Fatalf("GET by title within Apps: %d %s", resp.StatusCode, raw)
	}
	third := create(t, env, map[string]any{"type": "login", "title": "Okta admin (prod)", "folder": "Apps/Sub"})
	e := wantError(t, env, "GET", records+"/"+name, apps, nil, 400, "ambiguous_title")
	if !strings.Contains(e.Message, "2 records") || !strings.Contains(e.Message, twin.UID) || !strings.Contains(e.Message, third.UID) || strings.Contains(e.Message, okta.UID) {
		t.Fatalf("ambiguity within Apps leaks or miscounts: %q", e.Message)
	}
	e = wantError(t, env, "GET", records+"/"+url.PathEscape("a/b c?d#e"), apps, nil, 404, "not_found")
	if strings.Contains(e.Message, slash.UID) {
		t.Fatalf("not found names the record: %q", e.Message)
	}
	wantError(t, env, "GET", records+"/"+okta.UID, apps, nil, 404, "not_found")

	// DELETE by title removes that record only.
	if st := env.Do(t, "DELETE", records+"/"+url.PathEscape("a/b c?d#e"), nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE by title: %d", st)
	}
	wantError(t, env, "GET", records+"/"+slash.UID, env.Token, nil, 404, "not_found")
}

// TestBodyReferencesTakeTitles: the records a body names (rotation settings' configuration and
// resource, a script's credentials) are taken by uid or exact title, as path records are, and
// stored as uids; an ambiguous title is refused and changes nothing; a title outside the
// caller's folders is not found.
func TestBodyReferencesTakeTitles(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	user := create(t, env, pamUser("rotating", "start-pw"))
	target := create(t, env, map[string]any{"type": "login", "title": "Okta org", "folder": "Shared/Okta", "fields": []map[string]any{
		{"type": "url", "value": []string{"https://example.okta.com"}}, {"type": "password", "value": []string{"ssws"}}}})
	token := create(t, env, map[string]any{"type": "login", "title": "Record with Access Token", "folder": "Shared/Okta",
		"fields": []map[string]any{{"type": "password", "value": []string{"tok"}}}})

	path := records + "/" + user.UID + "/rotation"
	var info struct {
		ResourceUID string `json:"resource_uid"`
	}
	if st := env.Do(t, "PUT", path, map[string]any{"method": "general", "connector": "okta", "resource_uid": "Okta org"}, nil); st != 200 {
		t.Fatalf("rotation settings with the resource's title: %d", st)
	}
	if env.Do(t, "GET", path, nil, &info); info.ResourceUID != target.UID {
		t.Fatalf("resource_uid stored as %q, want the uid %s", info.ResourceUID, target.UID)
	}
	var added struct {
		CredentialUIDs []string `json:"credential_uids"`
	}
	if st := env.Do(t, "POST", records+"/"+user.UID+"/scripts", map[string]any{"name": "r.sh",
		"content_base64": base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n")), "credential_uids": []string{"Record with Access Token"}}, &added); st != 201 ||
		len(added.CredentialUIDs) != 1 || added.CredentialUIDs[0] != token.UID {
		t.Fatalf("script with a credential's title: %d %+v, want the uid %s", st, added, token.UID)
	}

	twin := create(t, env, map[string]any{"type": "login", "title": "Okta org", "folder": "Apps",
		"fields": []map[string]any{{"type": "password", "value": []string{"x"}}}})
	e := wantError(t, env, "PUT", path, env.Token, map[string]any{"method": "general", "connector": "okta", "resource_uid": "Okta org"}, 400, "ambiguous_title")
	if !strings.Contains(e.Message, twin.UID) || !strings.Contains(e.Message, target.UID) {
		t.Errorf("ambiguity message %q does not list both records", e.Message)
	}
	wantError(t, env, "POST", records+"/"+user.UID+"/scripts", env.Token, map[string]any{"name": "s.sh",
		"content_base64": base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n")), "credential_uids": []string{"Okta org"}}, 400, "ambiguous_title")
	if env.Do(t, "GET", path, nil, &info); info.ResourceUID != target.UID {
		t.Fatalf("a refused change moved resource_uid to %q", info.ResourceUID)
	}
	wantError(t, env, "PUT", path, env.Token, map[string]any{"method": "general", "connector": "okta", "resource_uid": "no such title"}, 400, "invalid_request")
}
