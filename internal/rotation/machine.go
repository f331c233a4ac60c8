package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/passgen"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// Keeper's rollback fields, read from the pamUser, then its resource, then its configuration.
const (
	rollbackOnPasswordFail     = "Rollback On Password Fail"      // default true
	rollbackOnPostRotationFail = "Rollback On Post Rotation Fail" // default false
)

// errStopped means the engine is stopping: the run stays in its last committed state.
var errStopped = errors.New("rotation: engine stopping")

// errDeferred means the run's target has no room yet: the run waits on the target's list
// (still held by this process) and is queued again in its turn.
var errDeferred = errors.New("rotation: deferred until its target has room")

// job is one execution of a run: the run row and everything it needs, loaded once.
type job struct {
	e         *Engine
	run       store.Run
	user      vault.Record
	userKey   vault.Key // the user record's data key, opened once
	resource  *vault.Record
	config    *vault.Record
	settings  Settings
	state     store.RotationSettings // the settings row as loaded: heartbeat and drift
	method    string
	rotator   connector.Rotator   // general only
	issuer    connector.Issuer    // general, when the target makes the credential itself
	finalizer connector.Finalizer // general, when the target retires old credentials
	verifier  connector.Verifier  // nil when nothing can check a password
	connName  string              // the connector that rotator and verifier are
	// self is set when the account is the resource's admin and the connector rotates it
	// (connector.SelfRotator): each commit that changes the account's current password writes
	// it to the resource record's password too.
	self    bool
	target  string // the system they reach, for its rate limit (targetKey)
	paid    int    // connector operations whose tokens were taken when the run was admitted
	account connector.Account
	scripts []attached // in Keeper's order: user, resource, configuration
	execLog []script.Result

	// interrupted is set when the run was loaded with its effect started: an earlier process
	// may have touched the target, which must be asked before anything else.
	interrupted bool
	// resumed stays set for the whole execution when interrupted was: a change an earlier
	// process sent may still land, so no error of this process proves the target unchanged.
	resumed bool
	// The passwords of the run, read once: the candidate and the old password, by version.
	pwFor [2]int64
	newPW secret.Secret
	oldPW secret.Secret
}

// attached is a script with the record it is attached to.
type attached struct {
	script      script.Script
	credentials []vault.Record
}

// execute drives one run through its states until it ends or the engine stops. A panic
// ends the run needs_attention (see recoverRun) instead of taking the process down, and so
// does a step the state machine does not declare (see handOver).
func (e *Engine) execute(ctx context.Context, id string) error {
	return e.executeWith(ctx, id, (*job).step)
}

// executeWith loads the run and drives it with step.
func (e *Engine) executeWith(ctx context.Context, id string, step func(*job, context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = e.recoverRun(ctx, id, p)
		}
	}()
	run, err := e.db.RunByID(ctx, id)
	if err != nil {
		return err
	}
	if run.Status != StatusQueued && run.Status != StatusRunning {
		return nil
	}
	if !e.holdsLease(run) { // another node claimed it since
		return fmt.Errorf("run %s: %w", id, errLeaseLost)
	}
	if run.Status == StatusRunning {
		// Left by a crash (this process would hold it otherwise): a script it was running may
		// still be at work.
		if err := e.stopLeftovers(ctx, run.ID); err != nil {
			return fmt.Errorf("run %s: %w", run.ID, err)
		}
	}
	j := &job{e: e, run: run, interrupted: run.EffectStarted, resumed: run.EffectStarted}
	if !j.runState().Known() {
		// Written by another version, or damaged: nothing here can tell what it means.
		return j.needsAttention(ctx, CodeUnknownState, unknownStateMessage(run))
	}
	if len(run.ExecLog) > 0 {
		if j.execLog, err = e.openLog(ctx, e.db.Reader, run); err != nil {
			return err
		}
	}
	if err := j.load(ctx); err != nil {
		if ctx.Err() != nil {
			return errStopped
		}
		// Without its settings, records or connectors the run cannot go on. If nothing can
		// have touched the target yet, it failed; otherwise nobody can tell what the target holds.
		code, msg := errorInfo(err, "rotation_unavailable")
		if run.EffectStarted {
			return j.needsAttention(ctx, code, msg+"; the target may hold the candidate password, which is kept as pending")
		}
		return j.fail(ctx, code, msg)
	}
	if State(run.State) == StateQueued && j.connName != "" {
		ok, paid := e.targets.admit(j.target, run.ID, run.Trigger != TriggerScheduled, e.requeue)
		if !ok {
			return errDeferred
		}
		j.paid = paid
	}
	err = step(j, ctx)
	if err != nil && ctx.Err() != nil {
		return errStopped
	}
	if errors.Is(err, ErrUndeclaredTransition) {
		return e.handOver(ctx, run.ID, CodeUndeclaredTransition,
			"the rotation stopped: it was about to take a step its state machine does not allow (a bug; see the server log)", err)
	}
	return err
}

// unknownStateMessage says why a run in a state the machine does not know is handed over.
func unknownStateMessage(run store.Run) string {
	msg := fmt.Sprintf("the rotation's stored state %q is not one this version of keyturn knows", run.State)
	if run.PendingVersion != 0 {
		return msg + "; the target may hold the candidate password, which is kept as pending"
	}
	return msg
}

