package emulator

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// §5.6: Date, X-Okta-Request-Id and the X-Rate-Limit-* trio on every Okta response, errors
// included; Content-Type on every body.
func TestHeadersOnEveryResponse(t *testing.T) {
	v := start(t, Options{Users: 2})
	id, _ := v.em.UserID(SeedLogin(1))
	cases := []struct {
		name string
		do   func() *resp
	}{
		{"list", func() *resp { return v.api("GET", "/api/v1/users", nil) }},
		{"get", func() *resp { return v.api("GET", "/api/v1/users/"+id, nil) }},
		{"404", func() *resp { return v.api("GET", "/api/v1/users/nobody", nil) }},
		{"unknown path", func() *resp { return v.api("GET", "/api/v1/groups", nil) }},
		{"401", func() *resp { return v.raw("GET", "/api/v1/users", nil, "Authorization", "SSWS bad") }},
		{"403", func() *resp { return v.raw("GET", "/api/v1/users", nil) }},
		{"change_password", func() *resp {
			return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "Header-Pass-1"))
		}},
		{"change_password 400", func() *resp { return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", "[]") }},
		{"admin set", func() *resp {
			return v.api("POST", "/api/v1/users/"+id, map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "Header-Pass-2"}}})
		}},
		{"authn", func() *resp {
			return v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(2), "password": SeedPassword(2)})
		}},
		{"authn 401", func() *resp {
			return v.raw("POST", "/api/v1/authn", map[string]string{"username": "x", "password": "y"})
		}},
		{"token error", func() *resp {
			return v.raw("POST", "/oauth2/v1/token", "grant_type=client_credentials", "Content-Type", "application/x-www-form-urlencoded")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.do()
			date, err := http.ParseTime(r.Header.Get("Date"))
			if err != nil || r.Header.Get("Date") != date.UTC().Format(http.TimeFormat) {
				t.Errorf("Date %q: %v", r.Header.Get("Date"), err)
			}
			if !date.Equal(v.clock.Now().Truncate(time.Second)) {
				t.Errorf("Date %v is not the emulator's clock %v", date, v.clock.Now())
			}
			if len(r.Header.Get("X-Okta-Request-Id")) != 27 {
				t.Errorf("X-Okta-Request-Id %q", r.Header.Get("X-Okta-Request-Id"))
			}
			limit, err1 := strconv.Atoi(r.Header.Get("X-Rate-Limit-Limit"))
			remaining, err2 := strconv.Atoi(r.Header.Get("X-Rate-Limit-Remaining"))
			reset, err3 := strconv.ParseInt(r.Header.Get("X-Rate-Limit-Reset"), 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || limit != DefaultRateLimit || remaining < 0 || remaining >= limit {
				t.Errorf("rate headers %q %q %q", r.Header.Get("X-Rate-Limit-Limit"), r.Header.Get("X-Rate-Limit-Remaining"), r.Header.Get("X-Rate-Limit-Reset"))
			}
			if wait := reset - date.Unix(); wait < 0 || wait > 60 {
				t.Errorf("Reset - Date = %d s", wait)
			}
			if len(r.body) > 0 && r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
			}
		})
	}
}

// §5.6: per-bucket limits: 429 E0000047 past the limit, with the headers; other buckets are
// not affected; the window resets after a minute.
func TestRateLimit(t *testing.T) {
	v := start(t, Options{Users: 2, RateLimits: map[string]int{BucketUsersGet: 3}})
	id, _ := v.em.UserID(SeedLogin(1))
	for i := 0; i < 3; i++ {
		r := v.api("GET", "/api/v1/users/"+id, nil)
		r.status(t, 200)
		if got := r.Header.Get("X-Rate-Limit-Remaining"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: Remaining %s", i, got)
		}
	}
	r := v.api("GET", "/api/v1/users/"+id, nil)
	e := r.oktaErr(t, 429, ErrRateLimited)
	if e.ErrorSummary != "API call exceeded rate limit due to too many requests." {
		t.Errorf("%+v", e)
	}
	date, _ := http.ParseTime(r.Header.Get("Date"))
	reset, _ := strconv.ParseInt(r.Header.Get("X-Rate-Limit-Reset"), 10, 64)
	if r.Header.Get("X-Rate-Limit-Limit") != "3" || r.Header.Get("X-Rate-Limit-Remaining") != "0" || reset-date.Unix() != 60 {
		t.Errorf("429 headers: %v", r.Header)
	}
	// Another bucket is unaffected; change_password has its own.
	v.api("GET", "/api/v1/users", nil).status(t, 200)
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "Limited-Pass-1")).status(t, 200)
	s := v.em.Stats()
	if s.Sent429 != 1 || s.RateLimited[EndpointGetUser] != 1 || s.Requests[EndpointGetUser] != 4 {
		t.Errorf("stats %+v", s)
	}
	// The window ends a minute after it began.
	v.clock.Advance(59 * time.Second)
	v.api("GET", "/api/v1/users/"+id, nil).oktaErr(t, 429, ErrRateLimited)
	v.clock.Advance(time.Second)
	v.api("GET", "/api/v1/users/"+id, nil).status(t, 200)
	// Limits can change at run time.
	v.em.SetRateLimit(BucketUsersCredentials, 1)
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("Limited-Pass-1", "Limited-Pass-2")).status(t, 200)
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("Limited-Pass-2", "Limited-Pass-3")).oktaErr(t, 429, ErrRateLimited)
}

