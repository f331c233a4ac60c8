package audit

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
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

// Link names one event of the chain: its sequence number in the vault-wide trail and its hash
// (hex), the event's id: its team hash in a team chain's report, its vault-wide hash in the
// vault chain's. TeamSeq is its place in its team's chain.
type Link struct {
	Seq     int64  `json:"seq"`
	ID      string `json:"id"`
	TeamSeq int64  `json:"team_seq,omitempty"`
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

// String writes the link as SEQ:ID, as ParseLink reads it (without TeamSeq).
func (l Link) String() string { return strconv.FormatInt(l.Seq, 10) + ":" + l.ID }

// Break is the first broken link of the chain that a verification found.
type Break struct {
	Seq     int64  `json:"seq"`                // the event where the chain breaks (vault-wide number; 0 when unknown)
	TeamSeq int64  `json:"team_seq,omitempty"` // its place in the team's chain, when it is the team's own event
	ID      string `json:"id,omitempty"`       // its hash (hex), when it is the team's own event
	Reason  string `json:"reason"`             // HashMismatch, SequenceGap, LinkMismatch, TailTruncated, HeadMissing
	Message string `json:"message"`            // what is wrong, for people
}

func (b *Break) Error() string {
	if b.TeamSeq != 0 {
		return fmt.Sprintf("event %d (team event %d): %s: %s", b.Seq, b.TeamSeq, b.Reason, b.Message)
	}
	return fmt.Sprintf("event %d: %s: %s", b.Seq, b.Reason, b.Message)
}

// The chains a Report is of.
const (
	// ChainTeam is a team's own chain (VerifyTeam).
	ChainTeam = "team"
	// ChainVault is the vault-wide chain through every team's events (VerifyVault).
	ChainVault = "vault"
)

// Report is the result of verifying a team's chain, or a team's part of the vault's chain.
type Report struct {
	Chain       string `json:"chain"` // ChainTeam or ChainVault
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

// Verify walks the vault-wide chain and every team's chain, and returns an error wrapping
// ErrBroken and the first *Break if an event was altered, removed or inserted.
func (l *Log) Verify(ctx context.Context) error {
	r, err := l.VerifyVault(ctx, 0, VerifyOptions{})
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%w: %w", ErrBroken, r.FirstBroken)
	}
	teams, err := l.db.TeamNames(ctx)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	ids := slices.Sorted(maps.Keys(teams))
	for _, id := range ids {
		r, err := l.VerifyTeam(ctx, id, VerifyOptions{})
		if err != nil {
			return err
		}
		if !r.OK {
			return fmt.Errorf("%w: team %s: %w", ErrBroken, teams[id], r.FirstBroken)
		}
	}
	return nil
}

// VerifyTeam checks a team's own hash chain end to end and names the first broken link: its
// events in team_seq order, numbered 1, 2, 3, … without a gap (SequenceGap otherwise), each
// chained to the one before by its team hash (LinkMismatch; also when their vault-wide
// numbers go backwards: events reordered), each matching its hash (HashMismatch), the last
// one the team's head as the store holds it (TailTruncated when the head is further on). It
// reads only the team's events, except for the part written before team chains existed.
//
// That part (the events an upgraded vault held, whose team hash is their vault-wide hash, as
// migration 00010 back-filled them) has no team hash of its own: its events are checked
// against their vault-wide hashes, and the vault-wide chain is walked up to the team's last
// such event, as VerifyVault does.
//
// Removing the team's newest events and moving its head back leaves a shorter chain that
// holds; it is caught when an audit sink acknowledged events beyond the end of the vault's
// trail, or when o.Head, a head reported earlier and kept elsewhere, is gone.
func (l *Log) VerifyTeam(ctx context.Context, teamID int64, o VerifyOptions) (Report, error) {
	// Read before the walk: every event a sink had acknowledged by then must be in the trail.
	acked, err := l.db.MaxAuditSinkCursor(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: %w", err)
	}
	rep := Report{Chain: ChainTeam}
	var prev store.AuditEvent // the team's event before; TeamSeq 0 and no hash before the first
	var legacyUntil int64     // the vault-wide seq of the team's last event from before team chains
	headSeen := false
	var broken *Break
walk:
	for {
		rows, err := l.db.TeamAuditEvents(ctx, teamID, prev.TeamSeq, verifyPage)
		if err != nil {
			return Report{}, fmt.Errorf("audit verify: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			legacy, b := l.checkTeamLink(prev, r, legacyUntil)
			if b != nil {
				broken = b
				break walk
			}
			if legacy {
				legacyUntil = r.Seq
			}
			if o.Head != nil && r.Seq == o.Head.Seq {
				if id := o.Head.ID; id != hex.EncodeToString(r.TeamHash) && id != hex.EncodeToString(r.Hash) {
					broken = headMissing(*o.Head, "is in the team's trail with another hash: the events from it on were removed and others written since")
					break walk
				}
				headSeen = true
			}
			rep.Events++
			prev = r
		}
	}
	// The part from before team chains: its links are those of the vault-wide chain. A break
	// there comes before any the team walk found.
	if legacyUntil > 0 {
		v, err := l.walkVault(ctx, teamID, legacyUntil, VerifyOptions{})
		if err != nil {
			return Report{}, err
		}
		if v.FirstBroken != nil && (broken == nil || broken.Seq == 0 || v.FirstBroken.Seq <= broken.Seq) {
			v.Chain = ChainTeam
			return v, nil
		}
	}
	if broken != nil {
		rep.FirstBroken = broken
		return rep, nil
	}
	if o.Head != nil && !headSeen {
		rep.FirstBroken = headMissing(*o.Head, "is no longer in the team's trail: the newest events were removed")
		return rep, nil
	}
	stored, err := l.db.TeamAuditHead(ctx, teamID)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: %w", err)
	}
	switch {
	case stored.Seq > prev.TeamSeq:
		rep.FirstBroken = &Break{TeamSeq: prev.TeamSeq + 1, Reason: TailTruncated,
			Message: fmt.Sprintf("the team's chain head is team event %d, but its events end at %d: the newest events were removed", stored.Seq, prev.TeamSeq)}
		return rep, nil
	case stored.Seq < prev.TeamSeq || !hmac.Equal(stored.Hash, prev.TeamHash):
		what := fmt.Sprintf("the team's chain head is team event %d", stored.Seq)
		if stored.Seq == prev.TeamSeq {
			what = "the team's chain head holds another hash for it"
		}
		rep.FirstBroken = &Break{Seq: prev.Seq, TeamSeq: prev.TeamSeq, ID: hex.EncodeToString(prev.TeamHash), Reason: LinkMismatch,
			Message: fmt.Sprintf("the team's newest event is team event %d, but %s: the chain or its head was changed", prev.TeamSeq, what)}
		return rep, nil
	}
	if acked > 0 {
		last, err := l.db.LastAuditSeq(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("audit verify: %w", err)
		}
		if acked > last {
			rep.FirstBroken = &Break{Seq: last + 1, Reason: TailTruncated,
				Message: fmt.Sprintf("an audit sink acknowledged events up to %d, but the trail ends at %d: the newest events were removed", acked, last)}
			return rep, nil
		}
	}
	rep.OK = true
	if prev.TeamSeq > 0 {
		rep.Head = &Link{Seq: prev.Seq, ID: hex.EncodeToString(prev.TeamHash), TeamSeq: prev.TeamSeq}
	}
	return rep, nil
}

// checkTeamLink checks event r of a team's chain against prev, the team's event before it. It
// reports whether r is from before team chains (its team hash is its vault-wide hash; only
// events before any with a team hash of its own may be), whose link the vault-wide chain
// vouches for.
func (l *Log) checkTeamLink(prev, r store.AuditEvent, legacyUntil int64) (legacy bool, b *Break) {
	b = &Break{Seq: r.Seq, TeamSeq: r.TeamSeq, ID: hex.EncodeToString(r.TeamHash)}
	prevHash := prev.TeamHash
	if prevHash == nil {
		prevHash = []byte{}
	}
	stillLegacy := prev.TeamSeq == 0 || legacyUntil == prev.Seq
	switch {
	case r.TeamSeq != prev.TeamSeq+1:
		b.Reason = SequenceGap
		if r.TeamSeq == prev.TeamSeq+2 {
			b.Message = fmt.Sprintf("team event %d is missing: it was removed", prev.TeamSeq+1)
		} else {
			b.Message = fmt.Sprintf("team events %d to %d are missing: they were removed", prev.TeamSeq+1, r.TeamSeq-1)
		}
	case prev.TeamSeq > 0 && r.Seq <= prev.Seq:
		b.Reason = LinkMismatch
		b.Message = fmt.Sprintf("team event %d (event %d) comes before team event %d (event %d) in the trail: events were reordered",
			r.TeamSeq, r.Seq, prev.TeamSeq, prev.Seq)
	case !hmac.Equal(r.TeamPrevHash, prevHash):
		b.Reason = LinkMismatch
		b.Message = fmt.Sprintf("team event %d does not follow team event %d: an event was inserted or events were reordered", r.TeamSeq, prev.TeamSeq)
	case hmac.Equal(r.TeamHash, l.teamChainHash(r)):
		return false, nil
	case stillLegacy && len(r.TeamHash) > 0 && hmac.Equal(r.TeamHash, r.Hash) && hmac.Equal(r.Hash, l.chainHash(r)):
		return true, nil
	default:
		b.Reason = HashMismatch
		b.Message = fmt.Sprintf("team event %d (event %d) does not match its hash: it was altered", r.TeamSeq, r.Seq)
	}
	return false, b
}

// VerifyVault checks the vault-wide hash chain end to end for a team (teamID 0: for every
// team) and names the first broken link.
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
func (l *Log) VerifyVault(ctx context.Context, teamID int64, o VerifyOptions) (Report, error) {
	return l.walkVault(ctx, teamID, 0, o)
}

// walkVault is VerifyVault; with until > 0 it walks the events up to seq until only, as the
// start of a team's chain, and checks no tail.
func (l *Log) walkVault(ctx context.Context, teamID, until int64, o VerifyOptions) (Report, error) {
	// Read before the walk: every event a sink had acknowledged by then must be met in it,
	// while events written (and acknowledged) during the walk need not be.
	acked, err := l.db.MaxAuditSinkCursor(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: %w", err)
	}
	rep := Report{Chain: ChainVault}
	var prev store.AuditEvent // the event before; Seq 0 and no hash before the first
	var head *Link
	headSeen := false
walk:
	for {
		rows, err := l.db.AllAuditEvents(ctx, prev.Seq, verifyPage)
		if err != nil {
			return Report{}, fmt.Errorf("audit verify: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			if until > 0 && r.Seq > until {
				break walk
			}
			own := teamID == 0 || r.TeamID == teamID
			if b := l.checkLink(prev, r, own); b != nil {
				rep.FirstBroken = b
				return rep, nil
			}
			if o.Head != nil && r.Seq == o.Head.Seq {
				if id := o.Head.ID; !own || id != hex.EncodeToString(r.Hash) && id != hex.EncodeToString(r.TeamHash) {
					rep.FirstBroken = headMissing(*o.Head, "is in the trail with another hash: the events from it on were removed and others written since")
					return rep, nil
				}
				headSeen = true
			}
			if own {
				rep.Events++
				head = &Link{Seq: r.Seq, ID: hex.EncodeToString(r.Hash), TeamSeq: r.TeamSeq}
			}
			prev = r
		}
	}
	if until > 0 {
		if prev.Seq < until {
			rep.FirstBroken = &Break{Seq: prev.Seq + 1, Reason: SequenceGap,
				Message: fmt.Sprintf("events %d to %d are missing: they were removed", prev.Seq+1, until)}
		}
		return rep, nil
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
		b.ID, b.TeamSeq = hex.EncodeToString(r.Hash), r.TeamSeq
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
