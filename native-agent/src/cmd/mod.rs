//! One module per subcommand; each parses its flags, calls core, renders the result.
pub mod ipvs;
