//! SORT and SORT_RO (Redis 7.0's `sort.c`): the elements of a list or set,
//! sorted by their value as a `double` (ties by their bytes), or with ALPHA
//! as strings (compared as in the C locale), or by the values of other keys
//! (`BY pattern`, `*` standing for the element, `->field` reading a hash
//! field), or not at all (`BY nosort`, any pattern without `*`); then
//! LIMIT, and GET patterns (`#` is the element itself). SORT … STORE
//! replaces the destination with a list of the result.
//!
//! Orders Redis leaves to its hash table are fixed here so that both
//! replicas reply alike: the elements of a set come in ascending order
//! (numerically for an intset, as Redis iterates those, else by bytes), and
//! elements that compare equal keep that order (as glibc's merge-sort
//! `qsort` keeps list order).

use std::cmp::Ordering;

use super::keyspace::c_str;
use super::{Cmd, Exec, NOT_INT, SYNTAX, WRONGTYPE};
use crate::entry::{AggVal, Bytes, Entry, ListVal};
use crate::f80::strtod;
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk, write_null};
use crate::store::Store;

/// The parsed options.
struct Options<'a> {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    store: Option<&'a [u8]>,
    by: Option<&'a [u8]>,
    dont_sort: bool,
    gets: Vec<&'a [u8]>,
}

fn options<'a>(x: &mut Exec, argv: &[&'a [u8]], readonly: bool) -> Option<Options<'a>> {
    let mut o = Options { desc: false, alpha: false, limit: (0, -1), store: None, by: None, dont_sort: false, gets: Vec::new() };
    let mut j = 2;
    while j < argv.len() {
        let (arg, left) = (argv[j], argv.len() - j - 1);
        let is = |name: &str| arg.eq_ignore_ascii_case(name.as_bytes());
        if is("asc") {
            o.desc = false;
        } else if is("desc") {
            o.desc = true;
        } else if is("alpha") {
            o.alpha = true;
        } else if is("limit") && left >= 2 {
            let (Some(start), Some(count)) = (parse_i64(argv[j + 1]), parse_i64(argv[j + 2])) else {
                x.err(NOT_INT);
                return None;
            };
            o.limit = (start, count);
            j += 2;
        } else if !readonly && is("store") && left >= 1 {
            o.store = Some(argv[j + 1]);
            j += 1;
        } else if is("by") && left >= 1 {
            o.by = Some(argv[j + 1]);
            // A constant pattern: nothing to sort by.
            o.dont_sort = !c_str(argv[j + 1]).contains(&b'*');
            j += 1;
        } else if is("get") && left >= 1 {
            o.gets.push(argv[j + 1]);
            j += 1;
        } else {
            x.err(SYNTAX);
            return None;
        }
        j += 1;
    }
    Some(o)
}

/// Redis's `lookupKeyByPattern`: the string (or, with `->field`, the hash
/// field) named by `pattern` with its first `*` replaced by `elem`; `#` is
/// `elem` itself; a pattern without `*` names nothing.
fn by_pattern<'s>(store: &'s Store, x: &mut Exec, pattern: &[u8], elem: &'s [u8]) -> Option<&'s [u8]> {
    let spat = c_str(pattern);
    if spat == b"#" {
        return Some(elem);
    }
    let star = spat.iter().position(|&b| b == b'*')?;
    let arrow = spat[star + 1..].windows(2).position(|w| w == b"->").map(|i| star + 1 + i);
    // `->` at the very end is part of the key name.
    let field = arrow.filter(|&f| f + 2 < spat.len()).map(|f| (f, &pattern[f + 2..]));
    let postfix_end = field.map_or(pattern.len(), |(f, _)| f);
    let mut key = Vec::with_capacity(pattern.len() + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(&pattern[star + 1..postfix_end]);
    let e = store.get(&key, x.clock)?;
    match (field, e.agg()) {
        (Some((_, name)), Some(AggVal::Hash(h))) => h.get(name).map(|v| &v[..]),
        (None, _) => e.str_value(),
        _ => None,
    }
}

/// Redis's numeric score of a value: `strtod` on its C string, which must
/// be all number (leading blanks allowed, the empty string is 0), not NaN
/// and without a range error.
fn score(v: &[u8]) -> Option<f64> {
    let s = c_str(v);
    if s.is_empty() {
        return Some(0.0);
    }
    match strtod(s)? {
        (f, false) => Some(f),
        (_, true) => None,
    }
}

/// `strcoll` in the C locale: bytes up to the first NUL.
fn coll(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// The elements to sort (`None`: the key holds another type), in the
/// order Redis would iterate them.
fn elements(e: Option<&Entry>) -> Option<Vec<&[u8]>> {
    let Some(e) = e else { return Some(Vec::new()) };
    match e.agg()? {
        AggVal::List(l) => Some(l.iter().map(|i| &i[..]).collect()),
        AggVal::Set(s) => {
            let mut v: Vec<&[u8]> = s.iter().map(|m| &m[..]).collect();
            if e.is_big() {
                v.sort_unstable();
            } else {
                v.sort_unstable_by_key(|m| parse_i64(m).expect("an intset holds integers"));
            }
            Some(v)
        }
        // In score order, as Redis iterates a sorted set.
        AggVal::Zset(z) => Some(z.iter().map(|(_, m)| &m[..]).collect()),
        AggVal::Hash(_) | AggVal::Stream(_) => None,
    }
}

/// An element with what it is sorted by: the value its BY pattern named
/// (for ALPHA), and its numeric score.
struct Keyed<'s> {
    elem: &'s [u8],
    by: Option<&'s [u8]>,
    score: f64,
}

/// What a sort produced: the reply elements (null for a GET that found
/// nothing) and where to store them.
struct Sorted<'s> {
    out: Vec<Option<&'s [u8]>>,
    store: Option<&'s [u8]>,
}

