package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// pollsOf returns a hook for harness.setAfter that calls f once, after the API answered the
// first poll of a rotation run.
func pollsOf(f func()) func(r *http.Request) {
	var once sync.Once
	return func(r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/rotations/") {
			once.Do(f)
		}
	}
}

// waitTerminal waits until the rotation run id has ended, so that the harness stops cleanly.
func (h *harness) waitTerminal(id string) {
	h.t.Helper()
	waitFor(h.t, func() bool {
		var run Run
		h.api("GET", "/v1/teams/acme/rotations/"+id, h.token(), nil, &run, http.StatusOK)
		return run.Terminal()
	})
}

// TestRotateWaitServerGone: when the server goes away while rotate --wait waits, the command
// stops at the next poll and says so (not wait_timeout at the end of --timeout), naming the
// rotation to follow once the server is back.
func TestRotateWaitServerGone(t *testing.T) {
	h := newHarness(t)
	uid := h.pamUser("Gone", "", pw1)
	h.rotatable(uid, "#!/bin/sh\nsleep 2\nexit 0\n")
	closed := make(chan struct{})
	h.setAfter(pollsOf(func() {
		go func() { h.srv.Close(); close(closed) }()
	}))
	// A long --timeout: the old code polled until it ran out, then said wait_timeout.
	r := h.runFast("rotate", "--wait", "--timeout", "30s", "--", uid)
	<-closed
	if r.code != ExitFailed {
		t.Fatalf("rotate --wait, server gone: exit %d, want %d: %v\n%s", r.code, ExitFailed, r.err, r.out)
	}
	id, _ := rotationIDOf(t, r.out, uid)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(uid) + `\s+\S+\s+(queued|running)\s+server_unreachable: stopped waiting while (queued|running): the server cannot be reached \(.+\); see keyturn job ` + regexp.QuoteMeta(id) + `$`).MatchString(r.out) {
		t.Errorf("rotate --wait, server gone:\n%s", r.out)
	}
	msg := r.err.Error()
	if !strings.HasPrefix(msg, "lost the connection to the server at "+h.srv.URL+" while waiting: ") ||
		!strings.Contains(msg, "the rotation may go on in the server: follow it with keyturn job "+id) ||
		strings.Contains(msg, "wait_timeout") {
		t.Errorf("rotate --wait, server gone: %v", msg)
	}
}

// TestRotateWaitInterrupted: Ctrl-C while rotate --wait waits exits 130 and says the rotation
// goes on in the server and how to follow it; it does not report a failed rotation.
func TestRotateWaitInterrupted(t *testing.T) {
	h := newHarness(t)
	uid := h.pamUser("Slow", "", pw1)
	h.rotatable(uid, "#!/bin/sh\nsleep 2\nexit 0\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.setAfter(pollsOf(cancel))
	var out, errOut syncBuffer
	err := runEnv(ctx, h.fastEnv(), &out, &errOut, "rotate", "--wait", "-o", "json", "--", uid)
	h.setAfter(nil)
	if code := ExitCode(err); code != ExitInterrupted {
		t.Fatalf("rotate --wait interrupted: exit %d, want %d: %v", code, ExitInterrupted, err)
	}
	var res struct {
		List []rotateOutcome `json:"list"`
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || len(res.List) != 1 {
		t.Fatalf("rotate --wait -o json interrupted: %v\n%s", err, out.String())
	}
	id := res.List[0].RotationID
	if want := "interrupted: stopped waiting; the rotation goes on in the server: follow it with keyturn job " + id; id == "" || err.Error() != want {
		t.Errorf("rotate --wait interrupted: %q, want %q", err, want)
	}
	if strings.Contains(err.Error(), "did not succeed") {
		t.Errorf("an interrupted wait reports a failure: %v", err)
	}
	h.waitTerminal(id)
}
