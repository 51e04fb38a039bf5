//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN] (Redis
//! 7.0's `lcsCommand`): the longest common subsequence of two strings by
//! the same dynamic programme as Redis, walked back the same way, so that
//! among equally long subsequences the same one (and the same match
//! ranges) is reported.

use super::{Exec, SYNTAX};
use crate::resp::{write_array_len, write_bulk};
use crate::store::Store;

pub fn lcs(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    // Both keys are looked up and checked before the options.
    let mut strings: [&[u8]; 2] = [b"", b""];
    for (i, key) in argv[1..3].iter().enumerate() {
        if let Some(e) = store.get(key, x.clock) {
            match e.str_value() {
                Some(v) => strings[i] = v,
                None => return x.err(b"ERR The specified keys must contain string values"),
            }
        }
    }
    let [a, b] = strings;
    let (mut get_len, mut get_idx, mut with_match_len, mut min_match_len) = (false, false, false, 0u64);
    let mut j = 3;
    while j < argv.len() {
        let opt = argv[j];
        if opt.eq_ignore_ascii_case(b"idx") {
            get_idx = true;
        } else if opt.eq_ignore_ascii_case(b"len") {
            get_len = true;
        } else if opt.eq_ignore_ascii_case(b"withmatchlen") {
            with_match_len = true;
        } else if opt.eq_ignore_ascii_case(b"minmatchlen") && j + 1 < argv.len() {
            let Some(v) = x.int_arg(argv[j + 1]) else { return };
            min_match_len = v.max(0) as u64;
            j += 1;
        } else {
            return x.err(SYNTAX);
        }
        j += 1;
    }
    if get_idx && get_len {
        return x.err(b"ERR If you want both the length and indexes, please just use IDX.");
    }
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return x.err(b"ERR String too long for LCS");
    }
    // Redis refuses a table larger than proto-max-bulk-len.
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells * 4 > super::STRING_BYTES_MAX {
        return x.err(b"ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let width = b.len() + 1;
    // table[i * width + j]: the LCS length of a[..i] and b[..j].
    let mut table = vec![0u32; cells as usize];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let len = table[a.len() * width + b.len()];
    if get_len {
        return x.int(i64::from(len));
    }
    // Walk back from the end, emitting the subsequence and, for IDX, the
    // ranges of contiguous matches (latest first, as Redis emits them).
    let mut result = vec![0u8; len as usize];
    let mut idx = len as usize;
    let mut ranges: Vec<[u64; 5]> = Vec::new();
    let (mut i, mut j) = (a.len(), b.len());
    // (a_start, a_end, b_start, b_end) of the range being grown.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            range = match range {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((sa, ea, sb, eb)) if sa == i && sb == j => Some((sa - 1, ea, sb - 1, eb)),
                Some(r) => {
                    emit = true;
                    Some(r)
                }
            };
            if range.is_some_and(|(sa, _, sb, _)| sa == 0 || sb == 0) {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit {
            if let Some((sa, ea, sb, eb)) = range.take() {
                let match_len = (ea - sa + 1) as u64;
                if min_match_len == 0 || match_len >= min_match_len {
                    ranges.push([sa as u64, ea as u64, sb as u64, eb as u64, match_len]);
                }
            }
        }
    }
    debug_assert_eq!(idx, 0, "the walk back emits the whole subsequence");
    if !get_idx {
        return write_bulk(x.out, &result);
    }
    // A map in RESP3 (`resp3::Shape::Map`).
    write_array_len(x.out, 4);
    write_bulk(x.out, b"matches");
    write_array_len(x.out, ranges.len());
    for [sa, ea, sb, eb, n] in ranges {
        write_array_len(x.out, 2 + usize::from(with_match_len));
        for pair in [[sa, ea], [sb, eb]] {
            write_array_len(x.out, 2);
            x.int(pair[0] as i64);
            x.int(pair[1] as i64);
        }
        if with_match_len {
            x.int(n as i64);
        }
    }
    write_bulk(x.out, b"len");
    x.int(i64::from(len));
}
