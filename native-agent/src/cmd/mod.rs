//! One module per subcommand; each parses its flags, calls core, renders the result.
pub mod agent;
pub mod bench;
pub mod ipvs;
pub mod rules;
pub mod scenario;
pub mod serve;
pub mod trace;
pub mod verify_kernel;