// step runs the state machine from the run's committed state.
func (j *job) step(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return errStopped
		}
		switch j.runState() {
		case StateQueued, StateRunning:
			if j.issuer != nil {
				if done, err := j.issue(ctx); done || err != nil {
					return err
				}
				continue
			}
			if err := j.saveCandidate(ctx); err != nil {
				return err
			}
		case StatePendingSaved:
			if j.interrupted {
				if done, err := j.settleInterrupted(ctx); done || err != nil {
					return err
				}
				continue
			}
			if done, err := j.changeTarget(ctx); done || err != nil {
				return err
			}
		case StateTargetChanged:
			if done, err := j.verifyCandidate(ctx); done || err != nil {
				return err
			}
		case StateVerified:
			if err := j.commitCandidate(ctx); err != nil {
				return err
			}
		case StateCommitted:
			return j.postRotationScripts(ctx)
		case StateScriptsDone:
			return j.succeed(ctx, nil)
		case StateSucceeded, StateFailed, StateNeedsAttention:
			return nil
		default: // a state the machine does not know (execute refuses those before loading)
			return j.needsAttention(ctx, CodeUnknownState, unknownStateMessage(j.run))
		}
	}
}

// saveCandidate generates the new password and saves it, sealed, as pending: from here on it
// is in the vault before anything can put it on the target. When a verifier can later tell
// what the target holds, the same commit records that the target may change from now on.
func (j *job) saveCandidate(ctx context.Context) error {
	if j.runState() == StateQueued {
		if err := j.start(); err != nil { // nothing is committed yet: the run is still queued
			return err
		}
	}
	candidate, err := passgen.Generate(j.settings.EffectiveComplexity())
	if err != nil {
		code, msg := errorInfo(err, "invalid_complexity")
		return j.fail(ctx, code, msg)
	}
	// Seal the candidate outside the single writer; if a version is added in between (someone
	// sets a password by hand), seal it again for the next number.
	for try := 0; ; try++ {
		var prepared vault.Pending
		if prepared, err = j.e.vault.PreparePending(ctx, j.e.db.Reader, j.userKey, candidate); err != nil {
			break
		}
		err = j.commitTo(ctx, StatePendingSaved, func(tx *store.Tx) error {
			pending, old, err := j.e.vault.ApplyPending(ctx, tx, prepared)
			if err != nil {
				return err
			}
			j.run.OldVersion, j.run.PendingVersion = old, pending
			j.run.EffectStarted = j.verifier != nil
			return nil
		})
		if !errors.Is(err, vault.ErrStaleVersion) || try >= 5 {
			break
		}
	}
	candidate.Clear()
	return err
}

// issue has the target make the new credential and saves it as pending at once. The call
// is the side effect, so it is recorded as started first; a crash before the credential is
// saved leaves the old one working (an issuing target keeps old credentials for a while).
func (j *job) issue(ctx context.Context) (done bool, err error) {
	if j.runState() == StateQueued {
		if err := j.start(); err != nil {
			return false, err
		}
	}
	old, oldVersion, err := j.currentPassword(ctx)
	if err != nil {
		return false, err
	}
	if j.interrupted { // interrupted while issuing: go on only if the current credential works
		if j.verifier == nil || j.accepts(ctx, secret.Secret{}, old) != acceptsOld {
			return true, j.needsAttention(ctx, "interrupted",
				"the rotation stopped while the target was issuing a new credential, and the current one does not work")
		}
		if j.run.Attempt >= int64(j.e.opt.Attempts) {
			return true, j.fail(ctx, "interrupted", "the rotation was interrupted too often; the current credential still works")
		}
		j.run.Attempt++
		j.interrupted = false
	}
	j.run.EffectStarted = true
	if err := j.commit(ctx, nil); err != nil {
		return false, err
	}
	j.effect(EffectStart)
	var issued connector.Issued
	err = j.retry(ctx, func() (err error) {
		issued, err = j.issuer.Issue(ctx, j.account, old)
		return err
	})
	if ctx.Err() != nil {
		return false, errStopped
	}
	if err != nil {
		code, msg := errorInfo(err, "connector_failed")
		return true, j.fail(ctx, code, msg)
	}
	j.effect(EffectDone)
	fields, err := json.Marshal(issued.Fields)
	if err != nil {
		return false, err
	}
	err = j.commitTo(ctx, StateTargetChanged, func(tx *store.Tx) error {
		pending, err := j.e.vault.AddPending(ctx, tx, j.run.TeamID, j.user.UID, issued.Secret)
		if err != nil {
			return err
		}
		j.run.OldVersion, j.run.PendingVersion, j.run.CandidateFields = oldVersion, pending, fields
		return nil
	})
	issued.Secret.Clear()
	return false, err
}

