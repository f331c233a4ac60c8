package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// A failing fn leaves none of its writes while the other fns of its batch commit, and every
// caller gets its own fn's outcome.
func TestTxFailedFnRollsBackAloneInBatch(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx := context.Background()
	const n = 200

	release := holdCommitter(t, db)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = db.Tx(ctx, func(tx *Tx) error {
				if _, err := tx.CreateTeam(ctx, fmt.Sprintf("team-%03d", i), t0); err != nil {
					return err
				}
				if i%3 == 0 {
					return boomError{i}
				}
				return nil
			})
		})
	}
	// The queue holds maxBatch requests, so the next batch is a full one mixing good and bad fns.
	waitQueued(t, db, maxBatch)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, 20*time.Second, "200 transactions", wg.Wait)

	for i := range n {
		name := fmt.Sprintf("team-%03d", i)
		if i%3 == 0 {
			var be boomError
			if !errors.As(errs[i], &be) || be.i != i {
				t.Errorf("Tx %d = %v, want its own boomError{%d}", i, errs[i], i)
			}
			if teamExists(t, db, name) {
				t.Errorf("%s exists although its fn failed", name)
			}
		} else {
			if errs[i] != nil {
				t.Errorf("Tx %d = %v, want nil", i, errs[i])
			}
			if !teamExists(t, db, name) {
				t.Errorf("%s is missing although its Tx returned nil", name)
			}
		}
	}
}

// Within a batch each fn sees the writes of those committed before it, and a failed fn's
// writes are invisible to those after it.
func TestTxBatchSeesEarlierWrites(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx := context.Background()
	release := holdCommitter(t, db)

	var results [3]chan error
	run := func(i int, fn func(*Tx) error) {
		results[i] = make(chan error, 1)
		go func() { results[i] <- db.Tx(ctx, fn) }()
		waitQueued(t, db, i+1)
	}
	run(0, func(tx *Tx) error {
		_, err := tx.CreateTeam(ctx, "kept", t0)
		return err
	})
	run(1, func(tx *Tx) error {
		if _, err := tx.CreateTeam(ctx, "dropped", t0); err != nil {
			return err
		}
		return errors.New("undo")
	})
	var sawKept, sawDropped error
	run(2, func(tx *Tx) error {
		_, sawKept = tx.TeamByName(ctx, "kept")
		_, sawDropped = tx.TeamByName(ctx, "dropped")
		return nil
	})
	if err := release(); err != nil {
		t.Fatal(err)
	}
	var got [3]error
	for i, ch := range results {
		select {
		case got[i] = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("batch did not finish")
		}
	}
	if got[0] != nil || got[1] == nil || got[1].Error() != "undo" || got[2] != nil {
		t.Fatalf("results %v, want [nil undo nil]", got)
	}
	if sawKept != nil {
		t.Errorf("later fn: TeamByName(kept) = %v, want the earlier fn's write", sawKept)
	}
	if !errors.Is(sawDropped, ErrNotFound) {
		t.Errorf("later fn: TeamByName(dropped) = %v, want ErrNotFound (that fn failed)", sawDropped)
	}
}

