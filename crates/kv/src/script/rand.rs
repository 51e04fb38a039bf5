//! Redis's `rand48.c`: the generator behind `math.random` in scripts.
//!
//! Redis 7.0 replaces Lua's `math.random` and `math.randomseed` with its
//! own, on the 48-bit linear congruential generator of `drand48`
//! (X ← a·X + c mod 2⁴⁸, a = 0x5DEECE66D, c = 0xB). Redis never seeds it
//! at startup, so it starts at the generator's built-in state
//! 0x1234ABCD330E, and 7.0 no longer reseeds it before each script: the
//! sequence runs on across scripts (and across SCRIPT FLUSH) until a
//! script calls `math.randomseed`. Checked against redis-server 7.0.15.
//!
//! Here the state is part of the replicated state of `Kv` (in snapshots
//! and the digest), so `math.random` in a write script draws the same
//! numbers on both replicas.

/// The state Redis starts with (`x[] = { X0, X1, X2 }` of rand48.c).
pub const INITIAL: u64 = 0x1234_ABCD_330E;

const A: u64 = 0x5_DEEC_E66D;
const C: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;
/// `REDIS_LRAND48_MAX`.
const LRAND48_MAX: i64 = i32::MAX as i64;

/// `redisLrand48`: advances `state` and returns its top 31 bits.
pub fn lrand48(state: &mut u64) -> i32 {
    *state = (A.wrapping_mul(*state).wrapping_add(C)) & MASK;
    (*state >> 17) as i32
}

/// `redisSrand48(seed)`: X = seed's 32 bits above 0x330E.
pub fn srand48(state: &mut u64, seed: i32) {
    *state = ((u64::from(seed as u32)) << 16) | 0x330E;
}

/// The `r` of Redis's `redis_math_random`: a number in [0, 1).
pub fn random_unit(state: &mut u64) -> f64 {
    (i64::from(lrand48(state)) % LRAND48_MAX) as f64 / LRAND48_MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_7_0_sequences() {
        // A fresh redis-server 7.0.15: `return tostring(math.random())`, three times.
        let mut s = INITIAL;
        let got: Vec<String> = (0..3).map(|_| format!("{:.14}", random_unit(&mut s))).collect();
        assert_eq!(got, ["0.39646477363839", "0.84048536971234", "0.35333609737146"]);
        // `math.randomseed(0)` then `math.random()`; and seed 42.
        srand48(&mut s, 0);
        assert_eq!(format!("{:.14}", random_unit(&mut s)), "0.17082803611217");
        srand48(&mut s, 42);
        assert_eq!(format!("{:.14}", random_unit(&mut s)), "0.74452500033403");
        assert_eq!(format!("{:.14}", random_unit(&mut s)), "0.34270147855519");
    }
}