// currentPassword returns the record's current password and its version (zero when none).
func (j *job) currentPassword(ctx context.Context) (secret.Secret, int64, error) {
	v, err := j.e.vault.CurrentVersion(ctx, j.e.db.Reader, j.user.UID)
	if err != nil || v == 0 {
		return secret.Secret{}, 0, err
	}
	pw, _, err := j.e.vault.VersionValue(ctx, j.e.db.Reader, j.run.TeamID, j.user.UID, v)
	return pw, v, err
}

// candidateFields returns the custom fields that go with the candidate.
func (j *job) candidateFields() map[string]string {
	var f map[string]string
	_ = json.Unmarshal(j.run.CandidateFields, &f)
	return f
}

// candidateAccount is the account as the candidate credential sees it (with its key_id).
func (j *job) candidateAccount() connector.Account {
	acct := j.account
	fields := j.candidateFields()
	if len(fields) == 0 {
		return acct
	}
	acct.Target.Fields = maps.Clone(acct.Target.Fields)
	maps.Copy(acct.Target.Fields, fields)
	return acct
}

// changeTarget puts the candidate on the target: the connector in general, the scripts in
// scripts_only. That the target may change is committed first (with the candidate when a
// verifier exists), so that a crash from here on is settled by checking the target.
func (j *job) changeTarget(ctx context.Context) (done bool, err error) {
	if !j.run.EffectStarted {
		j.run.EffectStarted = true
		if err := j.commit(ctx, nil); err != nil {
			return false, err
		}
	}
	j.effect(EffectStart)
	newPW, oldPW, err := j.passwords(ctx)
	if err != nil {
		return false, err
	}
	if j.method == MethodGeneral {
		// Every try's error must prove the target unchanged for the run to count as not having
		// reached it: an earlier try that timed out may have changed it.
		mayHaveChanged := j.resumed
		err := j.retry(ctx, func() error {
			err := j.rotator.Rotate(ctx, j.account, oldPW, newPW)
			if !connector.IsNotChanged(err) {
				mayHaveChanged = true
			}
			return err
		})
		j.effect(EffectDone)
		if ctx.Err() != nil {
			return false, errStopped
		}
		if err != nil {
			return true, j.connectorFailed(ctx, err, newPW, oldPW, mayHaveChanged)
		}
		return j.targetChanged(ctx)
	}
	failed, err := j.runScripts(ctx, newPW, oldPW, "")
	j.effect(EffectDone)
	if err != nil {
		return false, err
	}
	if failed != nil && failed.first && failed.notStarted && !j.resumed {
		// No script of this run ever ran: the target is as it was.
		return true, j.fail(ctx, failed.code, failed.msg+"; no script ran, so the password was not changed")
	}
	if failed != nil {
		return true, j.scriptsOnlyFailed(ctx, failed, newPW, oldPW)
	}
	return j.targetChanged(ctx)
}

// targetChanged goes on after the target reported success. With a verifier the state need not
// be committed: a crash before the verification is settled by verifying anyway.
func (j *job) targetChanged(ctx context.Context) (done bool, err error) {
	if j.verifier == nil {
		return false, j.commitTo(ctx, StateTargetChanged, nil)
	}
	if err := j.enter(StateTargetChanged); err != nil {
		return false, err
	}
	return j.verifyCandidate(ctx)
}

// connectorFailed settles a connector error. When no try can have reached the target (every
// error wraps connector.ErrNotChanged) the run failed and its candidate is marked failed.
// Otherwise the call may still have changed the target, so the target is asked which password
// it accepts before anything is decided; without a verifier nobody can tell, and the candidate
// stays pending.
func (j *job) connectorFailed(ctx context.Context, cause error, newPW, oldPW secret.Secret, mayHaveChanged bool) error {
	code, msg := errorInfo(cause, "connector_failed")
	if !mayHaveChanged {
		return j.fail(ctx, code, msg+"; the password was not changed (the change request was never carried out)")
	}
	if j.verifier == nil {
		return j.needsAttention(ctx, code, msg+"; nothing can check which password the target holds "+
			"(give the rotation a verify request or verify_with), so the candidate is kept as pending")
	}
	switch j.accepts(ctx, newPW, oldPW) {
	case acceptsNew: // the change went through after all
		if err := j.enter(StateVerified); err != nil {
			return err
		}
		return j.commitCandidate(ctx)
	case acceptsOld:
		return j.fail(ctx, code, msg)
	default:
		return j.needsAttention(ctx, code, msg+"; the target accepts neither the old nor the new password (both are kept)")
	}
}

// scriptsOnlyFailed settles a failed rotation script. With Keeper's "Rollback On Password
// Fail" (default on), the scripts run again with the passwords swapped to set the old one back.
func (j *job) scriptsOnlyFailed(ctx context.Context, failed *scriptFailure, newPW, oldPW secret.Secret) error {
	code, msg := failed.code, failed.msg
	rolledBack := false
	if customFlag(rollbackOnPasswordFail, true, &j.user, j.resource, j.config) {
		again, err := j.runScripts(ctx, oldPW, newPW, " (rollback)")
		if err != nil {
			return err
		}
		rolledBack = again == nil
		msg += "; rollback " + map[bool]string{true: "ran", false: "failed"}[rolledBack]
	}
	if j.verifier == nil {
		if rolledBack {
			return j.fail(ctx, code, msg)
		}
		return j.needsAttention(ctx, code, msg+"; nothing can check which password the target holds (set verify_with); the candidate is kept as pending")
	}
	switch j.accepts(ctx, newPW, oldPW) {
	case acceptsOld:
		return j.fail(ctx, code, msg)
	case acceptsNew: // the new password is live after all: keep it
		if err := j.commit(ctx, func(tx *store.Tx) error {
			return j.e.vault.SetCurrent(ctx, tx, j.run.TeamID, j.user.UID, j.run.PendingVersion, j.candidateFields())
		}); err != nil {
			return err
		}
		return j.fail(ctx, code, msg+"; the target accepts the new password, which is now current")
	default:
		return j.needsAttention(ctx, code, msg+"; the target accepts neither the old nor the new password (both are kept)")
	}
}

