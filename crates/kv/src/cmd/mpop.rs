//! LMPOP and the argument parsing the multi-key pops share (Redis 7.0's
//! `lmpopGenericCommand` in `t_list.c` and `zmpopGenericCommand` in
//! `t_zset.c`): `numkeys key [key …] LEFT|RIGHT|MIN|MAX [COUNT count]`,
//! after BLMPOP's and BZMPOP's timeout. ZMPOP's pop is in `zsets`; the
//! blocking forms in `blocking`.

use super::lists::list_mut;
use super::{put_back, Exec, SYNTAX, WRONGTYPE};
use crate::entry::Kind;
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk, write_null_array};
use crate::store::Store;

/// A parsed multi-key pop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mpop<'a> {
    pub keys: Vec<&'a [u8]>,
    /// LEFT (lists) or MIN (sorted sets).
    pub first_end: bool,
    /// COUNT, 1 if not given.
    pub count: u64,
}

/// Parses `argv[numkeys_at..]` as Redis does, in its order: numkeys, the
/// end (`LEFT`/`RIGHT` for lists, `MIN`/`MAX` for sorted sets), COUNT.
/// The error is the reply.
pub fn parse<'a>(argv: &[&'a [u8]], numkeys_at: usize, list: bool) -> Result<Mpop<'a>, &'static [u8]> {
    let numkeys = match argv.get(numkeys_at).and_then(|n| parse_i64(n)) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err(b"ERR numkeys should be greater than 0"),
    };
    let end_at = match usize::try_from(numkeys).ok().and_then(|n| n.checked_add(numkeys_at + 1)) {
        Some(w) if w < argv.len() => w,
        _ => return Err(SYNTAX),
    };
    let (first, last): (&[u8], &[u8]) = if list { (b"left", b"right") } else { (b"min", b"max") };
    let first_end = match argv[end_at] {
        w if w.eq_ignore_ascii_case(first) => true,
        w if w.eq_ignore_ascii_case(last) => false,
        _ => return Err(SYNTAX),
    };
    let mut count = None;
    let mut j = end_at + 1;
    while j < argv.len() {
        if count.is_none() && argv[j].eq_ignore_ascii_case(b"count") && j + 1 < argv.len() {
            match parse_i64(argv[j + 1]) {
                Some(n) if n >= 1 => count = Some(n as u64),
                _ => return Err(b"ERR count should be greater than 0"),
            }
            j += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok(Mpop { keys: argv[numkeys_at + 1..end_at].to_vec(), first_end, count: count.unwrap_or(1) })
}

/// LMPOP numkeys key [key …] LEFT|RIGHT [COUNT count]
pub fn lmpop(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match parse(argv, 1, true) {
        Ok(m) => pop_list(store, x, &m),
        Err(e) => x.err(e),
    }
}

/// Redis's `mpopGenericCommand`: pops up to `count` elements from the
/// first of the keys that exists (WRONGTYPE if it is not a list), replying
/// [key, [element, …]], or a null array when none exists.
pub fn pop_list(store: &mut Store, x: &mut Exec, m: &Mpop) {
    for key in &m.keys {
        match store.get(key, x.clock) {
            None => continue,
            Some(e) if e.kind() != Kind::List => return x.err(WRONGTYPE),
            Some(_) => {}
        }
        let mut e = store.take(key, x.clock).expect("a live list, seen above");
        let l = list_mut(&mut e);
        let n = m.count.min(l.len() as u64) as usize;
        write_array_len(x.out, 2);
        write_bulk(x.out, key);
        write_array_len(x.out, n);
        for _ in 0..n {
            let v = if m.first_end { l.pop_front() } else { l.pop_back() };
            write_bulk(x.out, &v.expect("n <= len"));
        }
        return put_back(store, e);
    }
    write_null_array(x.out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<&[u8]> {
        line.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn arguments_are_checked_in_redis_order() {
        let a = argv("lmpop 2 a b RIGHT COUNT 3");
        assert_eq!(parse(&a, 1, true), Ok(Mpop { keys: vec![b"a", b"b"], first_end: false, count: 3 }));
        let a = argv("bzmpop 0 1 z min");
        assert_eq!(parse(&a, 2, false), Ok(Mpop { keys: vec![b"z"], first_end: true, count: 1 }));
        let err = |line: &str, at: usize, list: bool| parse(&argv(line), at, list).unwrap_err();
        assert_eq!(err("lmpop 0 a LEFT", 1, true), b"ERR numkeys should be greater than 0");
        assert_eq!(err("lmpop x a LEFT", 1, true), b"ERR numkeys should be greater than 0");
        assert_eq!(err("lmpop 3 a LEFT", 1, true), SYNTAX);
        assert_eq!(err("lmpop 9223372036854775807 a LEFT", 1, true), SYNTAX);
        assert_eq!(err("lmpop 1 a MIN", 1, true), SYNTAX);
        assert_eq!(err("zmpop 1 a LEFT", 1, false), SYNTAX);
        assert_eq!(err("lmpop 1 a LEFT COUNT 0", 1, true), b"ERR count should be greater than 0");
        assert_eq!(err("lmpop 1 a LEFT COUNT 1 COUNT 1", 1, true), SYNTAX);
        assert_eq!(err("lmpop 1 a LEFT COUNT", 1, true), SYNTAX);
    }
}
