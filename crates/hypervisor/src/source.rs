//! Replay mode: where the gate takes its events ([`EventSource`]) and what
//! a source hands it ([`Next`]), which may be a world to go live in. Above
//! `world`; the events themselves are `event`'s.

use crate::world::LiveWorld;

/// Replay mode: where the gate takes the next recorded event.
pub trait EventSource: Send {
    /// Blocks until the next event is available, the replica must go live,
    /// or the log ends.
    fn next(&mut self) -> Next;

    /// What the replayed guest wrote to its stdout (`stderr` false) or
    /// stderr, as it writes it; the bytes are in the outputs digest either
    /// way. By default dropped, as a backup's outputs are; a standalone
    /// replay shows them when asked (`understudy replay --show-output`).
    fn console(&mut self, _stderr: bool, _bytes: &[u8]) {}
}

/// What an [`EventSource`] hands the gate.
pub enum Next {
    Event(Vec<u8>),
    /// The primary is gone and everything it logged has been replayed: switch
    /// to record mode in this world. Connections of the old primary are reset.
    GoLive(LiveWorld),
    /// End of a recorded log (standalone replay).
    End,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Next::Event(e) => write!(f, "Event({} bytes)", e.len()),
            Next::GoLive(_) => write!(f, "GoLive"),
            Next::End => write!(f, "End"),
        }
    }
}

/// A source that replays a list of events, then hands out `then` (End by default).
pub struct VecSource {
    events: std::collections::VecDeque<Vec<u8>>,
    then: Option<Next>,
}

impl VecSource {
    pub fn new(events: Vec<Vec<u8>>) -> Self {
        VecSource { events: events.into(), then: None }
    }

    /// After the events, go live in `world`.
    pub fn then_go_live(mut self, world: LiveWorld) -> Self {
        self.then = Some(Next::GoLive(world));
        self
    }
}

impl EventSource for VecSource {
    fn next(&mut self) -> Next {
        match self.events.pop_front() {
            Some(e) => Next::Event(e),
            None => self.then.take().unwrap_or(Next::End),
        }
    }
}
