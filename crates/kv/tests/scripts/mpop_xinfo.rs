//! Differential scripts of XINFO and of the multi-key pops (LMPOP, BLMPOP,
//! ZMPOP, BZMPOP), and generated stream histories whose XINFO STREAM
//! (radix tree figures included) must match Redis's byte for byte.

use crate::differential::{report, run_script_in, Redis, Rng};

/// XINFO's subcommands, errors and counters; `~` lines hold idle, seen
/// and delivery times, compared within a second.
pub const XINFO: &[&str] = &[
    "XINFO STREAM nokey",
    "XINFO GROUPS nokey",
    "XINFO CONSUMERS nokey g",
    "XINFO HELP",
    "xinfo help",
    "XINFO HELP x",
    "XINFO",
    "XINFO FOO",
    "XINFO FOO a b",
    "XINFO STREAM",
    "XINFO GROUPS",
    "XINFO GROUPS a b",
    "XINFO CONSUMERS a",
    "XINFO CONSUMERS a b c",
    "XINFO STREAM nokey FOO",
    "SET str v",
    "XINFO STREAM str",
    "XINFO GROUPS str",
    "XINFO CONSUMERS str g",
    "XINFO STREAM str FULL",
    "XGROUP CREATE e g $ MKSTREAM",
    "XINFO STREAM e",
    "XINFO STREAM e FULL",
    "XINFO GROUPS e",
    "XINFO CONSUMERS e g",
    "XINFO CONSUMERS e nog",
    "XINFO CONSUMERS e no\\x00pe",
    "XINFO CONSUMERS nokey\\x00x g",
    "XADD s 1-1 a 1",
    "XADD s 1-2 b 2 c 3",
    "XADD s 2-0 d 4",
    "XINFO STREAM s",
    "xinfo stream s",
    "XINFO STREAM s FULL",
    "XINFO STREAM s full count 1",
    "XINFO STREAM s FULL COUNT 0",
    "XINFO STREAM s FULL COUNT -5",
    "XINFO STREAM s FULL COUNT x",
    "XINFO STREAM s FULL COUNT",
    "XINFO STREAM s FOO",
    "XINFO STREAM s FULL FOO 1",
    "XINFO STREAM s FULL COUNT 1 x",
    "XINFO STREAM s FULL\\x00x",
    "XINFO STREAM s FULL COUNT 99999999999999999999",
    "XGROUP CREATE s g1 0",
    "XGROUP CREATE s g2 $",
    "XGROUP CREATE s g3 0 ENTRIESREAD 1",
    "XGROUP CREATE s g\\x00z 0",
    "XINFO GROUPS s",
    "XINFO STREAM s",
    "XINFO CONSUMERS s g1",
    "XREADGROUP GROUP g1 alice COUNT 1 STREAMS s >",
    "XREADGROUP GROUP g1 bob STREAMS s >",
    "XINFO GROUPS s",
    "~XINFO CONSUMERS s g1",
    "~XINFO STREAM s FULL",
    "~XINFO STREAM s FULL COUNT 1",
    "XINFO CONSUMERS s g\\x00z",
    "XREADGROUP GROUP g3 carol COUNT 1 STREAMS s >",
    "XINFO GROUPS s",
    "XDEL s 1-2",
    "XINFO STREAM s",
    "XINFO GROUPS s",
    "XADD s 3-0 e 5",
    "XINFO GROUPS s",
    "XINFO STREAM s",
    "XACK s g1 1-1",
    "~XINFO STREAM s FULL COUNT 1",
    "XDEL s 1-1",
    "XINFO STREAM s",
    "XINFO GROUPS s",
    "XREADGROUP GROUP g2 dave STREAMS s >",
    "XINFO GROUPS s",
    "XGROUP SETID s g2 0",
    "XINFO GROUPS s",
    "XGROUP SETID s g2 2-0 ENTRIESREAD 7",
    "XINFO GROUPS s",
    "XTRIM s MAXLEN 0",
    "XINFO STREAM s",
    "XINFO GROUPS s",
    "XSETID s 10-0 ENTRIESADDED 20 MAXDELETEDID 5-0",
    "XINFO STREAM s",
    "XINFO GROUPS s",
    "XADD s 11-0 f v",
    "XINFO GROUPS s",
    "XGROUP CREATECONSUMER s g2 erin",
    "~XINFO CONSUMERS s g2",
    "XGROUP DELCONSUMER s g1 alice",
    "~XINFO CONSUMERS s g1",
    "XGROUP DESTROY s g1",
    "XINFO GROUPS s",
    "XADD big 1 f v",
    "XADD big 256 f v",
    "XADD big 65536-7 f v",
    "XADD big 18446744073709551615-0 f v",
    "XINFO STREAM big",
    "XDEL big 256",
    "XINFO STREAM big",
    "XDEL big 1 65536-7 18446744073709551615-0",
    "XINFO STREAM big",
    "XADD {} 1 {} {}",
    "XINFO STREAM {}",
    "XINFO STREAM {} FULL",
    "MULTI",
    "XINFO STREAM s",
    "XINFO GROUPS s",
    "EXEC",
    "MULTI",
    "XINFO FOO",
    "EXEC",
    "MULTI",
    "XINFO STREAM s FOO",
    "XINFO CONSUMERS s nog",
    "EXEC",
    r##"EVAL "return redis.call('XINFO', 'GROUPS', KEYS[1])" 1 s"##,
    r##"EVAL "return redis.call('XINFO', 'STREAM', KEYS[1])" 1 e"##,
    r##"EVAL_RO "return redis.call('XINFO', 'STREAM', KEYS[1], 'FULL')" 1 big"##,
    r##"EVAL "return redis.pcall('XINFO', 'CONSUMERS', KEYS[1], 'nog')" 1 s"##,
    r##"EVAL "return redis.pcall('XINFO', 'FOO')" 0"##,
    r##"EVAL "return redis.pcall('XINFO', 'HELP', 'x')" 0"##,
];

