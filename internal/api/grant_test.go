package api_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv"
)

// TestFolderLimitedResourceAdminStaysInItsGrant: a resource_admin limited to Apps cannot
// grant roles or folders beyond its own, act on a service user whose grant is wider, or
// change its own roles or folders (keyturn issue 11, defect 6).
func TestFolderLimitedResourceAdminStaysInItsGrant(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	okta := create(t, env, pamUser("okta admin", "okta-pw")) // folder Shared/Okta
	_, ra := newUser(t, env, "apps-ra", []string{"resource_admin"}, []string{"Apps"})
	const users = "/v1/teams/acme/service_users"

	t.Run("create a wider user, mint its key and read a record", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"name": "escape", "roles": []string{"pam_admin", "secrets_reader"}},                        // roles it lacks, every folder
			{"name": "escape", "roles": []string{"secrets_reader"}, "folders": []string{"Apps"}},        // a role it lacks
			{"name": "escape", "roles": []string{"resource_admin"}},                                     // every folder
			{"name": "escape", "roles": []string{"resource_admin"}, "folders": []string{"Shared/Okta"}}, // a folder outside Apps
			{"name": "escape", "roles": []string{"resource_admin"}, "folders": []string{"Apps", "Shared"}},
			{"name": "escape", "folders": []string{"Applications"}}, // a sibling that shares the prefix's letters
		} {
			resp, raw := env.Raw(t, "POST", users, ra, body)
			if resp.StatusCode == http.StatusCreated {
				// Today's escape: the new user's key reads a record outside Apps.
				var k key
				_, kraw := env.Raw(t, "POST", users+"/escape/keys", ra, nil)
				_ = json.Unmarshal(kraw, &k)
				read := 0
				if k.ID != "" {
					tok := env.TokenFor(t, "acme", k.ID, k.Secret)
					r, _ := env.Raw(t, "GET", "/v1/teams/acme/records/"+okta.UID, tok, nil)
					read = r.StatusCode
				}
				t.Fatalf("created %v: %s; its key read a Shared/Okta record: %d", body, raw, read)
			}
			wantError(t, env, "POST", users, ra, body, 403, "grant_exceeds_own")
		}
		wantError(t, env, "POST", users+"/escape/keys", ra, nil, 404, "not_found")
		// Within its grant it still creates users and issues their keys.
		var u user
		if resp, raw := env.Raw(t, "POST", users, ra, map[string]any{"name": "apps-sub", "roles": []string{"resource_admin"}, "folders": []string{"Apps/Sub"}}); resp.StatusCode != 201 || json.Unmarshal(raw, &u) != nil {
			t.Fatalf("create within the grant: %d %s", resp.StatusCode, raw)
		}
		if resp, raw := env.Raw(t, "POST", users+"/apps-sub/keys", ra, nil); resp.StatusCode != 200 {
			t.Fatalf("a key for a user within the grant: %d %s", resp.StatusCode, raw)
		}
		wantError(t, env, "PUT", users+"/apps-sub", ra, map[string]any{"folders": []string{}}, 403, "grant_exceeds_own")
		wantError(t, env, "PUT", users+"/apps-sub", ra, map[string]any{"roles": []string{"pam_admin"}}, 403, "grant_exceeds_own")
	})

	t.Run("rotate the team admin's keys", func(t *testing.T) {
		wantError(t, env, "POST", users+"/admin/keys", ra, nil, 403, "service_user_out_of_grant")
		wantError(t, env, "GET", users+"/admin/keys", ra, nil, 403, "service_user_out_of_grant")
		wantError(t, env, "DELETE", users+"/admin/keys/"+env.Creds.KeyID, ra, nil, 403, "service_user_out_of_grant")
		wantError(t, env, "PUT", users+"/admin", ra, map[string]string{"status": "DISABLED"}, 403, "service_user_out_of_grant")
		// Nor a user in its folders with a role it lacks.
		newUser(t, env, "apps-pam", []string{"pam_admin"}, []string{"Apps"})
		wantError(t, env, "POST", users+"/apps-pam/keys", ra, nil, 403, "service_user_out_of_grant")
		var keys struct {
			List []key `json:"list"`
		}
		if st := env.Do(t, "GET", users+"/admin/keys", nil, &keys); st != 200 || len(keys.List) != 1 || keys.List[0].ID != env.Creds.KeyID || !keys.List[0].ExpiresAt.IsZero() {
			t.Fatalf("the admin's keys changed: %d %+v", st, keys.List)
		}
	})

	t.Run("widen its own roles", func(t *testing.T) {
		wantError(t, env, "PUT", users+"/apps-ra", ra, map[string]any{"roles": []string{"resource_admin", "pam_admin"}}, 403, "cannot_change_self")
		wantError(t, env, "PUT", users+"/apps-ra", ra, map[string]any{"roles": []string{}}, 403, "cannot_change_self")
	})

	t.Run("widen its own folders", func(t *testing.T) {
		wantError(t, env, "PUT", users+"/apps-ra", ra, map[string]any{"folders": []string{}}, 403, "cannot_change_self")
		wantError(t, env, "PUT", users+"/apps-ra", ra, map[string]any{"folders": []string{"Apps", "Shared"}}, 403, "cannot_change_self")
		var u user
		if st := env.Do(t, "GET", users+"/apps-ra", nil, &u); st != 200 || len(u.Roles) != 1 || len(u.Folders) != 1 || u.Folders[0] != "Apps" {
			t.Fatalf("apps-ra changed: %+v", u)
		}
		// Its own key it may rotate, and a change that leaves its grant as it is passes.
		if resp, raw := env.Raw(t, "POST", users+"/apps-ra/keys", ra, nil); resp.StatusCode != 200 {
			t.Fatalf("rotate its own key: %d %s", resp.StatusCode, raw)
		}
		if resp, raw := env.Raw(t, "PUT", users+"/apps-ra", ra, map[string]any{"folders": []string{"Apps"}, "status": "ACTIVE"}); resp.StatusCode != 200 {
			t.Fatalf("an unchanged grant: %d %s", resp.StatusCode, raw)
		}
	})

	t.Run("the team admin can still do everything", func(t *testing.T) {
		all := []string{"resource_admin", "pam_admin", "security_admin", "secrets_reader"}
		k, tok := newUser(t, env, "second-admin", all, nil)
		if r, _ := env.Raw(t, "GET", "/v1/teams/acme/records/"+okta.UID, tok, nil); r.StatusCode != 200 {
			t.Fatalf("second admin reads: %d", r.StatusCode)
		}
		if st := env.Do(t, "PUT", users+"/apps-ra", map[string]any{"roles": all, "folders": []string{}}, nil); st != 200 {
			t.Fatalf("admin widens apps-ra: %d", st)
		}
		if st := env.Do(t, "POST", users+"/apps-ra/keys", nil, nil); st != 200 {
			t.Fatalf("admin rotates apps-ra's keys: %d", st)
		}
		if st := env.Do(t, "DELETE", users+"/second-admin/keys/"+k.ID, nil, nil); st != 204 {
			t.Fatalf("admin deletes a key: %d", st)
		}
		if st := env.Do(t, "POST", users+"/admin/keys", nil, nil); st != 200 {
			t.Fatalf("admin rotates its own keys: %d", st)
		}
	})
}
