package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv"
)

const records = "/v1/teams/acme/records"

// getRaw GETs a record as a generic JSON object, as a client that round-trips it would.
func getRaw(t *testing.T, env *testenv.Env, name string) map[string]any {
	t.Helper()
	var body map[string]any
	if st := env.Do(t, "GET", records+"/"+url.PathEscape(name), nil, &body); st != http.StatusOK {
		t.Fatalf("GET %s: %d", name, st)
	}
	return body
}

// TestPutTakesWhatGetAnswers: a record read with GET, changed and PUT back as it is is
// accepted; its uid must be the path's, its timestamps are ignored, and a key GET never
// answers is still refused (keyturn issue 12).
func TestPutTakesWhatGetAnswers(t *testing.T) {
	env := testenv.Start(t)
	rec := create(t, env, pamUser("carol", "pw-1"))
	body := getRaw(t, env, rec.UID)
	for _, k := range []string{"uid", "created_at", "updated_at", "revision"} {
		if _, ok := body[k]; !ok {
			t.Fatalf("GET answers no %s: %v", k, body)
		}
	}
	created := body["created_at"]
	body["title"] = "carol (prod)"
	body["fields"].([]any)[1].(map[string]any)["value"] = []string{"pw-2"}
	body["created_at"] = "1999-01-01T00:00:00Z" // ignored, as is updated_at
	var updated map[string]any
	if resp, raw := env.Raw(t, "PUT", records+"/"+rec.UID, env.Token, body); resp.StatusCode != 200 || json.Unmarshal(raw, &updated) != nil {
		t.Fatalf("PUT of the body GET answered: %d %s", resp.StatusCode, raw)
	}
	if updated["title"] != "carol (prod)" || updated["revision"].(float64) != 2 || updated["uid"] != rec.UID || updated["created_at"] != created {
		t.Fatalf("updated %v", updated)
	}
	var val struct{ Value string }
	env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+rec.UID+"/field/password", nil, &val)
	if val.Value != "pw-2" {
		t.Fatalf("password after the round trip: %q", val.Value)
	}

	// Another record's uid in the body: 400, nothing changes.
	other := create(t, env, pamUser("dave", "pw-d"))
	body = getRaw(t, env, rec.UID)
	body["uid"], body["title"] = other.UID, "hijack"
	e := wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "invalid_request")
	if !strings.Contains(e.Message, "uid") || !strings.Contains(e.Message, other.UID) {
		t.Errorf("uid mismatch message %q", e.Message)
	}
	for uid, title := range map[string]string{rec.UID: "carol (prod)", other.UID: "dave"} {
		if got := getRaw(t, env, uid); got["title"] != title || got["revision"].(float64) > 2 {
			t.Fatalf("a refused PUT changed %s: %v", uid, got)
		}
	}

	// Keys GET never answers are still refused.
	body = getRaw(t, env, rec.UID)
	body["etag"] = "x"
	wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "unknown_field")

	// A new record's uid is the server's to choose.
	body = getRaw(t, env, rec.UID)
	delete(body, "revision")
	wantError(t, env, "POST", records, env.Token, body, 400, "invalid_request")
	delete(body, "uid")
	if st := env.Do(t, "POST", records, body, nil); st != http.StatusCreated {
		t.Fatalf("POST of a GET body without its uid: %d", st)
	}
}
