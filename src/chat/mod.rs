//! The pure domain: the conversation state machine, the flow interpreter and routing.
//! No clock (callers pass `now`), no I/O, no async.
