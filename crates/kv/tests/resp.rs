//! The RESP2 request parser: incremental input, inline commands, the
//! request size bound (DESIGN §6: an exceeded bound names its flag), and
//! garbage that must never panic (DESIGN §7, bad input).

use std::ops::Range;

use proptest::prelude::*;
use understudy_kv::resp::{parse_command, CommandParser, RespError, INLINE_BYTES_MAX};

fn encode(argv: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", argv.len()).into_bytes();
    for a in argv {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A parsed command: bytes consumed and the arguments.
type Parsed = Option<(usize, Vec<Vec<u8>>)>;

fn parse(buf: &[u8], max: usize) -> Result<Parsed, RespError> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    ranges.push(0..1); // stale: the parser must clear it
    Ok(parse_command(buf, max, &mut ranges)?.map(|n| (n, ranges.iter().map(|r| buf[r.clone()].to_vec()).collect())))
}

fn owned(argv: &[&[u8]]) -> Vec<Vec<u8>> {
    argv.iter().map(|a| a.to_vec()).collect()
}

/// Every strict prefix of a complete command is "incomplete", never an
/// error or a wrong command; the whole is the command.
fn check_every_split(input: &[u8], expect: &[&[u8]]) {
    for cut in 0..input.len() {
        assert_eq!(parse(&input[..cut], 1 << 20), Ok(None), "prefix {cut} of {:?}", input.escape_ascii().to_string());
    }
    assert_eq!(parse(input, 1 << 20), Ok(Some((input.len(), owned(expect)))));
}

#[test]
fn multibulk_split_at_every_byte() {
    check_every_split(&encode(&[b"SET", b"key", b"value"]), &[b"SET", b"key", b"value"]);
    check_every_split(&encode(&[b"SET", b"", b"\r\n\x00\xff"]), &[b"SET", b"", b"\r\n\x00\xff"]);
    check_every_split(&encode(&[b"PING"]), &[b"PING"]);
}

#[test]
fn inline_split_at_every_byte() {
    check_every_split(b"PING\r\n", &[b"PING"]);
    check_every_split(b"set a b\n", &[b"set", b"a", b"b"]);
    check_every_split(b"  set  \"x y\"\t'z w'  \r\n", &[b"set", b"x y", b"z w"]);
}

#[test]
fn pipelined_commands_parse_one_at_a_time() {
    let mut input = encode(&[b"GET", b"a"]);
    input.extend_from_slice(b"PING\r\n");
    input.extend(encode(&[b"ECHO", b"x"]));
    let mut ranges = Vec::new();
    let mut pos = 0;
    let mut seen = Vec::new();
    while let Some(n) = parse_command(&input[pos..], 1 << 20, &mut ranges).unwrap() {
        seen.push(ranges.iter().map(|r| input[pos..][r.clone()].to_vec()).collect::<Vec<_>>());
        pos += n;
        if pos == input.len() {
            break;
        }
    }
    assert_eq!(seen, vec![owned(&[b"GET", b"a"]), owned(&[b"PING"]), owned(&[b"ECHO", b"x"])]);
}

#[test]
fn empty_commands_are_consumed_without_arguments() {
    for input in [&b"\r\n"[..], b"\n", b"   \r\n", b"*0\r\n", b"*-1\r\n"] {
        assert_eq!(parse(input, 1 << 20), Ok(Some((input.len(), vec![]))), "{input:?}");
    }
}

#[test]
fn inline_quoting() {
    assert_eq!(parse(b"a '' \"\"\r\n", 100).unwrap().unwrap().1, owned(&[b"a", b"", b""]));
    assert_eq!(parse(b"a 'it\\s'\r\n", 100).unwrap().unwrap().1, owned(&[b"a", b"it\\s"]));
    assert_eq!(parse(b"set \"a b\r\n", 100), Err(RespError::UnbalancedQuotes));
    assert_eq!(parse(b"set 'a\r\n", 100), Err(RespError::UnbalancedQuotes));
    assert_eq!(parse(b"set \"a\"b\r\n", 100), Err(RespError::UnbalancedQuotes));
    assert_eq!(parse(b"set a\"b\r\n", 100), Err(RespError::UnbalancedQuotes));
    assert_eq!(parse(b"set \"a\\nb\"\r\n", 100), Err(RespError::UnsupportedInlineQuoting));
    assert_eq!(parse(b"set a\"b\"\r\n", 100), Err(RespError::UnsupportedInlineQuoting));
    // A NUL ends the line, as in Redis's C-string splitting.
    assert_eq!(parse(b"get a\x00 b\r\n", 100).unwrap().unwrap().1, owned(&[b"get", b"a"]));
}

#[test]
fn protocol_errors_are_redis_lines() {
    let err = |input: &[u8]| String::from_utf8_lossy(&parse(input, 1 << 20).unwrap_err().to_resp()).into_owned();
    assert_eq!(err(b"*x\r\n"), "-ERR Protocol error: invalid multibulk length\r\n");
    assert_eq!(err(b"*1\r\n$-1\r\n"), "-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(err(b"*1\r\n:1\r\n"), "-ERR Protocol error: expected '$', got ':'\r\n");
    assert_eq!(err(b"*1\r\n\r\n"), "-ERR Protocol error: expected '$', got ' '\r\n");
    assert_eq!(err(b"x \"y\r\n"), "-ERR Protocol error: unbalanced quotes in request\r\n");
}

#[test]
fn oversized_requests_name_the_flag_before_the_bytes_arrive() {
    let max = 1024;
    // A declared bulk length past the bound: refused from the header alone.
    let e = parse(b"*2\r\n$3\r\nSET\r\n$100000\r\n", max).unwrap_err();
    assert!(matches!(e, RespError::RequestTooLarge { max: 1024, .. }), "{e:?}");
    let line = String::from_utf8(e.to_resp()).unwrap();
    assert!(line.starts_with("-ERR Protocol error: request of at least "), "{line}");
    assert!(line.ends_with(" bytes exceeds --request-bytes-max (1024 bytes)\r\n"), "{line}");
    // A declared argument count past the bound.
    assert!(matches!(parse(b"*1000\r\n", max), Err(RespError::RequestTooLarge { .. })));
    // An inline line past the bound, with or without its newline.
    let long = vec![b'a'; 2000];
    assert!(matches!(parse(&long, max), Err(RespError::RequestTooLarge { .. })));
    let mut line = long.clone();
    line.push(b'\n');
    assert!(matches!(parse(&line, max), Err(RespError::RequestTooLarge { .. })));
    // An inline line past Redis's own inline limit.
    let huge = vec![b'a'; INLINE_BYTES_MAX + 1];
    assert_eq!(parse(&huge, usize::MAX), Err(RespError::TooBigInline));
    let mut header = b"*".to_vec();
    header.extend(vec![b'1'; INLINE_BYTES_MAX + 1]);
    assert_eq!(parse(&header, usize::MAX), Err(RespError::TooBigMultibulkCount));
}

#[test]
fn a_request_of_exactly_the_bound_is_accepted() {
    let input = encode(&[b"SET", b"k", &[b'v'; 100]]);
    assert!(parse(&input, input.len()).unwrap().is_some());
    assert!(matches!(parse(&input, input.len() - 1), Err(RespError::RequestTooLarge { .. })));
    let inline = b"set k v\r\n";
    assert!(parse(inline, inline.len()).unwrap().is_some());
    assert!(matches!(parse(inline, inline.len() - 1), Err(RespError::RequestTooLarge { .. })));
}

fn argv_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)
}