// settleInterrupted resolves a run that an earlier process left while the target might have
// been changing.
func (j *job) settleInterrupted(ctx context.Context) (done bool, err error) {
	newPW, oldPW, err := j.passwords(ctx)
	if err != nil {
		return false, err
	}
	if j.verifier == nil {
		return true, j.needsAttention(ctx, "interrupted",
			"the rotation stopped while the target was changing and nothing can check which password it holds (set verify_with); the candidate is kept as pending")
	}
	switch j.accepts(ctx, newPW, oldPW) {
	case acceptsNew:
		j.interrupted = false
		if err := j.enter(StateVerified); err != nil {
			return false, err
		}
		return false, j.commitCandidate(ctx)
	case acceptsOld:
		// Nothing changed yet: change the target again, with the same candidate, so that a
		// late change by something the crash left running still lands on a password the vault
		// holds as pending.
		if j.run.Attempt >= int64(j.e.opt.Attempts) {
			return true, j.fail(ctx, "interrupted", "the rotation was interrupted too often; the target still accepts the current password")
		}
		j.run.Attempt++
		j.interrupted = false
		return false, j.commit(ctx, nil)
	default:
		return true, j.needsAttention(ctx, "interrupted",
			"the rotation stopped while the target was changing, and the target accepts neither the old nor the new password (both are kept)")
	}
}

// verifyCandidate checks that the target accepts the new password, then commits it. A
// script's exit code proves little, so with a verifier nothing is trusted until this passes.
func (j *job) verifyCandidate(ctx context.Context) (done bool, err error) {
	if j.verifier == nil { // nothing can check: the target's report is all there is
		if err := j.enter(StateVerified); err != nil {
			return false, err
		}
		return false, j.commitCandidate(ctx)
	}
	newPW, oldPW, err := j.passwords(ctx)
	if err != nil {
		return false, err
	}
	switch j.accepts(ctx, newPW, oldPW) {
	case acceptsNew:
		if err := j.enter(StateVerified); err != nil {
			return false, err
		}
		return false, j.commitCandidate(ctx)
	case acceptsOld:
		return true, j.fail(ctx, "verification_failed",
			"the target still accepts the old password and refuses the new one, although the rotation reported success; the current password is unchanged")
	default:
		return true, j.needsAttention(ctx, "verification_failed",
			"the target accepts neither the old nor the new password (both are kept)")
	}
}

// commitCandidate makes the candidate current and the old password previous, in one step.
func (j *job) commitCandidate(ctx context.Context) error {
	if j.finalizer != nil {
		newPW, _, err := j.passwords(ctx)
		if err != nil {
			return err
		}
		issued := connector.Issued{Secret: newPW, Fields: j.candidateFields()}
		if err := j.retry(ctx, func() error { return j.finalizer.Finalize(ctx, j.candidateAccount(), issued) }); err != nil {
			if ctx.Err() != nil {
				return errStopped
			}
			// The new credential works; the old ones could not be retired. Keep the new one.
			code, msg := errorInfo(err, "finalize_failed")
			if err := j.commit(ctx, func(tx *store.Tx) error {
				if err := j.e.vault.SetCurrent(ctx, tx, j.run.TeamID, j.user.UID, j.run.PendingVersion, j.candidateFields()); err != nil {
					return err
				}
				return j.syncAdmin(ctx, tx, j.account.Target.AdminSecret, newPW)
			}); err != nil {
				return err
			}
			return j.failKeepingVersions(ctx, code, msg+"; the new credential is current, but the old ones were not retired")
		}
		j.effect(EffectFinalized)
	}
	// Decrypt and re-seal the record outside the single writer; if the record changes in
	// between (someone edits it), work it out again.
	var prepared vault.Promotion
	var newPW secret.Secret
	if j.self {
		var err error
		if newPW, _, err = j.passwords(ctx); err != nil {
			return err
		}
	}
	adminWas := j.account.Target.AdminSecret
	promote := func(tx *store.Tx) error {
		if err := j.e.vault.ApplyPromotion(ctx, tx, prepared); err != nil {
			return err
		}
		return j.syncAdmin(ctx, tx, adminWas, newPW)
	}
	for try := 0; ; try++ {
		var err error
		if prepared, err = j.e.vault.PreparePromotion(ctx, j.e.db.Reader, j.run.TeamID, j.user.UID, j.run.PendingVersion, j.candidateFields()); err != nil {
			return err
		}
		if !j.hasPostRotationScripts() { // nothing left to do: promote and end in one commit
			err = j.succeed(ctx, promote)
		} else {
			err = j.commitTo(ctx, StateCommitted, promote)
		}
		if errors.Is(err, vault.ErrStaleRevision) && try < 5 {
			continue
		}
		if err == nil && j.self {
			// The target's admin password is the new one now (a rollback logs in with it).
			j.account.Target.AdminSecret = newPW
		}
		return err
	}
}

