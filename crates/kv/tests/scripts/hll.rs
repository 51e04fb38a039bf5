//! Generated HyperLogLog sequences for the differential test: counts from
//! one to 20000 distinct elements, the raw bytes of sparse HLLs as they
//! grow (every opcode split and merge) and of the dense form after the
//! promotion, and random PFADD/PFMERGE/PFCOUNT mixes, compared byte for
//! byte in RESP2 and RESP3.

use crate::differential::{report, run_script_in, Redis, Rng};

fn refs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

/// One element at a time up to 300 (GET after each: the sparse bytes),
/// then batches of 100 up to 20000 (PFCOUNT after each, GET now and then:
/// the promotion to dense and the dense bytes), then merges of the sparse
/// and the dense HLL both ways.
#[test]
fn hll_growth_matches_redis() {
    let redis = Redis::start();
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(format!("PFADD h e{i}"));
        lines.push("GET h".to_string());
        if i % 7 == 0 {
            lines.push("PFCOUNT h".to_string());
        }
    }
    lines.push("PFADD small s1 s2 s3 s4 s5 s6 s7 s8 s9".to_string());
    let mut n = 300;
    while n < 20000 {
        let batch: Vec<String> = (n..n + 100).map(|i| format!("e{i}")).collect();
        lines.push(format!("PFADD h {}", batch.join(" ")));
        lines.push("PFCOUNT h".to_string());
        n += 100;
        if n % 1000 == 0 || n < 1500 {
            lines.push("GET h".to_string());
            lines.push("STRLEN h".to_string());
        }
    }
    lines.extend(
        [
            "PFMERGE m1 small h",
            "GET m1",
            "PFCOUNT m1",
            "PFMERGE small h",
            "GET small",
            "PFCOUNT small",
            "PFADD s2 x",
            "PFMERGE h s2",
            "GET h",
            "PFCOUNT h s2",
            "PFCOUNT s2 nokey",
        ]
        .map(String::from),
    );
    let mut failures = run_script_in(&redis, "hll growth", &refs(&lines), 2);
    failures.extend(run_script_in(&redis, "hll growth (RESP3)", &refs(&lines), 3));
    report(failures);
}

/// Random elements (short and long, binary, repeats) added to a few keys,
/// merged and counted in random orders, with the bytes compared often.
#[test]
fn hll_random_ops_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x4859_4c4c_0000_0001);
    let mut failures = Vec::new();
    for round in 0..12 {
        let mut lines = vec!["FLUSHALL".to_string()];
        let pool = [10, 200, 3000, 100_000][round % 4];
        for _ in 0..150 {
            let key = || ["a", "b", "c"];
            let k = key()[rng.below(3)];
            let line = match rng.below(10) {
                0..=5 => {
                    let elems: Vec<String> = (0..1 + rng.below(40))
                        .map(|_| match rng.below(8) {
                            0 => format!("\\x{:02x}", rng.below(256)),
                            1 => format!("long-element-{}-{}", rng.below(pool), "x".repeat(rng.below(20))),
                            _ => rng.below(pool).to_string(),
                        })
                        .collect();
                    format!("PFADD {k} {}", elems.join(" "))
                }
                6 => format!("PFCOUNT {k}"),
                7 => format!("PFCOUNT {k} {}", key()[rng.below(3)]),
                8 => format!("PFMERGE {k} {} {}", key()[rng.below(3)], key()[rng.below(3)]),
                _ => format!("GET {k}"),
            };
            lines.push(line);
        }
        lines.extend(["GET a", "GET b", "GET c", "PFCOUNT a b c"].map(String::from));
        failures.extend(run_script_in(&redis, &format!("hll random {round}"), &refs(&lines), 2 + (round % 2) as u8));
    }
    report(failures);
}