proptest! {
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), max in 0usize..300) {
        let mut ranges = Vec::new();
        if let Ok(Some(n)) = parse_command(&data, max, &mut ranges) {
            prop_assert!(n <= data.len());
            prop_assert!(ranges.iter().all(|r| r.start <= r.end && r.end <= n));
        }
    }

    #[test]
    fn garbage_after_a_valid_prefix_never_panics(
        argv in argv_strategy(),
        tail in proptest::collection::vec(any::<u8>(), 0..50),
        cut in any::<prop::sample::Index>(),
    ) {
        let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let mut input = encode(&refs);
        let cut = cut.index(input.len());
        input.truncate(cut);
        input.extend(tail);
        let _ = parse_command(&input, 1 << 16, &mut Vec::new());
    }

    /// A command fed in arbitrary pieces to a resumable parser gives what
    /// the stateless parser gives for the whole; the next command follows.
    #[test]
    fn resumable_parser_matches_stateless(
        argv in argv_strategy(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let mut input = encode(&refs);
        let first_len = input.len();
        input.extend_from_slice(b"PING\r\n");
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(first_len)).collect();
        cuts.sort_unstable();
        let mut parser = CommandParser::new();
        let mut ranges = Vec::new();
        for cut in cuts {
            prop_assert_eq!(parser.parse(&input[..cut], 1 << 20, &mut ranges), Ok(None));
        }
        prop_assert_eq!(parser.parse(&input, 1 << 20, &mut ranges), Ok(Some(first_len)));
        let got: Vec<Vec<u8>> = ranges.iter().map(|r| input[r.clone()].to_vec()).collect();
        prop_assert_eq!(got, argv);
        let rest = &input[first_len..];
        prop_assert_eq!(parser.parse(rest, 1 << 20, &mut ranges), Ok(Some(rest.len())));
        prop_assert_eq!(ranges.len(), 1);
    }

    #[test]
    fn multibulk_roundtrip(argv in argv_strategy(), cut in any::<prop::sample::Index>()) {
        let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let input = encode(&refs);
        let cut = cut.index(input.len());
        prop_assert_eq!(parse(&input[..cut], 1 << 20), Ok(None));
        prop_assert_eq!(parse(&input, 1 << 20), Ok(Some((input.len(), argv))));
    }
}