// syncAdmin writes to, the account's password that became current, to the resource record's
// password when the run is a self-rotation, in the transaction tx that makes it current. It
// does so only while the resource still holds from, the admin password the run read: a
// password someone set on the resource meanwhile is left as it is. Either way an audit event
// says what happened (never the password).
func (j *job) syncAdmin(ctx context.Context, tx *store.Tx, from, to secret.Secret) error {
	if !j.self || j.resource == nil {
		return nil
	}
	did, err := j.e.vault.SetPasswordIf(ctx, tx, j.run.TeamID, j.resource.UID, from, to)
	if err != nil {
		return fmt.Errorf("rotation %s: the resource's admin password: %w", j.run.ID, err)
	}
	details := map[string]any{"rotation_id": j.run.ID, "account_record_uid": j.run.RecordUID, "reason": "self_rotation"}
	typ := audit.RotationResourceUpdated
	switch did {
	case vault.PasswordUnchanged:
		return nil
	case vault.PasswordKept:
		typ = audit.RotationResourceKept
		details["reason"] = "resource_password_changed_during_rotation"
		j.e.opt.Logger.Warn("rotation: the resource's password was changed while its admin account rotated; it was left as it is",
			"rotation_id", j.run.ID, "resource_uid", j.resource.UID)
	}
	return j.e.audit.Append(ctx, tx, j.run.TeamID, audit.Event{Type: typ, Actor: "rotation", RecordUID: j.resource.UID, Details: details})
}

func (j *job) hasPostRotationScripts() bool {
	return j.method == MethodGeneral && len(j.scripts) > 0
}

// postRotationScripts runs the scripts after a connector rotation (in scripts_only they were
// the rotation). A failure keeps the new password unless "Rollback On Post Rotation Fail" is on.
func (j *job) postRotationScripts(ctx context.Context) error {
	if !j.hasPostRotationScripts() {
		return j.succeed(ctx, nil)
	}
	newPW, oldPW, err := j.passwords(ctx)
	if err != nil {
		return err
	}
	failed, err := j.runScripts(ctx, newPW, oldPW, "")
	if err != nil {
		return err
	}
	if failed == nil {
		if err := j.enter(StateScriptsDone); err != nil {
			return err
		}
		return j.succeed(ctx, nil)
	}
	code, msg := failed.code, failed.msg
	if !customFlag(rollbackOnPostRotationFail, false, &j.user, j.resource, j.config) {
		return j.fail(ctx, code, msg+"; the new password stays current (Rollback On Post Rotation Fail is off)")
	}
	rbErr := j.retry(ctx, func() error { return j.rotator.Rotate(ctx, j.account, newPW, oldPW) })
	if ctx.Err() != nil {
		return errStopped
	}
	if rbErr == nil {
		if _, err := j.runScripts(ctx, oldPW, newPW, " (rollback)"); err != nil {
			return err
		}
	}
	if j.verifier == nil {
		return j.needsAttention(ctx, code, msg+"; nothing can check whether the rollback took (both passwords are kept)")
	}
	switch j.accepts(ctx, newPW, oldPW) {
	case acceptsOld: // the old password is back
		err := j.commit(ctx, func(tx *store.Tx) error {
			if err := j.e.vault.SetCurrent(ctx, tx, j.run.TeamID, j.user.UID, j.run.OldVersion, nil); err != nil {
				return err
			}
			if err := j.syncAdmin(ctx, tx, newPW, oldPW); err != nil {
				return err
			}
			return j.e.vault.SetVersionState(ctx, tx, j.user.UID, j.run.PendingVersion, vault.StateFailed)
		})
		if err != nil {
			return err
		}
		return j.failKeepingVersions(ctx, code, msg+"; rolled back to the old password")
	case acceptsNew:
		return j.failKeepingVersions(ctx, code, msg+"; the rollback did not take, and the new password stays current")
	default:
		return j.needsAttention(ctx, code, msg+"; after the rollback the target accepts neither password (both are kept)")
	}
}

type acceptance int

const (
	acceptsNeither acceptance = iota
	acceptsNew
	acceptsOld
)

