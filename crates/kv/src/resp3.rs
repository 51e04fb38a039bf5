//! RESP3 for clients that ask for it (`HELLO 3`): modern client libraries
//! (redis-py 8 among them) speak RESP3 by default and do not fall back.
//!
//! Replies are produced in RESP2 by the commands (and replicated as such);
//! a RESP3 connection gets them converted on the way out: nulls become `_`,
//! and the replies Redis 7 types as maps or sets get those headers. The
//! conversion is a function of the command, so it is the same whatever
//! produced the reply (a read, a logged write, a transaction).
//!
//! Sorted sets' scores are bulk strings in RESP2 and doubles (`,1.5`) in
//! RESP3, and their WITHSCORES replies, flat in RESP2, become arrays of
//! [member, score] pairs; which replies carry scores follows from the
//! command and its options, read here as the command reads them.

/// How a command's reply is typed in RESP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Same types as RESP2 (only nulls change).
    Plain,
    /// A flat array of alternating keys and values becomes a map.
    Map,
    /// An array becomes a set.
    Set,
    /// A flat array of alternating fields and values becomes an array of
    /// two-element arrays (HRANDFIELD … WITHVALUES).
    FieldPairs,
    /// A bulk string becomes a double (ZSCORE, ZINCRBY, ZADD … INCR).
    Double,
    /// An array of bulk strings becomes one of doubles (ZMSCORE).
    Doubles,
    /// A flat array of members and scores becomes an array of
    /// [member, score] pairs (WITHSCORES, ZPOPMIN with a count).
    Pairs,
    /// A flat array of members and scores keeps its shape, the scores
    /// become doubles (ZPOPMIN without a count, one pair of ZMPOP's).
    FlatScores,
    /// An array of [member, score] arrays: the scores become doubles.
    PairArrays,
    /// ZMPOP's [key, [[member, score], …]]: the scores become doubles.
    Popped,
    /// BZPOPMIN's [key, member, score]: the score becomes a double.
    KeyMemberScore,
    /// A bulk string becomes a verbatim text string (`=…txt:`): CLIENT
    /// LIST and INFO, MEMORY DOCTOR.
    Verbatim,
    /// ACL GETUSER's map, its flags a set.
    UserMap,
    /// An array of two-element arrays becomes a map of their elements
    /// (XREAD's streams).
    PairMap,
    /// An array of flat maps (XINFO GROUPS, XINFO CONSUMERS).
    Maps,
    /// XINFO STREAM's map, its `groups` (FULL) an array of [`Shape::XinfoGroup`].
    XinfoStream,
    /// An array of [`Shape::XinfoGroup`] maps.
    XinfoGroups,
    /// A group of XINFO STREAM FULL: a map, its `consumers` an array of maps.
    XinfoGroup,
}

/// The RESP3 shape of a command's reply, by its lowercase name.
pub fn shape_of(name: &str, argv: &[&[u8]]) -> Shape {
    match name {
        "hgetall" | "hello" => Shape::Map,
        "config" if argv.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"get")) => Shape::Map,
        "smembers" | "sinter" | "sunion" | "sdiff" => Shape::Set,
        // SPOP with a count replies a set; without, a bulk string.
        "spop" if argv.len() == 3 => Shape::Set,
        "hrandfield" if argv.len() == 4 => Shape::FieldPairs,
        // LCS … IDX replies a map; its other replies are not arrays.
        "lcs" => Shape::Map,
        // [[key, entries], …] becomes {key: entries, …}.
        "xread" | "xreadgroup" => Shape::PairMap,
        "zscore" | "zincrby" | "zadd" => Shape::Double,
        "zmscore" => Shape::Doubles,
        "zrange" | "zrangebyscore" | "zrevrangebyscore" | "zrevrange" if range_withscores(argv) => Shape::Pairs,
        "zunion" | "zinter" | "zdiff" if algebra_withscores(argv) => Shape::Pairs,
        "zrandmember" if argv.len() == 4 => Shape::Pairs,
        "zpopmin" | "zpopmax" if argv.len() == 3 => Shape::Pairs,
        "zpopmin" | "zpopmax" => Shape::FlatScores,
        "zmpop" => Shape::Popped,
        "bzpopmin" | "bzpopmax" => Shape::KeyMemberScore,
        "bzmpop" => Shape::Popped,
        "xinfo" if sub_is(argv, &["stream"]) => Shape::XinfoStream,
        "xinfo" if sub_is(argv, &["groups", "consumers"]) => Shape::Maps,
        "client" if sub_is(argv, &["list", "info"]) => Shape::Verbatim,
        "memory" if sub_is(argv, &["doctor"]) => Shape::Verbatim,
        "acl" if sub_is(argv, &["getuser"]) => Shape::UserMap,
        _ => Shape::Plain,
    }
}