// A panicking fn fails only its own caller, leaves no writes, and the committer keeps working.
func TestTxPanic(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx := context.Background()

	release := holdCommitter(t, db)
	panicErr, goodErr := make(chan error, 1), make(chan error, 1)
	go func() {
		panicErr <- db.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.CreateTeam(ctx, "panicky", t0); err != nil {
				return err
			}
			panic("kaboom")
		})
	}()
	waitQueued(t, db, 1)
	go func() {
		goodErr <- db.Tx(ctx, func(tx *Tx) error {
			_, err := tx.CreateTeam(ctx, "same-batch", t0)
			return err
		})
	}()
	waitQueued(t, db, 2)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, 10*time.Second, "panicking batch", func() {
		if err := <-panicErr; err == nil || !strings.Contains(err.Error(), "kaboom") {
			t.Errorf("Tx with a panicking fn = %v, want an error naming the panic", err)
		}
		if err := <-goodErr; err != nil {
			t.Errorf("Tx in the same batch = %v", err)
		}
	})
	if teamExists(t, db, "panicky") {
		t.Error("the panicking fn's write was committed")
	}
	if !teamExists(t, db, "same-batch") {
		t.Error("the other fn of the batch was lost")
	}

	// A lone panic (its own batch), then the committer still works.
	err := db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.CreateTeam(ctx, "panicky-2", t0); err != nil {
			return err
		}
		panic(errors.New("kaboom 2"))
	})
	if err == nil {
		t.Fatal("Tx with a panicking fn returned nil")
	}
	if teamExists(t, db, "panicky-2") {
		t.Error("the lone panicking fn's write was committed")
	}
	withTimeout(t, 10*time.Second, "Tx after a panic", func() {
		if err := db.Tx(ctx, func(tx *Tx) error {
			_, err := tx.CreateTeam(ctx, "after", t0)
			return err
		}); err != nil {
			t.Errorf("Tx after a panic: %v", err)
		}
	})
	if !teamExists(t, db, "after") {
		t.Error("committer lost the write after a panic")
	}
}

func TestTxCanceledBeforeRun(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)

	t.Run("canceled before Tx", func(t *testing.T) {
		// Repeat: Tx picks between queueing and ctx.Done at random; both paths must refuse.
		for i := range 50 {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			ran := false
			err := db.Tx(ctx, func(tx *Tx) error {
				ran = true
				_, err := tx.CreateTeam(context.Background(), fmt.Sprintf("canceled-%d", i), t0)
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Tx with a canceled ctx = %v, want context.Canceled", err)
			}
			if ran {
				t.Fatal("fn ran although ctx was canceled before Tx")
			}
			if teamExists(t, db, fmt.Sprintf("canceled-%d", i)) {
				t.Fatal("a canceled Tx wrote")
			}
		}
	})

	t.Run("canceled while queued", func(t *testing.T) {
		release := holdCommitter(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan bool, 1)
		result := make(chan error, 1)
		go func() {
			result <- db.Tx(ctx, func(tx *Tx) error {
				ran <- true
				_, err := tx.CreateTeam(context.Background(), "queued", t0)
				return err
			})
		}()
		waitQueued(t, db, 1)
		cancel()
		if err := release(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-result:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Tx canceled while queued = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Tx canceled while queued never returned")
		}
		select {
		case <-ran:
			t.Fatal("fn ran although its ctx was canceled before its turn")
		default:
		}
		if teamExists(t, db, "queued") {
			t.Fatal("a canceled Tx wrote")
		}
	})
}

// Canceling the caller's ctx while its fn runs does not tear the change: the statements still
// run, the fn's result decides, and the caller learns it.
func TestTxCanceledWhileRunning(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)

	t.Run("fn returns nil", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var secondErr error
		err := db.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.CreateTeam(ctx, "before-cancel", t0); err != nil {
				return err
			}
			cancel()
			_, secondErr = tx.CreateTeam(ctx, "after-cancel", t0)
			return secondErr
		})
		if secondErr != nil {
			t.Fatalf("a statement after the caller's cancel failed: %v", secondErr)
		}
		if err != nil {
			t.Fatalf("Tx = %v, want nil: fn returned nil, so its writes must be committed", err)
		}
		if !teamExists(t, db, "before-cancel") || !teamExists(t, db, "after-cancel") {
			t.Fatal("Tx returned nil but not all writes are there")
		}
	})

	t.Run("fn returns ctx error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err := db.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.CreateTeam(ctx, "half", t0); err != nil {
				return err
			}
			cancel()
			return ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Tx = %v, want context.Canceled", err)
		}
		if teamExists(t, db, "half") {
			t.Fatal("Tx failed but its write is there")
		}
	})

	t.Run("cancel from outside mid-fn", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		inside, goOn := make(chan struct{}), make(chan struct{})
		result := make(chan error, 1)
		go func() {
			result <- db.Tx(ctx, func(tx *Tx) error {
				if _, err := tx.CreateTeam(ctx, "outside-1", t0); err != nil {
					return err
				}
				close(inside)
				<-goOn
				_, err := tx.CreateTeam(ctx, "outside-2", t0)
				return err
			})
		}()
		<-inside
		cancel()
		close(goOn)
		var err error
		select {
		case err = <-result:
		case <-time.After(10 * time.Second):
			t.Fatal("Tx canceled mid-fn never returned")
		}
		one, two := teamExists(t, db, "outside-1"), teamExists(t, db, "outside-2")
		if one != two {
			t.Fatalf("torn change: outside-1 %v, outside-2 %v (Tx = %v)", one, two, err)
		}
		if (err == nil) != one {
			t.Fatalf("Tx = %v but writes present = %v: the caller was told the wrong outcome", err, one)
		}
	})
}