// accepts asks the target which of the two passwords it accepts, the new one first. It says
// acceptsNeither when it accepts neither or cannot tell even after the retries, or when the
// run has no verifier (callers that can say more check j.verifier first).
func (j *job) accepts(ctx context.Context, newPW, oldPW secret.Secret) acceptance {
	if j.verifier == nil {
		return acceptsNeither
	}
	check := func(pw secret.Secret, acct connector.Account) bool {
		if pw.IsZero() {
			return false
		}
		var verdict error
		err := j.retry(ctx, func() error {
			verdict = j.verifier.Verify(ctx, acct, pw)
			if verdict == nil || errors.Is(verdict, connector.ErrRejected) {
				return nil // an answer: stop retrying
			}
			return verdict
		})
		return err == nil && verdict == nil
	}
	if check(newPW, j.candidateAccount()) {
		return acceptsNew
	}
	if check(oldPW, j.account) {
		return acceptsOld
	}
	// A change still in flight (sent by a script killed just before) may have landed between
	// the two checks: ask for the new password once more before giving up.
	if check(newPW, j.candidateAccount()) {
		return acceptsNew
	}
	return acceptsNeither
}

// scriptFailure is the script that failed and why.
type scriptFailure struct {
	name, code, msg string
	first           bool // it was the first script of the list
	notStarted      bool // it never ran (it could not be started, or scripts are disabled)
}

// runScripts runs every script in order with the given passwords until one fails, appending
// each result to the exec log (committed after each script).
func (j *job) runScripts(ctx context.Context, newPW, oldPW secret.Secret, suffix string) (*scriptFailure, error) {
	for i, a := range j.scripts {
		params := script.Params{Configuration: j.config, Resource: j.resource, Credentials: a.credentials,
			User: j.user, NewPassword: newPW, OldPassword: oldPW}
		line, err := params.Line()
		if err != nil {
			return nil, err
		}
		s := a.script
		limit := j.e.runner.TimeLimit(s)
		s.Started = func(ctx context.Context, p script.Process) error { return j.recordProcess(ctx, p, limit) }
		res, runErr := j.e.runner.Run(ctx, s, line, script.NewRedactor(script.SecretsOf(params)...))
		line.Clear()
		if ctx.Err() != nil {
			return nil, errStopped
		}
		res.Name = a.script.Name + suffix
		var failure *scriptFailure
		switch {
		case runErr != nil:
			code, msg := errorInfo(runErr, "script_failed")
			if res.Stderr == "" {
				res.Stderr = msg
			}
			failure = &scriptFailure{name: res.Name, code: code, msg: msg, first: i == 0,
				notStarted: errors.Is(runErr, script.ErrNotStarted) || errors.Is(runErr, script.ErrDisabled)}
		case res.ReturnCode != 0:
			failure = &scriptFailure{name: res.Name, code: "script_failed",
				msg: fmt.Sprintf("script %s exited with code %d", res.Name, res.ReturnCode)}
		}
		j.execLog = append(j.execLog, res)
		if err := j.commit(ctx, nil); err != nil {
			return nil, err
		}
		if failure != nil {
			return failure, nil
		}
	}
	return nil, nil
}

// recordProcess stores, durably, the process of a script about to run, so that whoever
// settles this run after a crash kills it first (stopLeftovers).
// The script only runs if this node still holds the run's lease, checked in the same
// transaction and on this node's clock.
func (j *job) recordProcess(ctx context.Context, p script.Process, limit time.Duration) error {
	if err := j.checkLease(); err != nil {
		return err
	}
	now := j.e.opt.Now()
	err := j.e.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.CheckLease(ctx, j.run.ID, j.run.LeaseNode, j.run.LeaseEpoch); err != nil {
			return err
		}
		return tx.SetScriptProcess(ctx, store.ScriptProcess{RunID: j.run.ID, PID: p.PID, Start: p.Start, Boot: p.Boot,
			EndsBy: now.Add(limit + scriptGrace)}, now)
	})
	if errors.Is(err, store.ErrLeaseLost) {
		j.e.lose(j.run.ID)
	}
	return err
}

// stopLeftovers kills the script a crashed server left running for this run, with every
// process it started, before anything is decided: no script may touch the target after the
// run is settled. It fails when the process outlives SIGKILL; the run is then left alone. A
// script another machine started (its node died, was paused or cut off) cannot be killed
// from here: until its time limit has passed, it fails with errScriptElsewhere, and the run is
// settled after that.
func (e *Engine) stopLeftovers(ctx context.Context, runID string) error {
	p, ok, err := e.db.ScriptProcess(ctx, runID)
	if err != nil || !ok {
		return err
	}
	proc := script.Process{PID: p.PID, Start: p.Start, Boot: p.Boot}
	elsewhere, err := proc.Elsewhere()
	if err != nil {
		return err
	}
	if elsewhere && e.opt.Now().Before(p.EndsBy) {
		return fmt.Errorf("run %s: %w (until %s)", runID, errScriptElsewhere, p.EndsBy.UTC().Format(time.RFC3339))
	}
	return script.Kill(ctx, proc, 10*time.Second)
}

// errScriptElsewhere means a script of the run, started on another machine, may still be at
// work on the target: the run is not settled before its time limit has passed.
var errScriptElsewhere = errors.New("a script this run started on another machine may still be running")

// scriptGrace is added to a script's time limit before another machine's node assumes it has
// ended: the time its runner takes to kill it.
const scriptGrace = 10 * time.Second

