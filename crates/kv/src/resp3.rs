//! RESP3 for clients that ask for it (`HELLO 3`): modern client libraries
//! (redis-py 8 among them) speak RESP3 by default and do not fall back.
//!
//! Replies are produced in RESP2 by the commands (and replicated as such);
//! a RESP3 connection gets them converted on the way out: nulls become `_`,
//! and the replies Redis 7 types as maps or sets get those headers. The
//! conversion is a function of the command, so it is the same whatever
//! produced the reply (a read, a logged write, a transaction).

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
    Pairs,
}

/// The RESP3 shape of a command's reply, by its lowercase name.
pub fn shape_of(name: &str, argv: &[&[u8]]) -> Shape {
    match name {
        "hgetall" | "hello" => Shape::Map,
        "config" if argv.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"get")) => Shape::Map,
        "smembers" | "sinter" | "sunion" | "sdiff" => Shape::Set,
        // SPOP with a count replies a set; without, a bulk string.
        "spop" if argv.len() == 3 => Shape::Set,
        "hrandfield" if argv.len() == 4 => Shape::Pairs,
        // LCS … IDX replies a map; its other replies are not arrays.
        "lcs" => Shape::Map,
        _ => Shape::Plain,
    }
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
        Some(b'$') => {
            let n: usize = parse(&line[1..]);
            let end = rest_at + n + 2;
            out.extend_from_slice(&reply[..end]);
            end
        }
        Some(b'*') => {
            let n: usize = parse(&line[1..]);
            match shape {
                Shape::Map if n.is_multiple_of(2) => header(out, b'%', n / 2),
                Shape::Set => header(out, b'~', n),
                Shape::Pairs if n.is_multiple_of(2) => {
                    header(out, b'*', n / 2);
                    let mut at = rest_at;
                    for _ in 0..n / 2 {
                        header(out, b'*', 2);
                        at += convert(&reply[at..], Shape::Plain, out);
                        at += convert(&reply[at..], Shape::Plain, out);
                    }
                    return at;
                }
                _ => header(out, b'*', n),
            }
            let mut at = rest_at;
            for _ in 0..n {
                at += convert(&reply[at..], Shape::Plain, out);
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
            conv(b"*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n", Shape::Pairs),
            b"*2\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$1\r\ng\r\n$1\r\nw\r\n"
        );
        assert_eq!(conv(b"*0\r\n", Shape::Pairs), b"*0\r\n");
    }

    #[test]
    fn exec_types_each_element_by_its_command() {
        let r = b"*3\r\n+OK\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$-1\r\n";
        let mut out = Vec::new();
        assert_eq!(convert_exec(r, &[Shape::Plain, Shape::Map, Shape::Plain], &mut out), r.len());
        assert_eq!(out, b"*3\r\n+OK\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n");
    }
}
