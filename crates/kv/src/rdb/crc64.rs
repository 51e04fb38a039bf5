//! Redis's CRC-64 (`src/crc64.c`): the Jones polynomial
//! `0xad93d23594c935a9`, reflected input and output, initial value 0 and
//! no final xor, the checksum that ends a DUMP payload. Table-driven, one
//! byte at a time; the table is built at compile time from the reflected
//! polynomial.

/// The Jones polynomial with its bits reversed (the reflected form).
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY_REFLECTED } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// `crc64(crc, data)`: continues `crc` over `data` (start with 0).
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_test_vector() {
        // The check value in Redis's crc64.c self test.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn continues_across_pieces() {
        let data = b"This is a test of the emergency broadcast system.";
        let (a, b) = data.split_at(17);
        assert_eq!(crc64(crc64(0, a), b), crc64(0, data));
        assert_eq!(crc64(0, b""), 0);
    }
}
