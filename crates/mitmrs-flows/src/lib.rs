//! mitmrs-flows: mitmproxy's flow files.
//!
//! - [`tnetstring`]: the encoding (sans-IO, property-tested);
//! - [`state`]: a flow as mitmproxy's state dict (format 21) and back;
//! - [`compat`]: upgrading records from older mitmproxy releases;
//! - [`io`]: [`FlowReader`] and [`FlowWriter`] over files;
//! - [`readfile`]: `-r`, loading a file's flows through the hooks;
//! - [`save`]: the `save_stream_file` (`-w`) addon, writing on its own thread.

pub mod compat;
pub mod io;
pub mod readfile;
pub mod save;
pub mod state;
pub mod tnetstring;

pub use io::{FlowReader, FlowWriter, ReadError};
pub use readfile::{load_flows, ReadFile};
pub use save::Save;
