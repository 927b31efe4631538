//! mitmrs-flows: mitmproxy's flow files.
//!
//! - [`tnetstring`]: the encoding (sans-IO, property-tested);
//! - [`state`]: a flow as mitmproxy's state dict (format 21) and back;
//! - [`compat`]: upgrading records from older mitmproxy releases;
//! - [`io`]: [`FlowReader`] and [`FlowWriter`] over files;
//! - [`save`]: the `save_stream_file` (`-w`) addon, writing on its own thread.

pub mod compat;
pub mod io;
pub mod save;
pub mod state;
pub mod tnetstring;

pub use io::{FlowReader, FlowWriter, ReadError};
pub use save::Save;
