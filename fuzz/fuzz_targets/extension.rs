//! Fuzz target for the extension message codecs (BEP 10 handshake, BEP 9 `ut_metadata`, BEP 11
//! `ut_pex`): no input may panic, what decodes respects the documented bounds, and re-encoding it
//! decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::extension::{
    ExtensionHandshake, MAX_CLIENT_NAME, MAX_HANDSHAKE_MESSAGES, MAX_METADATA_SIZE, MAX_PEX_PEERS,
    METADATA_PIECE_LEN, MetadataMessage, PexMessage,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtensionHandshake::decode(data) {
        assert!(h.messages.len() <= MAX_HANDSHAKE_MESSAGES);
        assert!(h.client.as_ref().is_none_or(|v| v.len() <= MAX_CLIENT_NAME));
        assert!(h.metadata_size.is_none_or(|s| (1..=MAX_METADATA_SIZE).contains(&s)));
        assert!(h.listen_port != Some(0));
        let again = ExtensionHandshake::decode(&h.encode()).expect("our encoding decodes");
        assert_eq!(again.listen_port, h.listen_port);
        assert_eq!(again.client, h.client);
        assert_eq!(again.your_ip, h.your_ip);
        assert_eq!(again.reqq, h.reqq);
        assert_eq!(again.metadata_size, h.metadata_size);
        assert_eq!(again.upload_only, h.upload_only);
        for (name, _) in &h.messages {
            assert_eq!(again.id_of(name), h.id_of(name));
        }
    }
    if let Ok(m) = MetadataMessage::decode(data) {
        if let MetadataMessage::Data { data, .. } = m {
            assert!(data.len() <= METADATA_PIECE_LEN as usize);
        }
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(MetadataMessage::decode(&out), Ok(m));
    }
    if let Ok(p) = PexMessage::decode(data) {
        assert!(p.added.len() <= MAX_PEX_PEERS && p.dropped.len() <= MAX_PEX_PEERS);
        assert!(p.added.iter().all(|(a, _)| a.port() != 0));
        assert_eq!(PexMessage::decode(&p.encode()), Ok(p));
    }
});