// ConcurrentLimit answers 429 to requests beyond the in-flight limit.
func TestConcurrentLimit(t *testing.T) {
	v := start(t, Options{Users: 1, ConcurrentLimit: 1, Faults: Faults{Latency: 300 * time.Millisecond}})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 100 * time.Millisecond)
			codes[i] = v.api("GET", "/api/v1/users", nil).StatusCode
		})
	}
	wg.Wait()
	if codes[0] != 200 || codes[1] != 429 {
		t.Errorf("codes %v", codes)
	}
}

// §5.8: the Authn API as a password check, and lockout after N consecutive failures.
func TestAuthn(t *testing.T) {
	v := start(t, Options{Users: 6})
	authn := func(user, pw string) *resp {
		v.clock.Advance(time.Second) // stay under the per-username limit
		return v.raw("POST", "/api/v1/authn", map[string]string{"username": user, "password": pw})
	}
	r := authn(SeedLogin(1), SeedPassword(1))
	r.status(t, 200)
	var ok struct {
		ExpiresAt    string `json:"expiresAt"`
		Status       string `json:"status"`
		SessionToken string `json:"sessionToken"`
		Embedded     struct {
			User struct {
				ID      string            `json:"id"`
				Profile map[string]string `json:"profile"`
			} `json:"user"`
		} `json:"_embedded"`
	}
	r.json(t, &ok)
	id1, _ := v.em.UserID(SeedLogin(1))
	if ok.Status != "SUCCESS" || ok.SessionToken == "" || !oktaTimePattern.MatchString(ok.ExpiresAt) ||
		ok.Embedded.User.ID != id1 || ok.Embedded.User.Profile["login"] != SeedLogin(1) {
		t.Errorf("SUCCESS %s", r.body)
	}
	var u userJSON
	v.api("GET", "/api/v1/users/"+id1, nil).json(t, &u)
	if time.Time(u.LastLogin).IsZero() {
		t.Error("lastLogin not set")
	}
	// Wrong password and unknown user look the same.
	a := authn(SeedLogin(1), "wrong").oktaErr(t, 401, ErrAuthnFailed)
	b := authn("nobody@example.com", "wrong").oktaErr(t, 401, ErrAuthnFailed)
	a.ErrorID, b.ErrorID = "", ""
	if a.ErrorSummary != "Authentication failed" || a.ErrorSummary != b.ErrorSummary || len(a.ErrorCauses)+len(b.ErrorCauses) != 0 {
		t.Errorf("%+v / %+v", a, b)
	}
	// PASSWORD_EXPIRED: the password was right.
	if err := v.em.SetUserStatus(SeedLogin(2), StatusPasswordExpired); err != nil {
		t.Fatal(err)
	}
	r = authn(SeedLogin(2), SeedPassword(2))
	r.status(t, 200)
	var exp struct {
		Status     string `json:"status"`
		StateToken string `json:"stateToken"`
		Links      map[string]struct {
			Name string `json:"name"`
			Href string `json:"href"`
		} `json:"_links"`
	}
	r.json(t, &exp)
	if exp.Status != StatusPasswordExpired || exp.StateToken == "" || exp.Links["next"].Name != "changePassword" ||
		exp.Links["next"].Href != v.srv.URL+"/api/v1/authn/credentials/change_password" {
		t.Errorf("PASSWORD_EXPIRED %s", r.body)
	}
	authn(SeedLogin(2), "wrong").oktaErr(t, 401, ErrAuthnFailed)

	// Lockout after 10 (the default) consecutive failures; success in between resets the count.
	for i := 0; i < 9; i++ {
		authn(SeedLogin(3), "wrong").oktaErr(t, 401, ErrAuthnFailed)
	}
	authn(SeedLogin(3), SeedPassword(3)).status(t, 200)
	for i := 0; i < 10; i++ {
		if info, _ := v.em.User(SeedLogin(3)); info.Status != StatusActive {
			t.Fatalf("locked after %d failures", i)
		}
		authn(SeedLogin(3), "wrong").oktaErr(t, 401, ErrAuthnFailed)
	}
	if info, _ := v.em.User(SeedLogin(3)); info.Status != StatusLockedOut {
		t.Fatalf("status %s", info.Status)
	}
	// A locked-out user gets LOCKED_OUT whatever the password.
	for _, pw := range []string{SeedPassword(3), "wrong"} {
		r = authn(SeedLogin(3), pw)
		r.status(t, 200)
		if !strings.HasPrefix(string(r.body), `{"status":"LOCKED_OUT","_embedded":{},"_links":{`) || !strings.Contains(string(r.body), `"name":"unlock"`) {
			t.Errorf("LOCKED_OUT %s", r.body)
		}
	}
	// … and cannot change the password until unlocked.
	id3, _ := v.em.UserID(SeedLogin(3))
	v.api("POST", "/api/v1/users/"+id3+"/credentials/change_password", changeBody(SeedPassword(3), "Unlocked-Pass-1")).oktaErr(t, 403, ErrCredentialUpdate)
	v.api("POST", "/api/v1/users/"+id3+"/lifecycle/unlock", nil).status(t, 200)
	authn(SeedLogin(3), SeedPassword(3)).status(t, 200)

	// Per-username limit: 4 a second.
	for i := 0; i < 4; i++ {
		v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(4), "password": SeedPassword(4)}).status(t, 200)
	}
	v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(4), "password": SeedPassword(4)}).oktaErr(t, 429, ErrRateLimited)
	// Suspended users cannot sign in; shortnames work.
	_ = v.em.SetUserStatus(SeedLogin(5), StatusSuspended)
	authn(SeedLogin(5), SeedPassword(5)).oktaErr(t, 401, ErrAuthnFailed)
	authn("user0006", SeedPassword(6)).status(t, 200)
	if s := v.em.Stats(); s.AuthnFailures < 22 {
		t.Errorf("AuthnFailures %d", s.AuthnFailures)
	}
}

