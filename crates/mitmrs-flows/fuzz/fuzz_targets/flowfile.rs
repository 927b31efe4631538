//! Feeds arbitrary bytes to the flow-file reader (record framing, the tape
//! decoder, the flow reader and the upgrades of older formats), checks that
//! the canonical reader reads them as the general one does, and feeds every
//! flow read back to the writer, whose record must read back as a flow again.
//!
//! Run: `cd crates/mitmrs-flows/fuzz && cargo +nightly fuzz run flowfile`

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mitmrs_flows::io::encode_flow;
use mitmrs_flows::tnetstring::{self, Tape};
use mitmrs_flows::FlowReader;

fuzz_target!(|data: &[u8]| {
    // The decoders on their own, over the whole input.
    let buf = Bytes::copy_from_slice(data);
    let _ = tnetstring::decode_limited(&buf, 4096);
    let _ = Tape::decode(buf, 4096);

    // The canonical reader (the usual layout, one pass) must read exactly
    // as the general one does: the same flows, the same errors.
    assert_eq!(
        FlowReader::new(data, 1 << 20).outcomes(64),
        FlowReader::new(data, 1 << 20)
            .without_canonical_reader()
            .outcomes(64),
        "the canonical and the general reader disagree"
    );

    for flow in FlowReader::new(data, 1 << 20).take(64) {
        let Ok(flow) = flow else { continue };
        let mut out = Vec::new();
        encode_flow(&flow, &mut out);
        let again = FlowReader::new(&out[..], 1 << 30).next();
        assert!(
            matches!(again, Some(Ok(_))),
            "a flow that was read could not be read back after writing: {again:?}"
        );
    }
});
