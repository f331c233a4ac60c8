package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The store's contract, which every backend is held to (restic's backend test suite is the
// model): each case runs against a fresh SQLite database and a fresh PostgreSQL database.
// The SQLite-only tests (the group committer, the statement cache) are in their own files.

var backends = []struct {
	name string
	open func(t testing.TB) *DB
}{
	{"sqlite", func(t testing.TB) *DB { db, _ := openTestDB(t); return db }},
	{"postgres", openPostgresTestDB},
}

var conformance = []struct {
	name string
	run  func(*testing.T, *DB)
}{
	// Round trips and queries.
	{"Teams", testTeams},
	{"Keyring", testKeyring},
	{"APIKeyWithUser", testAPIKeyWithUser},
	{"APIKeyWithUserNullsAndEmptyLists", testAPIKeyWithUserNullsAndEmptyLists},
	{"TokenGrant", testTokenGrant},
	{"CreateTokenDropsExpired", testCreateTokenDropsExpired},
	{"RecordRoundTrip", testRecordRoundTrip},
	{"Conflicts", testConflicts},
	{"UpdateRecord", testUpdateRecord},
	{"ListRecordsFilters", testListRecordsFilters},
	{"PasswordVersions", testPasswordVersions},
	{"NextDueAndDueSchedules", testNextDueAndDueSchedules},
	{"ScriptsAndProcesses", testScriptsAndProcesses},
	// What callers rely on when writers run at once.
	{"StaleRecordRevisionRefused", testStaleRecordRevisionRefused},
	{"StaleSettingsRevisionRefused", testStaleSettingsRevisionRefused},
	{"StalePasswordVersionRefused", testStalePasswordVersionRefused},
	{"OneActiveRunPerRecord", testOneActiveRunPerRecord},
	{"FailedTxLeavesNothing", testFailedTxLeavesNothing},
	{"AuditChainGapFreeUnderConcurrentWriters", testAuditChainGapFree},
	{"AuditCursorReadsInCommitOrder", testAuditCursorCommitOrder},
	{"TeamAuditChainsGapFreeUnderConcurrentWriters", testTeamAuditChainsGapFree},
	// Node leases: how many nodes share the rotation runs of one database.
	{"ClaimsAreExclusive", testClaimsAreExclusive},
	{"LeaseFencesWrites", testLeaseFencesWrites},
	{"TakeOverAndRelease", testTakeOverAndRelease},
	{"OccurrenceFiresOnce", testOccurrenceFiresOnce},
	{"DueSchedulesClaimedOnce", testDueSchedulesClaimedOnce},
	{"RunStatesFollowCommits", testRunStatesFollowCommits},
	// The failed-exchange limiter's windows, shared by the nodes on one database.
	{"ExchangeFailuresRoundTrip", testExchangeFailuresRoundTrip},
	{"ExchangeFailuresTakeTurns", testExchangeFailuresTakeTurns},
	{"PruneExchangeFailures", testPruneExchangeFailures},
}

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.open(t)) })
			}
		})
	}
}

// writers is how many goroutines write at once in the concurrency cases.
const writers = 8

// concurrently runs f(w) for each of n writers and waits for them all.
func concurrently(n int, f func(w int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range n {
		wg.Go(func() {
			<-start
			f(w)
		})
	}
	close(start)
	wg.Wait()
}

// Scripts keep their attach order and sealed content; a run's script process is replaced.
func testScriptsAndProcesses(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "pamUser", "r", ""))
	for i, name := range []string{"first", "second"} {
		mustTx(t, db, func(tx *Tx) error {
			return tx.InsertScript(ctx, Script{ID: name, RecordUID: "r", Name: name + ".sh", Command: "bash",
				CredentialUIDs: []string{"c1"}, Timeout: time.Duration(i+1) * time.Second, Content: []byte{0, 1, byte(i)}, CreatedAt: t0})
		})
	}
	scripts, err := db.Scripts(ctx, "r")
	if err != nil || len(scripts) != 2 || scripts[0].ID != "first" || scripts[1].Position != 2 ||
		!bytes.Equal(scripts[1].Content, []byte{0, 1, 1}) || scripts[1].Timeout != 2*time.Second ||
		!slices.Equal(scripts[0].CredentialUIDs, []string{"c1"}) {
		t.Fatalf("Scripts = %+v, %v", scripts, err)
	}
	run := Run{ID: "run", TeamID: team.ID, RecordUID: "r", Trigger: "on_demand", Status: "running", State: "queued",
		CreatedAt: t0, UpdatedAt: t0}
	mustTx(t, db, func(tx *Tx) error {
		if err := tx.InsertRun(ctx, run); err != nil {
			return err
		}
		if err := tx.SetScriptProcess(ctx, ScriptProcess{RunID: "run", PID: 10, Start: 20, Boot: "b"}, t0); err != nil {
			return err
		}
		return tx.SetScriptProcess(ctx, ScriptProcess{RunID: "run", PID: 11, Start: 1 << 40, Boot: "b"}, t0)
	})
	if p, ok, err := db.ScriptProcess(ctx, "run"); err != nil || !ok || p.PID != 11 || p.Start != 1<<40 {
		t.Fatalf("ScriptProcess = %+v, %v, %v", p, ok, err)
	}
	if got, err := db.RunByID(ctx, "run"); err != nil || got.Status != "running" || got.ExecLog != nil || string(got.CandidateFields) != "{}" {
		t.Fatalf("RunByID = %+v, %v", got, err)
	}
}

