//! The object every key is checked against: a register that is also a
//! counter, as Redis strings holding integers are.

use crate::history::{OpKind, Outcome, Value};

/// The register's value; `None` is nil (the key does not exist).
pub type State = Option<Value>;

/// The state after applying `kind` to `state`, if the op's `outcome` is
/// possible in `state`; `None` if it is not (the op cannot be linearized
/// here). An unknown op observed nothing, so only its effect counts.
pub fn step(state: State, kind: OpKind, outcome: Outcome) -> Option<State> {
    match (kind, outcome) {
        (_, Outcome::Fail) => Some(state),
        (OpKind::Get, Outcome::Ok(read)) => (read == state).then_some(state),
        (OpKind::Get, Outcome::Unknown) => Some(state),
        (OpKind::Set(v), _) => Some(Some(v)),
        // INCR of a value at i64::MAX is an error in Redis: no effect, so an
        // unknown INCR there can only be "never".
        (OpKind::Incr, Outcome::Unknown) => state.unwrap_or(0).checked_add(1).map(Some),
        (OpKind::Incr, Outcome::Ok(seen)) => {
            let next = state.unwrap_or(0).checked_add(1)?;
            (seen == Some(next)).then_some(Some(next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_counter() {
        assert_eq!(step(None, OpKind::Get, Outcome::Ok(None)), Some(None));
        assert_eq!(step(Some(1), OpKind::Get, Outcome::Ok(None)), None);
        assert_eq!(step(Some(1), OpKind::Set(4), Outcome::Ok(None)), Some(Some(4)));
        assert_eq!(step(None, OpKind::Incr, Outcome::Ok(Some(1))), Some(Some(1)));
        assert_eq!(step(Some(4), OpKind::Incr, Outcome::Ok(Some(4))), None);
        assert_eq!(step(Some(4), OpKind::Incr, Outcome::Unknown), Some(Some(5)));
        assert_eq!(step(Some(Value::MAX), OpKind::Incr, Outcome::Unknown), None);
    }
}
