//! [`Dispatch`]: what a front end does with a command the session
//! dispatched (shared by `session` and the exactly-once commands).

/// What the node does with a dispatched command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// The reply is already in `out` and depends on no replicated state
    /// (PING, ECHO, errors, QUEUED, +OK for MULTI…).
    Done,
    /// A read: the caller runs `kv.read_argv(now_ms, argv, out)` (argv unchanged), or encodes argv with `op::encode_query` for `StateMachine::read`.
    Read,
    /// A write: `op` holds the encoded op; the caller logs it and runs
    /// `kv.apply(ctx, op, out)`.
    Write,
    /// INFO, ROLE, WAIT (arguments checked), LASTSAVE: the caller answers from the
    /// node's replication state (see `Kv::info_keyspace` for INFO's
    /// keyspace section).
    Status,
    /// QUIT: `out` holds +OK; close after writing it.
    Close,
    /// WATCH, or EXEC after WATCH: they need the keyspace as the primary
    /// holds it now. The caller calls `Session::keyspace` with the machine
    /// and acts on the `Dispatch` it returns.
    Keyspace,
    /// SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBSUB (arguments
    /// checked): the node's subscriber registry answers; nothing is logged.
    PubSub,
    /// The reply is in `out` but tells of the replicated state (an EXEC
    /// aborted because a watched key changed): it leaves only once
    /// everything logged before it is acknowledged, like a read's reply.
    Gated,
}