// Writers that read a record's revision and then update it with the next one: each update
// wins only against the revision it read; the others get ErrConflict; none is lost.
func testStaleRecordRevisionRefused(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "login", "r", ""))
	var won atomic.Int64
	concurrently(writers, func(w int) {
		for i := range 20 {
			read, err := db.Record(ctx, team.ID, "r")
			if err != nil {
				t.Error(err)
				return
			}
			read.Revision++
			read.Data = fmt.Appendf(nil, "w%d-%d", w, i)
			switch err := db.Tx(ctx, func(tx *Tx) error { return tx.UpdateRecord(ctx, read) }); {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, ErrConflict):
				t.Errorf("UpdateRecord: %v, want nil or ErrConflict", err)
				return
			}
		}
	})
	got, err := db.Record(ctx, team.ID, "r")
	if err != nil || got.Revision != 1+won.Load() {
		t.Fatalf("revision %d after %d updates won (%v): an update was lost", got.Revision, won.Load(), err)
	}
}

// Writers that read rotation settings in a transaction, check the revision they expect and
// save the next one (the rotation settings service does this): each revision is saved once.
func testStaleSettingsRevisionRefused(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "pamUser", "r", ""))
	mustTx(t, db, func(tx *Tx) error {
		return tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: "r", TeamID: team.ID, Settings: []byte(`{}`), Revision: 1, UpdatedAt: t0})
	})
	errStale := errors.New("stale revision")
	var won atomic.Int64
	concurrently(writers, func(w int) {
		for i := range 20 {
			seen, err := db.RotationSettings(ctx, team.ID, "r")
			if err != nil {
				t.Error(err)
				return
			}
			err = db.Tx(ctx, func(tx *Tx) error {
				prev, err := tx.RotationSettings(ctx, team.ID, "r")
				if err != nil {
					return err
				}
				if prev.Revision != seen.Revision {
					return errStale
				}
				return tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: "r", TeamID: team.ID,
					Settings: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i), Revision: prev.Revision + 1, UpdatedAt: t0})
			})
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, errStale):
				t.Errorf("save: %v", err)
				return
			}
		}
	})
	got, err := db.RotationSettings(ctx, team.ID, "r")
	if err != nil || got.Revision != 1+won.Load() {
		t.Fatalf("revision %d after %d saves won (%v): two saves took the same revision", got.Revision, won.Load(), err)
	}
}

// Writers that each add the next password version: a version number is taken once (the
// loser gets ErrConflict), and the versions stay 1..n without a gap.
func testStalePasswordVersionRefused(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "login", "r", ""))
	var won atomic.Int64
	concurrently(writers, func(w int) {
		for range 20 {
			err := db.Tx(ctx, func(tx *Tx) error {
				latest, _, err := tx.VersionNumbers(ctx, "r")
				if err != nil {
					return err
				}
				return tx.InsertPasswordVersion(ctx, PasswordVersion{RecordUID: "r", Version: latest + 1, State: "pending",
					Value: []byte{byte(w)}, CreatedAt: t0, UpdatedAt: t0})
			})
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, ErrConflict):
				t.Errorf("InsertPasswordVersion: %v, want nil or ErrConflict", err)
				return
			}
		}
	})
	versions, err := db.PasswordVersions(ctx, "r")
	if err != nil || int64(len(versions)) != won.Load() {
		t.Fatalf("%d versions after %d inserts won (%v)", len(versions), won.Load(), err)
	}
	for i, v := range versions {
		if v.Version != int64(len(versions)-i) {
			t.Fatalf("versions %v are not 1..n", versions)
		}
	}
}

