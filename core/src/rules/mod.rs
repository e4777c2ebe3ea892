//! Rule text formats: print and parse what the real tools print and read.
pub mod iptables;
