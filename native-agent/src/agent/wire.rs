//! How the agent holds its JSON and puts it on the wire.
//!
//! On a 10,000-Service node the snapshot is ~35 MB of JSON, nearly all of it one
//! `iptables-save` text. Held as one string it was most of the agent's memory, every change
//! wrote it out whole next to the old one and a diff copied from it, and tungstenite kept a write
//! buffer as large as the largest message for each client that ever received one. So a JSON text
//! here is a list of blocks of at most [`BLOCK`] bytes, each cut at a UTF-8 boundary and
//! deflated on its own (kube-proxy's rules repeat themselves: 35 MB packs into a few), and:
//! - a message (snapshot, diff, resync) is composed from the parts' blocks, which it shares:
//!   writing one copies no part;
//! - a message goes out as websocket fragments of at most [`FRAGMENT`] bytes, each inflated just
//!   before it is sent (RFC 6455 §5.4: the client reassembles exactly the same text), and
//!   `GET /snapshot` streams the same pieces as its body.
//!
//! Blocks are independent (no shared dictionary) so any fragment can be inflated without the
//! ones before it, and a part changed by a poll is packed once for the snapshot and every diff.

use std::io::Write;
use std::ops::Deref;

use axum::body::Bytes;
use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_slice_iter_to_slice;

/// Plain bytes per block. Small enough that inflating one is a short pause in an async task
/// (~1 ms), large enough that deflate's 32 KB window loses almost nothing at the cuts.
pub const BLOCK: usize = 256 << 10;

/// Largest websocket fragment (and `/snapshot` body chunk) the agent sends; it bounds what the
/// agent holds per client while sending, whatever the message's size.
pub const FRAGMENT: usize = 1 << 20;

/// Blocks shorter than this stay as they are: deflating a few hundred bytes saves nothing worth
/// the work, and the small parts (errors, interfaces) are read back by tests and the kube view.
const PACK_MIN: usize = 4 << 10;

/// miniz's fastest level: on a kube-proxy dump it packs several hundred MB/s, and higher levels
/// gain little on text this repetitive.
const LEVEL: u8 = 1;

#[derive(Clone, Debug)]
struct Block {
    data: Bytes,
    /// Plain length: `data.len()` unless `deflated`.
    len: usize,
    deflated: bool,
}

/// A JSON text (or a piece of one) as blocks. Cloning shares the blocks.
#[derive(Clone, Debug, Default)]
pub struct Json {
    blocks: Vec<Block>,
    len: usize,
}

/// A block did not inflate to its recorded length: the agent's own data is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged;

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a stored JSON block does not inflate")
    }
}

impl std::error::Error for Damaged {}

impl Json {
    /// `text`, packed.
    pub fn new(text: &str) -> Json {
        let mut w = Packer::default();
        // Writing into memory cannot fail.
        let _ = w.write_all(text.as_bytes());
        w.finish()
    }

    /// Plain length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held (deflated blocks at their packed size).
    #[allow(dead_code)] // what the bench and the tests report; the agent itself never asks
    pub fn held(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum()
    }

    /// Append a short literal (message heads, keys, punctuation).
    pub fn push_str(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if s.len() > BLOCK {
            self.append(&Json::new(s));
            return;
        }
        self.len += s.len();
        self.blocks.push(Block {
            data: Bytes::copy_from_slice(s.as_bytes()),
            len: s.len(),
            deflated: false,
        });
    }

    /// Append `other`'s blocks (shared, not copied).
    pub fn append(&mut self, other: &Json) {
        self.len += other.len;
        self.blocks.extend(other.blocks.iter().cloned());
    }

    /// The whole text. Costs its full plain size: for tests and for the readers that parse a
    /// part back (the Kubernetes view), never for sending.
    pub fn to_text(&self) -> Result<String, Damaged> {
        let mut out = Vec::with_capacity(self.len);
        for f in self.fragments() {
            out.extend_from_slice(&f?);
        }
        // Blocks are cut at UTF-8 boundaries of valid UTF-8 text.
        String::from_utf8(out).map_err(|_| Damaged)
    }

    /// The text in pieces of at most [`FRAGMENT`] bytes, each valid UTF-8 and each made only
    /// when asked for.
    pub fn fragments(&self) -> Fragments<&Json> {
        Fragments::new(self)
    }
}

/// The pieces of a [`Json`] (borrowed, or shared as an `Arc` by a streamed response body).
pub struct Fragments<J> {
    json: J,
    next: usize,
}

impl<J: Deref<Target = Json>> Fragments<J> {
    pub fn new(json: J) -> Fragments<J> {
        Fragments { json, next: 0 }
    }
}

