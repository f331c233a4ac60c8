package audit

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyturn/keyturn/internal/store"
)

// ErrBroken reports a break in the hash chain; errors wrapping it also wrap the *Break.
var ErrBroken = errors.New("audit: the hash chain is broken")

// Why a link of the chain is broken (Break.Reason).
const (
	// HashMismatch: the event's hash does not match its contents: it was altered.
	HashMismatch = "hash_mismatch"
	// SequenceGap: sequence numbers are missing before the event: events were removed.
	SequenceGap = "sequence_gap"
	// LinkMismatch: the event does not follow the one before it: an event was inserted, or
	// events were reordered.
	LinkMismatch = "link_mismatch"
	// TailTruncated: an audit sink acknowledged events beyond the last one: the newest events
	// were removed.
	TailTruncated = "tail_truncated"
	// HeadMissing: the head given to check (an earlier verification's) is no longer in the
	// trail, or is there with another hash: the newest events were removed (and maybe others
	// appended since).
	HeadMissing = "head_missing"
)

// Link names one event of the chain: its sequence number and its hash (hex), the event's id.
type Link struct {
	Seq int64  `json:"seq"`
	ID  string `json:"id"`
}

// ParseLink reads a link written as SEQ:ID, as Verify reports a head.
func ParseLink(s string) (Link, error) {
	seqText, id, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 {
		return Link{}, fmt.Errorf("%q: give an event as SEQ:ID, such as a head verify reported", s)
	}
	if b, err := hex.DecodeString(id); err != nil || len(b) == 0 {
		return Link{}, fmt.Errorf("%q: the id after the colon is the event's hash in hex", s)
	}
	return Link{Seq: seq, ID: strings.ToLower(id)}, nil
}

// String writes the link as SEQ:ID, as ParseLink reads it.
func (l Link) String() string { return strconv.FormatInt(l.Seq, 10) + ":" + l.ID }

// Break is the first broken link of the chain that a verification found.
type Break struct {
	Seq     int64  `json:"seq"`          // the event where the chain breaks
	ID      string `json:"id,omitempty"` // its hash (hex), when it is the team's own event
	Reason  string `json:"reason"`       // HashMismatch, SequenceGap, LinkMismatch, TailTruncated, HeadMissing
	Message string `json:"message"`      // what is wrong, for people
}

func (b *Break) Error() string { return fmt.Sprintf("event %d: %s: %s", b.Seq, b.Reason, b.Message) }

// Report is the result of verifying a team's part of the chain.
type Report struct {
	OK          bool   `json:"ok"`
	Events      int64  `json:"events"`                 // the team's events checked (before the break, if any)
	Head        *Link  `json:"head,omitempty"`         // the team's newest event, when the chain holds
	FirstBroken *Break `json:"first_broken,omitempty"` // the first broken link, when it does not
}

// VerifyOptions refine a verification.
type VerifyOptions struct {
	// Head, when set, is a head an earlier verification reported, kept elsewhere: it must
	// still be in the trail with the same hash. Without it, removing the newest events leaves
	// a chain that holds (see Verify).
	Head *Link
}

// verifyPage is how many events a verification reads at a time.
const verifyPage = 1000

// Verify walks the whole chain and returns an error wrapping ErrBroken and the first *Break
// if an event was altered, removed or inserted.
func (l *Log) Verify(ctx context.Context) error {
	r, err := l.VerifyTeam(ctx, 0, VerifyOptions{})
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%w: %w", ErrBroken, r.FirstBroken)
	}
	return nil
}

