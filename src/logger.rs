//! The binary's logging flags; the logger is `understudy_node::logger`.

use understudy_node::logger::Format as NodeFormat;

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// TIME NODE LEVEL MESSAGE, one line per line of the message.
    #[default]
    Text,
    /// One JSON object per line: {"ts","level","node","msg"}.
    Json,
}

/// Installs the logger (`understudy_node::logger::init`).
pub fn init(level: Option<&str>, format: Format, node: Option<String>) -> Result<(), String> {
    let format = match format {
        Format::Text => NodeFormat::Text,
        Format::Json => NodeFormat::Json,
    };
    understudy_node::logger::init(level, format, node)
}