// After Tx returns nil the change is in the file: another, independent DB sees it.
func TestTxDurableAcrossOpen(t *testing.T) {
	t.Parallel()
	db, path := openTestDB(t)
	ctx := context.Background()
	mustTeam(t, db, "durable")

	other, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got, err := other.TeamByName(ctx, "durable")
	if err != nil {
		t.Fatalf("a second DB on the same file: %v", err)
	}
	if got.Name != "durable" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("second DB read %+v", got)
	}
}

func TestTxAfterClose(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, 10*time.Second, "Tx after Close", func() {
		// Repeat: a closed DB must refuse every time, not only when a select happens to pick it.
		for range 200 {
			ran := false
			err := db.Tx(context.Background(), func(*Tx) error { ran = true; return nil })
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Tx after Close = %v, want ErrClosed", err)
				return
			}
			if ran {
				t.Error("fn ran after Close")
				return
			}
		}
	})
}

// Tx racing Close: every call returns, and what it returned is what is on disk.
func TestTxRacingClose(t *testing.T) {
	t.Parallel()
	db, path := openTestDB(t)
	ctx := context.Background()
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = db.Tx(ctx, func(tx *Tx) error {
				_, err := tx.CreateTeam(ctx, fmt.Sprintf("race-%03d", i), t0)
				return err
			})
		})
	}
	close(start)
	time.Sleep(time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, 20*time.Second, "Tx racing Close", wg.Wait)

	reopened, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	for i := range n {
		name := fmt.Sprintf("race-%03d", i)
		switch {
		case errs[i] == nil:
			if !teamExists(t, reopened, name) {
				t.Errorf("Tx %d returned nil but %s is not on disk", i, name)
			}
		case errors.Is(errs[i], ErrClosed):
			if teamExists(t, reopened, name) {
				t.Errorf("Tx %d returned ErrClosed but %s is on disk", i, name)
			}
		default:
			t.Errorf("Tx %d = %v, want nil or ErrClosed", i, errs[i])
		}
	}
}

// TestBrokenBatchCommitsNothing simulates SQLite rolling the whole transaction back under a
// batch (as it does after some I/O errors): no caller of that batch may be told "committed".
func TestBrokenBatchCommitsNothing(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	release := holdCommitter(t, db)
	names := []string{"before-1", "before-2", "breaker", "after-1"}
	results := make([]chan error, len(names))
	for i, name := range names {
		results[i] = make(chan error, 1)
		go func() {
			results[i] <- db.Tx(context.Background(), func(tx *Tx) error {
				if _, err := tx.CreateTeam(context.Background(), name, time.Now()); err != nil {
					return err
				}
				if name == "breaker" {
					// What SQLite does to the transaction after, say, SQLITE_FULL.
					_, err := tx.tx.(txQuerier).tx.ExecContext(context.Background(), "ROLLBACK")
					return err
				}
				return nil
			})
		}()
		waitQueued(t, db, i+1)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		if err := <-results[i]; err == nil {
			t.Errorf("%s was told its change committed in a broken batch", name)
		}
		if teamExists(t, db, name) {
			t.Errorf("%s exists after its batch broke", name)
		}
	}
	mustTeam(t, db, "after-the-break")
}
