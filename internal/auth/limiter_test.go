package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
)

func testLimits(entries int) limits {
	return limits{pairLimit: 3, pairWindow: time.Minute, keyLimit: 10, keyWindow: 15 * time.Minute, entries: entries}
}

// TestLimiterMemoryIsBounded: however many key ids and addresses fail, succeed or get
// blocked, no table of the limiter holds more than its entries (keyturn issue 11, defect 7).
func TestLimiterMemoryIsBounded(t *testing.T) {
	const entries = 100
	l := newFailureLimiter(testLimits(entries))
	now := time.Unix(1_700_000_000, 0)
	for i := range 50 * entries {
		key := uuid.New()
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		for range 4 { // past the limit: blocked entries too
			l.attempt(key, addr, now)
		}
		if i%3 == 0 {
			l.succeeded(key, fmt.Sprintf("2001:db8::%x", i), now)
		}
		pairs, keys, good := l.size()
		if pairs > entries || keys > entries || good > entries {
			t.Fatalf("after %d distinct keys and addresses: %d pairs, %d keys, %d good, over %d", i+1, pairs, keys, good, entries)
		}
	}
	// Every entry live and blocking: still bounded, and a new pair is still counted.
	key := uuid.New()
	for range 3 {
		if wait := l.attempt(key, "192.0.2.1", now); wait != 0 {
			t.Fatalf("a fresh pair waits %v", wait)
		}
	}
	if wait := l.attempt(key, "192.0.2.1", now); wait <= 0 || wait > time.Minute {
		t.Fatalf("a pair past its limit in a full table waits %v", wait)
	}
	if pairs, keys, good := l.size(); pairs > entries || keys > entries || good > entries {
		t.Fatalf("%d pairs, %d keys, %d good, over %d", pairs, keys, good, entries)
	}
	// Ended windows are dropped before live ones.
	later := now.Add(time.Hour)
	for i := range entries {
		l.attempt(uuid.New(), fmt.Sprintf("198.51.100.%d", i), later)
	}
	if pairs, _, _ := l.size(); pairs > entries {
		t.Fatalf("%d pairs over %d", pairs, entries)
	}
}

// TestMalformedKeyIDIsRefusedBeforeTheLimiter: a key id that is not a UUID is refused as
// invalid without being counted, looked up or kept (keyturn issue 11, defect 7).
func TestMalformedKeyIDIsRefusedBeforeTheLimiter(t *testing.T) {
	// No database: a lookup would panic.
	l := newFailureLimiter(testLimits(10))
	s := &Service{now: time.Now, failures: memoryCounter{l}}
	for _, id := range []string{"", "nope", strings.Repeat("a", 1<<20), uuid.NewString() + " ", "{" + uuid.NewString() + "}"} {
		_, err := s.IssueToken(context.Background(), "acme", id, secret.FromString("x"), "192.0.2.1")
		if fe, ok := fault.As(err); !ok || fe.Kind != fault.Invalid || fe.Code != "invalid_key_id" || (id != "" && strings.Contains(fe.Message, id)) {
			t.Fatalf("key id of %d bytes: %v", len(id), err)
		}
	}
	if pairs, keys, good := l.size(); pairs+keys+good != 0 {
		t.Fatalf("the limiter holds %d pairs, %d keys, %d good after malformed key ids", pairs, keys, good)
	}
}

// TestLimiterCountsConcurrentAttempts: an attempt counts as soon as it is let through, so
// guesses sent at once cannot all pass before the first fails.
func TestLimiterCountsConcurrentAttempts(t *testing.T) {
	l := newFailureLimiter(testLimits(100))
	now, key := time.Now(), uuid.New()
	let := 0
	for range 10 { // none of them has finished yet
		if l.attempt(key, "192.0.2.1", now) == 0 {
			let++
		}
	}
	if let != 3 {
		t.Fatalf("%d of 10 simultaneous attempts let through, want 3", let)
	}
	// One that succeeds clears its address's count and makes the address known-good.
	l.succeeded(key, "192.0.2.1", now)
	if l.attempt(key, "192.0.2.1", now) != 0 {
		t.Fatal("a success did not clear the count")
	}
}

// TestLimiterCountsAnIPv6SixtyFourAsOneAddress: the addresses of one /64 share a count.
func TestLimiterCountsAnIPv6SixtyFourAsOneAddress(t *testing.T) {
	l := newFailureLimiter(testLimits(100))
	now, key := time.Now(), uuid.New()
	for i := range 3 {
		if l.attempt(key, fmt.Sprintf("2001:db8:1:2::%x", i+1), now) != 0 {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if l.attempt(key, "2001:db8:1:2:ffff::9", now) == 0 {
		t.Fatal("another address of the same /64 was let through past the limit")
	}
	if l.attempt(key, "2001:db8:1:3::1", now) != 0 {
		t.Fatal("another /64 was refused")
	}
}

// BenchmarkLimiterFlood measures an attempt from a new key id and address into a full table.
func BenchmarkLimiterFlood(b *testing.B) {
	l := newFailureLimiter(testLimits(DefaultLimiterEntries))
	now := time.Now()
	keys := make([]uuid.UUID, 1<<16)
	for i := range keys {
		keys[i] = uuid.New()
	}
	i := 0
	for b.Loop() {
		l.attempt(keys[i&(1<<16-1)], fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now)
		i++
	}
}
