package rotation

import "context"

// ExecuteTo executes a run whose only step is a committed move to the given state, the way
// a bug would take an edge the machine does not declare. The engine need not be started: it
// takes over the runs its node name holds, and claims the free ones, first.
func (e *Engine) ExecuteTo(ctx context.Context, id string, to State) error {
	e.mu.Lock()
	if e.runCtx == nil {
		e.runCtx, e.cancel = context.WithCancel(ctx)
	}
	e.mu.Unlock()
	e.drop(id) // an earlier call's hold
	if err := e.takeOver(ctx); err != nil {
		return err
	}
	if err := e.claim(ctx); err != nil {
		return err
	}
	return e.executeWith(ctx, id, func(j *job, ctx context.Context) error { return j.commitTo(ctx, to, nil) })
}
