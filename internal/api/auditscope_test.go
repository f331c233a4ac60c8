package api_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv"
)

type auditEvent struct {
	Seq       int64          `json:"seq"`
	Type      string         `json:"type"`
	RecordUID string         `json:"record_uid"`
	Details   map[string]any `json:"details"`
}

func auditPage(t *testing.T, env *testenv.Env, token string, after int64, limit int) []auditEvent {
	t.Helper()
	resp, raw := env.Raw(t, "GET", fmt.Sprintf("/v1/teams/acme/audit_events?after=%d&limit=%d", after, limit), token, nil)
	var page struct {
		List []auditEvent `json:"list"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &page) != nil {
		t.Fatalf("audit_events: %d %s", resp.StatusCode, raw)
	}
	return page.List
}

// TestFolderLimitedSecurityAdminSeesOnlyItsRecordsEvents: a security_admin limited to Apps
// sees the audit events of records in Apps and nothing else: not those of records elsewhere,
// nor those that name no record (keyturn issue 11, defect 9a).
func TestFolderLimitedSecurityAdminSeesOnlyItsRecordsEvents(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	inApps := pamUser("payments db", "apps-pw")
	inApps["folder"] = "Apps/Payments"
	apps := create(t, env, inApps)
	okta := create(t, env, pamUser("okta admin", "okta-pw")) // Shared/Okta
	sibling := pamUser("look-alike", "pw")
	sibling["folder"] = "Applications"
	lookAlike := create(t, env, sibling)
	gone := pamUser("gone", "pw")
	gone["folder"] = "Apps"
	deleted := create(t, env, gone)
	if st := env.Do(t, "DELETE", "/v1/teams/acme/records/"+deleted.UID, nil, nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	_, limited := newUser(t, env, "apps-auditor", []string{"security_admin"}, []string{"Apps"})
	_, everything := newUser(t, env, "auditor", []string{"security_admin"}, nil)
	create(t, env, inApps) // a second Apps record, after the service users' events

	all := auditPage(t, env, everything, 0, 1000)
	seen := map[string]bool{}
	for _, e := range all {
		seen[e.RecordUID] = true
	}
	if !seen[apps.UID] || !seen[okta.UID] || !seen[lookAlike.UID] || !seen[""] {
		t.Fatalf("the unlimited security_admin misses events: %+v", all)
	}

	// Page by page, one event at a time: every Apps event, and only those.
	var got []auditEvent
	for after := int64(0); ; {
		page := auditPage(t, env, limited, after, 1)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].Seq
	}
	var want []int64
	for _, e := range all {
		if e.RecordUID == apps.UID || (e.RecordUID != "" && e.RecordUID != okta.UID && e.RecordUID != lookAlike.UID && e.RecordUID != deleted.UID) {
			want = append(want, e.Seq)
		}
	}
	if len(got) != len(want) || len(want) < 2 {
		t.Fatalf("the Apps security_admin got %d events %+v, want the %d of Apps records", len(got), got, len(want))
	}
	for i, e := range got {
		if e.Seq != want[i] {
			t.Fatalf("event %d: seq %d, want %d", i, e.Seq, want[i])
		}
		if e.RecordUID == "" || e.RecordUID == okta.UID || e.RecordUID == lookAlike.UID || e.RecordUID == deleted.UID {
			t.Fatalf("the Apps security_admin sees %+v", e)
		}
	}
}