// VerifyTeam checks the hash chain end to end for a team (teamID 0: for every team) and names
// the first broken link.
//
// The chain runs through the events of every team in sequence order, so the whole of it is
// walked: an event of the team removed, inserted or moved shows as a gap or a broken link
// next to whichever event follows it. The report speaks of the team's events only: their
// count, the newest, and the first break that may concern them. An altered event of another
// team concerns only that team and is passed over; a gap or a broken link before another
// team's event is reported by sequence number and reason alone, since what was removed or
// moved may have been the team's.
//
// Sequence numbers, links and hashes catch an event altered, removed from the middle,
// inserted or reordered. Removing the newest events leaves a shorter chain that holds; it is
// caught when an audit sink acknowledged events beyond the last one, or when o.Head, a head
// reported earlier and kept elsewhere, is gone.
func (l *Log) VerifyTeam(ctx context.Context, teamID int64, o VerifyOptions) (Report, error) {
	// Read before the walk: every event a sink had acknowledged by then must be met in it,
	// while events written (and acknowledged) during the walk need not be.
	acked, err := l.db.MaxAuditSinkCursor(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: %w", err)
	}
	var rep Report
	var prev store.AuditEvent // the event before; Seq 0 and no hash before the first
	var head *Link
	headSeen := false
	for {
		rows, err := l.db.AllAuditEvents(ctx, prev.Seq, verifyPage)
		if err != nil {
			return Report{}, fmt.Errorf("audit verify: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			own := teamID == 0 || r.TeamID == teamID
			if b := l.checkLink(prev, r, own); b != nil {
				rep.FirstBroken = b
				return rep, nil
			}
			if o.Head != nil && r.Seq == o.Head.Seq {
				if !own || hex.EncodeToString(r.Hash) != o.Head.ID {
					rep.FirstBroken = headMissing(*o.Head, "is in the trail with another hash: the events from it on were removed and others written since")
					return rep, nil
				}
				headSeen = true
			}
			if own {
				rep.Events++
				head = &Link{Seq: r.Seq, ID: hex.EncodeToString(r.Hash)}
			}
			prev = r
		}
	}
	if o.Head != nil && !headSeen {
		rep.FirstBroken = headMissing(*o.Head, "is no longer in the trail: the newest events were removed")
		return rep, nil
	}
	if acked > prev.Seq {
		rep.FirstBroken = &Break{Seq: prev.Seq + 1, Reason: TailTruncated,
			Message: fmt.Sprintf("an audit sink acknowledged events up to %d, but the trail ends at %d: the newest events were removed", acked, prev.Seq)}
		return rep, nil
	}
	rep.OK, rep.Head = true, head
	return rep, nil
}

// checkLink checks event r against prev, the event before it: the sequence number, the link
// and the hash. own says whether r is the caller's to see: otherwise its id is left out, and
// an altered event is not the caller's concern.
func (l *Log) checkLink(prev, r store.AuditEvent, own bool) *Break {
	b := &Break{Seq: r.Seq}
	if own {
		b.ID = hex.EncodeToString(r.Hash)
	}
	switch {
	case r.Seq != prev.Seq+1:
		b.Reason = SequenceGap
		if r.Seq == prev.Seq+2 {
			b.Message = fmt.Sprintf("event %d is missing: it was removed", prev.Seq+1)
		} else {
			b.Message = fmt.Sprintf("events %d to %d are missing: they were removed", prev.Seq+1, r.Seq-1)
		}
	case !hmac.Equal(r.PrevHash, prev.Hash):
		b.Reason = LinkMismatch
		b.Message = fmt.Sprintf("event %d does not follow event %d: an event was inserted or events were reordered", r.Seq, prev.Seq)
	case !hmac.Equal(r.Hash, l.chainHash(r)):
		if !own {
			return nil // another team's event was altered: its own verification says so
		}
		b.Reason = HashMismatch
		b.Message = fmt.Sprintf("event %d does not match its hash: it was altered", r.Seq)
	default:
		return nil
	}
	if !own {
		b.Message += " (the event is another team's; what is missing or moved may be this team's)"
	}
	return b
}

func headMissing(h Link, what string) *Break {
	return &Break{Seq: h.Seq, ID: h.ID, Reason: HeadMissing, Message: fmt.Sprintf("the head given, event %d, %s", h.Seq, what)}
}
