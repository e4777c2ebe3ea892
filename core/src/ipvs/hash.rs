//! The hash functions the IPVS schedulers use, bit for bit as a 64-bit little-endian kernel
//! computes them.
//!
//! * [`hash_32`]: `include/linux/hash.h` (`GOLDEN_RATIO_32`, top bits of the product) — sh, dh,
//!   lblc and lblcr buckets.
//! * [`fold`]: how every hashing scheduler turns an address into one 32-bit word.
//! * [`hsiphash`]: `lib/siphash.c` on `BITS_PER_LONG == 64`, which is SipHash-1-3 with a 128-bit
//!   key and a 32-bit result (not HalfSipHash, which only 32-bit kernels use) — mh only.

use std::net::IpAddr;

/// `GOLDEN_RATIO_32` from `include/linux/hash.h` (since v4.7; older kernels used 0x9e370001).
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(val, bits)`: the top `bits` bits of `val * GOLDEN_RATIO_32 mod 2^32`.
/// `bits` must be 1..=32.
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    ((val.wrapping_mul(GOLDEN_RATIO_32)) as u64 >> (32 - bits)) as u32
}

/// The schedulers' address fold: IPv4 as a host-order word (`ntohl(addr->ip)`); IPv6 as the XOR
/// of its four words read big-endian. The *service's* family decides the rule (the kernel passes
/// `svc->af`), so a v4 address in a v6 service folds to itself (the other words of
/// `nf_inet_addr` are zero) and a v6 address in a v4 service folds to its first word.
#[inline]
pub fn fold(addr: IpAddr, service_is_v6: bool) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            if service_is_v6 {
                w(0) ^ w(4) ^ w(8) ^ w(12)
            } else {
                w(0)
            }
        }
    }
}

/// A 128-bit hsiphash key as the kernel's `hsiphash_key_t` holds it on 64-bit builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HsipKey(pub u64, pub u64);

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// `hsiphash(data, len, key)` of a 64-bit kernel: SipHash with one compression round per
/// 8-byte word and three finalisation rounds; the result is the low 32 bits of the final XOR.
pub fn hsiphash(data: &[u8], key: HsipKey) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key.0,
        0x646f_7261_6e64_6f6d ^ key.1,
        0x6c79_6765_6e65_7261 ^ key.0,
        0x7465_6462_7974_6573 ^ key.1,
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
        v[3] ^= m;
        sipround(&mut v);
        v[0] ^= m;
    }
    let mut b = (data.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= u64::from(*byte) << (8 * i);
    }
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// `hsiphash(&v, sizeof(v), key)` for one native `unsigned int` (what mh hashes): the 4 bytes
/// little-endian, so the only block is `(4 << 56) | v`. Same result as [`hsiphash`], no slice.
#[inline]
pub fn hsiphash_u32(x: u32, key: HsipKey) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key.0,
        0x646f_7261_6e64_6f6d ^ key.1,
        0x6c79_6765_6e65_7261 ^ key.0,
        0x7465_6462_7974_6573 ^ key.1,
    ];
    let b = (4u64 << 56) | u64::from(x);
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_32_is_top_bits_of_golden_ratio_product() {
        // 1 * 0x61C88647 = 0x61C88647; top 8 bits = 0x61.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        // 2 * 0x61C88647 = 0xC3910C8E; top 10 bits = 0xC3910C8E >> 22 = 782.
        assert_eq!(hash_32(2, 10), 782);
    }

    #[test]
    fn fold_v6_xors_big_endian_words() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(fold(a, true), 0x2001_0db8 ^ 1);
        assert_eq!(fold("10.0.0.1".parse().unwrap(), false), 0x0A00_0001);
    }

    #[test]
    fn hsiphash_u32_agrees_with_generic() {
        let k = HsipKey(0x9E37_79B1, 0x9E37_79B1);
        for x in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(hsiphash_u32(x, k), hsiphash(&x.to_le_bytes(), k));
        }
    }
}