/// LMPOP, BLMPOP, ZMPOP and BZMPOP: replies, argument errors in Redis's
/// order, wrong types, transactions and scripts (where the blocking forms
/// do not wait). A blocking pop here only ever waits 10 ms.
pub const MPOP: &[&str] = &[
    "LMPOP 1 nokey LEFT",
    "LMPOP 2 nokey nokey2 RIGHT COUNT 5",
    "RPUSH l1 a b c d e",
    "RPUSH l2 x y",
    "LMPOP 1 l1 LEFT",
    "LMPOP 1 l1 RIGHT COUNT 2",
    "LMPOP 2 nokey l1 left count 10",
    "EXISTS l1",
    "LMPOP 2 l1 l2 RIGHT",
    "LMPOP 0 l2 LEFT",
    "LMPOP -1 l2 LEFT",
    "LMPOP x l2 LEFT",
    "LMPOP 1.5 l2 LEFT",
    "LMPOP 3 l2 LEFT",
    "LMPOP 9223372036854775807 l2 LEFT",
    "LMPOP 9223372036854775808 l2 LEFT",
    "LMPOP 1 l2 UP",
    "LMPOP 1 l2 MIN",
    "LMPOP 1 l2 LEFT COUNT 0",
    "LMPOP 1 l2 LEFT COUNT -1",
    "LMPOP 1 l2 LEFT COUNT x",
    "LMPOP 1 l2 LEFT COUNT",
    "LMPOP 1 l2 LEFT COUNT 1 COUNT 1",
    "LMPOP 1 l2 LEFT FOO",
    "LMPOP 1 l2 LEFT COUNT 9223372036854775807",
    "EXISTS l2",
    "LMPOP",
    "LMPOP 1",
    "LMPOP 1 l2",
    "LMPOP 0 LEFT",
    "SET str v",
    "LMPOP 1 str LEFT",
    "LMPOP 2 nokey str LEFT",
    "RPUSH l3 q",
    "LMPOP 2 l3 str LEFT",
    "LMPOP 2 str l3 LEFT",
    "ZADD z 1 a 2 b 3 c",
    "LMPOP 1 z LEFT",
    "ZMPOP 1 l3 MIN",
    "RPUSH {} v",
    "LMPOP 1 {} RIGHT",
    "RPUSH ex a",
    "PEXPIRE ex 1",
    "sleep 5",
    "LMPOP 1 ex LEFT",
    "EXISTS ex",
    "BLMPOP 0.01 1 nokey LEFT",
    "BLMPOP 0.01 2 nokey nokey2 RIGHT COUNT 3",
    "RPUSH b1 1 2 3",
    "BLMPOP 0 1 b1 LEFT",
    "BLMPOP 0 2 nokey b1 RIGHT COUNT 5",
    "EXISTS b1",
    "BLMPOP x 1 b1 LEFT",
    "BLMPOP -1 1 b1 LEFT",
    "BLMPOP x 0 b1 LEFT",
    "BLMPOP x 1 b1 UP",
    "BLMPOP x 1 b1 LEFT COUNT 0",
    "BLMPOP x 2 b1 LEFT",
    "BLMPOP inf 1 b1 LEFT",
    "BLMPOP 1e400 1 b1 LEFT",
    "BLMPOP nan 1 b1 LEFT",
    "BLMPOP 0 1 str LEFT",
    "BLMPOP 0 2 nokey str LEFT",
    "BLMPOP",
    "BLMPOP 0 1 b1",
    "BLMPOP 0 1",
    "RPUSH b2 x",
    "BLMPOP 0x10 1 b2 LEFT",
    "BLMPOP 0.5 1 b2 LEFT COUNT 2",
    "ZADD bz 1 a 2 b 3 c",
    "ZMPOP 1 bz MAX",
    "BZMPOP 0 1 bz MIN",
    "ZADD bz 4 d 5 e",
    "BZMPOP 0 2 nokey bz MAX COUNT 10",
    "EXISTS bz",
    "BZMPOP 0.01 1 bz MIN",
    "BZMPOP 0 1 bz LEFT",
    "BZMPOP 0 0 bz MIN",
    "BZMPOP 0 1 str MIN",
    "BZMPOP -1 1 bz MIN",
    "BZMPOP 0 1 bz MIN COUNT -2",
    "BZMPOP 0 3 bz MIN",
    "BZMPOP x 3 bz MIN",
    "BZMPOP x 1 bz MIN",
    "BZMPOP",
    "BZMPOP 0 1 bz",
    "ZADD bz 1.5 x",
    "BZMPOP 0 2 l3 bz MIN",
    "ZADD bz -inf m inf n",
    "BZMPOP 0 1 bz MAX COUNT 2",
    "MULTI",
    "BLMPOP 0 1 empty LEFT",
    "BZMPOP 0 1 empty MIN",
    "LMPOP 1 empty LEFT",
    "RPUSH m a",
    "BLMPOP 0 1 m LEFT COUNT 3",
    "ZADD mz 1 a",
    "BZMPOP 0 1 mz MAX",
    "EXEC",
    "MULTI",
    "BLMPOP 0 0 m LEFT",
    "EXEC",
    "MULTI",
    "BLMPOP 0 1",
    "EXEC",
    r##"EVAL "return redis.call('BLMPOP', 0, 1, KEYS[1], 'LEFT')" 1 empty"##,
    "RPUSH sl a b c",
    r##"EVAL "return redis.call('BLMPOP', 0, 1, KEYS[1], 'RIGHT', 'COUNT', 2)" 1 sl"##,
    r##"EVAL "return redis.call('LMPOP', 1, KEYS[1], 'LEFT')" 1 sl"##,
    r##"EVAL "return redis.pcall('BZMPOP', 0, 0, 'z', 'MIN')" 0"##,
    "ZADD sz 1 a 2 b",
    r##"EVAL "return redis.call('BZMPOP', 0, 1, KEYS[1], 'MAX', 'COUNT', 5)" 1 sz"##,
    r##"EVAL_RO "return redis.pcall('LMPOP', 1, 'sl', 'LEFT')" 0"##,
];

