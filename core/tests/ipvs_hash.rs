//! Hash primitives against answers that do not come from this crate.

use proxyscope_core::ipvs::hash::{HsipKey, fold, hash_32, hsiphash, hsiphash_u32};

/// `test_vectors_hsiphash` of the kernel's `lib/test_siphash.c` for `BITS_PER_LONG == 64`:
/// entry i is `hsiphash(in, i, &test_key_hsiphash)` with `in[j] = j`.
const KERNEL_HSIPHASH_64: [u32; 53] = [
    0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140,
    0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956,
    0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123,
    0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc,
    0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392,
    0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd,
    0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12,
];

#[test]
fn hsiphash_matches_the_kernel_self_test() {
    let key = HsipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
    let input: Vec<u8> = (0..64u8).collect();
    for (len, want) in KERNEL_HSIPHASH_64.iter().enumerate() {
        assert_eq!(hsiphash(&input[..len], key), *want, "length {len}");
    }
    // The 4-byte fast path mh uses: bytes 00 01 02 03 = the native int 0x03020100.
    assert_eq!(hsiphash_u32(0x0302_0100, key), 0x88d3_8328);
}

#[test]
fn hash_32_by_hand() {
    // 0x0A000001 * 0x61C88647 = 0x0A000000*0x61C88647 + 0x61C88647;
    // (10 * 0x61C88647) mod 256 = 0xC6 -> 0xC6000000 + 0x61C88647 = 0x127C88647 -> 0x27C88647.
    assert_eq!(hash_32(0x0A00_0001, 8), 0x27);
    assert_eq!(hash_32(0x0A00_0001, 10), 0x27C8_8647 >> 22);
    assert_eq!(hash_32(0, 8), 0);
    assert_eq!(hash_32(1, 32), 0x61C8_8647);
}

#[test]
fn fold_uses_the_services_family() {
    assert_eq!(fold("10.0.0.1".parse().unwrap(), false), 0x0A00_0001);
    assert_eq!(fold("10.0.0.1".parse().unwrap(), true), 0x0A00_0001);
    // 2001:db8:1:2:3:4:5:6 -> 0x20010db8 ^ 0x00010002 ^ 0x00030004 ^ 0x00050006.
    let v6 = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    assert_eq!(
        fold(v6, true),
        0x2001_0db8 ^ 0x0001_0002 ^ 0x0003_0004 ^ 0x0005_0006
    );
    // In a v4 service only the first word is read (`addr->ip`).
    assert_eq!(fold(v6, false), 0x2001_0db8);
}
