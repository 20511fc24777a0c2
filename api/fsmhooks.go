package api

import "github.com/lonelypsd/lonelypsd/fsm"

// The state machine's per-URL cap and its refusal of malformed commands,
// kept in one place: each function is one line once fsm has the field,
// outcome and error it names.

// withPerURLCap puts the per-URL cap into a subscribe or set_subscriptions
// command (fsm.Command.MaxPerURL).
func withPerURLCap(cmd fsm.Command, limit int) fsm.Command {
	// Once fsm.Command has MaxPerURL: cmd.MaxPerURL = limit
	_ = limit
	return cmd
}

// isTooMany reports the outcome of a subscribe that would pass the per-URL
// cap (fsm.TooMany).
func isTooMany(o fsm.Outcome) bool {
	// Once fsm has the outcome: return o == fsm.TooMany
	_ = o
	return false
}

// isInvalidCommand reports a command the state machine refused as
// malformed (an error wrapping fsm.ErrInvalidCommand): the client's fault.
func isInvalidCommand(err error) bool {
	// Once fsm has the error: return errors.Is(err, fsm.ErrInvalidCommand)
	_ = err
	return false
}