fn sub_is(argv: &[&[u8]], subs: &[&str]) -> bool {
    argv.get(1).is_some_and(|s| subs.iter().any(|w| is(s, w)))
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Whether ZRANGE and its variants got WITHSCORES among the options after
/// `key min max` (a LIMIT's two numbers are not options).
fn range_withscores(argv: &[&[u8]]) -> bool {
    let mut j = 4;
    while j < argv.len() {
        if is(argv[j], "withscores") {
            return true;
        }
        j += if is(argv[j], "limit") { 3 } else { 1 };
    }
    false
}

/// Whether ZUNION, ZINTER or ZDIFF got WITHSCORES after their keys (and
/// after WEIGHTS' numbers and AGGREGATE's word).
fn algebra_withscores(argv: &[&[u8]]) -> bool {
    let numkeys = argv.get(1).and_then(|n| crate::num::parse_i64(n)).and_then(|n| usize::try_from(n).ok());
    let Some(numkeys) = numkeys else { return false };
    let mut j = numkeys.saturating_add(2);
    while j < argv.len() {
        j = match argv[j] {
            a if is(a, "withscores") => return true,
            a if is(a, "weights") => j.saturating_add(numkeys + 1),
            a if is(a, "aggregate") => j + 2,
            _ => return false,
        };
    }
    false
}

/// Appends `reply` (one complete RESP2 reply) to `out` in RESP3, typing
/// its top level by `shape`. Returns the bytes of `reply` consumed.
pub fn convert(reply: &[u8], shape: Shape, out: &mut Vec<u8>) -> usize {
    let (line, rest_at) = split_line(reply);
    match reply.first() {
        Some(b'$') if line == b"$-1" => {
            out.extend_from_slice(b"_\r\n");
            rest_at
        }
        Some(b'*') if line == b"*-1" => {
            out.extend_from_slice(b"_\r\n");
            rest_at
        }
        Some(b'$') if shape == Shape::Double => {
            let n: usize = parse(&line[1..]);
            out.push(b',');
            out.extend_from_slice(&reply[rest_at..rest_at + n]);
            out.extend_from_slice(b"\r\n");
            rest_at + n + 2
        }
        Some(b'$') if shape == Shape::Verbatim => {
            let n: usize = parse(&line[1..]);
            header(out, b'=', n + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(&reply[rest_at..rest_at + n + 2]);
            rest_at + n + 2
        }
        Some(b'$') => {
            let n: usize = parse(&line[1..]);
            let end = rest_at + n + 2;
            out.extend_from_slice(&reply[..end]);
            end
        }
        Some(b'*') => {
            let n: usize = parse(&line[1..]);
            let pairs = shape == Shape::Pairs && n.is_multiple_of(2);
            match shape {
                Shape::Map | Shape::UserMap if n.is_multiple_of(2) => header(out, b'%', n / 2),
                Shape::Set => header(out, b'~', n),
                Shape::PairMap => {
                    header(out, b'%', n);
                    let mut at = rest_at;
                    for _ in 0..n {
                        let (_, inner) = split_line(&reply[at..]);
                        at += inner;
                        at += convert(&reply[at..], Shape::Plain, out);
                        at += convert(&reply[at..], Shape::Plain, out);
                    }
                    return at;
                }
                Shape::XinfoStream | Shape::XinfoGroup if n.is_multiple_of(2) => {
                    // Typed by key: the value after `groups` or `consumers`.
                    header(out, b'%', n / 2);
                    let mut at = rest_at;
                    for _ in 0..n / 2 {
                        let key_at = at;
                        at += convert(&reply[at..], Shape::Plain, out);
                        let value = match (shape, bulk_text(&reply[key_at..at])) {
                            (Shape::XinfoStream, Some(b"groups")) => Shape::XinfoGroups,
                            (Shape::XinfoGroup, Some(b"consumers")) => Shape::Maps,
                            _ => Shape::Plain,
                        };
                        at += convert(&reply[at..], value, out);
                    }
                    return at;
                }
                Shape::FieldPairs if n.is_multiple_of(2) => {
                    header(out, b'*', n / 2);
                    let mut at = rest_at;
                    for _ in 0..n / 2 {
                        header(out, b'*', 2);
                        at += convert(&reply[at..], Shape::Plain, out);
                        at += convert(&reply[at..], Shape::Plain, out);
                    }
                    return at;
                }
                _ if pairs => header(out, b'*', n / 2),
                _ => header(out, b'*', n),
            }
            let mut at = rest_at;
            for i in 0..n {
                if pairs && i % 2 == 0 {
                    header(out, b'*', 2);
                }
                let element = match shape {
                    Shape::Doubles => Shape::Double,
                    Shape::Pairs | Shape::FlatScores if i % 2 == 1 => Shape::Double,
                    Shape::PairArrays => Shape::FlatScores,
                    Shape::Popped if i == 1 => Shape::PairArrays,
                    Shape::KeyMemberScore if i == 2 => Shape::Double,
                    Shape::UserMap if i == 1 => Shape::Set,
                    Shape::Maps => Shape::Map,
                    Shape::XinfoGroups => Shape::XinfoGroup,
                    _ => Shape::Plain,
                };
                at += convert(&reply[at..], element, out);
            }
            at
        }
        _ => {
            out.extend_from_slice(&reply[..rest_at]);
            rest_at
        }
    }
}

/// Converts the reply of EXEC: an array whose elements are the replies of
/// the queued commands, each typed by its own shape (or a null array).
pub fn convert_exec(reply: &[u8], shapes: &[Shape], out: &mut Vec<u8>) -> usize {
    let (line, rest_at) = split_line(reply);
    if reply.first() != Some(&b'*') || line == b"*-1" {
        return convert(reply, Shape::Plain, out);
    }
    let n: usize = parse(&line[1..]);
    header(out, b'*', n);
    let mut at = rest_at;
    for i in 0..n {
        at += convert(&reply[at..], shapes.get(i).copied().unwrap_or(Shape::Plain), out);
    }
    at
}

/// The text of a complete bulk string reply, `None` for anything else.
fn bulk_text(reply: &[u8]) -> Option<&[u8]> {
    let (line, at) = split_line(reply);
    (reply.first() == Some(&b'$') && line != b"$-1").then(|| &reply[at..reply.len() - 2])
}

fn header(out: &mut Vec<u8>, t: u8, n: usize) {
    out.push(t);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The first line (without CRLF) and the offset after it. Replies come from
/// our own writers: well-formed by construction.
fn split_line(b: &[u8]) -> (&[u8], usize) {
    let i = b.windows(2).position(|w| w == b"\r\n").expect("a reply line ends with CRLF");
    (&b[..i], i + 2)
}

fn parse(b: &[u8]) -> usize {
    std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).expect("a well-formed length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(r: &[u8], s: Shape) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(convert(r, s, &mut out), r.len());
        out
    }

    #[test]
    fn nulls_maps_and_sets() {
        assert_eq!(conv(b"$-1\r\n", Shape::Plain), b"_\r\n");
        assert_eq!(conv(b"*-1\r\n", Shape::Plain), b"_\r\n");
        assert_eq!(conv(b"*2\r\n$1\r\na\r\n$-1\r\n", Shape::Plain), b"*2\r\n$1\r\na\r\n_\r\n");
        assert_eq!(
            conv(b"*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n", Shape::Map),
            b"%2\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n"
        );
        assert_eq!(conv(b"*0\r\n", Shape::Map), b"%0\r\n");
        assert_eq!(conv(b"*1\r\n$1\r\na\r\n", Shape::Set), b"~1\r\n$1\r\na\r\n");
        assert_eq!(conv(b"-ERR x\r\n", Shape::Map), b"-ERR x\r\n", "errors stay errors");
        assert_eq!(conv(b":5\r\n", Shape::Plain), b":5\r\n");
        assert_eq!(
            conv(b"*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n", Shape::FieldPairs),
            b"*2\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$1\r\ng\r\n$1\r\nw\r\n"
        );
        assert_eq!(conv(b"*0\r\n", Shape::FieldPairs), b"*0\r\n");
        assert_eq!(
            conv(b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$3\r\n2.5\r\n", Shape::Pairs),
            b"*2\r\n*2\r\n$1\r\nf\r\n,1\r\n*2\r\n$1\r\ng\r\n,2.5\r\n",
            "scores become doubles"
        );
    }

    #[test]
    fn scores_become_doubles_and_pairs() {
        assert_eq!(conv(b"$3\r\n1.5\r\n", Shape::Double), b",1.5\r\n");
        assert_eq!(conv(b"$-1\r\n", Shape::Double), b"_\r\n");
        assert_eq!(conv(b":3\r\n", Shape::Double), b":3\r\n");
        assert_eq!(conv(b"*2\r\n$3\r\ninf\r\n$-1\r\n", Shape::Doubles), b"*2\r\n,inf\r\n_\r\n");
        assert_eq!(
            conv(b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$4\r\n-inf\r\n", Shape::Pairs),
            b"*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,-inf\r\n"
        );
        assert_eq!(conv(b"*2\r\n$1\r\na\r\n$1\r\n2\r\n", Shape::FlatScores), b"*2\r\n$1\r\na\r\n,2\r\n");
        assert_eq!(
            conv(b"*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n2\r\n", Shape::Popped),
            b"*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\na\r\n,2\r\n"
        );
        assert_eq!(conv(b"*-1\r\n", Shape::Popped), b"_\r\n");
    }

    #[test]
    fn xinfo_maps_are_typed_by_key() {
        // XINFO STREAM FULL: {groups: [{name, consumers: [{name, pending: []}]}]}.
        let full = b"*4\r\n$6\r\nlength\r\n:1\r\n$6\r\ngroups\r\n*1\r\n*4\r\n$4\r\nname\r\n$1\r\ng\r\n\
$9\r\nconsumers\r\n*1\r\n*4\r\n$4\r\nname\r\n$1\r\nc\r\n$7\r\npending\r\n*0\r\n";
        assert_eq!(
            conv(full, Shape::XinfoStream),
            b"%2\r\n$6\r\nlength\r\n:1\r\n$6\r\ngroups\r\n*1\r\n%2\r\n$4\r\nname\r\n$1\r\ng\r\n\
$9\r\nconsumers\r\n*1\r\n%2\r\n$4\r\nname\r\n$1\r\nc\r\n$7\r\npending\r\n*0\r\n"
        );
        // Not FULL: `groups` is a count, a missing entry a null.
        assert_eq!(
            conv(b"*4\r\n$6\r\ngroups\r\n:0\r\n$11\r\nfirst-entry\r\n$-1\r\n", Shape::XinfoStream),
            b"%2\r\n$6\r\ngroups\r\n:0\r\n$11\r\nfirst-entry\r\n_\r\n"
        );
        assert_eq!(
            conv(b"*1\r\n*4\r\n$4\r\nname\r\n$1\r\ng\r\n$3\r\nlag\r\n$-1\r\n", Shape::Maps),
            b"*1\r\n%2\r\n$4\r\nname\r\n$1\r\ng\r\n$3\r\nlag\r\n_\r\n"
        );
        assert_eq!(conv(b"-ERR no such key\r\n", Shape::XinfoStream), b"-ERR no such key\r\n");
    }

    #[test]
    fn verbatim_text_and_user_maps() {
        assert_eq!(conv(b"$3\r\na\nb\r\n", Shape::Verbatim), b"=7\r\ntxt:a\nb\r\n");
        assert_eq!(conv(b"-ERR x\r\n", Shape::Verbatim), b"-ERR x\r\n");
        assert_eq!(
            conv(b"*4\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$4\r\nkeys\r\n$0\r\n\r\n", Shape::UserMap),
            b"%2\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$4\r\nkeys\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn withscores_is_read_as_the_commands_read_it() {
        let shape = |line: &str| {
            let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            shape_of(&line.split(' ').next().unwrap().to_lowercase(), &argv)
        };
        assert_eq!(shape("zrange k 0 -1 WITHSCORES"), Shape::Pairs);
        assert_eq!(shape("zrange k 0 -1"), Shape::Plain);
        assert_eq!(shape("zrangebyscore k 0 1 LIMIT withscores 1"), Shape::Plain);
        assert_eq!(shape("zunion 1 withscores"), Shape::Plain);
        assert_eq!(shape("zunion 1 withscores withscores"), Shape::Pairs);
        assert_eq!(shape("zinter 2 a b WEIGHTS 1 withscores"), Shape::Plain);
        assert_eq!(shape("zinter 2 a b WEIGHTS 1 2 AGGREGATE max WITHSCORES"), Shape::Pairs);
        assert_eq!(shape("zpopmin k"), Shape::FlatScores);
        assert_eq!(shape("zpopmin k 2"), Shape::Pairs);
        assert_eq!(shape("zrandmember k 2"), Shape::Plain);
    }

    #[test]
    fn exec_types_each_element_by_its_command() {
        let r = b"*3\r\n+OK\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$-1\r\n";
        let mut out = Vec::new();
        assert_eq!(convert_exec(r, &[Shape::Plain, Shape::Map, Shape::Plain], &mut out), r.len());
        assert_eq!(out, b"*3\r\n+OK\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n");
    }
}
