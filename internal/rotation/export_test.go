package rotation

import "context"

// ExecuteTo executes a run whose only step is a committed move to the given state, the way
// a bug would take an edge the machine does not declare.
func (e *Engine) ExecuteTo(ctx context.Context, id string, to State) error {
	return e.executeWith(ctx, id, func(j *job, ctx context.Context) error { return j.commitTo(ctx, to, nil) })
}