// A configurable threshold, and automatic unlocking.
func TestLockoutConfigurable(t *testing.T) {
	v := start(t, Options{Users: 1, LockoutThreshold: 3, LockoutDuration: 10 * time.Minute})
	for i := 0; i < 3; i++ {
		v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(1), "password": "nope"}).oktaErr(t, 401, ErrAuthnFailed)
	}
	if info, _ := v.em.User(SeedLogin(1)); info.Status != StatusLockedOut {
		t.Fatalf("status %s", info.Status)
	}
	v.clock.Advance(10 * time.Minute)
	v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(1), "password": SeedPassword(1)}).status(t, 200)
	if info, _ := v.em.User(SeedLogin(1)); info.Status != StatusActive || info.FailedLogins != 0 {
		t.Errorf("%+v", info)
	}
	v2 := start(t, Options{Users: 1, LockoutThreshold: -1, AuthnPerUserPerSecond: -1})
	for i := 0; i < 30; i++ {
		v2.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(1), "password": "nope"}).oktaErr(t, 401, ErrAuthnFailed)
	}
	if info, _ := v2.em.User(SeedLogin(1)); info.Status != StatusActive {
		t.Errorf("locked with lockout disabled")
	}
}

// Faults: 500, 429, resets and timeouts (before or after the change is applied), latency.
func TestFaults(t *testing.T) {
	v := start(t, Options{Users: 10})
	id := func(i int) string { x, _ := v.em.UserID(SeedLogin(i)); return x }
	change := func(i int, client *http.Client) error {
		req, _ := http.NewRequest("POST", v.srv.URL+"/api/v1/users/"+id(i)+"/credentials/change_password",
			strings.NewReader(`{"oldPassword":{"value":"`+SeedPassword(i)+`"},"newPassword":{"value":"Faulty-Pass-1"}}`))
		req.Header.Set("Authorization", "SSWS "+v.em.Token())
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				return errors.New(res.Status)
			}
		}
		return err
	}
	onlyChanges := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/change_password") }
	patient := v.srv.Client()
	impatient := &http.Client{Transport: v.srv.Client().Transport, Timeout: 150 * time.Millisecond}

	v.em.SetFaults(Faults{Error500Rate: 1, Match: onlyChanges})
	v.api("POST", "/api/v1/users/"+id(1)+"/credentials/change_password", changeBody(SeedPassword(1), "Faulty-Pass-1")).oktaErr(t, 500, ErrInternal)
	v.api("GET", "/api/v1/users", nil).status(t, 200) // Match leaves the rest alone

	v.em.SetFaults(Faults{RateLimitRate: 1})
	r := v.api("GET", "/api/v1/users", nil)
	r.oktaErr(t, 429, ErrRateLimited)
	if r.Header.Get("X-Rate-Limit-Remaining") != "0" {
		t.Error("injected 429 without Remaining 0")
	}

	cases := []struct {
		name    string
		faults  Faults
		client  *http.Client
		fails   bool
		applied bool
		wait    time.Duration // before looking at the password
	}{
		{"reset", Faults{ResetRate: 1}, patient, true, false, 0},
		{"reset after apply", Faults{ResetRate: 1, AfterApply: true}, patient, true, true, 0},
		{"timeout", Faults{TimeoutRate: 1}, impatient, true, false, 0},
		{"timeout after apply", Faults{TimeoutRate: 1, AfterApply: true}, impatient, true, true, 0},
		{"slow but answered", Faults{TimeoutRate: 1, TimeoutDelay: 50 * time.Millisecond}, patient, false, true, 0},
		{"slow, answered after apply", Faults{TimeoutRate: 1, TimeoutDelay: 50 * time.Millisecond, AfterApply: true}, patient, false, true, 0},
		{"delay longer than the client waits", Faults{TimeoutRate: 1, TimeoutDelay: time.Second}, impatient, true, false, 1100 * time.Millisecond},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := i + 2
			v.em.SetFaults(c.faults)
			err := change(n, c.client)
			if (err != nil) != c.fails {
				t.Errorf("error %v, want failure %v", err, c.fails)
			}
			time.Sleep(c.wait)
			pw, _ := v.em.Password(SeedLogin(n))
			if (pw == "Faulty-Pass-1") != c.applied {
				t.Errorf("applied %v, want %v", pw == "Faulty-Pass-1", c.applied)
			}
		})
	}
	v.em.SetFaults(Faults{Latency: 80 * time.Millisecond})
	t0 := time.Now()
	v.api("GET", "/api/v1/users", nil).status(t, 200)
	if d := time.Since(t0); d < 80*time.Millisecond {
		t.Errorf("latency %v", d)
	}
	s := v.em.Stats()
	if s.Faults[Fault500] != 1 || s.Faults[Fault429] != 1 || s.Faults[FaultReset] != 2 || s.Faults[FaultTimeout] != 5 {
		t.Errorf("faults %v", s.Faults)
	}

	// Close releases a request hanging for ever: the client sees its connection reset.
	v.em.SetFaults(Faults{TimeoutRate: 1})
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", v.srv.URL+"/api/v1/users", nil)
		req.Header.Set("Authorization", "SSWS "+v.em.Token())
		res, err := patient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	v.em.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("hung request answered after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the request")
	}
}

// Fault draws are reproducible with a seed and follow the rates.
func TestFaultRates(t *testing.T) {
	v := start(t, Options{Users: 1, Faults: Faults{Error500Rate: 0.3, Seed: 7}})
	count := func() int {
		n := 0
		for i := 0; i < 200; i++ {
			if v.api("GET", "/api/v1/users", nil).StatusCode == 500 {
				n++
			}
		}
		return n
	}
	a := count()
	v.em.SetFaults(Faults{Error500Rate: 0.3, Seed: 7})
	if b := count(); a != b || a < 30 || a > 90 {
		t.Errorf("500s: %d then %d of 200", a, b)
	}
}