// Writers that start a run of the same record at once: exactly one succeeds each round, by
// InsertRun (the others get ErrConflict) or InsertRunIfIdle (the others get false); once the
// run has finished, the next one may start.
func testOneActiveRunPerRecord(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "pamUser", "r", ""))
	for round := range 10 {
		var started atomic.Int64
		var winner atomic.Value
		concurrently(writers, func(w int) {
			run := Run{ID: fmt.Sprintf("run-%d-%d", round, w), TeamID: team.ID, RecordUID: "r", Trigger: "scheduled",
				Status: "queued", State: "queued", CreatedAt: t0, UpdatedAt: t0}
			err := db.Tx(ctx, func(tx *Tx) error {
				if round%2 == 0 {
					return tx.InsertRun(ctx, run)
				}
				ok, err := tx.InsertRunIfIdle(ctx, run)
				if err == nil && !ok {
					err = ErrConflict
				}
				return err
			})
			switch {
			case err == nil:
				started.Add(1)
				winner.Store(run)
			case !errors.Is(err, ErrConflict):
				t.Errorf("round %d: %v", round, err)
			}
		})
		if started.Load() != 1 {
			t.Fatalf("round %d: %d runs started at once, want 1", round, started.Load())
		}
		active, err := db.ActiveRun(ctx, "r")
		if won := winner.Load().(Run); err != nil || active.ID != won.ID {
			t.Fatalf("ActiveRun = %s, %v; want %s", active.ID, err, won.ID)
		}
		active.Status, active.State = "succeeded", "done"
		mustTx(t, db, func(tx *Tx) error { return tx.UpdateRun(ctx, active) })
	}
}

// chainEvent is a test's audit event chained as internal/audit chains them (with SHA-256 in
// place of the keyring's keyed hash), in the vault-wide chain after prev and in its team's
// chain after head.
func chainEvent(e AuditEvent, prev []byte, head ChainHead) AuditEvent {
	e.PrevHash = prev
	e.Hash = chainHash(e)
	e.TeamSeq, e.TeamPrevHash = head.Seq+1, head.Hash
	if e.TeamPrevHash == nil {
		e.TeamPrevHash = []byte{}
	}
	e.TeamHash = teamChainHash(e)
	return e
}

func chainHash(e AuditEvent) []byte {
	h := sha256.New()
	h.Write(e.PrevHash)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.TeamID)))
	h.Write([]byte(e.Type))
	h.Write(e.Details)
	return h.Sum(nil)
}

func teamChainHash(e AuditEvent) []byte {
	h := sha256.New()
	h.Write([]byte("team"))
	h.Write(e.TeamPrevHash)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.TeamID)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.TeamSeq)))
	h.Write([]byte(e.Type))
	h.Write(e.Details)
	return h.Sum(nil)
}

// appendAudit appends events to the vault-wide chain and to their teams' chains inside tx, as
// audit.Log.Append does.
func appendAudit(ctx context.Context, tx *Tx, events ...AuditEvent) error {
	return appendAuditWith(ctx, tx, false, events)
}

// appendAuditWith is appendAudit; with apart, it reads the heads with TeamAuditHeads first,
// then LastAuditHash, where Log.Append reads both with AuditHeads: TeamAuditHeads must make
// the transaction the only appender itself.
func appendAuditWith(ctx context.Context, tx *Tx, apart bool, events []AuditEvent) error {
	var teams []int64
	for _, e := range events {
		if !slices.Contains(teams, e.TeamID) {
			teams = append(teams, e.TeamID)
		}
	}
	var prev []byte
	var heads map[int64]ChainHead
	var err error
	if apart {
		if heads, err = tx.TeamAuditHeads(ctx, teams...); err == nil {
			prev, err = tx.LastAuditHash(ctx)
		}
	} else {
		prev, heads, err = tx.AuditHeads(ctx, teams...)
	}
	if err != nil {
		return err
	}
	if prev == nil {
		prev = []byte{}
	}
	for i := range events {
		events[i] = chainEvent(events[i], prev, heads[events[i].TeamID])
		prev = events[i].Hash
		heads[events[i].TeamID] = ChainHead{Seq: events[i].TeamSeq, Hash: events[i].TeamHash}
	}
	return tx.InsertAuditEvents(ctx, events)
}

func auditEvent(teamID int64, details string) AuditEvent {
	return AuditEvent{TeamID: teamID, Type: "test", Actor: "tester", Details: []byte(details), CreatedAt: t0}
}