// retry runs op until it succeeds, fails permanently, or the attempts run out, waiting with
// capped exponential backoff and jitter (or until a rate limit's reset) between tries.
func (j *job) retry(ctx context.Context, op func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = j.call(ctx, op); err == nil || !connector.IsTransient(err) || attempt >= j.e.opt.Attempts {
			return err
		}
		delay := min(j.e.opt.BackoffBase<<(attempt-1), j.e.opt.BackoffMax)
		delay = delay/2 + rand.N(delay/2+1) // jitter: half to full delay
		var ce *connector.Error
		if errors.As(err, &ce) && !ce.RetryAt.IsZero() {
			delay = max(delay, time.Until(ce.RetryAt))
		}
		j.run.Attempt++
		if cerr := j.commit(ctx, nil); cerr != nil {
			return cerr
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// call runs one connector operation once its target's rate limit allows it (at once for those
// paid for when the run was admitted).
func (j *job) call(ctx context.Context, op func() error) error {
	if err := j.checkLease(); err != nil {
		return err
	}
	if j.paid > 0 {
		j.paid--
		return op()
	}
	waited, err := j.e.targets.wait(ctx, j.target)
	if waited > 0 {
		j.e.opt.Observer.Throttled(j.connName, waited)
	}
	if err != nil {
		return err
	}
	return op()
}

// passwords returns the candidate and the old password of the run, read once.
func (j *job) passwords(ctx context.Context) (newPW, oldPW secret.Secret, err error) {
	if j.pwFor == [2]int64{j.run.PendingVersion, j.run.OldVersion} && !j.newPW.IsZero() {
		return j.newPW, j.oldPW, nil
	}
	values, err := j.e.vault.VersionValues(ctx, j.e.db.Reader, j.userKey, j.run.PendingVersion, j.run.OldVersion)
	if err != nil {
		return secret.Secret{}, secret.Secret{}, err
	}
	newPW, oldPW = values[0], values[1]
	j.pwFor, j.newPW, j.oldPW = [2]int64{j.run.PendingVersion, j.run.OldVersion}, newPW, oldPW
	return newPW, oldPW, nil
}

// runState is the run's state: the committed one, or the one it moved to in memory since.
func (j *job) runState() State { return State(j.run.State) }

// start moves a queued run to running, in memory (issue commits it before its side effect).
func (j *job) start() error {
	if err := j.enter(StateRunning); err != nil {
		return err
	}
	now := j.e.opt.Now().UTC()
	j.run.Status, j.run.StartedAt, j.run.Attempt = StatusRunning, &now, max(j.run.Attempt, 1)
	return nil
}

// enter moves the run to a state that is not committed (Machine says which those are), then
// calls the state's failpoint. It refuses an edge the machine does not declare.
func (j *job) enter(to State) error {
	from := j.runState()
	if err := j.refuseUndeclared(from, to, false); err != nil {
		return err
	}
	j.run.State = string(to)
	j.e.opt.OnTransition(Transition{Run: j.run.ID, From: from, To: to})
	j.e.opt.Failpoint(failpointOf(to))
	return nil
}

// commitTo moves the run to a state and commits it, with fn's changes in the same
// transaction, then calls the state's failpoint. It refuses an edge the machine does not
// declare; when the commit fails the run stays in its state.
func (j *job) commitTo(ctx context.Context, to State, fn func(*store.Tx) error) error {
	from := j.runState()
	if err := j.refuseUndeclared(from, to, true); err != nil {
		return err
	}
	j.run.State = string(to)
	if err := j.commit(ctx, fn); err != nil {
		j.run.State = string(from)
		return err
	}
	j.e.opt.OnTransition(Transition{Run: j.run.ID, From: from, To: to, Stored: true})
	j.e.opt.Failpoint(failpointOf(to))
	return nil
}

// refuseUndeclared returns an error wrapping ErrUndeclaredTransition, and reports the refusal,
// when the machine does not declare from → to.
func (j *job) refuseUndeclared(from, to State, stored bool) error {
	err := CheckTransition(from, to)
	if err != nil {
		j.e.opt.OnTransition(Transition{Run: j.run.ID, From: from, To: to, Stored: stored, Refused: err})
		return fmt.Errorf("run %s: %w", j.run.ID, err)
	}
	return nil
}

// effect calls the failpoint of a side effect on the target.
func (j *job) effect(e Effect) { j.e.opt.Failpoint(string(e)) }

// succeed ends the run succeeded; more (if any) runs in the same transaction first.
func (j *job) succeed(ctx context.Context, more func(*store.Tx) error) error {
	return j.finish(ctx, StatusSucceeded, StateSucceeded, "", "", "", more)
}

// fail ends the run failed; a candidate that never became current is marked failed.
func (j *job) fail(ctx context.Context, code, msg string) error {
	return j.finish(ctx, StatusFailed, StateFailed, code, msg, vault.StateFailed, nil)
}

// failKeepingVersions ends the run failed without touching the password versions.
func (j *job) failKeepingVersions(ctx context.Context, code, msg string) error {
	return j.finish(ctx, StatusFailed, StateFailed, code, msg, "", nil)
}

// needsAttention ends the run with both candidates kept: the pending one stays pending.
func (j *job) needsAttention(ctx context.Context, code, msg string) error {
	return j.finish(ctx, StatusNeedsAttention, StateNeedsAttention, code, msg, "", nil)
}

func (j *job) finish(ctx context.Context, status string, state State, code, msg, pendingTo string, more func(*store.Tx) error) error {
	from := j.runState()
	if err := j.refuseUndeclared(from, state, true); err != nil {
		return err
	}
	now := j.e.opt.Now().UTC()
	err := j.commit(ctx, func(tx *store.Tx) error {
		if more != nil {
			if err := more(tx); err != nil {
				return err
			}
		}
		if pendingTo != "" && j.run.PendingVersion != 0 {
			pv, err := tx.PasswordVersion(ctx, j.user.UID, j.run.PendingVersion)
			if err != nil {
				return err
			}
			if pv.State == vault.StatePending {
				if err := j.e.vault.SetVersionState(ctx, tx, j.user.UID, j.run.PendingVersion, pendingTo); err != nil {
					return err
				}
			}
		}
		j.run.Status, j.run.State, j.run.ErrorCode, j.run.ErrorMessage, j.run.FinishedAt = status, string(state), code, msg, &now
		if status == StatusSucceeded && j.heartbeatChanges() {
			// A new credential: whatever drift was found is over, and heartbeats resume.
			var next *time.Time
			if j.verifier != nil && j.e.opt.HeartbeatInterval > 0 {
				t := now.Add(j.e.opt.HeartbeatInterval)
				next = &t
			}
			if err := tx.SetHeartbeat(ctx, j.user.UID, next, store.Drift{}); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return j.e.audit.Append(ctx, tx, j.run.TeamID, audit.Event{
			Type: eventType(j.run.Trigger, status), Actor: "rotation", RecordUID: j.run.RecordUID,
			Details: map[string]any{"rotation_id": j.run.ID, "status": status, "error_code": code},
		})
	})
	if err != nil {
		j.run.State = string(from)
		return err
	}
	j.e.opt.OnTransition(Transition{Run: j.run.ID, From: from, To: state, Stored: true})
	j.e.opt.Failpoint(failpointOf(state))
	var took time.Duration
	if j.run.StartedAt != nil {
		took = now.Sub(*j.run.StartedAt)
	}
	j.e.opt.Observer.RunEnded(j.run.Trigger, status, took)
	j.e.ended(j.run.ID)
	return nil
}

// heartbeatChanges reports whether a success must touch the heartbeat state: to clear a
// drift, or to start or stop heartbeats.
func (j *job) heartbeatChanges() bool {
	wanted := j.verifier != nil && j.e.opt.HeartbeatInterval > 0
	return j.state.Drift != "" || j.state.DriftMessage != "" || wanted != (j.state.NextHeartbeatAt != nil)
}

func eventType(trigger, status string) string {
	switch {
	case status == StatusNeedsAttention:
		return audit.RotationNeedsAttention
	case trigger == TriggerScheduled && status == StatusSucceeded:
		return audit.RotationScheduledOK
	case trigger == TriggerScheduled:
		return audit.RotationScheduledFail
	case status == StatusSucceeded:
		return audit.RotationOnDemandOK
	default:
		return audit.RotationOnDemandFail
	}
}

// commit stores the run (with fn's changes, in the same transaction).
func (j *job) commit(ctx context.Context, fn func(*store.Tx) error) error {
	j.run.UpdatedAt = j.e.opt.Now().UTC()
	err := j.e.db.Tx(ctx, func(tx *store.Tx) error {
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		if j.execLog != nil {
			sealed, err := j.e.sealLog(ctx, tx.Reader, j.run, j.execLog)
			if err != nil {
				return err
			}
			j.run.ExecLog = sealed
		}
		return tx.UpdateRun(ctx, j.run)
	})
	if errors.Is(err, store.ErrLeaseLost) {
		j.e.lose(j.run.ID) // another node settles the run: stop here
	}
	return err
}

func (e *Engine) sealLog(ctx context.Context, r store.Reader, run store.Run, log []script.Result) ([]byte, error) {
	plain, err := json.Marshal(log)
	if err != nil {
		return nil, err
	}
	return e.vault.Seal(ctx, r, run.TeamID, run.RecordUID, "run-log/"+run.ID, plain)
}

func (e *Engine) openLog(ctx context.Context, r store.Reader, run store.Run) ([]script.Result, error) {
	plain, err := e.vault.Open(ctx, r, run.TeamID, run.RecordUID, "run-log/"+run.ID, run.ExecLog)
	if err != nil {
		return nil, err
	}
	var log []script.Result
	if err := json.Unmarshal(plain, &log); err != nil {
		return nil, fmt.Errorf("rotation %s: exec log: %w", run.ID, err)
	}
	return log, nil
}

// errorInfo returns a safe code and message for an error.
func errorInfo(err error, defaultCode string) (code, msg string) {
	var ce *connector.Error
	if errors.As(err, &ce) {
		return ce.Code, ce.Message
	}
	if fe, ok := fault.As(err); ok && fe.Kind != fault.Internal {
		return fe.Code, fe.Message
	}
	return defaultCode, "internal error (see the server log)"
}