impl Rng {
    /// An entry's fields and values: mostly the same field names (entries
    /// stored without them), sometimes others; values short or long,
    /// text or integers in each of listpack's integer widths, so nodes
    /// fill up by count or by bytes.
    fn fields(&mut self) -> String {
        let names = ["f", "f", "f", "f g", "g", "f h"][self.below(6)];
        let values: Vec<String> = names
            .split(' ')
            .map(|name| {
                let value = match self.below(12) {
                    0 => "0".to_string(),
                    1 => ["-1", "127", "128", "-4097", "40000", "9000000", "-3000000000", "9223372036854775807"][self.below(8)]
                        .to_string(),
                    2 => ["007", "-0", "+1", "9223372036854775808", "123456789012345678901"][self.below(5)].to_string(),
                    3 => "v".repeat([62, 63, 64, 200, 1000, 4000, 5000][self.below(7)]),
                    4 => "w".repeat(self.below(120) + 1),
                    _ => self.below(1000).to_string(),
                };
                format!("{name} {value}")
            })
            .collect();
        values.join(" ")
    }
}

/// Random stream histories (seeded): XADD with IDs that part at every
/// byte of the radix tree's keys and entries of every listpack size, XDEL of single entries and of whole
/// nodes, XTRIM exact and approximate, each followed by XINFO STREAM, so
/// the radix tree figures are compared against Redis's after every kind
/// of insertion and removal.
#[test]
fn xinfo_stream_follows_redis_through_random_histories() {
    let redis = Redis::start();
    let mut rng = Rng(0x5eed_57a3);
    let mut lines = Vec::new();
    for round in 0..6 {
        let key = format!("s{round}");
        let (mut ms, mut seq) = (0u64, 0u64);
        let mut ids: Vec<String> = Vec::new();
        for _ in 0..12 {
            for _ in 0..rng.below(260) + 1 {
                let step = [0, 0, 1, 1, 2, 255, 256, 65535, 1 << 24, 1 << 33, 1 << 48][rng.below(11)];
                if step == 0 || ms.checked_add(step).is_none() {
                    seq += [1, 1, 200, 1 << 20, 1 << 40][rng.below(5)];
                } else {
                    ms += step;
                    seq = [0, 0, 1, 300, 1 << 36][rng.below(5)];
                }
                let id = format!("{ms}-{seq}");
                lines.push(format!("XADD {key} {id} {}", rng.fields()));
                ids.push(id);
            }
            lines.push(format!("XINFO STREAM {key}"));
            match rng.below(4) {
                0 => {
                    // A run of neighbours: whole nodes go.
                    let from = rng.below(ids.len());
                    let run: Vec<String> = ids.iter().skip(from).take(rng.below(150) + 1).cloned().collect();
                    lines.push(format!("XDEL {key} {}", run.join(" ")));
                }
                1 => {
                    let picks: Vec<String> = (0..rng.below(5) + 1).map(|_| ids[rng.below(ids.len())].clone()).collect();
                    lines.push(format!("XDEL {key} {}", picks.join(" ")));
                }
                2 => {
                    let how = ["MAXLEN ~", "MAXLEN", "MAXLEN ~", "MINID ~"][rng.below(4)];
                    let arg =
                        if how.starts_with("MINID") { ids[rng.below(ids.len())].clone() } else { rng.below(400).to_string() };
                    lines.push(format!("XTRIM {key} {how} {arg}"));
                }
                _ => lines.push(format!("XINFO STREAM {key} FULL COUNT {}", rng.below(4))),
            }
            lines.push(format!("XINFO STREAM {key}"));
        }
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    report(run_script_in(&redis, "random stream histories", &lines, 2));
}