// A transaction that fails, returns a conflict or panics leaves nothing of what it wrote,
// and the audit trail goes on from the last committed event without a gap.
func testFailedTxLeavesNothing(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "exists", "login", "exists", ""))
	mustTx(t, db, func(tx *Tx) error { return appendAudit(ctx, tx, auditEvent(team.ID, `{"n":1}`)) })
	writeAll := func(tx *Tx) error {
		if err := tx.InsertRecord(ctx, testRecord(team.ID, "new", "login", "new", "")); err != nil {
			return err
		}
		if err := tx.InsertPasswordVersion(ctx, PasswordVersion{RecordUID: "new", Version: 1, State: "current", Value: []byte("v"),
			CreatedAt: t0, UpdatedAt: t0}); err != nil {
			return err
		}
		if err := tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: "new", TeamID: team.ID, Settings: []byte(`{}`), UpdatedAt: t0}); err != nil {
			return err
		}
		if err := tx.InsertRun(ctx, Run{ID: "run", TeamID: team.ID, RecordUID: "new", Trigger: "on_demand", Status: "queued",
			State: "queued", CreatedAt: t0, UpdatedAt: t0}); err != nil {
			return err
		}
		if _, err := tx.CreateTeam(ctx, "beta", t0); err != nil {
			return err
		}
		return appendAudit(ctx, tx, auditEvent(team.ID, `{"n":"lost"}`), auditEvent(team.ID, `{"n":"lost"}`))
	}
	boom := errors.New("boom")
	for name, fn := range map[string]func(*Tx) error{
		"error": func(tx *Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			return boom
		},
		"conflict": func(tx *Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			return tx.InsertRecord(ctx, testRecord(team.ID, "exists", "login", "again", ""))
		},
		"panic": func(tx *Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			panic("boom")
		},
	} {
		if err := db.Tx(ctx, fn); err == nil {
			t.Fatalf("%s: Tx = nil, want its error", name)
		}
		if _, err := db.Record(ctx, team.ID, "new"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: the record remains (%v)", name, err)
		}
		if v, err := db.PasswordVersions(ctx, "new"); err != nil || len(v) != 0 {
			t.Fatalf("%s: password versions remain: %v, %v", name, v, err)
		}
		if _, err := db.RotationSettings(ctx, team.ID, "new"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: rotation settings remain (%v)", name, err)
		}
		if _, err := db.RunByID(ctx, "run"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: the run remains (%v)", name, err)
		}
		if teamExists(t, db, "beta") {
			t.Fatalf("%s: the team remains", name)
		}
		if events, err := db.AllAuditEvents(ctx, 0, 100); err != nil || len(events) != 1 {
			t.Fatalf("%s: %d audit events, want 1 (%v)", name, len(events), err)
		}
	}
	mustTx(t, db, func(tx *Tx) error { return appendAudit(ctx, tx, auditEvent(team.ID, `{"n":2}`)) })
	events, err := db.AllAuditEvents(ctx, 0, 100)
	if err != nil || len(events) != 2 || events[1].Seq != 2 || !bytes.Equal(events[1].PrevHash, events[0].Hash) {
		t.Fatalf("after the failed transactions: %+v, %v; want events 1 and 2, chained", events, err)
	}
	// The team's chain goes on from its last committed event too: team event 2, its head.
	if e := events[1]; e.TeamSeq != 2 || !bytes.Equal(e.TeamPrevHash, events[0].TeamHash) {
		t.Fatalf("after the failed transactions the team's event is %d (prev %x), want 2 chained to %x", e.TeamSeq, e.TeamPrevHash, events[0].TeamHash)
	}
	if h, err := db.TeamAuditHead(ctx, team.ID); err != nil || h.Seq != 2 || !bytes.Equal(h.Hash, events[1].TeamHash) {
		t.Fatalf("the team's head is %+v (%v), want team event 2", h, err)
	}
}

