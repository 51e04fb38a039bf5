//! [`Bytes`]: a key, field, member or value, owned. A leaf, so the value
//! types (`zset`, `stream`) and `entry` can all name it.

/// An owned byte string, as short as it can be (no capacity word).
pub type Bytes = Box<[u8]>;