impl<J: Deref<Target = Json>> Iterator for Fragments<J> {
    type Item = Result<Bytes, Damaged>;

    fn next(&mut self) -> Option<Self::Item> {
        let all = &self.json.blocks;
        let rest = &all[self.next.min(all.len())..];
        rest.first()?;
        let mut n = 0;
        let mut size = 0;
        while let Some(b) = rest.get(n) {
            if size + b.len > FRAGMENT && n > 0 {
                break;
            }
            size += b.len;
            n += 1;
        }
        self.next += n;
        let mut out = vec![0u8; size];
        let mut at = 0;
        for b in &rest[..n] {
            let dst = &mut out[at..at + b.len];
            if b.deflated {
                match decompress_slice_iter_to_slice(dst, std::iter::once(&b.data[..]), false, true)
                {
                    Ok(got) if got == b.len => {}
                    _ => {
                        // Nothing after a damaged block can be trusted either.
                        self.next = all.len();
                        return Some(Err(Damaged));
                    }
                }
            } else {
                dst.copy_from_slice(&b.data);
            }
            at += b.len;
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// Packs what is written into a [`Json`], one [`BLOCK`] at a time: the plain text is never
/// held whole, so a part's JSON can be written straight from a tool's output.
#[derive(Default)]
pub struct Packer {
    buf: Vec<u8>,
    out: Json,
}

impl Packer {
    /// Seal the first `cut` buffered bytes as one block.
    fn seal(&mut self, cut: usize) {
        let plain = &self.buf[..cut];
        let block = if cut >= PACK_MIN {
            Block {
                data: Bytes::from(compress_to_vec(plain, LEVEL).into_boxed_slice()),
                len: cut,
                deflated: true,
            }
        } else {
            Block {
                data: Bytes::copy_from_slice(plain),
                len: cut,
                deflated: false,
            }
        };
        self.out.len += cut;
        self.out.blocks.push(block);
        self.buf.drain(..cut);
    }

    /// Everything written, as packed JSON. The text written must be valid UTF-8 as a whole.
    pub fn finish(mut self) -> Json {
        if !self.buf.is_empty() {
            self.seal(self.buf.len());
        }
        self.out
    }
}

impl Write for Packer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(BLOCK + 4);
        }
        // One byte past a full block tells whether the block's last character is complete.
        let n = data.len().min(BLOCK + 1 - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() > BLOCK {
            // Back off to the first byte of a character: at most 3 continuation bytes.
            let mut cut = BLOCK;
            while cut > 0 && self.buf[cut] & 0xC0 == 0x80 {
                cut -= 1;
            }
            if cut == 0 {
                // Not UTF-8 at all; cut anywhere rather than never.
                cut = BLOCK;
            }
            self.seal(cut);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(j: &Json) -> Vec<u8> {
        let mut v = Vec::new();
        for f in j.fragments() {
            let f = f.unwrap();
            assert!(f.len() <= FRAGMENT);
            assert!(
                std::str::from_utf8(&f).is_ok(),
                "fragment cut inside a character"
            );
            v.extend_from_slice(&f);
        }
        v
    }

    #[test]
    fn texts_of_every_size_come_back_whole_in_bounded_utf8_fragments() {
        // Multi-byte characters placed so that block cuts fall inside them.
        let unit = "-A KUBE-SVC-X -m comment --comment \"ns/é€😀\" -j KUBE-SEP-Y\n";
        for reps in [0, 1, 70, 4_000, 4_400, 20_000, 40_000] {
            let text = unit.repeat(reps) + "ü";
            let j = Json::new(&text);
            assert_eq!(j.len(), text.len());
            assert_eq!(joined(&j), text.as_bytes(), "{reps} lines");
            assert_eq!(j.to_text().unwrap(), text);
            if text.len() > 100_000 {
                assert!(j.held() * 5 < text.len(), "{reps} lines: {} held", j.held());
            }
        }
    }

    #[test]
    fn composed_messages_share_blocks_and_read_in_order() {
        let big = "x\"y\n".repeat(300_000);
        let part = Json::new(&big);
        let mut m = Json::default();
        m.push_str("{\"a\":");
        m.append(&part);
        m.push_str(",\"b\":1}");
        assert_eq!(m.len(), big.len() + 12);
        assert_eq!(m.held(), part.held() + 12);
        assert_eq!(m.to_text().unwrap(), format!("{{\"a\":{big},\"b\":1}}"));
    }

    #[test]
    fn damaged_blocks_are_an_error_not_a_panic() {
        let mut j = Json::new(&"abc".repeat(100_000));
        j.blocks[1].data = Bytes::from_static(b"\xff\xff\xff");
        assert_eq!(j.to_text(), Err(Damaged));
        let mut it = j.fragments();
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