// Writers of two teams append events at once, some in transactions that then fail: the
// sequence is 1..n without a gap, each event chains to the one before it, each writer's
// events are in the order it committed them, and each team's listing has all of its events.
func testAuditChainGapFree(t *testing.T, db *DB) {
	ctx := context.Background()
	teams := []Team{mustTeam(t, db, "acme"), mustTeam(t, db, "beta")}
	committed := make([][]string, writers) // each writer's committed details, in order
	boom := errors.New("boom")
	concurrently(writers, func(w int) {
		team := teams[w%2]
		for i := range 25 {
			var events []AuditEvent
			for k := range 1 + i%3 {
				events = append(events, auditEvent(team.ID, fmt.Sprintf(`{"w":%d,"i":%d,"k":%d}`, w, i, k)))
			}
			fail := i%5 == 4
			err := db.Tx(ctx, func(tx *Tx) error {
				if _, err := tx.Record(ctx, team.ID, "none"); !errors.Is(err, ErrNotFound) { // a read first
					return fmt.Errorf("read: %v", err)
				}
				if err := appendAudit(ctx, tx, slices.Clone(events)...); err != nil {
					return err
				}
				if fail {
					return boom
				}
				return nil
			})
			switch {
			case fail && errors.Is(err, boom):
			case !fail && err == nil:
				for _, e := range events {
					committed[w] = append(committed[w], string(e.Details))
				}
			default:
				t.Errorf("writer %d tx %d: %v", w, i, err)
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	all, err := db.AllAuditEvents(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range committed {
		total += len(c)
	}
	if len(all) != total {
		t.Fatalf("%d events stored, %d committed", len(all), total)
	}
	prev := []byte{}
	byWriter := make([][]string, writers)
	perTeam := map[int64]int{}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: a gap", i+1, e.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev) || !bytes.Equal(e.Hash, chainHash(e)) {
			t.Fatalf("the chain breaks at seq %d", e.Seq)
		}
		prev = e.Hash
		var w int
		if _, err := fmt.Sscanf(string(e.Details), `{"w":%d`, &w); err != nil {
			t.Fatal(err)
		}
		byWriter[w] = append(byWriter[w], string(e.Details))
		perTeam[e.TeamID]++
	}
	for w := range writers {
		if !slices.Equal(byWriter[w], committed[w]) {
			t.Fatalf("writer %d: stored %v, committed %v", w, byWriter[w], committed[w])
		}
	}
	for _, team := range teams {
		events, err := db.AuditEvents(ctx, team.ID, 0, 100000)
		if err != nil || len(events) != perTeam[team.ID] {
			t.Fatalf("team %s: %d events listed, %d stored (%v)", team.Name, len(events), perTeam[team.ID], err)
		}
		for i := 1; i < len(events); i++ {
			if events[i].Seq <= events[i-1].Seq {
				t.Fatalf("team %s: events out of order", team.Name)
			}
		}
	}
}

// teamWriters is how many goroutines append at once in the team chain case.
const teamWriters = 24

// Writers of two teams append events at once, in transactions of one team's events or of
// both teams' (as the audit log's batches are), some appending twice, some reading the heads
// apart (TeamAuditHeads, then LastAuditHash), some of which then fail: each team's chain is
// numbered 1..n without a gap, each event chains to the team's event before it with a hash
// that covers it, the numbers follow the vault-wide order, each writer's events are in the
// order it committed them, and the team's head is its last event.
func testTeamAuditChainsGapFree(t *testing.T, db *DB) {
	ctx := context.Background()
	teams := []Team{mustTeam(t, db, "acme"), mustTeam(t, db, "beta")}
	committed := make([][]string, teamWriters) // each writer's committed details, in order
	boom := errors.New("boom")
	concurrently(teamWriters, func(w int) {
		for i := range 20 {
			var events []AuditEvent
			for k := range 1 + i%3 {
				team := teams[w%2]
				if w%3 == 0 { // both teams' events in one transaction
					team = teams[k%2]
				}
				events = append(events, auditEvent(team.ID, fmt.Sprintf(`{"w":%d,"i":%d,"k":%d}`, w, i, k)))
			}
			fail := (w+i)%4 == 3
			err := db.Tx(ctx, func(tx *Tx) error {
				if err := appendAuditWith(ctx, tx, w%4 == 1, slices.Clone(events)); err != nil {
					return err
				}
				if i%4 == 2 { // a second append in the same transaction
					if err := appendAudit(ctx, tx, auditEvent(events[0].TeamID, fmt.Sprintf(`{"w":%d,"i":%d,"k":9}`, w, i))); err != nil {
						return err
					}
				}
				if fail {
					return boom
				}
				return nil
			})
			switch {
			case fail && errors.Is(err, boom):
			case !fail && err == nil:
				for _, e := range events {
					committed[w] = append(committed[w], string(e.Details))
				}
				if i%4 == 2 {
					committed[w] = append(committed[w], fmt.Sprintf(`{"w":%d,"i":%d,"k":9}`, w, i))
				}
			default:
				t.Errorf("writer %d tx %d: %v", w, i, err)
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	byWriter := make([][]string, teamWriters)
	stored := 0
	for _, team := range teams {
		events, err := db.TeamAuditEvents(ctx, team.ID, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		stored += len(events)
		prev := AuditEvent{TeamHash: []byte{}}
		for i, e := range events {
			switch {
			case e.TeamID != team.ID:
				t.Fatalf("team %s: listed another team's event %+v", team.Name, e)
			case e.TeamSeq != int64(i+1):
				t.Fatalf("team %s: event %d has team_seq %d: a gap", team.Name, i+1, e.TeamSeq)
			case !bytes.Equal(e.TeamPrevHash, prev.TeamHash) || !bytes.Equal(e.TeamHash, teamChainHash(e)):
				t.Fatalf("team %s: the chain breaks at team_seq %d", team.Name, e.TeamSeq)
			case i > 0 && e.Seq <= prev.Seq:
				t.Fatalf("team %s: team_seq %d is event %d, after event %d", team.Name, e.TeamSeq, e.Seq, prev.Seq)
			}
			prev = e
			var w int
			if _, err := fmt.Sscanf(string(e.Details), `{"w":%d`, &w); err != nil {
				t.Fatal(err)
			}
			byWriter[w] = append(byWriter[w], string(e.Details))
		}
		head, err := db.TeamAuditHead(ctx, team.ID)
		if err != nil || head.Seq != prev.TeamSeq || !bytes.Equal(head.Hash, prev.TeamHash) || head.Seq == 0 {
			t.Fatalf("team %s: head %+v (%v), want team event %d", team.Name, head, err, prev.TeamSeq)
		}
	}
	total := 0
	for w := range teamWriters {
		total += len(committed[w])
		slices.Sort(byWriter[w]) // a writer of both teams: its events are split between the chains
		want := slices.Sorted(slices.Values(committed[w]))
		if !slices.Equal(byWriter[w], want) {
			t.Fatalf("writer %d: stored %v, committed %v", w, byWriter[w], want)
		}
	}
	if stored != total {
		t.Fatalf("%d events in the team chains, %d committed", stored, total)
	}
	// Each writer's events of one team are in the order it committed them.
	for _, team := range teams {
		events, _ := db.TeamAuditEvents(ctx, team.ID, 0, 100000)
		last := map[int]string{}
		for _, e := range events {
			var w, i, k int
			if _, err := fmt.Sscanf(string(e.Details), `{"w":%d,"i":%d,"k":%d}`, &w, &i, &k); err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("%04d-%02d", i, k)
			if prev, ok := last[w]; ok && key <= prev {
				t.Fatalf("team %s: writer %d's event %s comes after %s", team.Name, w, key, prev)
			}
			last[w] = key
		}
	}
}

// An exporter that reads the events after its cursor while writers append (and go on
// working in the same transaction afterwards) never sees an event before every lower one is
// visible: it reads 1, 2, 3, … with nothing skipped, as the audit sinks' cursor needs.
func testAuditCursorCommitOrder(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	const perWriter = 30
	var done atomic.Bool
	read := make(chan error, 1)
	go func() {
		var cursor int64
		for {
			finished := done.Load()
			events, err := db.AllAuditEvents(ctx, cursor, 50)
			if err != nil {
				read <- err
				return
			}
			for _, e := range events {
				if e.Seq != cursor+1 {
					read <- fmt.Errorf("the cursor at %d read seq %d: seq %d became visible after it", cursor, e.Seq, cursor+1)
					return
				}
				cursor = e.Seq
			}
			if finished && len(events) == 0 {
				if cursor != writers*perWriter {
					read <- fmt.Errorf("the cursor ended at %d, want %d", cursor, writers*perWriter)
					return
				}
				read <- nil
				return
			}
		}
	}()
	concurrently(writers, func(w int) {
		for i := range perWriter {
			uid := fmt.Sprintf("r-%d-%d", w, i)
			err := db.Tx(ctx, func(tx *Tx) error {
				if err := appendAudit(ctx, tx, auditEvent(team.ID, fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))); err != nil {
					return err
				}
				// More work after the event, so that the transaction commits later.
				if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "login", uid, "")); err != nil {
					return err
				}
				rec := testRecord(team.ID, uid, "login", uid, "x")
				rec.Revision = 2
				return tx.UpdateRecord(ctx, rec)
			})
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
				return
			}
		}
	})
	done.Store(true)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}