/// Runs everything but the reply or the store; `None` after an error reply.
fn run<'s>(store: &'s Store, x: &mut Exec, argv: &[&'s [u8]], readonly: bool) -> Option<Sorted<'s>> {
    let mut o = options(x, argv, readonly)?;
    let entry = store.get(argv[1], x.clock);
    let Some(mut elems) = elements(entry) else {
        x.err(WRONGTYPE);
        return None;
    };
    let is_set = matches!(entry.and_then(Entry::agg), Some(AggVal::Set(_)));
    if o.dont_sort && is_set && o.store.is_some() {
        // A stored result must not depend on a set's internal order.
        (o.dont_sort, o.alpha, o.by) = (false, true, None);
    }
    // Redis's LIMIT arithmetic, clamped into the elements.
    let len = elems.len() as i64;
    let start = o.limit.0.clamp(0, len);
    let count = o.limit.1.clamp(-1, len);
    let (mut start, mut end) = (start, if count < 0 { len - 1 } else { start + count - 1 });
    if start >= len {
        (start, end) = (len - 1, len - 2);
    }
    end = end.min(len - 1);
    if o.dont_sort && !is_set && o.desc {
        // Without sorting, DESC reads a list from its tail.
        elems.reverse();
    }
    if !o.dont_sort {
        let mut failed = false;
        let mut keyed: Vec<Keyed> = elems
            .iter()
            .map(|&e| {
                let by = match o.by {
                    Some(p) => by_pattern(store, x, p, e),
                    None => Some(e),
                };
                let s = match (o.alpha, by) {
                    (false, Some(v)) => score(v).unwrap_or_else(|| {
                        failed = true;
                        0.0
                    }),
                    _ => 0.0,
                };
                Keyed { elem: e, by, score: s }
            })
            .collect();
        if failed {
            x.err(b"ERR One or more scores can't be converted into double");
            return None;
        }
        let binary = o.store.is_some();
        keyed.sort_by(|a, b| {
            let cmp = match (o.alpha, o.by.is_some()) {
                (false, _) => a.score.partial_cmp(&b.score).expect("no NaN scores").then_with(|| a.elem.cmp(b.elem)),
                (true, true) => match (a.by, b.by) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) if binary => x.cmp(y),
                    (Some(x), Some(y)) => coll(x, y),
                },
                (true, false) if binary => a.elem.cmp(b.elem),
                (true, false) => coll(a.elem, b.elem),
            };
            if o.desc {
                cmp.reverse()
            } else {
                cmp
            }
        });
        elems = keyed.into_iter().map(|k| k.elem).collect();
    }
    let mut out = Vec::new();
    if start <= end {
        for &e in &elems[start as usize..=end as usize] {
            if o.gets.is_empty() {
                out.push(Some(e));
            }
            for g in &o.gets {
                out.push(by_pattern(store, x, g, e));
            }
        }
    }
    Some(Sorted { out, store: o.store })
}

/// SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...]
/// [ASC|DESC] [ALPHA]
pub fn sort_ro(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    if let Some(sorted) = run(store, x, argv, true) {
        reply(x, &sorted.out);
    }
}

fn reply(x: &mut Exec, out: &[Option<&[u8]>]) {
    write_array_len(x.out, out.len());
    for v in out {
        match v {
            Some(v) => write_bulk(x.out, v),
            None => write_null(x.out),
        }
    }
}

/// SORT key … [STORE destination]: with STORE, the destination becomes a
/// list of the result (a GET that found nothing stores an empty string),
/// without expiry, or is deleted if the result is empty.
pub fn sort(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    debug_assert_eq!(cmd, Cmd::Sort);
    let (dest, list): (Bytes, ListVal) = {
        let Some(sorted) = run(store, x, argv, false) else { return };
        let Some(dest) = sorted.store else { return reply(x, &sorted.out) };
        (dest.into(), sorted.out.iter().map(|v| Bytes::from(v.unwrap_or_default())).collect())
    };
    let n = list.len();
    if n == 0 {
        store.take_any(&dest);
    } else {
        store.put(Entry::aggregate(&dest, None, AggVal::List(list)));
    }
    x.int(n as i64);
}
